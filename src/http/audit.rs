//! `/v1/audit`: the audit trail. Admins read all of it; trust and safety read the review work
//! (cases, streams, references: [`audit::REVIEW_TARGET_TYPES`]), not keys, rights holders and
//! webhooks, which are the admin's. Each entry names its actor as a reviewer reads it
//! (`actor_label`: "Dana (trust_safety)", `policy`). The console's audit page uses
//! [`audit_filter`] too.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Json, Query};
use crate::store::audit::{self, AuditEntry, AuditFilter};
use crate::store::keys::Role;

/// Roles that read the audit trail (trust and safety only its review part).
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::TrustSafety];

/// What `principal` may read of the trail, narrowed to a target if asked.
///
/// # Errors
/// 403 for roles that read no audit trail, and for trust and safety asking for a target type
/// outside the review work.
pub(crate) fn audit_filter<'a>(
    principal: &Principal,
    target_type: Option<&'a str>,
    target_id: Option<&'a str>,
) -> Result<AuditFilter<'a>, ApiError> {
    principal.require(READERS)?;
    let review_only = principal.role != Role::Admin;
    if review_only && target_type.is_some_and(|t| !audit::REVIEW_TARGET_TYPES.contains(&t)) {
        return Err(ApiError::Forbidden);
    }
    Ok(AuditFilter { target_type, target_id, review_only })
}

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/v1/audit", get(list))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list), components(schemas(AuditEntry)))]
pub(super) struct Api;

#[derive(Debug, Deserialize)]
struct AuditQuery {
    target_type: Option<String>,
    target_id: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/audit[?target_type=stream&target_id=ID]`, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("bearer" = [])),
    params(("target_type" = Option<String>, Query, description = "case, stream, reference (trust and safety may read these), key, rights_holder or webhook (admins only)"),
        ("target_id" = Option<String>, Query, description = "Only this target"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "At most this many, 1–1000 (default 100)")),
    responses((status = 200, body = Vec<AuditEntry>), (status = 401), (status = 403), (status = 422)))]
async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let filter = audit_filter(&principal, q.target_type.as_deref(), q.target_id.as_deref())?;
    let limit = super::params::limit(q.limit)?;
    Ok(Json(audit::list_filtered(state.store.pool(), &filter, limit).await?))
}
