//! The audit trail (`/console/audit`: admins all of it, trust and safety its review part, as
//! `GET /v1/audit`) and webhook deliveries (`/console/webhooks`: attempts, last error, next
//! retry; admins only, as `/v1/webhooks`).

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use super::cases::AuditRow;
use super::session::Console;
use super::view::{self, Layout};
use super::{ConsoleError, Query, render};
use crate::http::AppState;
use crate::store::keys::Role;
use crate::store::{audit, outbox};

/// Rows shown.
const LIMIT: i64 = 300;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/console/audit", get(audit_page)).route("/console/webhooks", get(webhooks))
}

#[derive(Debug, Default, Deserialize)]
struct AuditQuery {
    target_type: Option<String>,
    target_id: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/audit.html")]
struct AuditPage {
    layout: Layout,
    target_type: String,
    target_id: String,
    entries: Vec<AuditRow>,
}

async fn audit_page(
    console: Console,
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ConsoleError> {
    let target_type = q.target_type.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let target_id = q.target_id.as_deref().map(str::trim).filter(|t| !t.is_empty());
    let filter = crate::http::audit::audit_filter(&console.principal, target_type, target_id)?;
    let entries = audit::list_filtered(state.store.pool(), &filter, LIMIT).await?;
    let page = AuditPage {
        layout: console.layout("Audit", "audit"),
        target_type: target_type.unwrap_or_default().to_owned(),
        target_id: target_id.unwrap_or_default().to_owned(),
        entries: entries.into_iter().map(AuditRow::from).collect(),
    };
    render(&page)
}

struct DeliveryRow {
    id: String,
    event: String,
    url: String,
    status: String,
    attempts: i64,
    last_status: String,
    last_error: String,
    next_retry: String,
    created: String,
}

#[derive(Debug, Default, Deserialize)]
struct DeliveryQuery {
    pending: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "console/webhooks.html")]
struct WebhooksPage {
    layout: Layout,
    pending_only: bool,
    deliveries: Vec<DeliveryRow>,
}

async fn webhooks(
    console: Console,
    State(state): State<AppState>,
    Query(q): Query<DeliveryQuery>,
) -> Result<Response, ConsoleError> {
    console.principal.require(&[Role::Admin])?;
    let pending_only = q.pending.as_deref().is_some_and(|p| p == "1" || p == "true");
    let log = outbox::delivery_log(state.store.pool(), pending_only, LIMIT).await?;
    let deliveries = log
        .into_iter()
        .map(|d| DeliveryRow {
            next_retry: if d.status == "pending" {
                view::time(d.next_attempt_at)
            } else {
                format!("delivered {}", view::time_or_dash(d.delivered_at))
            },
            id: d.id,
            event: format!("{} {}", d.event_type, d.event_id),
            url: d.url,
            status: d.status,
            attempts: d.attempts,
            last_status: d.last_status_code.map_or_else(|| "—".to_owned(), |c| c.to_string()),
            last_error: d.last_error.unwrap_or_default(),
            created: view::time(d.created_at),
        })
        .collect();
    render(&WebhooksPage {
        layout: console.layout("Webhook deliveries", "webhooks"),
        pending_only,
        deliveries,
    })
}
