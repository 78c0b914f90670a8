//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document.
//! None needs a key: load balancers, orchestrators and scrapers call them.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use serde::Serialize;

use super::AppState;
use super::error::Json;

/// A dependency `/readyz` checks (the database is always checked).
pub trait ReadinessCheck: Send + Sync + 'static {
    /// A short name shown in the `/readyz` answer.
    fn name(&self) -> &'static str;
    /// Succeeds when the dependency is reachable.
    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>>;
}

/// RabbitMQ, when the app uses it: `/readyz` opens a connection to the broker and closes it.
///
/// A fresh connection each time (not the queue's own, which reconnects by itself and may be
/// between attempts) answers the question a load balancer asks: could this process publish
/// now? Readiness probes come every few seconds, so the cost is one short-lived connection.
pub struct AmqpCheck {
    url: String,
}

impl AmqpCheck {
    /// A check of the broker at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into() }
    }
}

impl ReadinessCheck for AmqpCheck {
    fn name(&self) -> &'static str {
        "queue"
    }

    fn check(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let props = lapin::ConnectionProperties::default()
                .with_connection_name("offside-readyz".into());
            let connection = lapin::Connection::connect(&self.url, props)
                .await
                .map_err(|err| anyhow::anyhow!("RabbitMQ unreachable: {err}"))?;
            // Best effort: the broker drops the connection anyway when the socket closes.
            let _ = connection.close(200, "readiness checked".into()).await;
            Ok(())
        })
    }
}

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz, metrics, openapi))]
pub(super) struct Api;

/// Liveness answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// Readiness answer: `ready` only when every dependency is reachable.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Readiness {
    /// `ready` or `unavailable`.
    status: &'static str,
    /// Each dependency: `ok` or why it is not.
    checks: std::collections::BTreeMap<String, String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database and the queue are reachable.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
async fn readyz(State(state): State<AppState>) -> Response {
    let mut checks = std::collections::BTreeMap::new();
    let mut ready = true;
    let db = tokio::time::timeout(std::time::Duration::from_secs(3), state.store.ping()).await;
    let db = match db {
        Ok(Ok(())) => "ok".to_owned(),
        Ok(Err(err)) => format!("{err:#}"),
        Err(_) => "timed out".to_owned(),
    };
    ready &= db == "ok";
    checks.insert("database".to_owned(), db);
    for check in state.readiness.iter() {
        let outcome =
            match tokio::time::timeout(std::time::Duration::from_secs(3), check.check()).await {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(err)) => format!("{err:#}"),
                Err(_) => "timed out".to_owned(),
            };
        ready &= outcome == "ok";
        checks.insert(check.name().to_owned(), outcome);
    }
    let (status, word) = if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (status, Json(Readiness { status: word, checks })).into_response()
}

/// Prometheus metrics: requests by route and status, reference jobs, index size.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], state.metrics.render()).into_response()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
async fn openapi() -> Response {
    axum::Json(super::openapi()).into_response()
}
