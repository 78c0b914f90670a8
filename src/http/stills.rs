//! How a still (a JPEG of evidence) is answered: its content type, and cache headers that let
//! the reviewer's browser keep it (a still never changes) without letting shared caches hold a
//! picture that only some callers may see.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::response::{IntoResponse, Response};

/// A still as an HTTP response.
pub fn jpeg_response(jpeg: Vec<u8>) -> Response {
    (
        [
            (CONTENT_TYPE, "image/jpeg"),
            (CACHE_CONTROL, "private, max-age=86400, immutable"),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        jpeg,
    )
        .into_response()
}
