//! The audit trail: who did what, to what, when.

use sqlx::{Any, Executor, Row as _};

use super::{new_id, now_ms};

/// One audit entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Its id (time-ordered).
    pub id: String,
    /// API key id of the caller, or `policy` for automatic decisions.
    pub actor: String,
    /// What was done (`stream.kill`, `case.confirm`, `webhook.create`, ...).
    pub action: String,
    /// The kind of thing acted on (`stream`, `case`, `webhook`).
    pub target_type: String,
    /// Its id.
    pub target_id: String,
    /// Free-form detail (reason, note) as JSON.
    #[schema(value_type = Object)]
    pub detail: Option<serde_json::Value>,
    /// When (ms since epoch).
    pub created_at: i64,
}

/// Appends an entry. Run it in the same transaction as the action it records.
///
/// # Errors
/// Any database error.
pub async fn record<'e>(
    db: impl Executor<'e, Database = Any>,
    actor: &str,
    action: &str,
    target_type: &str,
    target_id: &str,
    detail: Option<&serde_json::Value>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, actor, action, target_type, target_id, detail, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(actor)
    .bind(action)
    .bind(target_type)
    .bind(target_id)
    .bind(detail.map(serde_json::Value::to_string))
    .bind(now_ms())
    .execute(db)
    .await?;
    Ok(())
}

/// Lists entries, newest first, optionally for one target.
///
/// # Errors
/// Any database error.
pub async fn list<'e>(
    db: impl Executor<'e, Database = Any>,
    target_type: Option<&str>,
    target_id: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<AuditEntry>> {
    let rows = sqlx::query(
        "SELECT id, actor, action, target_type, target_id, detail, created_at FROM audit_log \
         WHERE ($1 IS NULL OR target_type = $1) AND ($2 IS NULL OR target_id = $2) \
         ORDER BY id DESC LIMIT $3",
    )
    .bind(target_type)
    .bind(target_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let detail: Option<String> = r.try_get(5)?;
            Ok(AuditEntry {
                id: r.try_get(0)?,
                actor: r.try_get(1)?,
                action: r.try_get(2)?,
                target_type: r.try_get(3)?,
                target_id: r.try_get(4)?,
                detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                created_at: r.try_get(6)?,
            })
        })
        .collect()
}
