//! [`CheckingProxy`]: a forward HTTP proxy on loopback through which FFmpeg makes every HTTP
//! and HTTPS connection of a feed, so that each one is checked against the
//! [`OutboundPolicy`] at the moment it is made.
//!
//! Why a proxy: an HLS feed is not one connection. FFmpeg fetches the playlist, the variant
//! playlists, every segment and every key, reloads the playlist for as long as the feed runs,
//! follows redirects, and resolves each host name again itself. Checking the URL at
//! registration covers none of that. FFmpeg's `http_proxy` option reaches all of it: the HLS
//! demuxer copies the option into every nested open (its `save_avio_options`), the `crypto`
//! protocol passes its options down to the `http` it wraps, `http` keeps it across redirects
//! and hands it to `tls`, which then tunnels through `httpproxy` (CONNECT). So one mechanism
//! sees every target, by name and port, before any byte leaves: the proxy resolves the name,
//! checks every address, and connects to one that passed (no second resolution anywhere).
//! FFmpeg only ever connects to this proxy on loopback (plain `http` in absolute form, `https`
//! as `CONNECT host:port`).
//!
//! The proxy asks upstream servers to close each connection after one response: a kept-alive
//! connection stays tied to the address it was checked for, whatever FFmpeg sends on it, so
//! this costs a TCP handshake per segment and keeps the code free of HTTP framing.
//!
//! The `no_proxy` environment variable would make FFmpeg bypass any proxy for the hosts it
//! lists; [`crate::net::ffmpeg`] refuses HTTP feeds while it is set.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;

use super::outbound::{OutboundError, OutboundPolicy};

/// Longest request head accepted from FFmpeg.
const MAX_HEAD: usize = 16 * 1024;
/// How long FFmpeg may take to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection attempt upstream may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy; it stops (with every connection through it) when dropped.
#[derive(Debug)]
pub struct CheckingProxy {
    address: SocketAddr,
    refusals: Refusals,
    _task: AbortOnDropHandle<()>,
}

impl CheckingProxy {
    /// Starts a proxy on a free loopback port that lets connections through only to
    /// addresses `policy` allows.
    ///
    /// # Errors
    /// No loopback port could be bound.
    pub async fn start(policy: OutboundPolicy) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let address = listener.local_addr()?;
        let refusals = Refusals::default();
        let task = tokio::spawn(serve(listener, Arc::new(policy), refusals.clone()));
        Ok(Self { address, refusals, _task: AbortOnDropHandle::new(task) })
    }

    /// The value of FFmpeg's `http_proxy` option.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The most recent connection this proxy refused, and why.
    pub fn last_refusal(&self) -> Option<String> {
        self.refusals.last()
    }

    /// Like [`Self::last_refusal`], but once per refusal: `None` until the next one.
    pub fn take_new_refusal(&self) -> Option<String> {
        self.refusals.take_new()
    }

    /// A handle on the proxy's refusals for another thread (the one FFmpeg runs on).
    pub fn refusals(&self) -> Refusals {
        self.refusals.clone()
    }
}

/// The latest connection a proxy refused, shared between the proxy and its readers.
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<Mutex<LastRefusal>>);

#[derive(Debug, Default)]
struct LastRefusal {
    message: Option<String>,
    /// Not yet returned by [`Refusals::take_new`].
    fresh: bool,
}

impl Refusals {
    /// The most recent refusal, and why.
    pub fn last(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).message.clone()
    }

    /// The most recent refusal if it was not taken yet.
    pub fn take_new(&self) -> Option<String> {
        let mut last = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut last.fresh) { last.message.clone() } else { None }
    }

    fn record(&self, message: String) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) =
            LastRefusal { message: Some(message), fresh: true };
    }
}

async fn serve(listener: TcpListener, policy: Arc<OutboundPolicy>, refusals: Refusals) {
    // Owned here so that aborting this task (dropping the proxy) aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, _)) => {
                    connections.spawn(handle(client, Arc::clone(&policy), refusals.clone()));
                }
                Err(err) => {
                    tracing::warn!(error = %err, "outbound proxy accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn handle(mut client: TcpStream, policy: Arc<OutboundPolicy>, refusals: Refusals) {
    let Ok(Ok((head, rest))) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut client)).await
    else {
        return;
    };
    let request = match ProxyRequest::parse(&head) {
        Ok(request) => request,
        Err(message) => {
            respond(&mut client, "400 Bad Request", &message).await;
            return;
        }
    };
    let mut upstream = match connect(&request, &policy).await {
        Ok(upstream) => upstream,
        Err(Failure::Refused(err)) => {
            let message = format!("refused to connect to {}: {err}", request.target);
            tracing::warn!(target = %request.target, error = %err, "outbound connection refused");
            refusals.record(message.clone());
            respond(&mut client, "403 Forbidden", &message).await;
            return;
        }
        Err(Failure::Unreachable(message)) => {
            respond(&mut client, "502 Bad Gateway", &message).await;
            return;
        }
    };
    let sent = if request.tunnel {
        client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await
    } else {
        upstream.write_all(request.forwarded_head.as_bytes()).await
    };
    if sent.is_err() || upstream.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// Reads up to the end of the request head: `(head, bytes after it)`.
async fn read_head(client: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0_u8; 2048];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            let head = String::from_utf8(buf)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            return Ok((head, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

async fn respond(client: &mut TcpStream, status: &str, message: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{message}",
        message.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// One request FFmpeg sent to the proxy.
#[derive(Debug, PartialEq, Eq)]
struct ProxyRequest {
    /// `CONNECT` (a tunnel for TLS) rather than a plain HTTP request.
    tunnel: bool,
    /// The target host: a name, or an address without brackets.
    host: String,
    /// The target port.
    port: u16,
    /// What the target was, for messages: the URL, or `host:port` of a tunnel.
    target: String,
    /// The request to send upstream (plain HTTP only): origin-form, hop-by-hop headers
    /// replaced by `Connection: close`.
    forwarded_head: String,
}

impl ProxyRequest {
    fn parse(head: &str) -> Result<Self, String> {
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("malformed request line".to_owned());
        };
        if !version.starts_with("HTTP/1.") {
            return Err("only HTTP/1.x".to_owned());
        }
        if method == "CONNECT" {
            if target.contains(['/', '?', '#', '@', '\\']) {
                return Err("CONNECT takes host:port".to_owned());
            }
            let url = url::Url::parse(&format!("https://{target}/"))
                .map_err(|e| format!("bad CONNECT target: {e}"))?;
            let (host, port) = host_and_port(&url)?;
            return Ok(Self {
                tunnel: true,
                host,
                port,
                target: format!("https://{target}"),
                forwarded_head: String::new(),
            });
        }
        let url = url::Url::parse(target).map_err(|e| format!("bad request target: {e}"))?;
        if url.scheme() != "http" {
            return Err("only http:// requests and CONNECT tunnels".to_owned());
        }
        let (host, port) = host_and_port(&url)?;
        let mut origin_form = url.path().to_owned();
        if let Some(query) = url.query() {
            origin_form.push('?');
            origin_form.push_str(query);
        }
        let mut forwarded = format!("{method} {origin_form} {version}\r\n");
        let mut has_host = false;
        for line in lines.filter(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
            if matches!(
                name.as_str(),
                "connection" | "keep-alive" | "proxy-connection" | "proxy-authorization"
            ) {
                continue;
            }
            has_host |= name == "host";
            forwarded.push_str(line);
            forwarded.push_str("\r\n");
        }
        if !has_host {
            forwarded.push_str(&format!("Host: {}\r\n", url.authority()));
        }
        forwarded.push_str("Connection: close\r\n\r\n");
        Ok(Self { tunnel: false, host, port, target: url.to_string(), forwarded_head: forwarded })
    }
}

fn host_and_port(url: &url::Url) -> Result<(String, u16), String> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the target are not accepted".to_owned());
    }
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err("no host".to_owned()),
    };
    let port = url.port_or_known_default().ok_or("no port")?;
    Ok((host, port))
}

enum Failure {
    Refused(OutboundError),
    Unreachable(String),
}

/// Resolves and checks the target, then connects to an address that passed.
async fn connect(request: &ProxyRequest, policy: &OutboundPolicy) -> Result<TcpStream, Failure> {
    let addresses = policy.resolve(&request.host, request.port).await.map_err(|err| match err {
        OutboundError::Refused { .. } => Failure::Refused(err),
        OutboundError::Unresolvable { .. } => Failure::Unreachable(err.to_string()),
    })?;
    let mut last_error = String::from("no address");
    for address in addresses {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(err)) => last_error = format!("{address}: {err}"),
            Err(_) => last_error = format!("{address}: connection timed out"),
        }
    }
    Err(Failure::Unreachable(format!("cannot connect to {}: {last_error}", request.target)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_request_goes_upstream_in_origin_form_and_closes_after_one_response() {
        let head = "GET http://cdn.example:8080/live/seg1.ts?t=1 HTTP/1.1\r\nUser-Agent: Lavf\r\nHost: cdn.example:8080\r\nConnection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n\r\n";
        let request = ProxyRequest::parse(head).unwrap();
        assert!(!request.tunnel);
        assert_eq!((request.host.as_str(), request.port), ("cdn.example", 8080));
        assert_eq!(
            request.forwarded_head,
            "GET /live/seg1.ts?t=1 HTTP/1.1\r\nUser-Agent: Lavf\r\nHost: cdn.example:8080\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_tunnel_names_its_host_and_port_and_odd_address_spellings_are_normalised() {
        let request = ProxyRequest::parse("CONNECT [::1]:443 HTTP/1.1\r\n\r\n").unwrap();
        assert!(request.tunnel);
        assert_eq!((request.host.as_str(), request.port), ("::1", 443));
        // The WHATWG parser reads 0x7f.1 as 127.0.0.1, as a resolver would.
        let request = ProxyRequest::parse("GET http://0x7f.1/ HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!((request.host.as_str(), request.port), ("127.0.0.1", 80));
        assert!(ProxyRequest::parse("CONNECT a@b:443 HTTP/1.1\r\n\r\n").is_err());
        assert!(ProxyRequest::parse("GET ftp://x/ HTTP/1.1\r\n\r\n").is_err());
        assert!(ProxyRequest::parse("GET /relative HTTP/1.1\r\n\r\n").is_err());
    }
}
