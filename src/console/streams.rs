//! Streams (`/console/streams`): flagged, killed and live streams with their matches, the
//! table refreshing itself every few seconds (the script polls `/console/streams/table`); one
//! stream with its matches, its keyframe strip and the kill and restore forms. Admins and trust
//! and safety only, as `GET /v1/streams` (a rights holder reaches its streams through its
//! cases).

use std::collections::HashMap;

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};

use super::session::{Console, Posted};
use super::view::{self, Layout};
use super::{ConsoleError, Path, render, see_other};
use crate::http::stills::jpeg_response;
use crate::http::{ApiError, AppState};
use crate::review;
use crate::store::cases::{self, CaseFilter};
use crate::store::keys::Role;
use crate::store::streams::{self, Stream, StreamMatch, StreamStatus};
use crate::store::{now_ms, references, stills};

/// Who may use these pages (as `GET /v1/streams`, `POST /v1/streams/{id}/kill`).
const STAFF: &[Role] = &[Role::Admin, Role::TrustSafety];
/// Streams listed per status.
const PER_STATUS: i64 = 50;
/// Keyframe stills shown on a stream's page (the latest ones).
const STRIP_LENGTH: usize = 48;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console/streams", get(list))
        .route("/console/streams/table", get(table))
        .route("/console/streams/{id}", get(show))
        .route("/console/streams/{id}/kill", post(kill))
        .route("/console/streams/{id}/restore", post(restore))
        .route("/console/streams/{id}/stills/{ts_ms}", get(still))
}

/// A match as printed.
struct MatchRow {
    reference_title: String,
    reference_href: String,
    action: String,
    offset: String,
    matched: String,
    delay: String,
    decided: String,
}

struct StreamRow {
    id: String,
    href: String,
    account: String,
    status: &'static str,
    viewers: String,
    age: String,
    matches: Vec<MatchRow>,
}

struct Section {
    id: &'static str,
    title: &'static str,
    rows: Vec<StreamRow>,
}

#[derive(askama::Template)]
#[template(path = "console/streams.html")]
struct StreamsPage {
    layout: Layout,
    sections: Vec<Section>,
    updated: String,
}

#[derive(askama::Template)]
#[template(path = "console/streams_table.html")]
struct StreamsTable {
    sections: Vec<Section>,
    updated: String,
}

async fn match_rows(
    state: &AppState,
    matches: Vec<StreamMatch>,
    titles: &mut HashMap<String, String>,
) -> Result<Vec<MatchRow>, ConsoleError> {
    let mut rows = Vec::with_capacity(matches.len());
    for m in matches {
        if !titles.contains_key(&m.reference_id) {
            let title = references::get(state.store.pool(), &m.reference_id)
                .await?
                .map_or_else(|| format!("(deleted reference {})", m.reference_id), |r| r.title);
            titles.insert(m.reference_id.clone(), title);
        }
        rows.push(MatchRow {
            reference_title: titles.get(&m.reference_id).cloned().unwrap_or_default(),
            reference_href: format!("/console/references/{}", m.reference_id),
            action: m.action,
            offset: view::seconds(m.offset_ms),
            matched: format!(
                "{} ({} keyframes)",
                view::seconds((m.matched_seconds * 1000.0).round() as i64),
                m.matched_keyframes
            ),
            delay: m.delay_ms.map_or_else(|| "—".to_owned(), view::seconds),
            decided: view::time(m.created_at),
        });
    }
    Ok(rows)
}

async fn stream_row(
    state: &AppState,
    s: Stream,
    now: i64,
    titles: &mut HashMap<String, String>,
) -> Result<StreamRow, ConsoleError> {
    let matches = streams::matches(state.store.pool(), &s.id).await?;
    Ok(StreamRow {
        href: format!("/console/streams/{}", view::url_encode(&s.id)),
        account: s.account_id.unwrap_or_else(|| "—".to_owned()),
        status: s.status.as_str(),
        viewers: view::viewers(s.viewers),
        age: view::age(now, s.created_at),
        matches: match_rows(state, matches, titles).await?,
        id: s.id,
    })
}

async fn sections(state: &AppState) -> Result<Vec<Section>, ConsoleError> {
    let now = now_ms();
    let mut titles = HashMap::new();
    let mut out = Vec::new();
    for (status, id, title) in [
        (StreamStatus::Flagged, "streams-flagged", "Flagged"),
        (StreamStatus::Killed, "streams-killed", "Killed"),
        (StreamStatus::Live, "streams-live", "Live"),
    ] {
        let mut rows = Vec::new();
        for s in streams::list(state.store.pool(), Some(status), PER_STATUS).await? {
            rows.push(stream_row(state, s, now, &mut titles).await?);
        }
        out.push(Section { id, title, rows });
    }
    Ok(out)
}

async fn list(console: Console, State(state): State<AppState>) -> Result<Response, ConsoleError> {
    console.principal.require(STAFF)?;
    let page = StreamsPage {
        layout: console.layout("Streams", "streams"),
        sections: sections(&state).await?,
        updated: view::time(now_ms()),
    };
    render(&page)
}

/// The streams table alone, for the page's polling.
async fn table(console: Console, State(state): State<AppState>) -> Result<Response, ConsoleError> {
    console.principal.require(STAFF)?;
    render(&StreamsTable { sections: sections(&state).await?, updated: view::time(now_ms()) })
}

struct Still {
    url: String,
    time: String,
}

/// A case of this stream, linked.
struct CaseLink {
    href: String,
    id: String,
    status: &'static str,
    disputed: bool,
}

#[derive(askama::Template)]
#[template(path = "console/stream.html")]
struct StreamPage {
    layout: Layout,
    csrf: String,
    id: String,
    action_base: String,
    account: String,
    status: &'static str,
    status_reason: String,
    viewers: String,
    started: String,
    updated: String,
    matches: Vec<MatchRow>,
    stills: Vec<Still>,
    cases: Vec<CaseLink>,
    can_kill: bool,
    can_restore: bool,
}

async fn show(
    console: Console,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    console.principal.require(STAFF)?;
    let pool = state.store.pool();
    let s = streams::get(pool, &id).await?.ok_or(ApiError::NotFound("stream"))?;
    let now = now_ms();
    let matches = streams::matches(pool, &s.id).await?;
    let matches = match_rows(&state, matches, &mut HashMap::new()).await?;
    let filter = CaseFilter { stream_id: Some(&s.id), ..CaseFilter::default() };
    let case_links = cases::list(pool, &filter, 50)
        .await?
        .into_iter()
        .map(|c| CaseLink {
            href: format!("/console/cases/{}", c.id),
            status: c.status.as_str(),
            disputed: c.disputed_at.is_some(),
            id: c.id,
        })
        .collect();
    let times = stills::stream_still_times(pool, &s.id).await?;
    let skip = times.len().saturating_sub(STRIP_LENGTH);
    let base = format!("/console/streams/{}", view::url_encode(&s.id));
    let strip = times
        .into_iter()
        .skip(skip)
        .map(|ts| Still { url: format!("{base}/stills/{ts}"), time: view::seconds(ts) })
        .collect();
    let page = StreamPage {
        layout: console.layout(&format!("Stream {}", s.id), "streams"),
        csrf: console.csrf().to_owned(),
        account: s.account_id.unwrap_or_else(|| "—".to_owned()),
        status: s.status.as_str(),
        status_reason: s.status_reason.unwrap_or_default(),
        viewers: view::viewers(s.viewers),
        started: format!("{} ({} ago)", view::time(s.created_at), view::age(now, s.created_at)),
        updated: view::time(s.updated_at),
        matches,
        stills: strip,
        cases: case_links,
        can_kill: matches!(s.status, StreamStatus::Live | StreamStatus::Flagged),
        can_restore: matches!(s.status, StreamStatus::Killed | StreamStatus::Flagged),
        action_base: base,
        id: s.id,
    };
    render(&page)
}

async fn set_status(
    state: &AppState,
    id: &str,
    posted: Posted,
    to: StreamStatus,
) -> Result<Response, ConsoleError> {
    let Posted { console, form } = posted;
    let reason = form.text("reason").unwrap_or_default();
    review::set_stream_status(state, &console.principal, id, reason, to).await?;
    Ok(see_other(&format!("/console/streams/{}", view::url_encode(id))))
}

/// `POST /console/streams/{id}/kill` (`reason`).
async fn kill(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    set_status(&state, &id, posted, StreamStatus::Killed).await
}

/// `POST /console/streams/{id}/restore` (`reason`).
async fn restore(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    set_status(&state, &id, posted, StreamStatus::Live).await
}

/// `GET /console/streams/{id}/stills/{ts_ms}`: a keyframe still, as `stream_still` allows.
async fn still(
    console: Console,
    State(state): State<AppState>,
    Path((id, ts_ms)): Path<(String, i64)>,
) -> Result<Response, ConsoleError> {
    let jpeg = review::stream_still(&state, &console.principal, &id, ts_ms).await?;
    Ok(jpeg_response(jpeg))
}
