//! The crate's error type.

use std::fmt;

/// What went wrong, coarsely; match on this to decide how to react.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The bytes are not a well-formed image of a supported format (corrupt or truncated).
    Corrupt,
    /// The bytes are a format this crate does not decode.
    Unsupported,
    /// The image exceeds the configured dimension or pixel limits (decompression bomb guard).
    TooLarge,
    /// An argument is outside its documented domain (for example an empty image or bad hex).
    InvalidInput,
}

/// The error returned by every fallible function of this crate.
///
/// It carries a [`ErrorKind`] and a human-readable message meant for logs and API clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    /// Builds an error of `kind` with a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
