//! A case on one screen (`/console/cases/{id}`): the stream, the reference, the evidence
//! timeline (SVG), the evidence pairs side by side (a flip-book with the script, a list
//! without), the audit trail and the decision forms; and the case's stills. The checks are
//! `crate::review`'s, the same the API's `/v1/cases` routes call.

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};

use super::chart::Chart;
use super::queue::{DECIDERS, next_case, return_to};
use super::session::{Console, Posted};
use super::view::{self, Layout};
use super::{ConsoleError, Path, render, see_other};
use crate::http::stills::jpeg_response;
use crate::http::{ApiError, AppState};
use crate::review::{self, CaseDecision, StillSide};
use crate::store::cases::{CaseStatus, HitTier};
use crate::store::keys::Role;
use crate::store::{audit, now_ms, references, rights_holders, streams};

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console/cases/{id}", get(page))
        .route("/console/cases/{id}/decision", post(decide))
        .route("/console/cases/{id}/stills/{side}/{ts_ms}", get(still))
}

struct StreamInfo {
    id: String,
    href: Option<String>,
    account: String,
    status: String,
    viewers: String,
    started: String,
    matched_for: String,
    offset: String,
    delay: Option<String>,
}

struct ReferenceInfo {
    title: String,
    href: String,
    owner: String,
    policy: String,
    exists: bool,
}

struct Pair {
    index: usize,
    stream_time: String,
    reference_time: String,
    stream_url: Option<String>,
    reference_url: Option<String>,
    tier: &'static str,
    distance: u32,
    deciding: bool,
}

/// An audit entry as printed.
pub(super) struct AuditRow {
    pub when: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: String,
}

impl From<audit::AuditEntry> for AuditRow {
    fn from(e: audit::AuditEntry) -> Self {
        Self {
            when: view::time(e.created_at),
            actor: e.actor_label,
            action: e.action,
            target: format!("{} {}", e.target_type, e.target_id),
            detail: e.detail.map(|d| d.to_string()).unwrap_or_default(),
        }
    }
}

#[derive(askama::Template)]
#[template(path = "console/case.html")]
struct CasePage {
    layout: Layout,
    csrf: String,
    case_id: String,
    status: &'static str,
    action: String,
    opened: String,
    age: String,
    decided: Option<String>,
    note: Option<String>,
    disputed: Option<String>,
    dispute_reason: String,
    can_confirm: bool,
    can_restore: bool,
    show_audit: bool,
    stream: StreamInfo,
    reference: ReferenceInfo,
    chart: Chart,
    pairs: Vec<Pair>,
    last_pair: usize,
    audit: Vec<AuditRow>,
}

async fn page(
    console: Console,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let principal = &console.principal;
    let case = review::visible_case(&state, principal, &id).await?;
    let pool = state.store.pool();
    let now = now_ms();
    let stream = streams::get(pool, &case.stream_id).await?.ok_or(ApiError::NotFound("stream"))?;
    let matched = streams::matches(pool, &case.stream_id)
        .await?
        .into_iter()
        .find(|m| m.reference_id == case.reference_id);
    let reference = references::get(pool, &case.reference_id).await?;
    let owner = match case.rights_holder_id.as_deref() {
        Some(holder) => {
            rights_holders::get(pool, holder).await?.map_or_else(|| holder.to_owned(), |h| h.name)
        }
        None => "—".to_owned(),
    };
    let deciding_ts = matched.as_ref().map(|m| m.decided_at_ts_ms);
    let chart = Chart::new(&case.evidence, matched.as_ref().map(|m| m.offset_ms), deciding_ts);
    let may_decide = principal.require(DECIDERS).is_ok();
    let show_audit = may_decide;
    let audit = if show_audit {
        let mut entries = audit::list(pool, Some("case"), Some(&case.id), 200).await?;
        entries.extend(audit::list(pool, Some("stream"), Some(&case.stream_id), 200).await?);
        entries.sort_by(|a, b| b.id.cmp(&a.id));
        entries.into_iter().map(AuditRow::from).collect()
    } else {
        Vec::new()
    };
    let case_view = review::case_view(&state, case, "/console").await?;
    let case = case_view.case;
    let pairs: Vec<Pair> = case_view
        .evidence
        .into_iter()
        .enumerate()
        .map(|(index, p)| Pair {
            index,
            stream_time: view::seconds(p.row.stream_ts_ms),
            reference_time: view::seconds(p.row.reference_ts_ms),
            stream_url: p.stream_still_url,
            reference_url: p.reference_still_url,
            tier: p.row.tier.map_or("tier unknown", HitTier::as_str),
            distance: p.row.distance,
            deciding: deciding_ts == Some(p.row.stream_ts_ms),
        })
        .collect();
    let stream_info = StreamInfo {
        href: may_decide.then(|| format!("/console/streams/{}", view::url_encode(&stream.id))),
        id: stream.id,
        account: stream.account_id.unwrap_or_else(|| "—".to_owned()),
        status: stream.status.as_str().to_owned(),
        viewers: view::viewers(stream.viewers),
        started: format!(
            "{} ({} ago)",
            view::time(stream.created_at),
            view::age(now, stream.created_at)
        ),
        matched_for: matched.as_ref().map_or_else(
            || "—".to_owned(),
            |m| {
                format!(
                    "{} ({} keyframes)",
                    view::seconds((m.matched_seconds * 1000.0).round() as i64),
                    m.matched_keyframes
                )
            },
        ),
        offset: matched.as_ref().map_or_else(|| "—".to_owned(), |m| view::seconds(m.offset_ms)),
        delay: matched.as_ref().and_then(|m| m.delay_ms).map(view::seconds),
    };
    let reference_info = match &reference {
        Some(r) => ReferenceInfo {
            title: r.title.clone(),
            href: format!("/console/references/{}", r.id),
            owner,
            policy: super::references::policy_summary(&r.policy),
            exists: true,
        },
        None => ReferenceInfo {
            title: format!("(deleted reference {})", case.reference_id),
            href: String::new(),
            owner,
            policy: "—".to_owned(),
            exists: false,
        },
    };
    let decided_by = match case.decided_by.as_deref() {
        Some(by) => audit::actor_label(pool, by).await?,
        None => "?".to_owned(),
    };
    let decided = case.decided_at.map(|at| format!("{} by {decided_by}", view::time(at)));
    let page = CasePage {
        layout: console.layout(&format!("Case {}", case.id), "queue"),
        csrf: console.csrf().to_owned(),
        status: case.status.as_str(),
        action: case.action.clone(),
        opened: view::time(case.created_at),
        age: view::age(now, case.created_at),
        decided,
        note: case.note.clone(),
        disputed: case.disputed_at.map(view::time),
        dispute_reason: case.dispute_reason.clone().unwrap_or_default(),
        can_confirm: may_decide && case.status == CaseStatus::Open,
        can_restore: may_decide && case.status != CaseStatus::Dismissed,
        show_audit,
        stream: stream_info,
        reference: reference_info,
        chart,
        last_pair: pairs.len().saturating_sub(1),
        pairs,
        audit,
        case_id: case.id,
    };
    render(&page)
}

/// `POST /console/cases/{id}/decision` (`decision` = confirm, dismiss or restore, `note`):
/// then the next case of the queue (`then=next`), the page in `return_to`, or this case.
async fn decide(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    let Posted { console, form } = posted;
    let decision = form.get("decision").and_then(CaseDecision::parse).ok_or_else(|| {
        ApiError::Unprocessable("decision must be confirm, dismiss or restore".into())
    })?;
    review::decide_case(&state, &console.principal, &id, decision, form.text("note")).await?;
    if form.get("then") == Some("next") {
        return Ok(match next_case(&state, &console).await? {
            Some(next) => see_other(&format!("/console/cases/{next}")),
            None => see_other("/console"),
        });
    }
    Ok(see_other(&return_to(&form).unwrap_or_else(|| format!("/console/cases/{id}"))))
}

/// `GET /console/cases/{id}/stills/{stream|reference}/{ts_ms}`: as the case.
async fn still(
    console: Console,
    State(state): State<AppState>,
    Path((id, side, ts_ms)): Path<(String, String, i64)>,
) -> Result<Response, ConsoleError> {
    let side = StillSide::parse(&side).ok_or(ApiError::NotFound("still"))?;
    // The ingest role never gets this far (no console), but the check is review's as for /v1.
    if console.principal.role == Role::Ingest {
        return Err(ApiError::Forbidden.into());
    }
    let jpeg = review::case_still(&state, &console.principal, &id, side, ts_ms).await?;
    Ok(jpeg_response(jpeg))
}
