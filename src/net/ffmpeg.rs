//! How a network feed is handed to FFmpeg so that it connects only where the
//! [`OutboundPolicy`] allows.
//!
//! FFmpeg left to itself resolves names again, follows redirects, fetches whatever URLs an HLS
//! playlist lists, and opens any protocol it was built with. Each feed is therefore opened
//! with three restrictions:
//!
//! - **Protocols** (`protocol_whitelist`, inherited by every nested open): only what the
//!   feed's scheme needs ([`Scheme::protocols`]). Never `file` (a playlist naming
//!   `file:///…` segments), `data`, `pipe`, `subfile`, `concat`, `rtp`/`rtsp` or `tee`.
//! - **Formats** (`format_whitelist`, also inherited): the containers feeds come in
//!   ([`FEED_FORMATS`]). `http` needs `tcp` in the protocol list, and a demuxer that opens
//!   URLs of its own (`imf`, `concat`) could name a `tcp://` URL; the demuxers kept here open
//!   nothing but HLS's own HTTP fetches.
//! - **Addresses**: HTTP and HTTPS go through a [`CheckingProxy`] (FFmpeg's `http_proxy`),
//!   which resolves and checks every playlist, segment, key and redirect target when FFmpeg
//!   connects to it. RTMP, SRT and UDP make one connection (or bind) to the URL's host, and
//!   none of them redirects (RTMP's reconnect is only for authentication, to the same host):
//!   the host is resolved here, checked, and FFmpeg gets the checked address literal, so it
//!   has nothing to resolve. (RTMP servers then see the address in `tcUrl`; RTMPS connects
//!   without SNI, and FFmpeg does not verify certificates by default anyway.)

use std::net::{IpAddr, SocketAddr};

use super::outbound::{OutboundError, OutboundPolicy};
use super::proxy::CheckingProxy;

/// A URL scheme a feed may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheme {
    /// The scheme.
    pub name: &'static str,
    /// The port when the URL names none.
    pub default_port: u16,
    /// FFmpeg's `protocol_whitelist` for it. HTTP(S): `http` to the proxy over `tcp`, `tls`
    /// and `httpproxy` (CONNECT) for HTTPS, `crypto` for AES-128 HLS segments (it wraps an
    /// `http` open, which goes through the proxy too).
    pub protocols: &'static str,
}

/// The schemes a live feed may use.
pub const SCHEMES: &[Scheme] = &[
    Scheme { name: "rtmp", default_port: 1935, protocols: "rtmp,tcp" },
    Scheme { name: "rtmps", default_port: 443, protocols: "rtmps,tls,tcp" },
    Scheme { name: "srt", default_port: 9000, protocols: "srt" },
    Scheme { name: "udp", default_port: 1234, protocols: "udp" },
    Scheme { name: "http", default_port: 80, protocols: HTTP_PROTOCOLS },
    Scheme { name: "https", default_port: 443, protocols: HTTP_PROTOCOLS },
];

const HTTP_PROTOCOLS: &str = "http,https,tls,tcp,httpproxy,crypto";

/// FFmpeg's `format_whitelist` for feeds: HLS and the containers its segments and the other
/// protocols carry (MPEG-TS, FLV, fragmented MP4, Matroska/WebM), audio-only renditions and
/// subtitles that an HLS master playlist may list, and raw H.264/HEVC.
pub const FEED_FORMATS: &str =
    "hls,mpegts,flv,live_flv,mov,matroska,aac,mp3,ac3,eac3,webvtt,h264,hevc";

/// Why a feed URL cannot be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedUrlError {
    /// Not a URL.
    #[error("invalid URL: {0}")]
    Invalid(String),
    /// A scheme FFmpeg would open but a feed should not use (or an unknown one).
    #[error("scheme {0:?} is not supported (use rtmp, rtmps, srt, udp, http or https)")]
    Scheme(String),
    /// No host: `udp://:1234` listens on every local interface, a private input.
    #[error("the URL has no host (it would listen on every local interface)")]
    NoHost,
    /// User name or password in an HTTP URL (FFmpeg would send them to whatever host it is
    /// redirected to).
    #[error("credentials in http(s) URLs are not accepted")]
    Credentials,
    /// The host is, or resolves to, an address the policy refuses, or does not resolve.
    #[error(transparent)]
    Outbound(#[from] OutboundError),
    /// `no_proxy` would make FFmpeg bypass the checking proxy.
    #[error(
        "the no_proxy environment variable is set: FFmpeg would connect to the hosts it lists directly, past the outbound address check; unset it for this service"
    )]
    NoProxyBypass,
    /// The proxy could not start.
    #[error("cannot start the outbound proxy: {0}")]
    Proxy(String),
}

/// A feed URL whose scheme is allowed and whose host passed the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedUrl {
    url: url::Url,
    scheme: Scheme,
    /// The checked address FFmpeg connects to (not for HTTP(S): the proxy checks each
    /// connection). `None` also when the URL has no host and the policy allows everything.
    address: Option<SocketAddr>,
}

impl CheckedUrl {
    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }
}

/// Checks a feed URL: an allowed scheme, and a host whose addresses pass `policy` (resolved
/// now: call it again before each connection, never trust an earlier answer).
///
/// # Errors
/// [`FeedUrlError`] naming the rule broken.
pub async fn check(raw: &str, policy: &OutboundPolicy) -> Result<CheckedUrl, FeedUrlError> {
    let url = url::Url::parse(raw).map_err(|e| FeedUrlError::Invalid(e.to_string()))?;
    let scheme = *SCHEMES
        .iter()
        .find(|s| s.name == url.scheme())
        .ok_or_else(|| FeedUrlError::Scheme(url.scheme().to_owned()))?;
    let is_http = scheme.protocols == HTTP_PROTOCOLS;
    if is_http && (!url.username().is_empty() || url.password().is_some()) {
        return Err(FeedUrlError::Credentials);
    }
    // rtmp, srt and udp are not "special" schemes to the URL parser: their IPv4 hosts come
    // back as names, which the resolver reads as the address they spell.
    let host = match url.host() {
        Some(url::Host::Domain(name)) if !name.is_empty() => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        _ if policy.allows_all() && !is_http => {
            return Ok(CheckedUrl { url, scheme, address: None });
        }
        _ => return Err(FeedUrlError::NoHost),
    };
    let port = url.port().unwrap_or(scheme.default_port);
    let addresses = policy.resolve(&host, port).await?;
    let address = if is_http { None } else { addresses.first().copied() };
    Ok(CheckedUrl { url, scheme, address })
}

/// What FFmpeg opens for a feed, and what confines it there.
#[derive(Debug)]
pub struct FfmpegInput {
    /// The URL FFmpeg opens (with the checked address in place of the host name, except for
    /// HTTP(S)).
    pub url: String,
    /// AVOptions for the input: `protocol_whitelist`, `format_whitelist`, `http_proxy`.
    pub options: Vec<(String, String)>,
    /// The proxy HTTP(S) goes through; it must outlive the FFmpeg input.
    pub proxy: Option<CheckingProxy>,
}

impl FfmpegInput {
    /// The last connection the proxy refused, and why (the usual reason an HLS feed fails).
    pub fn last_refusal(&self) -> Option<String> {
        self.proxy.as_ref().and_then(CheckingProxy::last_refusal)
    }
}

/// Checks `raw` (see [`check`]) and prepares FFmpeg's input: for HTTP(S) it starts the
/// checking proxy that every connection goes through.
///
/// # Errors
/// [`FeedUrlError`] naming the rule broken.
pub async fn confine(raw: &str, policy: &OutboundPolicy) -> Result<FfmpegInput, FeedUrlError> {
    let checked = check(raw, policy).await?;
    let mut options = vec![
        ("protocol_whitelist".to_owned(), checked.scheme.protocols.to_owned()),
        ("format_whitelist".to_owned(), FEED_FORMATS.to_owned()),
    ];
    if checked.scheme.protocols == HTTP_PROTOCOLS {
        if !policy.allows_all() && std::env::var_os("no_proxy").is_some_and(|v| !v.is_empty()) {
            return Err(FeedUrlError::NoProxyBypass);
        }
        let proxy = CheckingProxy::start(policy.clone())
            .await
            .map_err(|e| FeedUrlError::Proxy(e.to_string()))?;
        options.push(("http_proxy".to_owned(), proxy.url()));
        // The proxy closes every upstream connection after one response (see its docs), so
        // HLS's keep-alive reuse would only fail and log before reconnecting.
        options.push(("http_persistent".to_owned(), "0".to_owned()));
        return Ok(FfmpegInput { url: checked.url.to_string(), options, proxy: Some(proxy) });
    }
    let mut url = checked.url;
    if let Some(address) = checked.address {
        set_ip_host(&mut url, address.ip())?;
    }
    Ok(FfmpegInput { url: url.to_string(), options, proxy: None })
}

fn set_ip_host(url: &mut url::Url, ip: IpAddr) -> Result<(), FeedUrlError> {
    url.set_ip_host(ip).map_err(|()| FeedUrlError::Invalid("cannot set the checked address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rtmp_srt_and_udp_get_the_checked_address_and_their_protocols_only() {
        let policy = OutboundPolicy::with_allowed(["127.0.0.0/8".parse().unwrap()]);
        let input = confine("rtmp://localhost/live/match", &policy).await.unwrap();
        assert_eq!(input.url, "rtmp://127.0.0.1/live/match");
        assert!(input.options.contains(&("protocol_whitelist".into(), "rtmp,tcp".into())));
        let input = confine("srt://127.0.0.1:9000?mode=caller", &policy).await.unwrap();
        assert_eq!(input.url, "srt://127.0.0.1:9000?mode=caller");
        assert!(input.options.contains(&("protocol_whitelist".into(), "srt".into())));
        assert!(input.proxy.is_none());
    }

    #[tokio::test]
    async fn http_feeds_go_through_a_proxy_and_never_to_files() {
        let policy = OutboundPolicy::with_allowed(["127.0.0.0/8".parse().unwrap()]);
        let input = confine("http://127.0.0.1:9/live.m3u8", &policy).await.unwrap();
        let proxy = input.proxy.as_ref().unwrap().url();
        assert!(input.options.contains(&("http_proxy".into(), proxy)));
        let protocols = &input.options.iter().find(|(k, _)| k == "protocol_whitelist").unwrap().1;
        assert!(!protocols.split(',').any(|p| p == "file" || p == "data"), "{protocols}");
        assert_eq!(
            confine("file:///etc/passwd", &policy).await.unwrap_err(),
            FeedUrlError::Scheme("file".into())
        );
    }

    #[tokio::test]
    async fn a_feed_url_without_a_host_is_refused() {
        let strict = OutboundPolicy::public_only();
        assert!(check("udp://:1234", &strict).await.is_err());
        assert_eq!(check("udp:///x", &strict).await.unwrap_err(), FeedUrlError::NoHost);
    }
}
