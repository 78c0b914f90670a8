//! The HTTP layer's one error type: every failure becomes `{"error": {"code", "message"}}` with
//! the right status. Internal errors are logged once, here, and the client sees a fixed message.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, multipart::MultipartError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No key, or an unknown or revoked one.
    #[error("a valid API key is required (Authorization: Bearer KEY)")]
    Unauthorized,
    /// The key's role may not do this.
    #[error("this API key's role may not do this")]
    Forbidden,
    /// The thing does not exist, or belongs to someone else (ids don't leak).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A conflicting state: a taken name, a reference still processing.
    #[error("{0}")]
    Conflict(String),
    /// A request that cannot be parsed.
    #[error("{0}")]
    BadRequest(String),
    /// A well-formed request with invalid values.
    #[error("{0}")]
    Unprocessable(String),
    /// A body over the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A dependency (the database, the keyframe queue) is down for now; the answer carries
    /// `Retry-After` and the client should retry.
    #[error("{0}")]
    Unavailable(String),
    /// The client stopped sending its request (headers or body) for too long.
    #[error("{0}")]
    Timeout(String),
    /// The method is not allowed on this route.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body's content type is not one this route takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Anything else; logged, never shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::BadRequest(_) => "bad_request",
            Self::Unprocessable(_) => "invalid",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::Unavailable(_) => "unavailable",
            Self::Timeout(_) => "timeout",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Internal(_) => "internal",
        }
    }
}

/// The error body.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable code: unauthorized, forbidden, not_found, method_not_allowed, conflict,
    /// bad_request, invalid, payload_too_large, uri_too_long, unsupported_media_type, timeout,
    /// unavailable, internal.
    pub code: String,
    /// A human explanation.
    pub message: String,
}

/// Builds an error response from parts (also used by layers outside handlers).
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = ErrorBody { error: ErrorDetail { code: code.to_owned(), message: message.into() } };
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(err) = &self {
            tracing::error!(error = %format!("{err:#}"), "internal error");
        }
        let mut response = error_response(self.status(), self.code(), self.to_string());
        if matches!(self, Self::Unavailable(_)) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// Seconds a client waits before retrying a 503 (`Retry-After`).
pub const RETRY_AFTER_SECS: &str = "5";

/// Whether a database error means the database is unreachable or refusing connections for now
/// (a 503 the client retries), rather than a bug or a bad query (a 500).
fn is_database_outage(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL's connection exceptions (class 08), operator intervention (57P01 admin
        // shutdown, 57P02 crash shutdown, 57P03 cannot connect now) and 55000, which is what a
        // database closed with ALLOW_CONNECTIONS false answers.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "55000")
        }),
        _ => false,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::RowNotFound => Self::NotFound("resource"),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                Self::Conflict("a resource with these unique values already exists".to_owned())
            }
            _ if is_database_outage(&err) => {
                tracing::warn!(error = %err, "the database is unavailable");
                Self::Unavailable("the database is unavailable; retry shortly".to_owned())
            }
            _ => Self::Internal(err.into()),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        match err.downcast::<sqlx::Error>() {
            Ok(sql) => sql.into(),
            Err(err) => Self::Internal(err),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let message = rejection.body_text();
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge(message),
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable(message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(message),
            _ => Self::BadRequest(message),
        }
    }
}

/// The code of an error status the API answers, for responses made outside the handlers.
fn code_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}

/// The message of an error response made outside the handlers, from its plain-text body
/// (axum's rejections explain themselves: "Failed to buffer the request body: length limit
/// exceeded") or, for an empty body, from the status.
fn message_of(status: StatusCode, body: &[u8]) -> String {
    let text = std::str::from_utf8(body).unwrap_or_default().trim();
    if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
        // Never show the client what a failing layer said about the server.
        return "internal error".to_owned();
    }
    if !text.is_empty() && text.len() <= 1000 {
        return text.to_owned();
    }
    match status {
        StatusCode::METHOD_NOT_ALLOWED => "this method is not allowed on this route".to_owned(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long".to_owned(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_owned(),
        StatusCode::URI_TOO_LONG => "the request URI is too long".to_owned(),
        other => other.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}

/// Longest request URI answered (414 beyond). hyper itself refuses URIs over 64 KiB with an
/// empty 414 before any layer sees the request; this shorter limit makes every 414 a client can
/// realistically get come in the API's shape.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// The layer that makes every error the API sends `{"error": {"code", "message"}}`: an error
/// response (4xx, 5xx) that is not JSON already (axum's 405 and rejections, tower-http's 413
/// and 408) gets the API's body, its status and headers kept (`Allow` of a 405). The console
/// (`/console`) answers HTML error pages of its own and is left alone.
pub async fn json_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    let console = path == "/console" || path.starts_with("/console/");
    if !console && request.uri().to_string().len() > MAX_URI_BYTES {
        return error_response(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request URI is longer than {MAX_URI_BYTES} bytes"),
        );
    }
    let response = next.run(request).await;
    let status = response.status();
    if console || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let rewritten = error_response(status, code_of(status), message_of(status, &body));
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    parts.headers.remove(axum::http::header::CONTENT_TYPE);
    let (new_parts, new_body) = rewritten.into_parts();
    parts.headers.extend(new_parts.headers);
    Response::from_parts(parts, new_body)
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

impl From<MultipartError> for ApiError {
    fn from(err: MultipartError) -> Self {
        let message = err.body_text();
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::PayloadTooLarge(message)
        } else {
            Self::BadRequest(message)
        }
    }
}

/// `axum::Json` whose rejections answer in the API's error format.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path` whose rejections answer in the API's error format.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` whose rejections answer in the API's error format.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
