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
//! - [`index`]: [`index::LiveLibrary`], the per-process index of recent live frames (PDQ hashes
//!   and feature frames) that the worker's lookup searches by wall-clock alignment.
//! - [`fanout`]: with RabbitMQ, frames reach every process's live library through a fanout
//!   exchange; embedded, the ingest writes the in-process library directly.

pub mod fanout;
pub mod index;
pub mod ingest;
pub mod store;

use std::net::IpAddr;
use std::path::Path;

pub use index::{LiveFrame, LiveLibrary, LiveWindow, SharedLiveLibrary};
pub use ingest::{IngestOptions, LiveService};

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
    /// A scheme FFmpeg would open but a feed should not use (or an unknown one).
    #[error("live_url scheme {0:?} is not supported (use rtmp, rtmps, srt, udp, http or https)")]
    Scheme(String),
    /// A local file while the configuration does not allow private inputs.
    #[error("file inputs are only accepted with allow_private_urls")]
    FileNotAllowed,
    /// A local file that does not exist.
    #[error("no such file: {0}")]
    NoSuchFile(String),
    /// The host is (or resolves to) a loopback, private or otherwise non-public address.
    #[error("the address {0} is not public (set allow_private_urls to allow it)")]
    Private(String),
    /// The host name does not resolve.
    #[error("cannot resolve {0}")]
    Unresolvable(String),
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
    /// The string FFmpeg opens.
    pub fn as_str(&self) -> &str {
        match self {
            LiveInput::Url(s) | LiveInput::File(s) => s,
        }
    }

    /// Classifies a stored URL (already checked when it was registered).
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

const SCHEMES: &[(&str, u16)] =
    &[("rtmp", 1935), ("rtmps", 443), ("srt", 9000), ("udp", 1234), ("http", 80), ("https", 443)];

/// Checks a live feed URL: a supported scheme, and (unless `allow_private`) a public address,
/// by the same rule as outbound webhooks ([`crate::enforce::webhook::is_public`]); a host name
/// must resolve to public addresses only. Local files are private by nature and accepted only
/// with `allow_private`.
///
/// # Errors
/// The reason the URL is refused.
pub async fn check_live_url(raw: &str, allow_private: bool) -> Result<LiveInput, LiveUrlError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 2048 {
        return Err(LiveUrlError::Invalid("must be 1 to 2048 characters".to_owned()));
    }
    if let LiveInput::File(path) = LiveInput::classify(raw) {
        if !allow_private {
            return Err(LiveUrlError::FileNotAllowed);
        }
        if !Path::new(&path).is_file() {
            return Err(LiveUrlError::NoSuchFile(path));
        }
        return Ok(LiveInput::File(path));
    }
    let url = url::Url::parse(raw).map_err(|e| LiveUrlError::Invalid(e.to_string()))?;
    let Some(&(_, default_port)) = SCHEMES.iter().find(|(s, _)| *s == url.scheme()) else {
        return Err(LiveUrlError::Scheme(url.scheme().to_owned()));
    };
    if allow_private {
        return Ok(LiveInput::Url(raw.to_owned()));
    }
    let port = url.port().unwrap_or(default_port);
    let addresses: Vec<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(v4)) => vec![IpAddr::V4(v4)],
        Some(url::Host::Ipv6(v6)) => vec![IpAddr::V6(v6)],
        Some(url::Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|_| LiveUrlError::Unresolvable(name.to_owned()))?
            .map(|a| a.ip())
            .collect(),
        // `udp://:1234` listens on every local interface: a private input.
        None => return Err(LiveUrlError::Private("(any local interface)".to_owned())),
    };
    if addresses.is_empty() {
        return Err(LiveUrlError::Unresolvable(url.host_str().unwrap_or_default().to_owned()));
    }
    if let Some(ip) = addresses.iter().find(|ip| !crate::enforce::webhook::is_public(**ip)) {
        return Err(LiveUrlError::Private(ip.to_string()));
    }
    Ok(LiveInput::Url(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_urls_need_a_streaming_scheme_and_a_public_address() {
        assert!(matches!(
            check_live_url("rtmp://203.0.113.9/live/match", false).await,
            Err(LiveUrlError::Private(_))
        ));
        assert_eq!(
            check_live_url("rtmp://8.8.8.8/live/match", false).await,
            Ok(LiveInput::Url("rtmp://8.8.8.8/live/match".to_owned()))
        );
        assert!(matches!(
            check_live_url("udp://127.0.0.1:5000", false).await,
            Err(LiveUrlError::Private(ip)) if ip == "127.0.0.1"
        ));
        assert!(matches!(
            check_live_url("gopher://8.8.8.8/x", false).await,
            Err(LiveUrlError::Scheme(s)) if s == "gopher"
        ));
        assert_eq!(check_live_url("/etc/hostname", false).await, Err(LiveUrlError::FileNotAllowed));
    }

    #[tokio::test]
    async fn private_addresses_and_existing_files_are_accepted_when_allowed() {
        assert!(check_live_url("udp://127.0.0.1:5000", true).await.is_ok());
        assert!(check_live_url("srt://10.0.0.5:9000?mode=caller", true).await.is_ok());
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().to_string_lossy().into_owned();
        assert_eq!(check_live_url(&path, true).await, Ok(LiveInput::File(path.clone())));
        assert!(matches!(
            check_live_url("/no/such/feed.mp4", true).await,
            Err(LiveUrlError::NoSuchFile(_))
        ));
    }
}
