//! The web console at `/console`: server-rendered pages for trust and safety, rights holders
//! and admins (review queue, cases with their visual evidence, streams, references, audit,
//! webhook deliveries).
//!
//! It is another face of the same service, not a second one: an API key is exchanged for a
//! session ([`session`]) that resolves to the same [`Principal`] the API uses, and every page
//! and action calls the same role and tenancy checks, store queries and shared actions
//! (`crate::review`, the reference upload and policy code) as the API route beside it.
//!
//! Pages are askama templates under `templates/console/` (escaping on by default); one CSS and
//! one JS file are embedded in the binary. Every response carries a strict Content Security
//! Policy (no inline script or style), so the pages work for reading without the script and the
//! script only makes review faster (keyboard, flip-book, polling, upload progress).

mod admin;
mod cases;
mod chart;
mod queue;
mod references;
mod session;
mod streams;
mod view;

use std::sync::LazyLock;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get};
use sha2::{Digest as _, Sha256};
use tower_http::timeout::TimeoutLayer;

use crate::http::{ApiError, AppState};
pub use session::SESSION_LIFETIME_MS;

/// The policy every console response carries: only this origin's script, style, images and
/// fetches; no inline script or style; no framing; forms post only here.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("../../assets/console/console.css");
const JS: &str = include_str!("../../assets/console/console.js");

/// The assets' URLs carry a hash of their content, so they can be cached for a year and a new
/// binary's assets are fetched at once.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = Sha256::new();
    hasher.update(CSS.as_bytes());
    hasher.update(JS.as_bytes());
    hex::encode(&hasher.finalize()[..6])
});

/// The URL of the console's stylesheet.
pub fn css_url() -> String {
    format!("/console/assets/console.css?v={}", *ASSET_VERSION)
}

/// The URL of the console's script.
pub fn js_url() -> String {
    format!("/console/assets/console.js?v={}", *ASSET_VERSION)
}

/// Every console route, with its layers (security headers, same-origin check, timeout).
pub fn router(request_timeout: std::time::Duration) -> Router<AppState> {
    let timed = Router::new()
        .merge(session::router())
        .merge(queue::router())
        .merge(cases::router())
        .merge(streams::router())
        .merge(references::router())
        .merge(admin::router())
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        // Any other /console path answers an HTML 404, not the API's JSON one.
        .route("/console/{*rest}", any(not_found))
        .method_not_allowed_fallback(method_not_allowed)
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout));
    // The upload takes as long as the browser needs to send the file.
    let streaming = references::upload_router();
    Router::new()
        .merge(timed)
        .merge(streaming)
        .layer(middleware::from_fn(same_origin_posts))
        .layer(middleware::from_fn(security_headers))
}

async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "public, max-age=31536000, immutable")], body)
        .into_response()
}

async fn method_not_allowed() -> ConsoleError {
    ConsoleError::MethodNotAllowed
}

async fn not_found() -> ConsoleError {
    ConsoleError::Api(ApiError::NotFound("page"))
}

/// Adds the security headers to every console response, and `Cache-Control: no-store` to
/// those that did not set their own (pages: they show what only this session may see).
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers
        .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Refuses a state-changing request whose `Origin` header names another site (or `null`): a
/// second line of defence beside the CSRF token, which a cross-site form cannot know.
async fn same_origin_posts(request: Request, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let origin = request.headers().get("origin").map(|v| v.to_str().unwrap_or("null"));
        let host = request.headers().get("host").and_then(|v| v.to_str().ok());
        if let Some(origin) = origin
            && !same_origin(origin, host)
        {
            return ConsoleError::CrossOrigin.into_response();
        }
    }
    next.run(request).await
}

/// Whether an `Origin` header value (`scheme://host[:port]`) names the request's own host.
fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    (scheme == "http" || scheme == "https") && authority.eq_ignore_ascii_case(host)
}

/// What a console request can fail with: an HTML page with the right status (or, for a
/// missing session, a redirect to the sign-in page).
#[derive(Debug)]
pub enum ConsoleError {
    /// No valid session: sign in, then come back to `next`.
    SignIn {
        /// The page to return to (a relative /console path).
        next: String,
    },
    /// A state-changing request without this session's CSRF token.
    Csrf,
    /// A state-changing request from another origin.
    CrossOrigin,
    /// A page asked for with a method it does not answer (`GET` of a form's target).
    MethodNotAllowed,
    /// What the shared code refused, with its status.
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(err: ApiError) -> Self {
        Self::Api(err)
    }
}

impl From<sqlx::Error> for ConsoleError {
    fn from(err: sqlx::Error) -> Self {
        Self::Api(err.into())
    }
}

impl From<askama::Error> for ConsoleError {
    fn from(err: askama::Error) -> Self {
        Self::Api(ApiError::Internal(anyhow::Error::new(err).context("rendering a page")))
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage {
    layout: view::Layout,
    status: u16,
    heading: &'static str,
    message: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, heading, message) = match self {
            Self::SignIn { next } => {
                let location = format!("/console/login?next={}", view::url_encode(&next));
                return (StatusCode::SEE_OTHER, [(LOCATION, location)]).into_response();
            }
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "This form was not sent from this console session (its security token is \
                 missing or stale). Go back, reload the page and try again."
                    .to_owned(),
            ),
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "Not a page",
                "This address only takes a form's submission.".to_owned(),
            ),
            Self::CrossOrigin => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "This request came from another site.".to_owned(),
            ),
            Self::Api(err) => {
                if let ApiError::Internal(inner) = &err {
                    tracing::error!(error = %format!("{inner:#}"), "internal error");
                }
                let heading = match err.status() {
                    StatusCode::UNAUTHORIZED => "Sign-in required",
                    StatusCode::FORBIDDEN => "Forbidden",
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::CONFLICT => "Conflict",
                    StatusCode::PAYLOAD_TOO_LARGE => "Too large",
                    StatusCode::INTERNAL_SERVER_ERROR => "Something went wrong",
                    s if s.is_client_error() => "Cannot do that",
                    _ => "Unavailable",
                };
                let message = match &err {
                    ApiError::Forbidden => "Your key's role may not use this page.".to_owned(),
                    other => other.to_string(),
                };
                (err.status(), heading, message)
            }
        };
        let page = ErrorPage {
            layout: view::Layout::bare(heading),
            status: status.as_u16(),
            heading,
            message,
        };
        match page.render() {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, heading).into_response(),
        }
    }
}

/// Renders a page.
fn render(page: &impl Template) -> Result<Response, ConsoleError> {
    Ok(Html(page.render()?).into_response())
}

/// A 303 to another console page.
fn see_other(location: &str) -> Response {
    (StatusCode::SEE_OTHER, [(LOCATION, location.to_owned())]).into_response()
}

/// `axum::extract::Path` whose rejections answer with a console page.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ConsoleError))]
struct Path<T>(T);

impl From<axum::extract::rejection::PathRejection> for ConsoleError {
    fn from(_: axum::extract::rejection::PathRejection) -> Self {
        // A malformed id or time in a console URL names no page.
        Self::Api(ApiError::NotFound("page"))
    }
}

/// `axum::extract::Query` whose rejections answer with a console page.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ConsoleError))]
struct Query<T>(T);

impl From<axum::extract::rejection::QueryRejection> for ConsoleError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        Self::Api(ApiError::BadRequest(rejection.body_text()))
    }
}
