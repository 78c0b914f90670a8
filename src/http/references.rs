//! `/v1/references`: the reference library of each rights holder.
//!
//! Uploads are multipart (`metadata` JSON + `file`), streamed to a file under the data
//! directory chunk by chunk (never held whole in memory) and cut off with 413 past
//! `max_upload_bytes`; a job then hashes the file. A JSON body instead creates an empty
//! reference that hash lines are imported into. Rights holders see only their own references;
//! anyone else's id answers 404, exactly like an id that does not exist.

use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Request, State};
use axum::http::{StatusCode, header};
use axum::routing::{get, post, put};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

use super::AppState;
use super::auth::Principal;
use super::error::{ApiError, Json, Path, Query};
use crate::domain::{FeedStatus, Policy, ReferenceSource, ReferenceStatus};
use crate::live::store::{self as live_store, LiveFeed};
use crate::recognition::ReferenceFrame;
use crate::store::keys::Role;
use crate::store::references::{self, NewReference, Reference};
use crate::store::{audit, new_id, rights_holders};

/// Routes answered within the request timeout.
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/references", get(list))
        .route("/v1/references/{id}", get(show).delete(remove))
        .route("/v1/references/{id}/policy", put(set_policy))
}

/// Routes that stream large bodies: no body limit from axum (they enforce
/// `max_upload_bytes` themselves) and no request timeout.
pub(super) fn upload_router() -> Router<AppState> {
    Router::new()
        .route("/v1/references", post(create).layer(DefaultBodyLimit::disable()))
        .route("/v1/references/{id}/hashes", post(import_hashes).layer(DefaultBodyLimit::disable()))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(create, list, show, remove, set_policy, import_hashes))]
pub(super) struct Api;

/// Roles that create and change references (the console's forms use the same).
pub(crate) const WRITERS: &[Role] = &[Role::Admin, Role::RightsHolder];
/// Roles that read references.
pub(crate) const READERS: &[Role] = &[Role::Admin, Role::RightsHolder, Role::TrustSafety];

/// What a client sees of a reference.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReferenceView {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// processing, ready, live or failed.
    pub status: ReferenceStatus,
    /// Frames stored so far.
    pub frames: i64,
    /// Why its job failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Hashing progress: 0.0 when the upload is accepted, growing to 1.0 when ready (also 1.0
    /// for hash lists). Absent for live feeds and failed references.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
    /// What happens on a match.
    pub policy: Policy,
    /// video, image or hashes.
    pub source: ReferenceSource,
    /// The owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rights_holder_id: Option<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at: i64,
    /// The feed of a live reference: its state and counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveView>,
}

/// What a client sees of a live feed.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LiveView {
    /// live (ingesting, or waiting for its start), reconnecting (the feed dropped) or ended.
    pub status: FeedStatus,
    /// The input.
    pub url: String,
    /// Frames hashed so far.
    pub frames: i64,
    /// Wall-clock time of the last frame hashed, milliseconds since the Unix epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_frame_at: Option<i64>,
    /// Times the input was reopened after dropping.
    pub reconnects: i64,
    /// Why the input last failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Time zero of the event (milliseconds since the Unix epoch): live hits' reference times
    /// count from it.
    pub origin_ms: i64,
    /// Ingest starts at (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<i64>,
    /// Ingest ends at (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<i64>,
    /// When it ended (ms since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<i64>,
    /// How long live frames stay matchable.
    pub retention_seconds: i64,
    /// Whether the event becomes an ordinary reference when it ends.
    pub archive: bool,
    /// The process ingesting it now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ingested_by: Option<String>,
}

impl From<LiveFeed> for LiveView {
    fn from(f: LiveFeed) -> Self {
        Self {
            status: f.status,
            url: f.url,
            frames: f.frames,
            last_frame_at: f.last_frame_at,
            reconnects: f.reconnects,
            last_error: f.last_error,
            origin_ms: f.origin_ms,
            starts_at: f.starts_at,
            ends_at: f.ends_at,
            ended_at: f.ended_at,
            retention_seconds: f.retention_ms / 1000,
            archive: f.archive,
            ingested_by: f.lease_holder,
        }
    }
}

/// Attaches the feed of a live reference to its view.
async fn with_live(state: &AppState, mut view: ReferenceView) -> Result<ReferenceView, ApiError> {
    if view.status == ReferenceStatus::Live || view.source == ReferenceSource::Video {
        view.live = live_store::get(state.store.pool(), &view.id).await?.map(LiveView::from);
    }
    Ok(view)
}

/// JSON `{title, live_url, ...}`: registers a live feed.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LiveReferenceRequest {
    /// A human title, 1–300 characters.
    pub title: String,
    /// The feed: `rtmp://`, `rtmps://`, `srt://`, `udp://` (MPEG-TS), `http(s)://` (HLS), or a
    /// file path (replayed in real time; only with `allow_private_urls`). Loopback, private and
    /// other non-public addresses need `allow_private_urls` or `allow_private_networks`.
    pub live_url: String,
    /// What to do on a match; leave it out for the default (flag after 8 s). `null` is refused
    /// like any other value that is not a policy.
    #[serde(default, deserialize_with = "present_policy")]
    #[schema(nullable = false)]
    pub policy: Option<Policy>,
    /// How long live frames stay matchable, 60 s to 7 days (default 7200).
    #[serde(default)]
    pub retention_seconds: Option<i64>,
    /// Start ingesting at (RFC 3339; default now). Also the event's time zero.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<time::OffsetDateTime>,
    /// Stop ingesting at (RFC 3339; default: when the feed is deleted or a file input ends).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<time::OffsetDateTime>,
    /// Keep the frames as an ordinary ready reference when the event ends (default false).
    #[serde(default)]
    pub archive: bool,
    /// The owner; only an admin sets it.
    #[serde(default)]
    pub rights_holder_id: Option<String>,
}

fn unix_ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// Registers a live feed: the reference row (status `live`) and its feed row, together.
async fn create_live(
    principal: &Principal,
    state: &AppState,
    request: LiveReferenceRequest,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let metadata = ReferenceMetadata {
        title: request.title.clone(),
        policy: request.policy.clone(),
        rights_holder_id: request.rights_holder_id.clone(),
    };
    let (owner, policy) = check_metadata(principal, state, &metadata).await?;
    let input = crate::live::check_live_url(&request.live_url, &state.config.outbound_policy())
        .await
        .map_err(|err| ApiError::Unprocessable(err.to_string()))?;
    let retention_seconds =
        request.retention_seconds.unwrap_or(crate::live::DEFAULT_RETENTION_SECONDS);
    if !(60..=crate::live::MAX_RETENTION_SECONDS).contains(&retention_seconds) {
        return Err(ApiError::Unprocessable(format!(
            "retention_seconds must be between 60 and {}",
            crate::live::MAX_RETENTION_SECONDS
        )));
    }
    let now = crate::store::now_ms();
    let starts_at = request.starts_at.map(unix_ms);
    let ends_at = request.ends_at.map(unix_ms);
    if let Some(end) = ends_at
        && end <= starts_at.unwrap_or(now)
    {
        return Err(ApiError::Unprocessable(
            "ends_at must be in the future and after starts_at".to_owned(),
        ));
    }
    let id = new_id();
    let mut tx = state.store.pool().begin().await?;
    let created = references::insert(
        &mut *tx,
        &NewReference {
            id: &id,
            rights_holder_id: owner.as_deref(),
            title: metadata.title.trim(),
            // A live feed is video; its archive becomes an ordinary video reference.
            source: ReferenceSource::Video,
            status: ReferenceStatus::Live,
            policy: &policy,
            upload_path: None,
        },
    )
    .await?;
    live_store::insert(
        &mut *tx,
        &live_store::NewFeed {
            reference_id: &id,
            url: input.as_str(),
            origin_ms: starts_at.unwrap_or(now),
            starts_at,
            ends_at,
            retention_ms: retention_seconds * 1000,
            archive: request.archive,
        },
    )
    .await?;
    let detail = audit::reference_detail(&created);
    audit::record(&mut *tx, &principal.key_id, "reference.create", "reference", &id, Some(&detail))
        .await?;
    tx.commit().await?;
    tracing::info!(reference_id = %id, "live feed registered");
    Ok((StatusCode::CREATED, Json(Accepted { id, status: ReferenceStatus::Live })))
}

impl From<Reference> for ReferenceView {
    fn from(r: Reference) -> Self {
        // 0.0 from the upload until the job's first report, 1.0 once ready, so a client's
        // progress bar always has a number; none for live feeds and failed jobs.
        #[allow(clippy::cast_precision_loss)] // permille fits exactly
        let progress = match r.status {
            ReferenceStatus::Processing => Some(r.progress_permille.unwrap_or(0) as f64 / 1000.0),
            ReferenceStatus::Ready => Some(1.0),
            ReferenceStatus::Live | ReferenceStatus::Failed => None,
        };
        Self {
            id: r.id,
            title: r.title,
            status: r.status,
            frames: r.frames,
            error: r.error,
            progress,
            policy: r.policy,
            source: r.source,
            rights_holder_id: r.rights_holder_id,
            created_at: r.created_at,
            updated_at: r.updated_at,
            live: None,
        }
    }
}

/// The `metadata` part of an upload, or the JSON body of a hash-list reference.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReferenceMetadata {
    /// A human title, 1–300 characters, not only spaces, no control characters.
    #[schema(
        min_length = 1,
        max_length = 300,
        pattern = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$"
    )]
    pub title: String,
    /// What to do on a match; leave it out for the default (flag after 8 s). `null` is refused
    /// like any other value that is not a policy.
    #[serde(default, deserialize_with = "present_policy")]
    #[schema(nullable = false)]
    pub policy: Option<Policy>,
    /// The owner; only an admin sets it (a rights holder's references are its own).
    #[serde(default)]
    pub rights_holder_id: Option<String>,
}

/// A `policy` that is there is a policy (`null` is not); a missing one is `None` (`default`).
fn present_policy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Policy>, D::Error> {
    Policy::deserialize(d).map(Some)
}

/// The multipart upload form.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // documents the form for OpenAPI; the handler reads the parts as a stream
pub struct UploadForm {
    /// JSON `{title, policy?}`.
    metadata: ReferenceMetadata,
    /// The video (any format FFmpeg reads) or image (JPEG, PNG, WebP).
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// The answer to an accepted reference.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The new reference's id.
    pub id: String,
    /// `processing` for uploads, `ready` for an (empty) hash-list reference.
    pub status: ReferenceStatus,
}

/// One page of references.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReferencePage {
    /// The references, oldest first.
    pub items: Vec<ReferenceView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Paging parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// Page size, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    pub cursor: Option<String>,
}

/// The result of a hash import.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Imported {
    /// The reference.
    pub id: String,
    /// Lines imported now.
    pub imported: u64,
    /// Frames the reference has in total.
    pub frames: i64,
}

/// Registers a reference: multipart upload of a video or image (202, hashed by a job), JSON
/// `{title, policy?}` for an empty reference to import hash lines into (201), or JSON
/// `{title, live_url, policy?, retention_seconds?, starts_at?, ends_at?, archive?}` for a live
/// feed (201, status `live`).
#[utoipa::path(post, path = "/v1/references", tag = "references", security(("bearer" = [])),
    request_body(content(
        (UploadForm = "multipart/form-data"),
        (ReferenceMetadata = "application/json"),
    )),
    responses((status = 202, body = Accepted, description = "Upload accepted; a job hashes it"),
              (status = 201, body = Accepted, description = "Empty hash-list reference created"),
              (status = 400), (status = 401), (status = 403), (status = 413), (status = 422)))]
async fn create(
    principal: Principal,
    State(state): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    principal.require(WRITERS)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|r| ApiError::BadRequest(r.body_text()))?;
        upload(&principal, &state, multipart).await
    } else if content_type.starts_with("application/json") {
        let limit = usize::try_from(state.config.max_body_bytes).unwrap_or(usize::MAX);
        let bytes = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| ApiError::PayloadTooLarge("the JSON body is too large".to_owned()))?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|err| ApiError::Unprocessable(err.to_string()))?;
        if value.get("live_url").is_some() {
            let request: LiveReferenceRequest = serde_json::from_value(value)
                .map_err(|err| ApiError::Unprocessable(err.to_string()))?;
            return create_live(&principal, &state, request).await;
        }
        let metadata: ReferenceMetadata = serde_json::from_value(value)
            .map_err(|err| ApiError::Unprocessable(err.to_string()))?;
        let (owner, policy) = check_metadata(&principal, &state, &metadata).await?;
        let id = new_id();
        let mut tx = state.store.pool().begin().await?;
        let created = references::insert(
            &mut *tx,
            &NewReference {
                id: &id,
                rights_holder_id: owner.as_deref(),
                title: metadata.title.trim(),
                source: ReferenceSource::Hashes,
                status: ReferenceStatus::Ready,
                policy: &policy,
                upload_path: None,
            },
        )
        .await?;
        let detail = audit::reference_detail(&created);
        audit::record(
            &mut *tx,
            &principal.key_id,
            "reference.create",
            "reference",
            &id,
            Some(&detail),
        )
        .await?;
        tx.commit().await?;
        Ok((StatusCode::CREATED, Json(Accepted { id, status: ReferenceStatus::Ready })))
    } else {
        Err(ApiError::UnsupportedMediaType(
            "send multipart/form-data (metadata + file) or application/json {title, policy?}"
                .to_owned(),
        ))
    }
}

impl ReferenceMetadata {
    /// The checks that need no database (the title and the policy's own rules); returns the
    /// policy to store. [`check_metadata`] adds the owner's; public for the fuzz target.
    ///
    /// # Errors
    /// [`ApiError::Unprocessable`] saying what is wrong.
    pub fn validate(&self) -> Result<Policy, ApiError> {
        super::params::text("title", &self.title, super::params::MAX_TITLE_CHARS)?;
        let policy = self.policy.clone().unwrap_or_default();
        policy.validate().map_err(|err| ApiError::Unprocessable(format!("policy: {err}")))?;
        Ok(policy)
    }
}

/// Validates metadata; returns the owner and the policy to store. Shared with the console's
/// upload form.
pub(crate) async fn check_metadata(
    principal: &Principal,
    state: &AppState,
    metadata: &ReferenceMetadata,
) -> Result<(Option<String>, Policy), ApiError> {
    let policy = metadata.validate()?;
    let owner = match (principal.role, &metadata.rights_holder_id) {
        (Role::RightsHolder, None) => principal.rights_holder_id.clone(),
        (Role::RightsHolder, Some(_)) => {
            return Err(ApiError::Unprocessable(
                "rights_holder_id is set only by admins".to_owned(),
            ));
        }
        (_, Some(id)) => {
            if rights_holders::get(state.store.pool(), id).await?.is_none() {
                return Err(ApiError::Unprocessable(format!("no rights holder with id {id:?}")));
            }
            Some(id.clone())
        }
        (_, None) => None,
    };
    Ok((owner, policy))
}

/// Awaits the next piece of a request body (a chunk, a multipart part), cut off with 408 when
/// the client sends nothing for `idle`: a stalled upload must not hold its connection and its
/// half-written file forever, while a slow one that keeps sending is never cut. The 408 closes
/// the connection (the rest of the body will not be read).
pub(crate) async fn within_idle<T, E>(
    idle: std::time::Duration,
    next: impl Future<Output = Result<T, E>>,
) -> Result<T, ApiError>
where
    ApiError: From<E>,
{
    match tokio::time::timeout(idle, next).await {
        Ok(result) => result.map_err(ApiError::from),
        Err(_) => Err(ApiError::Timeout(format!(
            "the client sent nothing for {} s; send the body without pauses",
            idle.as_secs()
        ))),
    }
}

/// The next chunk of a raw body, within the client idle timeout.
async fn next_chunk(
    state: &AppState,
    stream: &mut axum::body::BodyDataStream,
) -> Result<Option<axum::body::Bytes>, ApiError> {
    let next = async {
        stream
            .next()
            .await
            .transpose()
            .map_err(|err| ApiError::BadRequest(format!("reading the body: {err}")))
    };
    within_idle(state.config.client_idle_timeout(), next).await
}

/// Deletes a partly written upload unless the upload was accepted.
struct UploadGuard {
    path: PathBuf,
    keep: bool,
}

impl Drop for UploadGuard {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: a leftover file only costs disk until the data directory is cleaned.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn sniff_image(head: &[u8]) -> bool {
    head.starts_with(&[0xFF, 0xD8, 0xFF])
        || head.starts_with(b"\x89PNG\r\n\x1a\n")
        || (head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP")
}

/// Whether the first bytes of an upload are those of a container FFmpeg reads video from: the
/// common ones a broadcaster exports (MP4/MOV/3GP, Matroska/WebM, MPEG-TS, MPEG-PS, FLV, AVI,
/// ASF/WMV, Ogg, MXF). A file that is none of these (a document, an archive, a text file) is
/// refused at once instead of failing minutes later in the job.
fn sniff_video(head: &[u8]) -> bool {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    at(4, b"ftyp")
        || at(4, b"moov")
        || at(4, b"mdat")
        || at(4, b"free")
        || at(4, b"wide")
        || at(4, b"skip")
        || at(0, &[0x1A, 0x45, 0xDF, 0xA3])
        || at(0, &[0x47]) && (head.len() < 189 || head[188] == 0x47)
        || at(0, &[0x00, 0x00, 0x01, 0xBA])
        || at(0, &[0x00, 0x00, 0x01, 0xB3])
        || at(0, b"FLV")
        || (at(0, b"RIFF") && at(8, b"AVI "))
        || at(0, &[0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11])
        || at(0, b"OggS")
        || at(0, &[0x06, 0x0E, 0x2B, 0x34])
}

/// What an upload is, from its first bytes: an image, a video, or neither (the reason, in words
/// for the uploader).
fn sniff_upload(head: &[u8]) -> Result<ReferenceSource, String> {
    if sniff_image(head) {
        Ok(ReferenceSource::Image)
    } else if sniff_video(head) {
        Ok(ReferenceSource::Video)
    } else {
        Err("the file is neither a video (MP4, MOV, MKV, WebM, MPEG-TS, FLV, AVI, WMV, Ogg, \
             MXF) nor an image (JPEG, PNG, WebP)"
            .to_owned())
    }
}

/// An uploaded file written to the uploads directory under its reference's future id; the file
/// is deleted when this is dropped before [`accept_upload`] takes it.
pub(crate) struct ReceivedFile {
    id: String,
    path: PathBuf,
    guard: UploadGuard,
    bytes: u64,
    source: ReferenceSource,
}

/// Streams one multipart file part to disk, chunk by chunk, cut off past `max_upload_bytes`,
/// and tells a still image from a video by its first bytes. Shared by `POST /v1/references`
/// and the console's upload form.
pub(crate) async fn receive_file(
    state: &AppState,
    field: &mut axum::extract::multipart::Field<'_>,
) -> Result<ReceivedFile, ApiError> {
    let uploads = state.config.uploads_dir();
    tokio::fs::create_dir_all(&uploads).await.map_err(|err| {
        ApiError::Internal(anyhow::Error::new(err).context("creating the uploads directory"))
    })?;
    let id = new_id();
    let path = uploads.join(format!("{id}.upload"));
    let guard = UploadGuard { path: path.clone(), keep: false };
    let limit = state.config.max_upload_bytes;
    let mut out = tokio::fs::File::create(&path).await.map_err(|err| {
        ApiError::Internal(anyhow::Error::new(err).context("creating the upload file"))
    })?;
    let mut written: u64 = 0;
    let mut source = None;
    let idle = state.config.client_idle_timeout();
    while let Some(chunk) = within_idle(idle, field.chunk()).await? {
        if chunk.is_empty() {
            continue;
        }
        written += chunk.len() as u64;
        if written > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the file is larger than the {limit}-byte upload limit"
            )));
        }
        if source.is_none() {
            // The first chunk of a multipart part holds at least its first few hundred bytes in
            // practice; a client that dribbles fewer is judged on what came.
            source = Some(sniff_upload(&chunk).map_err(ApiError::Unprocessable)?);
        }
        out.write_all(&chunk).await.map_err(|err| {
            ApiError::Internal(anyhow::Error::new(err).context("writing the upload"))
        })?;
    }
    out.flush()
        .await
        .map_err(|err| ApiError::Internal(anyhow::Error::new(err).context("writing the upload")))?;
    let source = source.ok_or_else(|| {
        ApiError::Unprocessable("the file is empty: send a video or an image".to_owned())
    })?;
    Ok(ReceivedFile { id, path, guard, bytes: written, source })
}

/// Registers a received file as a `processing` reference (metadata already checked by
/// [`check_metadata`]) and queues its job.
pub(crate) async fn accept_upload(
    principal: &Principal,
    state: &AppState,
    file: ReceivedFile,
    title: &str,
    owner: Option<&str>,
    policy: &Policy,
) -> Result<Accepted, ApiError> {
    let ReceivedFile { id, path, mut guard, bytes, source } = file;
    let path_text = path.to_string_lossy().into_owned();
    let mut tx = state.store.pool().begin().await?;
    let created = references::insert(
        &mut *tx,
        &NewReference {
            id: &id,
            rights_holder_id: owner,
            title: title.trim(),
            source,
            status: ReferenceStatus::Processing,
            policy,
            upload_path: Some(&path_text),
        },
    )
    .await?;
    let detail = audit::reference_detail(&created);
    audit::record(&mut *tx, &principal.key_id, "reference.create", "reference", &id, Some(&detail))
        .await?;
    tx.commit().await?;
    guard.keep = true;
    state.jobs.enqueue(&id);
    tracing::info!(reference_id = %id, bytes, source = %source, "reference upload accepted");
    Ok(Accepted { id, status: ReferenceStatus::Processing })
}

async fn upload(
    principal: &Principal,
    state: &AppState,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let mut checked: Option<(ReferenceMetadata, Option<String>, Policy)> = None;
    let mut file: Option<ReceivedFile> = None;
    let idle = state.config.client_idle_timeout();
    while let Some(mut field) = within_idle(idle, multipart.next_field()).await? {
        match field.name() {
            Some("metadata") => {
                let mut raw = Vec::new();
                while let Some(chunk) = within_idle(idle, field.chunk()).await? {
                    raw.extend_from_slice(&chunk);
                    if raw.len() > 64 * 1024 {
                        return Err(ApiError::PayloadTooLarge(
                            "metadata is larger than 64 KiB".to_owned(),
                        ));
                    }
                }
                let metadata: ReferenceMetadata = serde_json::from_slice(&raw)
                    .map_err(|err| ApiError::Unprocessable(format!("metadata: {err}")))?;
                // Checked before the file arrives (clients send metadata first) so a bad
                // request fails before gigabytes are written.
                let (owner, policy) = check_metadata(principal, state, &metadata).await?;
                checked = Some((metadata, owner, policy));
            }
            Some("file") => {
                if file.is_some() {
                    return Err(ApiError::BadRequest("send exactly one file part".to_owned()));
                }
                file = Some(receive_file(state, &mut field).await?);
            }
            // A misspelt part name would otherwise lose the file or its metadata silently.
            other => {
                return Err(ApiError::Unprocessable(format!(
                    "unknown multipart part {:?}: send exactly the parts metadata and file",
                    other.unwrap_or("")
                )));
            }
        }
    }
    let (metadata, owner, policy) =
        checked.ok_or_else(|| ApiError::BadRequest("missing the metadata part".to_owned()))?;
    let file = file.ok_or_else(|| ApiError::BadRequest("missing the file part".to_owned()))?;
    let accepted =
        accept_upload(principal, state, file, &metadata.title, owner.as_deref(), &policy).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// Loads a reference the caller may see; anything else is 404.
pub(crate) async fn visible(
    principal: &Principal,
    state: &AppState,
    id: &str,
) -> Result<Reference, ApiError> {
    match references::get(state.store.pool(), id).await? {
        Some(reference) if principal.can_see(reference.rights_holder_id.as_deref()) => {
            Ok(reference)
        }
        _ => Err(ApiError::NotFound("reference")),
    }
}

/// Lists references (a rights holder's own; everything for admin and trust & safety).
#[utoipa::path(get, path = "/v1/references", tag = "references", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = ReferencePage), (status = 401), (status = 403)))]
async fn list(
    principal: Principal,
    State(state): State<AppState>,
    Query(page): Query<PageQuery>,
) -> Result<Json<ReferencePage>, ApiError> {
    principal.require(READERS)?;
    let limit = super::params::limit(page.limit)?;
    let cursor = super::params::cursor(page.cursor.as_deref())?;
    // One extra row tells whether another page follows.
    let mut rows =
        references::list(state.store.pool(), principal.owner_scope(), cursor, limit + 1).await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = if more { rows.last().map(|r| r.id.clone()) } else { None };
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(with_live(&state, ReferenceView::from(row)).await?);
    }
    Ok(Json(ReferencePage { items, next_cursor }))
}

/// One reference, with its status, frame count and progress.
#[utoipa::path(get, path = "/v1/references/{id}", tag = "references", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reference id")),
    responses((status = 200, body = ReferenceView), (status = 401), (status = 403), (status = 404)))]
async fn show(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ReferenceView>, ApiError> {
    principal.require(READERS)?;
    let view = ReferenceView::from(visible(&principal, &state, &id).await?);
    Ok(Json(with_live(&state, view).await?))
}

/// Deletes a reference: it leaves every worker's index (this one at once, others within the
/// index sync interval).
#[utoipa::path(delete, path = "/v1/references/{id}", tag = "references", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reference id")),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
async fn remove(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(WRITERS)?;
    let reference = visible(&principal, &state, &id).await?;
    let mut tx = state.store.pool().begin().await?;
    if !references::delete(&mut *tx, &id).await? {
        return Err(ApiError::NotFound("reference"));
    }
    let detail = audit::reference_detail(&reference);
    audit::record(&mut *tx, &principal.key_id, "reference.delete", "reference", &id, Some(&detail))
        .await?;
    tx.commit().await?;
    state.index.remove(&id);
    if let Some(path) = reference.upload_path {
        // A running job notices the row is gone and discards its result.
        let _ = tokio::fs::remove_file(path).await;
    }
    tracing::info!(reference_id = %id, "reference deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// Replaces a reference's policy.
#[utoipa::path(put, path = "/v1/references/{id}/policy", tag = "references", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reference id")), request_body = Policy,
    responses((status = 200, body = ReferenceView), (status = 401), (status = 403), (status = 404), (status = 422)))]
async fn set_policy(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Json(policy): Json<Policy>,
) -> Result<Json<ReferenceView>, ApiError> {
    Ok(Json(replace_policy(&principal, &state, &id, &policy).await?.into()))
}

/// Replaces a reference's policy after the writer and tenancy checks and the policy's own
/// validation; returns the reference as it now stands. Shared with the console's policy form.
pub(crate) async fn replace_policy(
    principal: &Principal,
    state: &AppState,
    id: &str,
    policy: &Policy,
) -> Result<Reference, ApiError> {
    principal.require(WRITERS)?;
    let before = visible(principal, state, id).await?;
    policy.validate().map_err(|err| ApiError::Unprocessable(format!("policy: {err}")))?;
    let mut tx = state.store.pool().begin().await?;
    if !references::update_policy(&mut *tx, id, policy).await? {
        return Err(ApiError::NotFound("reference"));
    }
    let detail = serde_json::json!({ "from": before.policy, "to": policy });
    audit::record(&mut *tx, &principal.key_id, "reference.policy", "reference", id, Some(&detail))
        .await?;
    tx.commit().await?;
    visible(principal, state, id).await
}

/// Parses one hash line `TS_MS,HEX64[,QUALITY]` (public for the fuzz target).
pub fn parse_hash_line(line: &str) -> Result<ReferenceFrame, String> {
    let mut parts = line.split(',').map(str::trim);
    let ts = parts.next().unwrap_or_default();
    let ts_ms: i64 =
        ts.parse().map_err(|_| format!("{ts:?} is not a timestamp in milliseconds"))?;
    if ts_ms < 0 {
        return Err("the timestamp must not be negative".to_owned());
    }
    let hex = parts.next().ok_or("expected TS_MS,HEX64[,QUALITY]")?;
    let hash = fingerprints::Hash256::from_hex(hex)
        .map_err(|err| format!("bad hash: {}", err.message()))?;
    let quality = match parts.next() {
        None => 100,
        Some(q) => match q.parse::<u8>() {
            Ok(q) if q <= 100 => q,
            _ => return Err(format!("{q:?} is not a quality between 0 and 100")),
        },
    };
    if parts.next().is_some() {
        return Err("too many fields (expected TS_MS,HEX64[,QUALITY])".to_owned());
    }
    Ok(ReferenceFrame { ts_ms, hash, quality, variant: fingerprints::CropVariant::Full })
}

/// An incremental parser of a hash-line body that arrives in chunks: complete lines are parsed
/// as they come, the unfinished tail waits for the next chunk (or [`HashLines::finish`]). It
/// never panics, whatever the bytes (a property test feeds it arbitrary ones).
#[derive(Debug, Default)]
pub struct HashLines {
    /// Bytes after the last newline seen.
    pending: Vec<u8>,
    /// Lines seen so far, for messages.
    line_no: u64,
    frames: Vec<ReferenceFrame>,
}

impl HashLines {
    /// Parses every complete line of `chunk` (with what was pending before it).
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        self.pending.extend_from_slice(chunk);
        let Some(last_newline) = self.pending.iter().rposition(|&b| b == b'\n') else {
            return Ok(());
        };
        let complete: Vec<u8> = self.pending.drain(..=last_newline).collect();
        // The slice ends with the newline, so split yields one empty piece after it.
        let mut pieces = complete.split(|&b| b == b'\n');
        pieces.next_back();
        for line in pieces {
            self.line(line)?;
        }
        Ok(())
    }

    /// Parses the last line (a body need not end with a newline) and returns the frames.
    pub fn finish(mut self) -> Result<Vec<ReferenceFrame>, String> {
        let tail = std::mem::take(&mut self.pending);
        if !tail.is_empty() {
            self.line(&tail)?;
        }
        if self.frames.is_empty() {
            return Err("no hash lines in the body".to_owned());
        }
        Ok(self.frames)
    }

    fn line(&mut self, raw: &[u8]) -> Result<(), String> {
        self.line_no += 1;
        let line_no = self.line_no;
        let line =
            std::str::from_utf8(raw).map_err(|_| format!("line {line_no}: not UTF-8 text"))?.trim();
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        self.frames.push(parse_hash_line(line).map_err(|msg| format!("line {line_no}: {msg}"))?);
        Ok(())
    }
}

/// Imports hash lines `TS_MS,HEX64[,QUALITY]` (one frame each; blank lines and `#` comments
/// skipped) into a ready reference. All or nothing: a bad line rejects the whole body.
#[utoipa::path(post, path = "/v1/references/{id}/hashes", tag = "references", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reference id")),
    request_body(content = String, content_type = "text/plain", description = "Lines TS_MS,HEX64[,QUALITY]"),
    responses((status = 200, body = Imported), (status = 400, description = "A bad line; the message names it"),
              (status = 401), (status = 403), (status = 404), (status = 409), (status = 413)))]
async fn import_hashes(
    principal: Principal,
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Imported>, ApiError> {
    principal.require(WRITERS)?;
    let reference = visible(&principal, &state, &id).await?;
    if reference.status != ReferenceStatus::Ready {
        return Err(ApiError::Conflict(format!(
            "the reference is {}; hashes import into ready references",
            reference.status
        )));
    }
    let limit = state.config.max_upload_bytes;
    let mut stream = body.into_data_stream();
    let mut lines = HashLines::default();
    let mut total = 0_u64;
    while let Some(chunk) = next_chunk(&state, &mut stream).await? {
        total += chunk.len() as u64;
        if total > limit {
            return Err(ApiError::PayloadTooLarge(format!(
                "the body is larger than the {limit}-byte upload limit"
            )));
        }
        lines.feed(&chunk).map_err(ApiError::BadRequest)?;
    }
    let frames = lines.finish().map_err(ApiError::BadRequest)?;
    if frames.is_empty() {
        return Err(ApiError::BadRequest("no hash lines in the body".to_owned()));
    }

    let mut tx = state.store.pool().begin().await?;
    let total_frames = references::append_frames(&mut tx, &id, &frames).await?;
    let detail = serde_json::json!({ "imported": frames.len(), "frames": total_frames });
    audit::record(&mut *tx, &principal.key_id, "reference.hashes", "reference", &id, Some(&detail))
        .await?;
    tx.commit().await?;
    // The index sync sees the new frame count and reloads the reference.
    state.index.poke();
    Ok(Json(Imported { id, imported: frames.len() as u64, frames: total_frames }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_lines_take_an_optional_quality() {
        let hex = "f".repeat(64);
        let frame = parse_hash_line(&format!("1500,{hex}")).unwrap();
        assert_eq!((frame.ts_ms, frame.quality), (1500, 100));
        let frame = parse_hash_line(&format!("0, {hex} ,42")).unwrap();
        assert_eq!(frame.quality, 42);
    }

    #[test]
    fn hash_lines_with_bad_fields_say_what_is_wrong() {
        let hex = "0".repeat(64);
        assert!(parse_hash_line("abc,00").unwrap_err().contains("timestamp"));
        assert!(parse_hash_line("10,zz").unwrap_err().contains("bad hash"));
        assert!(parse_hash_line(&format!("10,{hex},101")).unwrap_err().contains("quality"));
        assert!(parse_hash_line(&format!("10,{hex},5,6")).unwrap_err().contains("too many"));
    }

    #[test]
    fn jpeg_png_and_webp_uploads_are_images_and_the_rest_video() {
        assert!(sniff_image(&[0xFF, 0xD8, 0xFF, 0xE0]));
        assert!(sniff_image(b"\x89PNG\r\n\x1a\n...."));
        assert!(sniff_image(b"RIFF\0\0\0\0WEBPVP8 "));
        assert!(!sniff_image(b"\0\0\0\x20ftypisom"));
    }

    #[test]
    fn common_video_containers_are_videos_and_text_is_neither() {
        assert_eq!(sniff_upload(b"\0\0\0\x20ftypisom"), Ok(ReferenceSource::Video));
        assert_eq!(sniff_upload(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F]), Ok(ReferenceSource::Video));
        assert_eq!(sniff_upload(b"RIFF\0\0\0\0AVI LIST"), Ok(ReferenceSource::Video));
        assert!(sniff_upload(b"hello, this is a text file").is_err());
        assert!(sniff_upload(b"%PDF-1.7").is_err());
    }

    #[test]
    fn a_last_hash_line_without_a_newline_is_imported() {
        let hex = "a".repeat(64);
        let mut lines = HashLines::default();
        lines.feed(format!("0,{hex}").as_bytes()).unwrap();
        assert_eq!(lines.finish().unwrap().len(), 1);
        let mut lines = HashLines::default();
        lines.feed(format!("0,{hex}\n# c\n\n5").as_bytes()).unwrap();
        lines.feed(format!("00,{hex},50").as_bytes()).unwrap();
        let frames = lines.finish().unwrap();
        assert_eq!(frames.iter().map(|f| f.ts_ms).collect::<Vec<_>>(), [0, 500]);
    }

    proptest::proptest! {
        #[test]
        fn the_hash_line_parser_never_panics_on_any_bytes(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let mut lines = HashLines::default();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut start = 0;
            let mut failed = false;
            for cut in cuts.into_iter().chain([body.len()]) {
                if lines.feed(&body[start..cut]).is_err() {
                    failed = true;
                    break;
                }
                start = cut;
            }
            if !failed {
                let _ = lines.finish();
            }
        }

        #[test]
        fn valid_hash_lines_parse_whatever_the_chunking(
            rows in proptest::collection::vec((0i64..1_000_000, proptest::prelude::any::<[u8; 32]>(), 0u8..=100), 1..20),
            cut in 0usize..3000,
            newline_at_end in proptest::prelude::any::<bool>(),
        ) {
            let mut body = rows
                .iter()
                .map(|(ts, bytes, q)| format!("{ts},{},{q}", hex::encode(bytes)))
                .collect::<Vec<_>>()
                .join("\n");
            if newline_at_end {
                body.push('\n');
            }
            let cut = cut.min(body.len());
            let mut lines = HashLines::default();
            lines.feed(&body.as_bytes()[..cut]).unwrap();
            lines.feed(&body.as_bytes()[cut..]).unwrap();
            let frames = lines.finish().unwrap();
            proptest::prop_assert_eq!(frames.len(), rows.len());
        }
    }
}
