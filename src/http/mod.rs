//! The HTTP API. Each resource has its own file with its own `router()`; this module only
//! merges them, adds the layers (request id, tracing, metrics, timeout, body limit, panic
//! catching, JSON errors) and builds the OpenAPI document from each file's `Api`.
//!
//! Every error of the API is `{"error": {"code", "message"}}`. Handlers answer with
//! [`ApiError`]; what axum, tower and tower-http answer by themselves (405 from the method
//! router, 413 from the body limit, 408 from the timeout, a rejection's plain-text 400 or 415)
//! is rewritten into that shape by one layer, [`error::json_errors`], so there is one
//! mechanism for everything that is not a handler's own answer.

pub mod audit;
pub mod auth;
pub mod cases;
pub mod error;
pub mod health;
pub mod keys;
pub mod params;
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
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi as _;

pub use error::ApiError;

use crate::config::Config;
use crate::recognition::SharedLibrary;
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
        .layer(middleware::from_fn(error::json_errors))
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
    response
}

/// The OpenAPI document of every route.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::Modify as _;
    let mut doc = ApiDoc::openapi();
    doc.merge(health::Api::openapi());
    doc.merge(rights_holders::Api::openapi());
    doc.merge(keys::Api::openapi());
    doc.merge(references::Api::openapi());
    doc.merge(streams::Api::openapi());
    doc.merge(cases::Api::openapi());
    doc.merge(webhooks::Api::openapi());
    doc.merge(audit::Api::openapi());
    // After the merge: the modifiers of `ApiDoc` ran on its own (empty) paths.
    ErrorResponses.modify(&mut doc);
    doc
}

/// Lists the errors every operation can answer, each with the `ErrorBody` schema (and
/// `Retry-After` on 503), so the document says what [`error::json_errors`] and [`ApiError`]
/// send: 400 (a parameter or body that does not parse), 408 (too slow), 414 (URI too long),
/// 422 (invalid values), 500 and 503 everywhere; 401 and 403 on keyed routes; 404 where the
/// path names something; 413 and 415 where there is a body. A route's own descriptions of these
/// statuses are kept; only their missing body schema is filled in.
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};

        let content =
            || ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
        for item in openapi.paths.paths.values_mut() {
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                let keyed = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let named = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, RefOr::T(p) if p.parameter_in == ParameterIn::Path));
                let body = operation.request_body.is_some();
                let mut statuses = vec![
                    (400, "The request cannot be parsed"),
                    (408, "The client sent nothing for too long, or the request took too long"),
                    (414, "The request URI is too long"),
                    (422, "A parameter or a field has an invalid value"),
                    (500, "Internal error"),
                    (
                        503,
                        "A dependency (the database, the queue) is unavailable; retry after Retry-After",
                    ),
                ];
                if keyed {
                    statuses.push((401, "A valid API key is required"));
                    statuses.push((403, "This key's role may not do this"));
                }
                if named {
                    statuses.push((404, "Not found (or not the caller's)"));
                }
                if body {
                    statuses.push((413, "The body is too large"));
                    statuses.push((415, "The body's Content-Type is not accepted here"));
                }
                let responses = &mut operation.responses.responses;
                for (status, description) in statuses {
                    responses.entry(status.to_string()).or_insert_with(|| {
                        RefOr::T(ResponseBuilder::new().description(description).build())
                    });
                }
                for (status, response) in responses.iter_mut() {
                    let RefOr::T(response) = response else { continue };
                    let error = status.starts_with('4') || status.starts_with('5');
                    if !error {
                        continue;
                    }
                    if response.content.is_empty() {
                        response.content.insert("application/json".to_owned(), RefOr::T(content()));
                    }
                    if status == "503" {
                        response.headers.entry("Retry-After".to_owned()).or_insert_with(|| {
                            RefOr::T(
                                utoipa::openapi::HeaderBuilder::new()
                                    .schema(Some(
                                        utoipa::openapi::ObjectBuilder::new()
                                            .schema_type(utoipa::openapi::schema::Type::Integer),
                                    ))
                                    .description(Some("Seconds to wait before retrying"))
                                    .build(),
                            )
                        });
                    }
                }
            }
        }
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Offside", description = "Recognises pirated re-streams of broadcasts in live video and acts on them."),
    modifiers(&BearerAuth, &ErrorResponses),
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
