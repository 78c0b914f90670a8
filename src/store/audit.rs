//! The audit trail: who did what, to what, when.
//!
//! Every change is recorded in the transaction that makes it: key creation and revocation,
//! rights holders, references (creation, deletion, policy, hash imports), webhooks, case
//! decisions and disputes, manual kills and restores, and the policy's automatic decisions.
//!
//! An entry stores the actor's key id (or [`POLICY`] / [`COMMAND_LINE`]); the key's name and
//! role are joined in when the trail is read. Keys are never deleted (only revoked) and never
//! renamed, so the join always finds what the key was when it acted, without copying the name
//! into every entry.

use sqlx::{Any, AssertSqlSafe, Executor, Row as _};

use super::keys::{Role, UnknownRole};
use super::{new_id, now_ms};

/// The actor of the policy's automatic decisions.
pub const POLICY: &str = "policy";
/// The actor of `offside keys` commands: someone with access to the database on the host.
pub const COMMAND_LINE: &str = "cli";
/// The actor a rights holder sees for a case decided by a person: reviewers stay anonymous to
/// rights holders.
pub const REVIEWER: &str = "reviewer";

/// The target types of review work (cases, streams, references): what trust and safety reads
/// of the trail. Keys, rights holders and webhooks are the admin's.
pub const REVIEW_TARGET_TYPES: &[&str] = &["case", "stream", "reference"];

/// One audit entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Its id (time-ordered).
    pub id: String,
    /// API key id of the caller, `policy` for automatic decisions, or `cli` for the
    /// `offside keys` command.
    pub actor: String,
    /// The actor as a reviewer reads it: `Dana (trust_safety)`, `policy` or `command line`.
    pub actor_label: String,
    /// The actor key's name, when the actor is a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    /// The actor key's role, when the actor is a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor_role: Option<Role>,
    /// What was done (`stream.kill`, `case.confirm`, `webhook.create`, ...).
    pub action: String,
    /// The kind of thing acted on (`stream`, `case`, `reference`, `key`, `rights_holder`,
    /// `webhook`).
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

/// The detail of a reference's creation or deletion: what it is, whose, and its policy (never
/// a live feed's URL, which may carry credentials).
pub fn reference_detail(reference: &super::references::Reference) -> serde_json::Value {
    serde_json::json!({
        "title": reference.title,
        "source": reference.source,
        "status": reference.status,
        "rights_holder_id": reference.rights_holder_id,
        "policy": reference.policy,
    })
}

/// Which entries to list.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditFilter<'a> {
    /// Only this target type.
    pub target_type: Option<&'a str>,
    /// Only this target id.
    pub target_id: Option<&'a str>,
    /// Only [`REVIEW_TARGET_TYPES`] (trust and safety's view of the trail).
    pub review_only: bool,
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
    list_filtered(db, &AuditFilter { target_type, target_id, review_only: false }, limit).await
}

/// Lists entries, newest first, with the actor's key name and role.
///
/// # Errors
/// Any database error.
pub async fn list_filtered<'e>(
    db: impl Executor<'e, Database = Any>,
    filter: &AuditFilter<'_>,
    limit: i64,
) -> sqlx::Result<Vec<AuditEntry>> {
    // The review types are constants (never input), spliced as SQL string literals.
    let review_types: Vec<String> = REVIEW_TARGET_TYPES.iter().map(|t| format!("'{t}'")).collect();
    let sql = format!(
        "SELECT a.id, a.actor, a.action, a.target_type, a.target_id, a.detail, a.created_at, \
         k.name, k.role FROM audit_log a LEFT JOIN api_keys k ON k.id = a.actor \
         WHERE ($1 IS NULL OR a.target_type = $1) AND ($2 IS NULL OR a.target_id = $2) \
         AND ($3 = 0 OR a.target_type IN ({})) \
         ORDER BY a.id DESC LIMIT $4",
        review_types.join(", ")
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(filter.target_type)
        .bind(filter.target_id)
        .bind(i64::from(filter.review_only))
        .bind(limit)
        .fetch_all(db)
        .await?;
    rows.iter()
        .map(|r| {
            let detail: Option<String> = r.try_get(5)?;
            let actor: String = r.try_get(1)?;
            let actor_name: Option<String> = r.try_get(7)?;
            let role: Option<String> = r.try_get(8)?;
            let actor_role = role
                .map(|role| role.parse::<Role>())
                .transpose()
                .map_err(|err: UnknownRole| sqlx::Error::Decode(err.into()))?;
            Ok(AuditEntry {
                id: r.try_get(0)?,
                actor_label: label(&actor, actor_name.as_deref(), actor_role),
                actor,
                actor_name,
                actor_role,
                action: r.try_get(2)?,
                target_type: r.try_get(3)?,
                target_id: r.try_get(4)?,
                detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
                created_at: r.try_get(6)?,
            })
        })
        .collect()
}

/// How an actor reads: `Dana (trust_safety)` for a key, `policy`, `command line`, `a reviewer`,
/// or the bare id of a key that no longer exists.
pub fn label(actor: &str, key_name: Option<&str>, key_role: Option<Role>) -> String {
    match (key_name, key_role) {
        (Some(name), Some(role)) => format!("{name} ({role})"),
        _ => match actor {
            POLICY => "policy".to_owned(),
            COMMAND_LINE => "command line".to_owned(),
            REVIEWER => "a reviewer".to_owned(),
            other => other.to_owned(),
        },
    }
}

/// The label of one actor (a case's `decided_by`), as [`label`] prints it.
///
/// # Errors
/// Any database error.
pub async fn actor_label<'e>(
    db: impl Executor<'e, Database = Any>,
    actor: &str,
) -> sqlx::Result<String> {
    let key = super::keys::get(db, actor).await?;
    Ok(label(actor, key.as_ref().map(|k| k.name.as_str()), key.as_ref().map(|k| k.role)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_name_and_role_and_the_rest_by_what_they_are() {
        assert_eq!(label("0190", Some("Dana"), Some(Role::TrustSafety)), "Dana (trust_safety)");
        assert_eq!(label(POLICY, None, None), "policy");
        assert_eq!(label(COMMAND_LINE, None, None), "command line");
        assert_eq!(label("gone", None, None), "gone");
    }
}
