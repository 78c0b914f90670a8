//! Registered takedown webhooks.

use sqlx::{Any, Executor, Row as _};

use super::{new_id, now_ms};

/// A webhook as stored. The secret is never serialised back to clients.
#[derive(Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Webhook {
    /// Its id.
    pub id: String,
    /// Where events are POSTed.
    pub url: String,
    /// Subscribed event types.
    pub events: Vec<String>,
    /// Signing secret.
    #[serde(skip)]
    pub secret: String,
    /// When it was registered.
    pub created_at: i64,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("secret", &"***")
            .finish()
    }
}

fn from_row(r: &sqlx::any::AnyRow) -> sqlx::Result<Webhook> {
    let events: String = r.try_get(2)?;
    Ok(Webhook {
        id: r.try_get(0)?,
        url: r.try_get(1)?,
        events: events.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect(),
        secret: r.try_get(3)?,
        created_at: r.try_get(4)?,
    })
}

/// Registers a webhook (events already validated).
///
/// # Errors
/// Any database error.
pub async fn create<'e>(
    db: impl Executor<'e, Database = Any>,
    url: &str,
    events: &[String],
    secret: &str,
    created_by: &str,
) -> sqlx::Result<Webhook> {
    let hook = Webhook {
        id: new_id(),
        url: url.to_owned(),
        events: events.to_vec(),
        secret: secret.to_owned(),
        created_at: now_ms(),
    };
    sqlx::query(
        "INSERT INTO webhooks (id, url, events, secret, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&hook.id)
    .bind(&hook.url)
    .bind(hook.events.join(","))
    .bind(&hook.secret)
    .bind(created_by)
    .bind(hook.created_at)
    .execute(db)
    .await?;
    Ok(hook)
}

/// Active webhooks.
///
/// # Errors
/// Any database error.
pub async fn list<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<Webhook>> {
    let rows = sqlx::query(
        "SELECT id, url, events, secret, created_at FROM webhooks WHERE deleted_at IS NULL ORDER BY id",
    )
    .fetch_all(db)
    .await?;
    rows.iter().map(from_row).collect()
}

/// One webhook, active or not.
///
/// # Errors
/// Any database error.
pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<Webhook>> {
    let row = sqlx::query("SELECT id, url, events, secret, created_at FROM webhooks WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Deactivates a webhook (kept for its delivery history). Returns false if unknown.
///
/// # Errors
/// Any database error.
pub async fn delete<'e>(db: impl Executor<'e, Database = Any>, id: &str) -> sqlx::Result<bool> {
    let done =
        sqlx::query("UPDATE webhooks SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(db)
            .await?;
    Ok(done.rows_affected() > 0)
}
