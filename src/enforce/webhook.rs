//! Takedown webhooks: the signed event JSON of the contract, the outbound URL rules and the
//! HTTP client that delivers them.
//!
//! Signature (contract): header `Offside-Signature: t=UNIX,v1=HEX(HMAC-SHA256(secret, "{t}.{body}"))`.
//! The timestamp is inside the signed text so a receiver can refuse replays of old deliveries.
//!
//! Outbound URLs (SSRF): only `http` and `https`, judged by the one address policy
//! ([`crate::net::OutboundPolicy`]). Literal addresses are checked when the URL is registered
//! and before every delivery; host names are resolved at every connection by a DNS resolver
//! that hands the client only the addresses the policy allows, so the connection goes to an
//! address that was checked (a name that resolved to a public address at registration and to
//! 127.0.0.1 later, DNS rebinding, gets nowhere). Redirects are not followed at all: a
//! takedown receiver has no reason to redirect, and a redirect is the other classic way round
//! an address check. Proxies from the environment are ignored: through a proxy, the resolver
//! would check the proxy's address instead of the receiver's.

use std::sync::Arc;
use std::time::Duration;

use crate::net::{OutboundError, OutboundPolicy};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Offside-Signature";

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
    /// The address is one the outbound policy refuses, or the name resolves only to such
    /// addresses, or does not resolve.
    #[error(transparent)]
    Outbound(#[from] OutboundError),
}

/// Checks what can be checked without DNS: scheme, host, credentials, literal addresses
/// (every IPv6 spelling of an IPv4 address included: `http://[::127.0.0.1]/` is refused).
///
/// # Errors
/// [`UrlError`] naming the rule broken.
pub fn check_url(raw: &str, policy: &OutboundPolicy) -> Result<url::Url, UrlError> {
    let url = url::Url::parse(raw).map_err(|e| UrlError::Invalid(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(UrlError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    let ip = match url.host() {
        None => return Err(UrlError::NoHost),
        Some(url::Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = ip {
        policy.check(ip).map_err(|refused| OutboundError::Refused {
            host: url.host_str().unwrap_or_default().to_owned(),
            refused,
        })?;
    }
    Ok(url)
}

/// [`check_url`] plus resolution of the host: refuses a name none of whose addresses the
/// policy allows.
///
/// # Errors
/// [`UrlError`] naming the rule broken.
pub async fn check_url_resolved(raw: &str, policy: &OutboundPolicy) -> Result<url::Url, UrlError> {
    let url = check_url(raw, policy)?;
    if let Some(url::Host::Domain(host)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(80);
        policy.resolve(host, port).await?;
    }
    Ok(url)
}

/// A DNS resolver for reqwest that returns only the addresses the policy allows, so every
/// connection the client makes goes to a checked address, not only the URL at registration.
#[derive(Debug, Clone)]
struct PolicyResolver {
    policy: Arc<OutboundPolicy>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = policy
                .resolve(&host, 0)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
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
    policy: Arc<OutboundPolicy>,
}

impl WebhookClient {
    /// A client with a per-request `timeout` that reaches only the addresses `policy` allows,
    /// whatever the URL says.
    ///
    /// # Errors
    /// The TLS backend could not be initialised.
    pub fn new(timeout: Duration, policy: OutboundPolicy) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(PolicyResolver { policy: Arc::clone(&policy) })
            .user_agent(concat!("offside/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookClient { http, policy })
    }

    /// POSTs `body` (the event JSON) to `url`, signed with `secret` at time `now_unix`.
    pub async fn deliver(
        &self,
        url: &str,
        secret: &[u8],
        body: &[u8],
        now_unix: i64,
    ) -> AttemptOutcome {
        if let Err(e) = check_url(url, &self.policy) {
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
    fn only_http_and_https_urls_are_accepted() {
        let policy = OutboundPolicy::public_only();
        assert_eq!(check_url("ftp://example.com/x", &policy), Err(UrlError::Scheme));
        assert_eq!(check_url("file:///etc/passwd", &policy), Err(UrlError::Scheme));
        assert_eq!(check_url("https://user:pw@example.com/", &policy), Err(UrlError::Credentials));
        assert!(check_url("https://example.com/hook", &policy).is_ok());
        assert!(check_url("http://93.184.216.34:8080/hook", &policy).is_ok());
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
            "http://[::127.0.0.1]/",
            "http://[2002:7f00:1::]/",
        ] {
            assert!(
                matches!(
                    check_url(u, &OutboundPolicy::public_only()),
                    Err(UrlError::Outbound(OutboundError::Refused { .. }))
                ),
                "{u} was accepted"
            );
            assert!(
                check_url(u, &OutboundPolicy::allow_all()).is_ok(),
                "{u} refused even when private URLs are allowed"
            );
        }
        assert!(check_url("http://[2606:4700::1111]/", &OutboundPolicy::public_only()).is_ok());
    }

    #[tokio::test]
    async fn a_host_name_resolving_to_loopback_is_refused_unless_allowed() {
        assert!(matches!(
            check_url_resolved("http://localhost:9/", &OutboundPolicy::public_only()).await,
            Err(UrlError::Outbound(OutboundError::Refused { .. }))
        ));
        assert!(
            check_url_resolved("http://localhost:9/", &OutboundPolicy::allow_all()).await.is_ok()
        );
    }

    #[tokio::test]
    async fn the_client_cannot_reach_loopback_by_name_without_permission() {
        let client =
            WebhookClient::new(Duration::from_secs(2), OutboundPolicy::public_only()).unwrap();
        let outcome = client.deliver("http://localhost:9/hook", b"k", b"{}", 0).await;
        assert!(
            matches!(outcome, AttemptOutcome::Failed(ref m) if m.contains("loopback")),
            "{outcome:?}"
        );
    }
}
