//! `/v1/cases`: the review queue. Trust & safety and admins see and decide every case; a rights
//! holder sees only cases on its own references.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Json, Path, Query};
use crate::enforce::webhook::{Event, EventType};
use crate::store::cases::{self, Case, CaseFilter, CaseStatus};
use crate::store::keys::Role;
use crate::store::streams::{self, StreamStatus};
use crate::store::{audit, outbox};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/cases", get(list))
        .route("/v1/cases/{id}", get(show))
        .route("/v1/cases/{id}/decision", post(decide))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show, decide), components(schemas(Case, DecisionBody)))]
pub(super) struct Api;

#[derive(Debug, Deserialize)]
struct CaseQuery {
    status: Option<String>,
    stream_id: Option<String>,
    reference_id: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/cases", tag = "cases", security(("bearer" = [])),
    params(("status" = Option<String>, Query, description = "open, confirmed or dismissed"),
        ("stream_id" = Option<String>, Query, description = "Only this stream"),
        ("reference_id" = Option<String>, Query, description = "Only this reference"),
        ("limit" = Option<i64>, Query, description = "At most this many (default 100)")),
    responses((status = 200, body = Vec<Case>), (status = 401), (status = 403), (status = 422)))]
async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(q): Query<CaseQuery>,
) -> Result<Json<Vec<Case>>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety, Role::RightsHolder])?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            CaseStatus::parse(s)
                .ok_or_else(|| ApiError::Unprocessable(format!("unknown status {s:?}")))?,
        ),
    };
    let filter = CaseFilter {
        status,
        stream_id: q.stream_id.as_deref(),
        reference_id: q.reference_id.as_deref(),
        rights_holder_id: principal.owner_scope(),
    };
    // A rights-holder key without a scope would see everything: refuse instead.
    if principal.role == Role::RightsHolder && filter.rights_holder_id.is_none() {
        return Err(ApiError::Forbidden);
    }
    Ok(Json(cases::list(state.store.pool(), &filter, q.limit.unwrap_or(100).clamp(1, 1000)).await?))
}

#[utoipa::path(get, path = "/v1/cases/{id}", tag = "cases", security(("bearer" = [])),
    params(("id" = String, Path, description = "Case id")),
    responses((status = 200, body = Case), (status = 401), (status = 403), (status = 404)))]
async fn show(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Case>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety, Role::RightsHolder])?;
    let case = cases::get(state.store.pool(), &id).await?.ok_or(ApiError::NotFound("case"))?;
    if !principal.can_see(case.rights_holder_id.as_deref()) {
        return Err(ApiError::NotFound("case"));
    }
    Ok(Json(case))
}

/// A reviewer's decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// confirm (kills the stream) or dismiss (suppresses the reference on the stream).
    pub decision: String,
    /// The reviewer's note.
    #[serde(default)]
    pub note: Option<String>,
}

#[utoipa::path(post, path = "/v1/cases/{id}/decision", tag = "cases", security(("bearer" = [])),
    params(("id" = String, Path, description = "Case id")), request_body = DecisionBody,
    responses((status = 200, body = Case), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn decide(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<DecisionBody>,
) -> Result<Json<Case>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety])?;
    let status = match body.decision.as_str() {
        "confirm" => CaseStatus::Confirmed,
        "dismiss" => CaseStatus::Dismissed,
        other => {
            return Err(ApiError::Unprocessable(format!(
                "decision must be confirm or dismiss, not {other:?}"
            )));
        }
    };
    let case = cases::get(state.store.pool(), &id).await?.ok_or(ApiError::NotFound("case"))?;
    let note = body.note.as_deref().map(str::trim).filter(|n| !n.is_empty());
    let mut tx = state.store.pool().begin().await?;
    if !cases::decide(&mut *tx, &id, status, note, &principal.key_id).await? {
        return Err(ApiError::Conflict("the case is already decided".into()));
    }
    let detail =
        json!({ "note": note, "stream_id": case.stream_id, "reference_id": case.reference_id });
    let data = json!({ "stream_id": case.stream_id, "reference_id": case.reference_id, "case_id": id, "by": principal.key_id });
    match status {
        CaseStatus::Confirmed => {
            audit::record(&mut *tx, &principal.key_id, "case.confirm", "case", &id, Some(&detail))
                .await?;
            let killed = streams::transition(
                &mut *tx,
                &case.stream_id,
                &[StreamStatus::Live, StreamStatus::Flagged],
                StreamStatus::Killed,
                &format!("case {id} confirmed"),
            )
            .await?;
            if killed {
                outbox::enqueue(&mut tx, &Event::new(EventType::StreamKilled, data)).await?;
            }
        }
        _ => {
            // The match row stays, so the reference never acts on this stream again; the
            // stream goes back to live unless another open case still holds it.
            audit::record(&mut *tx, &principal.key_id, "case.dismiss", "case", &id, Some(&detail))
                .await?;
            if cases::count_open_for_stream(&mut *tx, &case.stream_id, &id).await? == 0 {
                let restored = streams::transition(
                    &mut *tx,
                    &case.stream_id,
                    &[StreamStatus::Flagged],
                    StreamStatus::Live,
                    &format!("case {id} dismissed"),
                )
                .await?;
                if restored {
                    outbox::enqueue(&mut tx, &Event::new(EventType::StreamRestored, data)).await?;
                }
            }
        }
    }
    tx.commit().await?;
    state.outbox_wake.notify_one();
    Ok(Json(cases::get(state.store.pool(), &id).await?.ok_or(ApiError::NotFound("case"))?))
}
