//! `/v1/audit`: the audit trail (admin, trust & safety).

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde::Deserialize;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Json, Query};
use crate::store::audit::{self, AuditEntry};
use crate::store::keys::Role;

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
    params(("target_type" = Option<String>, Query, description = "stream, case or webhook"),
        ("target_id" = Option<String>, Query, description = "Only this target"),
        ("limit" = Option<i64>, Query, description = "At most this many (default 100)")),
    responses((status = 200, body = Vec<AuditEntry>), (status = 401), (status = 403)))]
async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety])?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        audit::list(state.store.pool(), q.target_type.as_deref(), q.target_id.as_deref(), limit)
            .await?,
    ))
}
