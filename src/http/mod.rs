//! The HTTP API. Each resource has its own file with its own `router()`; this module only
//! merges them, adds the layers (request id, tracing, metrics, timeout, body limit, panic
//! catching) and builds the OpenAPI document from each file's `Api`.

pub mod audit;
pub mod auth;
pub mod cases;
pub mod error;
pub mod health;
pub mod keys;
pub mod references;
pub mod rights_holders;
pub mod stills;
pub mod streams;
pub mod webhooks;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi as _;

pub use error::ApiError;

use crate::config::Config;
use crate::references::engine::SharedLibrary;
use crate::references::index::IndexSync;
use crate::references::jobs::Jobs;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The configuration the app was built with.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// Keeps this process's reference library in step with the database.
    pub index: Arc<IndexSync>,
    /// The reference library itself, for lookups.
    pub library: SharedLibrary,
    /// The reference job queue.
    pub jobs: Jobs,
    /// The Prometheus recorder rendered by `/metrics`.
    pub metrics: PrometheusHandle,
    /// Extra dependencies `/readyz` checks besides the database (the queue).
    pub readiness: Arc<Vec<Arc<dyn health::ReadinessCheck>>>,
    /// The keyframe queue ingest publishes to (in-process or RabbitMQ).
    pub queue: Arc<dyn crate::queue::KeyframeQueue>,
    /// Wakes this process's webhook delivery loop after a decision made here.
    pub outbox_wake: Arc<tokio::sync::Notify>,
}

/// The full router with its layers, ready to serve.
pub fn router(state: AppState) -> Router {
    let config = Arc::clone(&state.config);
    // Routes that answer within the request timeout.
    let timed = Router::new()
        .merge(health::router())
        .merge(rights_holders::router())
        .merge(keys::router())
        .merge(references::router())
        .merge(streams::router())
        .merge(cases::router())
        .merge(webhooks::router())
        .merge(audit::router())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            config.request_timeout(),
        ));
    // Routes that stream large bodies and take as long as the client needs; they enforce their
    // own size limit while streaming.
    let streaming = Router::new().merge(references::upload_router());

    let body_limit = usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX);
    Router::new()
        .merge(timed)
        .merge(streaming)
        // The web console: HTML pages with their own error pages, layers and timeout.
        .merge(crate::console::router(config.request_timeout()))
        .fallback(|| async { ApiError::NotFound("route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(track_metrics))
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked");
            error::error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let request_id = request
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        uri = %request.uri().path(),
                        request_id = %request_id,
                        key_id = tracing::field::Empty,
                    )
                })
                // One line per request at INFO (tower-http's default is DEBUG), carrying the span's
                // request id, method, path and the caller's key id.
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Counts requests by route template (not raw path, so ids don't explode the label set),
/// method and status, and times them.
async fn track_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("offside_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("offside_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    if response.status() == StatusCode::REQUEST_TIMEOUT
        && response.headers().get("content-type").is_none()
    {
        return error::error_response(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            "the request took too long",
        )
        .into_response();
    }
    response
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(health::Api::openapi());
    doc.merge(rights_holders::Api::openapi());
    doc.merge(keys::Api::openapi());
    doc.merge(references::Api::openapi());
    doc.merge(streams::Api::openapi());
    doc.merge(cases::Api::openapi());
    doc.merge(webhooks::Api::openapi());
    doc.merge(audit::Api::openapi());
    doc
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Offside", description = "Recognises pirated re-streams of broadcasts in live video and acts on them."),
    modifiers(&BearerAuth),
    components(schemas(error::ErrorBody))
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("off_…").build(),
            ),
        );
    }
}
