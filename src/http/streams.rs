//! `/v1/streams`: keyframe ingest (role `ingest`), stream status and matches, manual kill and
//! restore (trust & safety, admin).
//!
//! The platform (`ingest`) reads a stream's status to act on it, but not what matched it: the
//! matches (reference ids, the policies' actions) and the status reason (a reviewer's words or
//! the deciding reference) are left out of its view, and a dispute answers with the case's
//! review state only.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Json, Path, Query};
use crate::queue::message::{
    self, CONTENT_TYPE_STREAM_END, MessageError, MessageLimits, Payload, QueueMessage, RawFields,
};
use crate::store::keys::Role;
use crate::store::streams::{self, StreamMatch, StreamStatus};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/streams", get(list))
        .route("/v1/streams/{id}", get(show))
        .route("/v1/streams/{id}/keyframes", post(keyframe))
        .route("/v1/streams/{id}/end", post(end))
        .route("/v1/streams/{id}/kill", post(kill))
        .route("/v1/streams/{id}/restore", post(restore))
        .route("/v1/streams/{id}/dispute", post(dispute))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list, show, keyframe, end, kill, restore, dispute),
    components(schemas(StreamView, Reason, DisputeView))
)]
pub(super) struct Api;

/// The HTTP answer to an unusable keyframe. `MessageError` speaks of AMQP headers; over HTTP
/// the stream id is a path parameter and the rest are query parameters, so the message says so.
fn message_error(e: MessageError) -> ApiError {
    let place = |name: &str| match name {
        "stream_id" => format!("path parameter {name}"),
        "viewers" => format!("query parameter (or header) {name}"),
        _ => format!("query parameter {name}"),
    };
    match e {
        MessageError::TooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
        MessageError::UnsupportedContentType(ct) if ct.is_empty() => {
            ApiError::UnsupportedMediaType(format!("a Content-Type is required: {KEYFRAME_TYPES}"))
        }
        MessageError::UnsupportedContentType(ct) => ApiError::UnsupportedMediaType(format!(
            "unsupported content type {ct:?}: send {KEYFRAME_TYPES}"
        )),
        MessageError::Missing(name) => ApiError::Unprocessable(format!("missing {}", place(name))),
        MessageError::Invalid { name, reason } if reason.contains("not an integer") => {
            ApiError::BadRequest(format!("invalid {}: {reason}", place(name)))
        }
        MessageError::Invalid { name, reason } => {
            ApiError::Unprocessable(format!("invalid {}: {reason}", place(name)))
        }
        other => ApiError::Unprocessable(other.to_string()),
    }
}

/// The content types a keyframe may have, for messages.
const KEYFRAME_TYPES: &str = "image/jpeg, image/png, image/webp or application/vnd.offside.pdq";

async fn publish(state: &AppState, fields: RawFields, body: Bytes) -> Result<StatusCode, ApiError> {
    let limits = MessageLimits {
        max_body_bytes: usize::try_from(state.config.max_body_bytes).unwrap_or(usize::MAX),
    };
    let message = message::parse(fields, body, &limits).map_err(message_error)?;
    // What is cheap to know about an image is checked before answering 202: a text file sent
    // as image/jpeg, or a damaged header, is refused here instead of dropped by the worker.
    if let QueueMessage::Keyframe(keyframe) = &message
        && let Ok(Payload::Image(format, bytes)) = keyframe.payload()
    {
        message::check_image_header(format, &bytes).map_err(message_error)?;
    }
    state.queue.publish(&message).await.map_err(|e| {
        tracing::warn!(error = %e, "publishing a keyframe failed");
        ApiError::Unavailable("the keyframe queue is unavailable; retry shortly".into())
    })?;
    metrics::counter!("offside_keyframes_published_total", "via" => "http").increment(1);
    Ok(StatusCode::ACCEPTED)
}

/// `POST /v1/streams/{id}/keyframes?ts_ms=N[&account_id=A][&captured_at_ms=T]`, body an image
/// or a hash as in the AMQP contract. 202 once the queue has it.
#[utoipa::path(post, path = "/v1/streams/{id}/keyframes", tag = "streams", security(("bearer" = [])),
    params(("id" = String, Path, min_length = 1, max_length = 200, pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$", description = "The platform's stream id (1–200 bytes, no `/` or control characters)"),
        ("ts_ms" = i64, Query, minimum = 0, description = "Stream time of the keyframe (ms)"),
        ("account_id" = Option<String>, Query, min_length = 1, max_length = 200, pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$", description = "The streamer's account"),
        ("captured_at_ms" = Option<i64>, Query, description = "Wall-clock capture time (Unix ms)"),
        ("viewers" = Option<i64>, Query, minimum = 0, description = "Current viewer count (also accepted as a `viewers` header); orders the review queue by reach")),
    request_body(content(
        (Vec<u8> = "image/jpeg"), (Vec<u8> = "image/png"), (Vec<u8> = "image/webp"),
        (String = "application/vnd.offside.pdq")),
        description = "A keyframe image (its header is checked: 32 to 16384 pixels a side), or a precomputed hash HEX64[,QUALITY]"),
    responses((status = 202, description = "Queued for the workers"),
        (status = 400, description = "A query parameter is not an integer"),
        (status = 401), (status = 403),
        (status = 413), (status = 415, description = "No or an unsupported Content-Type"),
        (status = 422, description = "A missing or invalid parameter, or a body that is not an image of its type"),
        (status = 503, description = "The keyframe queue or the database is unavailable; retry after Retry-After")))]
async fn keyframe(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    principal.require(&[Role::Ingest, Role::Admin])?;
    let fields = RawFields {
        stream_id: Some(id),
        ts_ms: params.get("ts_ms").cloned(),
        account_id: params.get("account_id").cloned(),
        captured_at_ms: params.get("captured_at_ms").cloned(),
        // The viewer count may come as a query parameter or a header (some platforms add it
        // in a proxy in front of Offside).
        viewers: params
            .get("viewers")
            .cloned()
            .or_else(|| headers.get("viewers").and_then(|v| v.to_str().ok()).map(str::to_owned)),
        version: None,
        content_type: headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned),
    };
    if fields.content_type.as_deref().is_some_and(|c| c.starts_with(CONTENT_TYPE_STREAM_END)) {
        return Err(ApiError::Unprocessable(
            "use POST /v1/streams/{id}/end to end a stream".into(),
        ));
    }
    publish(&state, fields, body).await
}

/// `POST /v1/streams/{id}/end`: the stream is over; its later keyframes are dropped.
#[utoipa::path(post, path = "/v1/streams/{id}/end", tag = "streams", security(("bearer" = [])),
    params(("id" = String, Path, min_length = 1, max_length = 200, pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$", description = "The platform's stream id")),
    responses((status = 202), (status = 401), (status = 403), (status = 503)))]
async fn end(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Body,
) -> Result<StatusCode, ApiError> {
    principal.require(&[Role::Ingest, Role::Admin])?;
    if !axum::body::to_bytes(body, 1024).await.is_ok_and(|b| b.is_empty()) {
        return Err(ApiError::Unprocessable("ending a stream takes no body".into()));
    }
    let fields = RawFields {
        stream_id: Some(id),
        content_type: Some(CONTENT_TYPE_STREAM_END.to_owned()),
        ..RawFields::default()
    };
    publish(&state, fields, Bytes::new()).await
}

/// A stream with its decisions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamView {
    /// The platform's id.
    pub id: String,
    /// The streamer.
    pub account_id: Option<String>,
    /// live, flagged, killed or ended.
    pub status: StreamStatus,
    /// Why the status last changed (absent for the ingest role).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// The latest viewer count the platform sent (with a keyframe that hit a reference, or the
    /// first keyframe).
    pub viewers: Option<i64>,
    /// When the first keyframe was seen (Unix ms).
    pub created_at: i64,
    /// When the platform ended the stream (Unix ms). A flagged or killed stream keeps its
    /// status when it ends, so its decision stays visible; only an undecided one becomes ended.
    pub ended_at: Option<i64>,
    /// Decisions per reference (absent for the ingest role).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<StreamMatch>>,
}

async fn view(state: &AppState, s: streams::Stream) -> Result<StreamView, ApiError> {
    let matches = streams::matches(state.store.pool(), &s.id).await?;
    Ok(StreamView {
        id: s.id,
        account_id: s.account_id,
        status: s.status,
        status_reason: s.status_reason,
        viewers: s.viewers,
        created_at: s.created_at,
        ended_at: s.ended_at,
        matches: Some(matches),
    })
}

/// What the platform (`ingest`) reads of a stream: its status, not what matched it.
fn platform_view(s: streams::Stream) -> StreamView {
    StreamView {
        id: s.id,
        account_id: s.account_id,
        status: s.status,
        status_reason: None,
        viewers: s.viewers,
        created_at: s.created_at,
        ended_at: s.ended_at,
        matches: None,
    }
}

/// `GET /v1/streams/{id}`.
#[utoipa::path(get, path = "/v1/streams/{id}", tag = "streams", security(("bearer" = [])),
    params(("id" = String, Path, min_length = 1, max_length = 200, pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$", description = "The platform's stream id")),
    responses((status = 200, body = StreamView), (status = 401), (status = 403), (status = 404)))]
async fn show(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<StreamView>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety, Role::Ingest])?;
    let s = streams::get(state.store.pool(), &id).await?.ok_or(ApiError::NotFound("stream"))?;
    if principal.role == Role::Ingest {
        return Ok(Json(platform_view(s)));
    }
    Ok(Json(view(&state, s).await?))
}

/// Filters of `GET /v1/streams`.
#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/streams?status=`.
#[utoipa::path(get, path = "/v1/streams", tag = "streams", security(("bearer" = [])),
    params(("status" = Option<StreamStatus>, Query, description = "live, flagged, killed or ended (flagged and killed streams keep their status when they end: see ended_at)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "At most this many, 1–1000 (default 100)")),
    responses((status = 200, body = Vec<StreamView>), (status = 401), (status = 403), (status = 422)))]
async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Vec<StreamView>>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety])?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(super::params::one_of(
            "status",
            s,
            &["live", "flagged", "killed", "ended"],
            StreamStatus::parse,
        )?),
    };
    let limit = super::params::limit(q.limit)?;
    let mut out = Vec::new();
    for s in streams::list(state.store.pool(), status, limit).await? {
        out.push(view(&state, s).await?);
    }
    Ok(Json(out))
}

/// A reason for a manual action.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why (kept in the audit trail): 1 to 2000 characters, not only spaces.
    #[schema(min_length = 1, max_length = 2000, pattern = r"\S")]
    pub reason: String,
}

impl Reason {
    /// The reason, checked: 1 to 2000 characters once trimmed.
    fn checked(&self) -> Result<&str, ApiError> {
        let reason = self.reason.trim();
        if reason.is_empty() || reason.chars().count() > 2000 {
            return Err(ApiError::Unprocessable("reason must be 1 to 2000 characters".into()));
        }
        Ok(reason)
    }
}

/// `POST /v1/streams/{id}/kill {reason}`.
#[utoipa::path(post, path = "/v1/streams/{id}/kill", tag = "streams", security(("bearer" = [])),
    params(("id" = String, Path, min_length = 1, max_length = 200, pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$", description = "The platform's stream id")), request_body = Reason,
    responses((status = 200, body = StreamView), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn kill(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Reason>,
) -> Result<Json<StreamView>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety])?;
    manual(&state, &principal, &id, body.checked()?, StreamStatus::Killed).await
}

/// `POST /v1/streams/{id}/restore {reason}`.
#[utoipa::path(post, path = "/v1/streams/{id}/restore", tag = "streams", security(("bearer" = [])),
    params(("id" = String, Path, min_length = 1, max_length = 200, pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$", description = "The platform's stream id")), request_body = Reason,
    responses((status = 200, body = StreamView), (status = 401), (status = 403), (status = 404), (status = 409)))]
async fn restore(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Reason>,
) -> Result<Json<StreamView>, ApiError> {
    principal.require(&[Role::Admin, Role::TrustSafety])?;
    manual(&state, &principal, &id, body.checked()?, StreamStatus::Live).await
}

async fn manual(
    state: &AppState,
    principal: &Principal,
    id: &str,
    reason: &str,
    to: StreamStatus,
) -> Result<Json<StreamView>, ApiError> {
    crate::review::set_stream_status(state, principal, id, reason, to).await?;
    let s = streams::get(state.store.pool(), id).await?.ok_or(ApiError::NotFound("stream"))?;
    Ok(Json(view(state, s).await?))
}

/// `POST /v1/streams/{id}/dispute {reason}`: the platform relays that the streamer disputes the
/// decision; the stream's case goes back to the head of the review queue, marked.
#[utoipa::path(post, path = "/v1/streams/{id}/dispute", tag = "streams", security(("bearer" = [])),
    params(("id" = String, Path, min_length = 1, max_length = 200, pattern = r"^[^/\u0000-\u001F\u007F-\u009F]+$", description = "The platform's stream id")), request_body = Reason,
    responses((status = 200, body = DisputeView, description = "The case, open again and marked disputed"),
        (status = 401), (status = 403), (status = 404), (status = 409, description = "Nothing was decided on the stream"), (status = 422)))]
async fn dispute(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(body): Json<Reason>,
) -> Result<Json<DisputeView>, ApiError> {
    let case = crate::review::dispute(&state, &principal, &id, body.checked()?).await?;
    Ok(Json(DisputeView {
        id: case.id,
        stream_id: case.stream_id,
        status: case.status,
        disputed_at: case.disputed_at,
        dispute_reason: case.dispute_reason,
    }))
}

/// The answer to a dispute: the case's review state, without the reference it matched or the
/// reviewers' notes (the platform relays disputes; it does not read cases).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DisputeView {
    /// The case, open again.
    pub id: String,
    /// The stream.
    pub stream_id: String,
    /// `open` until a reviewer decides again.
    pub status: crate::store::cases::CaseStatus,
    /// When the dispute arrived (ms since epoch).
    pub disputed_at: Option<i64>,
    /// The streamer's reason, as relayed.
    pub dispute_reason: Option<String>,
}
