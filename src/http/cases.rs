//! `/v1/cases`: the review queue. Trust & safety and admins see and decide every case; a rights
//! holder sees only cases on its own references. The checks and the actions are
//! [`crate::review`]'s, shared with the console.

use axum::Router;
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Json, Path, Query};
use crate::review::{self, CaseDecision, CaseView, EvidencePair, StillSide};
use crate::store::cases::{self, Case, CaseFilter, CaseStatus};
use crate::store::keys::Role;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/cases", get(list))
        .route("/v1/cases/{id}", get(show))
        .route("/v1/cases/{id}/decision", post(decide))
        .route("/v1/cases/{id}/evidence", get(bundle))
        .route("/v1/cases/{id}/stills/{side}/{ts_ms}", get(still))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, show, decide, bundle, still),
    components(schemas(Case, CaseView, EvidencePair, DecisionBody))
)]
pub(super) struct Api;

#[derive(Debug, Deserialize)]
struct CaseQuery {
    status: Option<String>,
    stream_id: Option<String>,
    reference_id: Option<String>,
    limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/cases", tag = "cases", security(("bearer" = [])),
    params(("status" = Option<CaseStatus>, Query, description = "open, confirmed or dismissed"),
        ("stream_id" = Option<String>, Query, min_length = 1, max_length = 200, pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$", description = "Only this stream"),
        ("reference_id" = Option<String>, Query, min_length = 1, max_length = 200, pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$", description = "Only this reference"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "At most this many, 1–1000 (default 100)")),
    responses((status = 200, body = Vec<CaseView>), (status = 401), (status = 403), (status = 422)))]
async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(q): Query<CaseQuery>,
) -> Result<Json<Vec<CaseView>>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety, Role::RightsHolder])?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(super::params::one_of(
            "status",
            s,
            &["open", "confirmed", "dismissed"],
            CaseStatus::parse,
        )?),
    };
    let filter = CaseFilter {
        status,
        stream_id: super::params::filter_id("stream_id", q.stream_id.as_deref())?,
        reference_id: super::params::filter_id("reference_id", q.reference_id.as_deref())?,
        rights_holder_id: principal.owner_scope(),
    };
    // A rights-holder key without a scope would see everything: refuse instead.
    if principal.role == Role::RightsHolder && filter.rights_holder_id.is_none() {
        return Err(ApiError::Forbidden);
    }
    let limit = super::params::limit(q.limit)?;
    let mut out = Vec::new();
    for case in cases::list(state.store.pool(), &filter, limit).await? {
        let case = review::for_viewer(&principal, case);
        out.push(review::case_view(&state, case, "/v1").await?);
    }
    Ok(Json(out))
}

#[utoipa::path(get, path = "/v1/cases/{id}", tag = "cases", security(("bearer" = [])),
    params(("id" = String, Path, description = "Case id")),
    responses((status = 200, body = CaseView), (status = 401), (status = 403), (status = 404)))]
async fn show(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CaseView>, ApiError> {
    let case = review::visible_case(&state, &principal, &id).await?;
    Ok(Json(review::case_view(&state, case, "/v1").await?))
}

/// A reviewer's decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// `confirm` (kills the stream), `dismiss` (closes the case; the stream goes back to live
    /// unless another open case holds it) or `restore` (undoes an enforced decision: the case is
    /// dismissed and the stream goes back to live).
    #[schema(pattern = "^(confirm|dismiss|restore)$")]
    pub decision: String,
    /// The reviewer's note.
    #[serde(default)]
    pub note: Option<String>,
}

#[utoipa::path(post, path = "/v1/cases/{id}/decision", tag = "cases", security(("bearer" = [])),
    params(("id" = String, Path, description = "Case id")), request_body = DecisionBody,
    responses((status = 200, body = CaseView), (status = 401), (status = 403), (status = 404), (status = 409), (status = 422)))]
async fn decide(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<DecisionBody>,
) -> Result<Json<CaseView>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety])?;
    let decision = CaseDecision::parse(&body.decision).ok_or_else(|| {
        ApiError::Unprocessable(format!(
            "decision must be confirm, dismiss or restore, not {:?}",
            body.decision
        ))
    })?;
    let case = review::decide_case(&state, &principal, &id, decision, body.note.as_deref()).await?;
    Ok(Json(review::case_view(&state, case, "/v1").await?))
}

/// `GET /v1/cases/{id}/evidence`: the evidence bundle.
#[utoipa::path(get, path = "/v1/cases/{id}/evidence", tag = "cases", security(("bearer" = [])),
    params(("id" = String, Path, description = "Case id")),
    responses((status = 200, description = "A zip: case.json (the case, the stream, the reference's title and policy, every evidence pair), the stills under stills/, and manifest.sha256", content_type = "application/zip"),
        (status = 401), (status = 403), (status = 404)))]
async fn bundle(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let zip = review::bundle::evidence_bundle(&state, &principal, &id).await?;
    let disposition = format!("attachment; filename=\"offside-case-{id}.zip\"");
    Ok(([(CONTENT_TYPE, "application/zip".to_owned()), (CONTENT_DISPOSITION, disposition)], zip)
        .into_response())
}

/// `GET /v1/cases/{id}/stills/{side}/{ts_ms}`: a still of an evidence pair.
#[utoipa::path(get, path = "/v1/cases/{id}/stills/{side}/{ts_ms}", tag = "cases", security(("bearer" = [])),
    params(("id" = String, Path, description = "Case id"),
        ("side" = String, Path, description = "stream or reference"),
        ("ts_ms" = i64, Path, description = "The pair's stream time (stream) or reference time (reference)")),
    responses((status = 200, description = "The still", content_type = "image/jpeg"),
        (status = 401), (status = 403), (status = 404)))]
async fn still(
    principal: Principal,
    State(state): State<AppState>,
    Path((id, side, ts_ms)): Path<(String, String, i64)>,
) -> Result<Response, ApiError> {
    let side = StillSide::parse(&side).ok_or(ApiError::NotFound("still"))?;
    let jpeg = review::case_still(&state, &principal, &id, side, ts_ms).await?;
    Ok(super::stills::jpeg_response(jpeg))
}
