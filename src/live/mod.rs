//! Live reference feeds: a rights holder's broadcast hashed as it airs, so re-streams trailing
//! it by seconds are caught while the event is still on.
//!
//! - [`store`]: the `live_feeds` row of a live reference: URL, event window, the ingest lease
//!   (exactly one process ingests a feed; another takes over when the holder stops renewing)
//!   and the counters the API shows.
//! - [`ingest`]: [`ingest::LiveService`], run by every process: it claims feeds whose lease is
//!   free, opens them with FFmpeg (RTMP, SRT, UDP MPEG-TS, HLS, or a file paced in real time),
//!   hashes frames densely with wall-clock times like reference frames (and samples one frame
//!   a second for local features, the geometric tier), reconnects with backoff, ends the feed
//!   at `ends_at` and archives it (both tiers) on request.
//! - The frames themselves go into the process's one recognition library
//!   ([`crate::recognition::Library::insert_live`]): a feed is a time-windowed source of it,
//!   searched by wall-clock alignment ([`crate::recognition::LiveQuery`]).
//! - [`fanout`]: with RabbitMQ, frames reach every process's library through a fanout
//!   exchange; embedded, the ingest writes the in-process library directly.

pub mod fanout;
pub mod ingest;
#[cfg(test)]
mod library_tests;
pub mod store;

use std::path::Path;

pub use ingest::{IngestOptions, LiveBatch, LiveService};

use crate::net::OutboundPolicy;
use crate::net::ffmpeg::FeedUrlError;

/// Default retention of live frames: two hours.
pub const DEFAULT_RETENTION_SECONDS: i64 = 2 * 60 * 60;
/// Longest accepted retention: seven days.
pub const MAX_RETENTION_SECONDS: i64 = 7 * 24 * 60 * 60;

/// Why a live feed URL was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LiveUrlError {
    /// Not a URL or path at all.
    #[error("invalid live_url: {0}")]
    Invalid(String),
    /// A local file while the configuration does not allow private inputs.
    #[error("file inputs are only accepted with allow_private_urls")]
    FileNotAllowed,
    /// A local file that does not exist.
    #[error("no such file: {0}")]
    NoSuchFile(String),
    /// A scheme a feed may not use, or a host that is (or resolves to) an address the
    /// outbound policy refuses, or does not resolve.
    #[error("live_url: {0}")]
    Network(#[from] FeedUrlError),
}

/// What kind of input a checked URL is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveInput {
    /// A network URL (read at the pace the sender sends).
    Url(String),
    /// A local file, replayed in real time.
    File(String),
}

impl LiveInput {
    /// The string as stored.
    pub fn as_str(&self) -> &str {
        match self {
            LiveInput::Url(s) | LiveInput::File(s) => s,
        }
    }

    /// Classifies a stored URL. This says what it is, not whether it may be opened: the
    /// ingest checks it against the outbound policy again before every connection
    /// ([`crate::net::ffmpeg::confine`]).
    pub fn classify(raw: &str) -> Self {
        if let Some(path) = raw.strip_prefix("file://") {
            LiveInput::File(path.to_owned())
        } else if raw.contains("://") {
            LiveInput::Url(raw.to_owned())
        } else {
            LiveInput::File(raw.to_owned())
        }
    }
}

/// Checks a live feed URL at registration: a feed scheme
/// ([`crate::net::ffmpeg::SCHEMES`]) and a host whose addresses `policy` allows
/// ([`crate::net::ffmpeg::check`]). Local files are private by nature and accepted only when
/// the policy allows every address.
///
/// # Errors
/// The reason the URL is refused.
pub async fn check_live_url(raw: &str, policy: &OutboundPolicy) -> Result<LiveInput, LiveUrlError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 2048 {
        return Err(LiveUrlError::Invalid("must be 1 to 2048 characters".to_owned()));
    }
    match LiveInput::classify(raw) {
        LiveInput::File(path) => {
            if !policy.allows_all() {
                return Err(LiveUrlError::FileNotAllowed);
            }
            if !Path::new(&path).is_file() {
                return Err(LiveUrlError::NoSuchFile(path));
            }
            Ok(LiveInput::File(path))
        }
        LiveInput::Url(url) => {
            crate::net::ffmpeg::check(&url, policy).await?;
            Ok(LiveInput::Url(url))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::OutboundError;

    fn refused(result: &Result<LiveInput, LiveUrlError>) -> bool {
        matches!(
            result,
            Err(LiveUrlError::Network(FeedUrlError::Outbound(OutboundError::Refused { .. })))
        )
    }

    #[tokio::test]
    async fn live_urls_need_a_streaming_scheme_and_a_public_address() {
        let strict = OutboundPolicy::public_only();
        assert!(refused(&check_live_url("rtmp://203.0.113.9/live/match", &strict).await));
        assert_eq!(
            check_live_url("rtmp://8.8.8.8/live/match", &strict).await,
            Ok(LiveInput::Url("rtmp://8.8.8.8/live/match".to_owned()))
        );
        assert!(refused(&check_live_url("udp://127.0.0.1:5000", &strict).await));
        assert!(refused(&check_live_url("http://[::127.0.0.1]/live.m3u8", &strict).await));
        assert!(refused(&check_live_url("srt://[2002:7f00:1::]:9000", &strict).await));
        assert!(matches!(
            check_live_url("gopher://8.8.8.8/x", &strict).await,
            Err(LiveUrlError::Network(FeedUrlError::Scheme(s))) if s == "gopher"
        ));
        assert_eq!(
            check_live_url("/etc/hostname", &strict).await,
            Err(LiveUrlError::FileNotAllowed)
        );
    }

    #[tokio::test]
    async fn private_addresses_and_existing_files_are_accepted_when_allowed() {
        let all = OutboundPolicy::allow_all();
        assert!(check_live_url("udp://127.0.0.1:5000", &all).await.is_ok());
        assert!(check_live_url("srt://10.0.0.5:9000?mode=caller", &all).await.is_ok());
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().to_string_lossy().into_owned();
        assert_eq!(check_live_url(&path, &all).await, Ok(LiveInput::File(path.clone())));
        assert!(matches!(
            check_live_url("/no/such/feed.mp4", &all).await,
            Err(LiveUrlError::NoSuchFile(_))
        ));
        // Allowed networks are not "everything": files stay refused.
        let loopback = OutboundPolicy::with_allowed(["127.0.0.0/8".parse().unwrap()]);
        assert!(check_live_url("udp://127.0.0.1:5000", &loopback).await.is_ok());
        assert!(refused(&check_live_url("udp://10.0.0.1:5000", &loopback).await));
        assert_eq!(check_live_url(&path, &loopback).await, Err(LiveUrlError::FileNotAllowed));
    }
}
