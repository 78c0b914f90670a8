//! The review queue (`/console`): open cases, disputed ones first, oldest first or by reach,
//! filtered and keyset-paginated (`crate::store::queue`), with per-row and bulk decisions.
//! Who sees which cases is what `GET /v1/cases` allows: every case for admins and trust and
//! safety, a rights holder's own only; deciding is for admins and trust and safety.

use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;

use super::session::{Console, Posted};
use super::view::{self, Layout};
use super::{ConsoleError, Query, render, see_other};
use crate::http::{ApiError, AppState};
use crate::review::{self, CaseDecision};
use crate::store::keys::Role;
use crate::store::queue::{self, QueueCursor, QueueFilter, QueueOrder};
use crate::store::{now_ms, references, rights_holders};

/// Rows per page.
const PAGE_SIZE: i64 = 50;
/// Roles that read the queue (as `GET /v1/cases`).
const READERS: &[Role] = &[Role::Admin, Role::TrustSafety, Role::RightsHolder];
/// Roles that decide cases (as `POST /v1/cases/{id}/decision`).
pub(super) const DECIDERS: &[Role] = &[Role::Admin, Role::TrustSafety];

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/queue", get(page))
        .route("/console/queue/bulk", post(bulk))
}

#[derive(Debug, Default, Deserialize)]
struct QueueQuery {
    order: Option<String>,
    reference: Option<String>,
    holder: Option<String>,
    action: Option<String>,
    age: Option<String>,
    after: Option<String>,
    done: Option<u32>,
    failed: Option<u32>,
}

/// An option of a filter's `<select>`.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn choices(options: &[(&str, &str)], current: Option<&str>) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).to_owned(),
            label: (*label).to_owned(),
            selected: current.unwrap_or_default() == *value,
        })
        .collect()
}

/// One row as the template prints it.
struct Row {
    case_id: String,
    href: String,
    stream_id: String,
    account: String,
    reference_title: String,
    rights_holder: String,
    action: String,
    age: String,
    opened: String,
    viewers: String,
    matched: String,
    disputed: bool,
    dispute_reason: String,
    stream_thumb: Option<String>,
    reference_thumb: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/queue.html")]
struct QueuePage {
    layout: Layout,
    csrf: String,
    can_decide: bool,
    rows: Vec<Row>,
    total: i64,
    return_to: String,
    next_page: Option<String>,
    first_page: Option<String>,
    orders: Vec<Choice>,
    actions: Vec<Choice>,
    ages: Vec<Choice>,
    references: Vec<Choice>,
    holders: Vec<Choice>,
    notice: Option<String>,
}

/// The `opened_from`/`opened_before` bounds of an age filter.
fn age_bounds(age: Option<&str>, now: i64) -> Result<(Option<i64>, Option<i64>), ApiError> {
    const HOUR: i64 = 3_600_000;
    Ok(match age {
        None | Some("") => (None, None),
        Some("1h") => (Some(now - HOUR), None),
        Some("24h") => (Some(now - 24 * HOUR), None),
        Some("7d") => (Some(now - 7 * 24 * HOUR), None),
        Some("older") => (None, Some(now - 7 * 24 * HOUR)),
        Some(other) => {
            return Err(ApiError::Unprocessable(format!(
                "age must be 1h, 24h, 7d or older, not {other:?}"
            )));
        }
    })
}

fn nonempty(value: Option<&String>) -> Option<&str> {
    value.map(|v| v.trim()).filter(|v| !v.is_empty())
}

async fn page(
    console: Console,
    State(state): State<AppState>,
    Query(q): Query<QueueQuery>,
    uri: Uri,
) -> Result<Response, ConsoleError> {
    let principal = &console.principal;
    principal.require(READERS)?;
    // A rights-holder key without a scope would see everything: refuse instead (as the API).
    if principal.role == Role::RightsHolder && principal.owner_scope().is_none() {
        return Err(ApiError::Forbidden.into());
    }
    let pool = state.store.pool();
    let now = now_ms();
    let order = match nonempty(q.order.as_ref()) {
        None => QueueOrder::Oldest,
        Some(o) => QueueOrder::parse(o)
            .ok_or_else(|| ApiError::Unprocessable(format!("unknown order {o:?}")))?,
    };
    let action = nonempty(q.action.as_ref());
    if action.is_some_and(|a| a != "flag" && a != "kill") {
        return Err(ApiError::Unprocessable("action must be flag or kill".into()).into());
    }
    let (opened_from, opened_before) = age_bounds(nonempty(q.age.as_ref()), now)?;
    let filter = QueueFilter {
        reference_id: nonempty(q.reference.as_ref()),
        // The caller's scope wins over any holder filter it sends.
        rights_holder_id: principal.owner_scope().or(nonempty(q.holder.as_ref())),
        action,
        opened_from,
        opened_before,
    };
    let after = match nonempty(q.after.as_ref()) {
        None => None,
        Some(text) => Some(
            QueueCursor::decode(text)
                .ok_or_else(|| ApiError::Unprocessable("bad page cursor".into()))?,
        ),
    };
    let mut items = queue::page(pool, &filter, order, after.as_ref(), PAGE_SIZE + 1).await?;
    let more = items.len() > PAGE_SIZE as usize;
    items.truncate(PAGE_SIZE as usize);
    let total = queue::count(pool, &filter).await?;

    // The URL of this view without the cursor, for the pager and the filters.
    let mut base: Vec<(&str, &str)> = Vec::new();
    if order != QueueOrder::Oldest {
        base.push(("order", order.as_str()));
    }
    for (name, value) in [
        ("reference", nonempty(q.reference.as_ref())),
        ("holder", nonempty(q.holder.as_ref())),
        ("action", action),
        ("age", nonempty(q.age.as_ref())),
    ] {
        if let Some(value) = value {
            base.push((name, value));
        }
    }
    let url_with = |extra: Option<(&str, &str)>| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in base.iter().copied().chain(extra) {
            query.append_pair(k, v);
        }
        let query = query.finish();
        if query.is_empty() { "/console".to_owned() } else { format!("/console?{query}") }
    };
    let next_page = if more {
        items.last().map(|last| url_with(Some(("after", &last.cursor.encode()))))
    } else {
        None
    };
    let first_page = after.is_some().then(|| url_with(None));

    let rows = items
        .into_iter()
        .map(|item| {
            let thumb =
                |side: &str, ts: i64| format!("/console/cases/{}/stills/{side}/{ts}", item.case_id);
            Row {
                href: format!("/console/cases/{}", item.case_id),
                stream_thumb: item
                    .deciding
                    .filter(|_| item.deciding_still)
                    .map(|(s, _)| thumb("stream", s)),
                reference_thumb: item
                    .deciding
                    .filter(|_| item.deciding_reference_still)
                    .map(|(_, r)| thumb("reference", r)),
                stream_id: item.stream_id,
                account: item.account_id.unwrap_or_default(),
                reference_title: item
                    .reference_title
                    .unwrap_or_else(|| format!("(deleted reference {})", item.reference_id)),
                rights_holder: item
                    .rights_holder_name
                    .or(item.rights_holder_id)
                    .unwrap_or_else(|| "—".to_owned()),
                action: item.action,
                age: view::age(now, item.created_at),
                opened: view::time(item.created_at),
                viewers: view::viewers(item.viewers),
                matched: item.matched_ms.map_or_else(|| "—".to_owned(), view::seconds),
                disputed: item.disputed_at.is_some(),
                dispute_reason: item.dispute_reason.unwrap_or_default(),
                case_id: item.case_id,
            }
        })
        .collect();

    let reference_choices = references::list(pool, principal.owner_scope(), None, 500).await?;
    let mut references =
        vec![Choice { value: String::new(), label: "Any reference".into(), selected: false }];
    references.extend(reference_choices.into_iter().map(|r| Choice {
        selected: filter.reference_id == Some(r.id.as_str()),
        value: r.id,
        label: r.title,
    }));
    let mut holders = Vec::new();
    if principal.owner_scope().is_none() {
        holders.push(Choice {
            value: String::new(),
            label: "Any rights holder".into(),
            selected: false,
        });
        holders.extend(rights_holders::list(pool).await?.into_iter().map(|h| Choice {
            selected: filter.rights_holder_id == Some(h.id.as_str()),
            value: h.id,
            label: h.name,
        }));
    }
    let notice = match (q.done, q.failed) {
        (Some(done), Some(failed)) if failed > 0 => {
            Some(format!("{done} decided; {failed} could not be (already decided or gone)."))
        }
        (Some(done), _) => Some(format!("{done} decided.")),
        _ => None,
    };
    let return_to = uri.path_and_query().map_or("/console", |p| p.as_str());
    let page = QueuePage {
        layout: console.layout("Review queue", "queue"),
        csrf: console.csrf().to_owned(),
        can_decide: principal.require(DECIDERS).is_ok(),
        rows,
        total,
        return_to: strip_notice(view::safe_next(return_to).unwrap_or("/console")),
        next_page,
        first_page,
        orders: choices(
            &[("oldest", "Oldest first"), ("reach", "Most viewers first")],
            Some(order.as_str()),
        ),
        actions: choices(&[("", "Any action"), ("flag", "flag"), ("kill", "kill")], action),
        ages: choices(
            &[
                ("", "Any age"),
                ("1h", "Opened within 1 h"),
                ("24h", "Within 24 h"),
                ("7d", "Within 7 days"),
                ("older", "Older than 7 days"),
            ],
            nonempty(q.age.as_ref()),
        ),
        references,
        holders,
        notice,
    };
    render(&page)
}

/// The first case of the queue in its default order that the caller may see, for "submit and
/// next" on the case page.
pub(super) async fn next_case(
    state: &AppState,
    console: &Console,
) -> Result<Option<String>, ConsoleError> {
    let filter =
        QueueFilter { rights_holder_id: console.principal.owner_scope(), ..QueueFilter::default() };
    let first = queue::page(state.store.pool(), &filter, QueueOrder::Oldest, None, 1).await?;
    Ok(first.into_iter().next().map(|item| item.case_id))
}

/// Where a form asked to go back to, if it is a console page.
pub(super) fn return_to(form: &super::session::FormData) -> Option<String> {
    form.get("return_to").and_then(view::safe_next).map(str::to_owned)
}

/// `POST /console/queue/bulk`: `decision` (confirm or dismiss) on every `case_id`.
async fn bulk(State(state): State<AppState>, posted: Posted) -> Result<Response, ConsoleError> {
    let Posted { console, form } = posted;
    console.principal.require(DECIDERS)?;
    let decision = match form.get("decision") {
        Some("confirm") => CaseDecision::Confirm,
        Some("dismiss") => CaseDecision::Dismiss,
        _ => {
            return Err(
                ApiError::Unprocessable("decision must be confirm or dismiss".into()).into()
            );
        }
    };
    let ids = form.all("case_id");
    if ids.len() > 500 {
        return Err(ApiError::Unprocessable("at most 500 cases at once".into()).into());
    }
    let note = form.text("note");
    let (mut done, mut failed) = (0_u32, 0_u32);
    for id in ids {
        match review::decide_case(&state, &console.principal, id, decision, note).await {
            Ok(_) => done += 1,
            // Already decided (by someone else meanwhile) or gone: counted, not fatal.
            Err(ApiError::Conflict(_) | ApiError::NotFound(_)) => failed += 1,
            Err(err) => return Err(err.into()),
        }
    }
    let back = return_to(&form).unwrap_or_else(|| "/console".to_owned());
    let back = strip_notice(&back);
    let sep = if back.contains('?') { '&' } else { '?' };
    Ok(see_other(&format!("{back}{sep}done={done}&failed={failed}")))
}

/// A queue URL without a previous bulk action's `done`/`failed` counts.
fn strip_notice(url: &str) -> String {
    let Some((path, query)) = url.split_once('?') else { return url.to_owned() };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.starts_with("done=") && !pair.starts_with("failed="))
        .collect();
    if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
}
