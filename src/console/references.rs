//! References (`/console/references`): the library (a rights holder's own), hashing progress
//! refreshing itself while a file is processed, live feeds with their health, the upload form
//! and the policy form; one reference with a few of its stills.
//!
//! The upload and the policy change run the API's own code (`crate::http::references`:
//! `check_metadata`, `receive_file`, `accept_upload`, `replace_policy`), so both faces accept
//! and refuse exactly the same things.

use axum::Router;
use axum::extract::{
    DefaultBodyLimit, FromRequest as _, FromRequestParts as _, Multipart, Request, State,
};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::{Console, FormData, Posted, tokens_match};
use super::view::{self, Layout};
use super::{ConsoleError, Path, Query, render, see_other};
use crate::domain::{Policy, PolicyAction, ReferenceStatus};
use crate::http::references::{
    READERS, ReferenceMetadata, WRITERS, accept_upload, check_metadata, receive_file,
    replace_policy, visible,
};
use crate::http::stills::jpeg_response;
use crate::http::{ApiError, AppState};
use crate::live::store as live_store;
use crate::review;
use crate::store::keys::Role;
use crate::store::references::{self, Reference};
use crate::store::{rights_holders, stills};

/// References per page.
const PAGE_SIZE: i64 = 50;
/// Stills shown on a reference's page.
const STILLS_SHOWN: usize = 12;
/// How often the table refreshes itself while something is processing or live, in ms.
const POLL_MS: u32 = 2000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console/references", get(list))
        .route("/console/references/table", get(table))
        .route("/console/references/{id}", get(show))
        .route("/console/references/{id}/policy", post(set_policy))
        .route("/console/references/{id}/stills/{ts_ms}", get(still))
}

/// The upload: no body limit from axum (the shared upload code enforces
/// `max_upload_bytes` while streaming) and no request timeout.
pub(super) fn upload_router() -> Router<AppState> {
    Router::new().route("/console/references", post(upload).layer(DefaultBodyLimit::disable()))
}

/// A policy in one line: `flag after 2.0 s, from …, until …, allowed: a, b`.
pub(super) fn policy_summary(policy: &Policy) -> String {
    let mut text = format!("{} after {:.1} s", policy.action, policy.min_match_seconds);
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    };
    if let Some(from) = policy.valid_from {
        text.push_str(&format!(", from {}", rfc(from)));
    }
    if let Some(until) = policy.valid_until {
        text.push_str(&format!(", until {}", rfc(until)));
    }
    if !policy.allow_accounts.is_empty() {
        text.push_str(&format!(", allowed: {}", policy.allow_accounts.join(", ")));
    }
    text
}

/// A live feed's health as printed.
struct FeedRow {
    status: &'static str,
    frames: i64,
    last_frame: String,
    reconnects: i64,
    last_error: String,
}

struct ReferenceRow {
    id: String,
    href: String,
    title: String,
    status: &'static str,
    progress: Option<String>,
    progress_percent: String,
    frames: i64,
    error: String,
    policy: String,
    owner: String,
    feed: Option<FeedRow>,
}

async fn feed_row(state: &AppState, id: &str) -> Result<Option<FeedRow>, ConsoleError> {
    Ok(live_store::get(state.store.pool(), id).await?.map(|f| FeedRow {
        status: f.status.as_str(),
        frames: f.frames,
        last_frame: view::time_or_dash(f.last_frame_at),
        reconnects: f.reconnects,
        last_error: f.last_error.unwrap_or_default(),
    }))
}

async fn reference_row(
    state: &AppState,
    r: Reference,
    holders: &[(String, String)],
) -> Result<ReferenceRow, ConsoleError> {
    let feed =
        if r.status == ReferenceStatus::Live || r.source == crate::domain::ReferenceSource::Video {
            feed_row(state, &r.id).await?
        } else {
            None
        };
    #[allow(clippy::cast_precision_loss)] // permille fits exactly
    let progress = r.progress_permille.filter(|_| r.status == ReferenceStatus::Processing);
    Ok(ReferenceRow {
        href: format!("/console/references/{}", r.id),
        title: r.title,
        status: r.status.as_str(),
        progress: progress.map(|p| format!("{:.3}", p as f64 / 1000.0)),
        progress_percent: progress.map_or_else(String::new, |p| format!("{}%", p / 10)),
        frames: r.frames,
        error: r.error.unwrap_or_default(),
        policy: policy_summary(&r.policy),
        owner: r
            .rights_holder_id
            .as_deref()
            .map(|id| {
                holders
                    .iter()
                    .find(|(hid, _)| hid == id)
                    .map_or(id, |(_, name)| name.as_str())
                    .to_owned()
            })
            .unwrap_or_else(|| "—".to_owned()),
        feed,
        id: r.id,
    })
}

#[derive(Debug, Default, Deserialize)]
struct PageQuery {
    after: Option<String>,
}

/// The table and what it needs to refresh itself.
struct Table {
    rows: Vec<ReferenceRow>,
    next_page: Option<String>,
    poll: Option<String>,
    poll_ms: u32,
}

async fn load_table(
    state: &AppState,
    console: &Console,
    after: Option<&str>,
) -> Result<Table, ConsoleError> {
    let pool = state.store.pool();
    let mut items =
        references::list(pool, console.principal.owner_scope(), after, PAGE_SIZE + 1).await?;
    let more = items.len() > PAGE_SIZE as usize;
    items.truncate(PAGE_SIZE as usize);
    let next_page = if more {
        items.last().map(|r| format!("/console/references?after={}", view::url_encode(&r.id)))
    } else {
        None
    };
    let holders: Vec<(String, String)> =
        rights_holders::list(pool).await?.into_iter().map(|h| (h.id, h.name)).collect();
    let busy = items
        .iter()
        .any(|r| matches!(r.status, ReferenceStatus::Processing | ReferenceStatus::Live));
    let mut rows = Vec::with_capacity(items.len());
    for r in items {
        rows.push(reference_row(state, r, &holders).await?);
    }
    let poll = busy.then(|| match after {
        Some(after) => format!("/console/references/table?after={}", view::url_encode(after)),
        None => "/console/references/table".to_owned(),
    });
    Ok(Table { rows, next_page, poll, poll_ms: POLL_MS })
}

struct Choice {
    value: String,
    label: String,
}

#[derive(askama::Template)]
#[template(path = "console/references.html")]
struct ReferencesPage {
    layout: Layout,
    csrf: String,
    can_upload: bool,
    holders: Vec<Choice>,
    table: Table,
}

#[derive(askama::Template)]
#[template(path = "console/references_table.html")]
struct ReferencesTable {
    table: Table,
}

fn nonempty(value: Option<&String>) -> Option<&str> {
    value.map(|v| v.trim()).filter(|v| !v.is_empty())
}

async fn list(
    console: Console,
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ConsoleError> {
    console.principal.require(READERS)?;
    let table = load_table(&state, &console, nonempty(q.after.as_ref())).await?;
    // Only an admin chooses the owner; a rights holder's uploads are its own.
    let holders = if console.principal.role == Role::Admin {
        let mut holders = vec![Choice { value: String::new(), label: "No owner".into() }];
        holders.extend(
            rights_holders::list(state.store.pool())
                .await?
                .into_iter()
                .map(|h| Choice { value: h.id, label: h.name }),
        );
        holders
    } else {
        Vec::new()
    };
    let page = ReferencesPage {
        layout: console.layout("References", "references"),
        csrf: console.csrf().to_owned(),
        can_upload: console.principal.require(WRITERS).is_ok(),
        holders,
        table,
    };
    render(&page)
}

/// The table alone, for the page's polling while a file is hashed.
async fn table(
    console: Console,
    State(state): State<AppState>,
    Query(q): Query<PageQuery>,
) -> Result<Response, ConsoleError> {
    console.principal.require(READERS)?;
    let table = load_table(&state, &console, nonempty(q.after.as_ref())).await?;
    render(&ReferencesTable { table })
}

struct StillView {
    url: String,
    time: String,
}

struct ActionChoice {
    value: &'static str,
    selected: bool,
}

#[derive(askama::Template)]
#[template(path = "console/reference.html")]
struct ReferencePage {
    layout: Layout,
    csrf: String,
    row: ReferenceRow,
    source: &'static str,
    created: String,
    can_edit: bool,
    actions: Vec<ActionChoice>,
    min_match_seconds: String,
    valid_from: String,
    valid_until: String,
    allow_accounts: String,
    stills: Vec<StillView>,
    poll: Option<String>,
}

async fn show(
    console: Console,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    console.principal.require(READERS)?;
    let reference = visible(&console.principal, &state, &id).await?;
    let pool = state.store.pool();
    let times = stills::reference_still_times(pool, &reference.id).await?;
    let step = times.len().div_ceil(STILLS_SHOWN).max(1);
    let stills = times
        .iter()
        .step_by(step)
        .take(STILLS_SHOWN)
        .map(|ts| StillView {
            url: format!("/console/references/{}/stills/{ts}", reference.id),
            time: view::seconds(*ts),
        })
        .collect();
    let policy = reference.policy.clone();
    let rfc = |t: Option<time::OffsetDateTime>| {
        t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
            .unwrap_or_default()
    };
    let holders: Vec<(String, String)> =
        rights_holders::list(pool).await?.into_iter().map(|h| (h.id, h.name)).collect();
    let source = reference.source.as_str();
    let created = view::time(reference.created_at);
    let busy = matches!(reference.status, ReferenceStatus::Processing);
    let row = reference_row(&state, reference, &holders).await?;
    let page = ReferencePage {
        layout: console.layout(&row.title, "references"),
        csrf: console.csrf().to_owned(),
        poll: busy.then(|| format!("/console/references/{}", row.id)),
        source,
        created,
        can_edit: console.principal.require(WRITERS).is_ok(),
        actions: [PolicyAction::Monitor, PolicyAction::Flag, PolicyAction::Kill]
            .into_iter()
            .map(|a| ActionChoice { value: a.as_str(), selected: a == policy.action })
            .collect(),
        min_match_seconds: format!("{}", policy.min_match_seconds),
        valid_from: rfc(policy.valid_from),
        valid_until: rfc(policy.valid_until),
        allow_accounts: policy.allow_accounts.join(", "),
        stills,
        row,
    };
    render(&page)
}

fn parse_time(field: &str, text: Option<&str>) -> Result<Option<time::OffsetDateTime>, ApiError> {
    text.map(|t| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).map_err(
            |_| {
                ApiError::Unprocessable(format!(
                    "{field} must be an RFC 3339 time (2026-06-01T18:00:00Z)"
                ))
            },
        )
    })
    .transpose()
}

/// The policy a console form describes (the same validation as the API follows in
/// `replace_policy` or `check_metadata`).
fn policy_from_form(form: &FormData) -> Result<Policy, ApiError> {
    let action = form.text("action").unwrap_or("flag");
    let action: PolicyAction = action
        .parse()
        .map_err(|_| ApiError::Unprocessable(format!("unknown action {action:?}")))?;
    let min_match_seconds = match form.text("min_match_seconds") {
        None => Policy::DEFAULT_MIN_MATCH_SECONDS,
        Some(text) => text.parse().map_err(|_| {
            ApiError::Unprocessable("min_match_seconds must be a number".to_owned())
        })?,
    };
    Ok(Policy {
        action,
        min_match_seconds,
        valid_from: parse_time("valid_from", form.text("valid_from"))?,
        valid_until: parse_time("valid_until", form.text("valid_until"))?,
        allow_accounts: form
            .get("allow_accounts")
            .unwrap_or_default()
            .split([',', '\n'])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

/// `POST /console/references/{id}/policy`: the policy form.
async fn set_policy(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    let Posted { console, form } = posted;
    let policy = policy_from_form(&form)?;
    replace_policy(&console.principal, &state, &id, &policy).await?;
    Ok(see_other(&format!("/console/references/{id}")))
}

/// The largest text part of the upload form.
const MAX_TEXT_PART: usize = 64 * 1024;

/// `POST /console/references` (multipart: `csrf`, `title`, `action`, `min_match_seconds`,
/// `rights_holder_id` for admins, then `file`): the upload form. The CSRF token and the
/// metadata are checked before a byte of the file is written.
async fn upload(State(state): State<AppState>, request: Request) -> Result<Response, ConsoleError> {
    let (mut parts, body) = request.into_parts();
    let console = Console::from_request_parts(&mut parts, &state).await?;
    console.principal.require(WRITERS)?;
    let request = Request::from_parts(parts, body);
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|r| ApiError::BadRequest(r.body_text()))?;
    let mut csrf_ok = false;
    let mut fields = Vec::new();
    let mut received = None;
    while let Some(mut field) = multipart.next_field().await.map_err(ApiError::from)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            if !csrf_ok {
                return Err(ConsoleError::Csrf);
            }
            if received.is_some() {
                return Err(ApiError::BadRequest("send exactly one file".into()).into());
            }
            let form = FormData::from_pairs(std::mem::take(&mut fields));
            let metadata = ReferenceMetadata {
                title: form.get("title").unwrap_or_default().to_owned(),
                policy: Some(policy_from_form(&form)?),
                rights_holder_id: form.text("rights_holder_id").map(str::to_owned),
            };
            let (owner, policy) = check_metadata(&console.principal, &state, &metadata).await?;
            let file = receive_file(&state, &mut field).await?;
            received = Some((file, metadata.title, owner, policy));
            continue;
        }
        let mut text = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(ApiError::from)? {
            text.extend_from_slice(&chunk);
            if text.len() > MAX_TEXT_PART {
                return Err(ApiError::PayloadTooLarge(format!("{name} is too long")).into());
            }
        }
        let text = String::from_utf8_lossy(&text).into_owned();
        if name == "csrf" {
            csrf_ok = tokens_match(console.csrf(), Some(&text));
        } else {
            fields.push((name, text));
        }
    }
    if !csrf_ok {
        return Err(ConsoleError::Csrf);
    }
    let (file, title, owner, policy) =
        received.ok_or_else(|| ApiError::BadRequest("choose a file to upload".into()))?;
    let accepted =
        accept_upload(&console.principal, &state, file, &title, owner.as_deref(), &policy).await?;
    Ok(see_other(&format!("/console/references/{}", accepted.id)))
}

/// `GET /console/references/{id}/stills/{ts_ms}`: as `reference_still` allows.
async fn still(
    console: Console,
    State(state): State<AppState>,
    Path((id, ts_ms)): Path<(String, i64)>,
) -> Result<Response, ConsoleError> {
    let jpeg = review::reference_still(&state, &console.principal, &id, ts_ms).await?;
    Ok(jpeg_response(jpeg))
}
