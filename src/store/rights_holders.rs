//! Rights holders: the owners of references. A `rights_holder` API key is scoped to one.

use sqlx::{Any, Executor, Row as _};

use super::{new_id, now_ms};

/// A rights holder as stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RightsHolder {
    /// Its id (UUID v7).
    pub id: String,
    /// Its display name, unique.
    pub name: String,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// Creates a rights holder.
///
/// # Errors
/// A unique violation when the name is taken; any database error.
pub async fn create<'e>(
    db: impl Executor<'e, Database = Any>,
    name: &str,
) -> sqlx::Result<RightsHolder> {
    let holder = RightsHolder { id: new_id(), name: name.to_owned(), created_at: now_ms() };
    sqlx::query("INSERT INTO rights_holders (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(&holder.id)
        .bind(&holder.name)
        .bind(holder.created_at)
        .execute(db)
        .await?;
    Ok(holder)
}

/// Looks a rights holder up by id.
///
/// # Errors
/// Any database error.
pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<RightsHolder>> {
    let row = sqlx::query("SELECT id, name, created_at FROM rights_holders WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await?;
    row.map(|row| {
        Ok(RightsHolder { id: row.try_get(0)?, name: row.try_get(1)?, created_at: row.try_get(2)? })
    })
    .transpose()
}

/// Lists every rights holder, oldest first.
///
/// # Errors
/// Any database error.
pub async fn list<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<RightsHolder>> {
    let rows = sqlx::query("SELECT id, name, created_at FROM rights_holders ORDER BY id")
        .fetch_all(db)
        .await?;
    rows.into_iter()
        .map(|row| {
            Ok(RightsHolder {
                id: row.try_get(0)?,
                name: row.try_get(1)?,
                created_at: row.try_get(2)?,
            })
        })
        .collect()
}
