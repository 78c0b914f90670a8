//! Takedown webhooks: the signed event JSON of the contract, the outbound URL rules and the
//! HTTP client that delivers them.
//!
//! Signature (contract): header `Offside-Signature: t=UNIX,v1=HEX(HMAC-SHA256(secret, "{t}.{body}"))`.
//! The timestamp is inside the signed text so a receiver can refuse replays of old deliveries.
//!
//! Outbound URLs (SSRF): only `http` and `https`; literal IPs are checked when the URL is
//! registered, and host names are checked at every connection by a DNS resolver that drops
//! loopback, private, link-local, unique-local and unspecified addresses. Checking in the
//! resolver rather than once at registration closes DNS rebinding (a name that resolved to a
//! public address at registration and to 127.0.0.1 later). Redirects are not followed at all: a
//! takedown receiver has no reason to redirect, and a redirect is the other classic way round
//! an address check.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Offside-Signature";

/// The event types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub enum EventType {
    /// A stream was flagged for review.
    #[serde(rename = "stream.flagged")]
    StreamFlagged,
    /// A stream was killed (by policy, by confirming a case, or by hand).
    #[serde(rename = "stream.killed")]
    StreamKilled,
    /// A killed or flagged stream was restored.
    #[serde(rename = "stream.restored")]
    StreamRestored,
    /// A case was opened for review.
    #[serde(rename = "case.created")]
    CaseCreated,
}

impl EventType {
    /// Every event type.
    pub const ALL: [EventType; 4] = [
        EventType::StreamFlagged,
        EventType::StreamKilled,
        EventType::StreamRestored,
        EventType::CaseCreated,
    ];

    /// The contract's name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::StreamFlagged => "stream.flagged",
            EventType::StreamKilled => "stream.killed",
            EventType::StreamRestored => "stream.restored",
            EventType::CaseCreated => "case.created",
        }
    }

    /// Parses the contract's name.
    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|e| e.as_str() == s)
    }
}

/// One event, serialised as the webhook body `{id, type, created_at, created_at_ms, data}`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Event {
    /// Unique id; receivers deduplicate on it (delivery is at-least-once).
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// RFC 3339 UTC time the event was decided (kept for receivers written against it).
    pub created_at: String,
    /// The same time in milliseconds since the Unix epoch, the API's canonical time form.
    #[serde(default)]
    pub created_at_ms: i64,
    /// Event-specific data (stream, reference, case, evidence summary).
    pub data: serde_json::Value,
}

impl Event {
    /// A new event with a fresh id (UUID v7: time-ordered) created now.
    pub fn new(kind: EventType, data: serde_json::Value) -> Self {
        let now = time::OffsetDateTime::now_utc();
        let created_at =
            now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let created_at_ms = i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        Event { id: uuid::Uuid::now_v7().to_string(), kind, created_at, created_at_ms, data }
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], t: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `Offside-Signature` header value for `body` signed at Unix time `t`.
pub fn sign(secret: &[u8], t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hex::encode(mac(secret, t, body).finalize().into_bytes()))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=..,v1=..`.
    #[error("malformed signature header")]
    Malformed,
    /// The timestamp is further than the tolerance from now.
    #[error("signature timestamp outside the tolerance")]
    Stale,
    /// No `v1` value matches.
    #[error("signature mismatch")]
    Mismatch,
}

/// Checks a signature header as a receiver should: constant-time comparison, timestamp within
/// `tolerance_s` of `now`. Several `v1=` values are accepted (secret rotation).
///
/// # Errors
/// [`SignatureError`] saying why the header is refused.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut sigs = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => sigs.push(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if sigs.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - t).abs() > tolerance_s {
        return Err(SignatureError::Stale);
    }
    if sigs.iter().any(|s| mac(secret, t, body).verify_slice(s).is_ok()) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Why an outbound URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not a URL.
    #[error("invalid URL: {0}")]
    Invalid(String),
    /// Scheme other than http or https.
    #[error("only http and https URLs are allowed")]
    Scheme,
    /// No host.
    #[error("the URL has no host")]
    NoHost,
    /// User name or password in the URL.
    #[error("credentials in the URL are not allowed")]
    Credentials,
    /// The address is loopback, private, link-local, unique-local or unspecified.
    #[error("the address {0} is not public (set allow_private_urls to allow it)")]
    PrivateAddress(IpAddr),
    /// The host name did not resolve to any allowed address.
    #[error("the host {0} does not resolve to a public address")]
    Unresolvable(String),
}

/// Whether an address may be reached without `allow_private_urls`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (seg[0] & 0xffc0) == 0xfe80 // link local fe80::/10
                || (seg[0] & 0xffc0) == 0xfec0 // site local (deprecated) fec0::/10
                || (seg[0] == 0x64 && seg[1] == 0xff9b) // NAT64 may map onto private v4
                || (seg[0] == 0x2001 && seg[1] == 0xdb8)) // documentation
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // carrier-grade NAT 100.64/10
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240) // reserved
}

/// Checks what can be checked without DNS: scheme, host, credentials, literal addresses.
///
/// # Errors
/// [`UrlError`] naming the rule broken.
pub fn check_url(raw: &str, allow_private: bool) -> Result<url::Url, UrlError> {
    let url = url::Url::parse(raw).map_err(|e| UrlError::Invalid(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(UrlError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let ip = match url.host() {
        None => return Err(UrlError::NoHost),
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = ip
        && !allow_private
        && !is_public(ip)
    {
        return Err(UrlError::PrivateAddress(ip));
    }
    Ok(url)
}

/// [`check_url`] plus resolution of the host: refuses a name whose addresses are all private.
///
/// # Errors
/// [`UrlError`] naming the rule broken.
pub async fn check_url_resolved(raw: &str, allow_private: bool) -> Result<url::Url, UrlError> {
    let url = check_url(raw, allow_private)?;
    if let Some(url::Host::Domain(host)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs = resolve(host, port, allow_private)
            .await
            .map_err(|_| UrlError::Unresolvable(host.to_owned()))?;
        if addrs.is_empty() {
            return Err(UrlError::Unresolvable(host.to_owned()));
        }
    }
    Ok(url)
}

async fn resolve(host: &str, port: u16, allow_private: bool) -> std::io::Result<Vec<SocketAddr>> {
    let addrs = tokio::net::lookup_host((host, port)).await?;
    Ok(addrs.filter(|a| allow_private || is_public(a.ip())).collect())
}

/// A DNS resolver for reqwest that drops non-public addresses (unless allowed), so every
/// connection the client makes is checked, not only the URL at registration.
#[derive(Debug, Clone, Copy)]
struct PublicOnlyResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve(&host, 0, allow_private).await?;
            if addrs.is_empty() {
                return Err(Box::new(UrlError::Unresolvable(host))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// What one delivery attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx: delivered.
    Delivered(u16),
    /// Any other status: retry later.
    Rejected(u16),
    /// No response (connection, timeout, refused address): retry later.
    Failed(String),
}

impl AttemptOutcome {
    /// Whether the receiver took it.
    pub fn is_delivered(&self) -> bool {
        matches!(self, AttemptOutcome::Delivered(_))
    }

    /// The HTTP status, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            AttemptOutcome::Delivered(s) | AttemptOutcome::Rejected(s) => Some(*s),
            AttemptOutcome::Failed(_) => None,
        }
    }
}

/// Sends signed events.
#[derive(Debug, Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    allow_private: bool,
}

impl WebhookClient {
    /// A client with a per-request `timeout`. With `allow_private` false, loopback and private
    /// addresses are unreachable whatever the URL says.
    ///
    /// # Errors
    /// The TLS backend could not be initialised.
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(PublicOnlyResolver { allow_private })
            .user_agent(concat!("offside/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookClient { http, allow_private })
    }

    /// POSTs `body` (the event JSON) to `url`, signed with `secret` at time `now_unix`.
    pub async fn deliver(
        &self,
        url: &str,
        secret: &[u8],
        body: &[u8],
        now_unix: i64,
    ) -> AttemptOutcome {
        if let Err(e) = check_url(url, self.allow_private) {
            return AttemptOutcome::Failed(e.to_string());
        }
        let result = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, sign(secret, now_unix, body))
            .body(body.to_vec())
            .send()
            .await;
        match result {
            Ok(resp) if resp.status().is_success() => {
                AttemptOutcome::Delivered(resp.status().as_u16())
            }
            Ok(resp) => AttemptOutcome::Rejected(resp.status().as_u16()),
            Err(e) => AttemptOutcome::Failed(error_chain(&e)),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_an_independent_hmac_of_timestamp_dot_body() {
        // HMAC-SHA256(key="secret", "1700000000.{}") computed with openssl:
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac secret
        let header = sign(b"secret", 1_700_000_000, b"{}");
        assert_eq!(
            header,
            "t=1700000000,v1=b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }

    #[test]
    fn a_receiver_accepts_a_fresh_signature_and_refuses_tampering() {
        let body = br#"{"id":"1","type":"stream.killed"}"#;
        let header = sign(b"k", 1000, body);
        assert_eq!(verify(b"k", &header, body, 1010, 300), Ok(()));
        assert_eq!(verify(b"other", &header, body, 1010, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"k", &header, b"{}", 1010, 300), Err(SignatureError::Mismatch));
        assert_eq!(verify(b"k", &header, body, 2000, 300), Err(SignatureError::Stale));
        assert_eq!(verify(b"k", "v1=00", body, 1000, 300), Err(SignatureError::Malformed));
    }

    #[test]
    fn event_serialises_with_the_contract_field_names() {
        let e = Event::new(EventType::StreamKilled, serde_json::json!({"stream_id": "s1"}));
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "stream.killed");
        assert_eq!(v["data"]["stream_id"], "s1");
        assert!(v["id"].as_str().is_some_and(|s| s.len() == 36));
        assert!(
            time::OffsetDateTime::parse(
                v["created_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339
            )
            .is_ok()
        );
        // Both forms of the time, and they agree to the millisecond.
        let rfc3339 = time::OffsetDateTime::parse(
            v["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(
            i64::try_from(rfc3339.unix_timestamp_nanos() / 1_000_000).unwrap(),
            v["created_at_ms"].as_i64().unwrap()
        );
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 5);
    }

    #[test]
    fn only_http_and_https_urls_are_accepted() {
        assert_eq!(check_url("ftp://example.com/x", false), Err(UrlError::Scheme));
        assert_eq!(check_url("file:///etc/passwd", false), Err(UrlError::Scheme));
        assert_eq!(check_url("https://user:pw@example.com/", false), Err(UrlError::Credentials));
        assert!(check_url("https://example.com/hook", false).is_ok());
        assert!(check_url("http://93.184.216.34:8080/hook", false).is_ok());
    }

    #[test]
    fn private_and_loopback_literals_are_refused_unless_allowed() {
        for u in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(
                matches!(check_url(u, false), Err(UrlError::PrivateAddress(_))),
                "{u} was accepted"
            );
            assert!(check_url(u, true).is_ok(), "{u} refused even when private URLs are allowed");
        }
        assert!(check_url("http://[2606:4700::1111]/", false).is_ok());
    }

    #[tokio::test]
    async fn a_host_name_resolving_to_loopback_is_refused_unless_allowed() {
        assert_eq!(
            check_url_resolved("http://localhost:9/", false).await,
            Err(UrlError::Unresolvable("localhost".into()))
        );
        assert!(check_url_resolved("http://localhost:9/", true).await.is_ok());
    }

    #[tokio::test]
    async fn the_client_cannot_reach_loopback_by_name_without_permission() {
        let client = WebhookClient::new(Duration::from_secs(2), false).unwrap();
        let outcome = client.deliver("http://localhost:9/hook", b"k", b"{}", 0).await;
        assert!(
            matches!(outcome, AttemptOutcome::Failed(ref m) if m.contains("public")),
            "{outcome:?}"
        );
    }
}
