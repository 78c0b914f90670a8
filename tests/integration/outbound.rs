//! Issue #15: every outbound connection (webhooks, live feeds, and everything FFmpeg opens for a
//! feed) stays outside: loopback, private and every other non-public address is refused,
//! whatever IPv6 spelling it hides in, at registration and at every connection.
//!
//! Only loopback traffic here: the private addresses below are refused by Offside's own check
//! before anything connects, never by the network.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::Db;
use offside::net::outbound::{Embedding, NonPublic, classify};
use offside::net::{CheckingProxy, OutboundPolicy};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const EMBEDDED_PRIVATE: &[&str] = &[
    "http://[::127.0.0.1]/",
    "http://[2002:7f00:1::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:0:a00:1]/",
    "http://[64:ff9b::a00:1]/",
    "http://[2001:0:a00:1::]/",
];

#[test]
fn every_non_public_address_form_is_refused_with_its_kind() {
    use Embedding::*;
    use NonPublic::*;
    let table: &[(&str, NonPublic)] = &[
        ("127.0.0.1", Loopback),
        ("127.255.255.254", Loopback),
        ("10.1.2.3", Private),
        ("172.16.0.1", Private),
        ("172.31.255.255", Private),
        ("192.168.1.1", Private),
        ("169.254.169.254", LinkLocal),
        ("100.64.0.1", CarrierGradeNat),
        ("100.127.255.254", CarrierGradeNat),
        ("0.0.0.0", Unspecified),
        ("0.1.2.3", Unspecified),
        ("224.0.0.1", Multicast),
        ("239.255.255.250", Multicast),
        ("255.255.255.255", Broadcast),
        ("240.0.0.1", Reserved),
        ("192.0.0.170", Reserved),
        ("192.88.99.1", Reserved),
        ("192.0.2.1", Documentation),
        ("198.51.100.7", Documentation),
        ("203.0.113.9", Documentation),
        ("198.18.0.1", Benchmarking),
        ("198.19.255.1", Benchmarking),
        ("::1", Loopback),
        ("::", Unspecified),
        ("fe80::1", LinkLocal),
        ("fc00::1", UniqueLocal),
        ("fd12:3456::1", UniqueLocal),
        ("fec0::1", UniqueLocal),
        ("ff02::1", Multicast),
        ("2001:db8::1", Documentation),
        ("3fff::1", Documentation),
        ("2001:2::1", Benchmarking),
        ("100::1", Reserved),
        ("2001:10::1", Reserved),
        // Every IPv6 form with an IPv4 address inside, private or not.
        ("::ffff:127.0.0.1", EmbeddedIpv4(Ipv4Mapped)),
        ("::ffff:8.8.8.8", EmbeddedIpv4(Ipv4Mapped)),
        ("::127.0.0.1", EmbeddedIpv4(Ipv4Compatible)),
        ("::8.8.8.8", EmbeddedIpv4(Ipv4Compatible)),
        ("::ffff:0:10.0.0.1", EmbeddedIpv4(Ipv4Translated)),
        ("2002:7f00:1::", EmbeddedIpv4(SixToFour)),
        ("2002:808:808::1", EmbeddedIpv4(SixToFour)),
        ("64:ff9b::a00:1", EmbeddedIpv4(Nat64)),
        ("64:ff9b::808:808", EmbeddedIpv4(Nat64)),
        ("64:ff9b:1::a00:1", EmbeddedIpv4(Nat64)),
        ("2001::1", EmbeddedIpv4(Teredo)),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", EmbeddedIpv4(Teredo)),
    ];
    let strict = OutboundPolicy::public_only();
    for &(address, kind) in table {
        let ip: IpAddr = address.parse().unwrap();
        assert_eq!(classify(ip), Some(kind), "{address}");
        let refused = strict.check(ip).expect_err(address);
        assert_eq!(refused.kind, kind, "{address}");
        assert!(OutboundPolicy::allow_all().check(ip).is_ok(), "{address} with allow-all");
    }
}

#[test]
fn public_unicast_addresses_are_allowed() {
    let strict = OutboundPolicy::public_only();
    for address in [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.216.34",
        "172.32.0.1",
        "100.128.0.1",
        "192.169.0.1",
        "11.0.0.1",
        "2606:4700:4700::1111",
        "2001:4860:4860::8888",
        "2a00:1450:4001:830::200e",
    ] {
        let ip: IpAddr = address.parse().unwrap();
        assert_eq!(classify(ip), None, "{address}");
        assert!(strict.check(ip).is_ok(), "{address}");
    }
}

#[test]
fn allowed_networks_open_exactly_themselves() {
    let policy = OutboundPolicy::with_allowed([
        "127.0.0.0/8".parse().unwrap(),
        "10.20.0.0/16".parse().unwrap(),
    ]);
    for allowed in ["127.0.0.1", "127.9.9.9", "10.20.3.4", "8.8.8.8"] {
        assert!(policy.check(allowed.parse().unwrap()).is_ok(), "{allowed}");
    }
    for refused in ["10.21.0.1", "192.168.0.1", "::1", "::ffff:127.0.0.1", "::127.0.0.1"] {
        assert!(policy.check(refused.parse().unwrap()).is_err(), "{refused}");
    }
    assert!(!policy.allows_all());
}

#[tokio::test]
async fn webhook_creation_refuses_ipv6_spellings_of_private_addresses() {
    let app = crate::common::spawn_app_on(Db::Sqlite, |c| {
        c.allow_private_urls = false;
        c.allow_private_networks = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let events = ["stream.killed"];
    let secret = "a secret of sixteen+";
    for url in EMBEDDED_PRIVATE.iter().copied().chain(["http://10.0.0.1/", "http://[::1]:9/"]) {
        let response = app.create_webhook(&app.admin_key, url, &events, secret).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("not public"), "{url}: {body}");
    }
    // The allowed network itself still works: the rule is precise, not a blanket refusal.
    let response =
        app.create_webhook(&app.admin_key, "http://127.0.0.1:9/hook", &events, secret).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn live_feed_registration_refuses_ipv6_spellings_of_private_addresses() {
    let app = crate::common::spawn_app_on(Db::Sqlite, |c| {
        c.allow_private_urls = false;
        c.allow_private_networks = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let (_, owner_key) = app.rights_holder("Careful Sports").await;
    let feeds = EMBEDDED_PRIVATE
        .iter()
        .map(|u| format!("{u}live.m3u8"))
        .chain(
            ["rtmp://[::127.0.0.1]/live/x", "srt://[2002:7f00:1::]:9000", "udp://[::1]:5000"]
                .map(String::from),
        )
        .chain(["rtmp://10.0.0.1/live/x".to_owned(), "/etc/passwd".to_owned()]);
    for url in feeds {
        let response = app
            .create_hash_reference(&owner_key, &json!({"title": "probe", "live_url": url}))
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
    }
}

/// What a loopback HTTP server was asked for.
#[derive(Clone, Default)]
struct Hits(Arc<Mutex<Vec<String>>>);

impl Hits {
    fn paths(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// One canned answer of [`serve`]: path, status, headers, body.
type Route = (&'static str, u16, Vec<(&'static str, String)>, Vec<u8>);

/// Serves `routes` on loopback and records every request.
async fn serve(routes: Vec<Route>) -> (SocketAddr, Hits, tokio_util::sync::DropGuard) {
    use axum::http::{HeaderName, HeaderValue, StatusCode as Status, Uri};
    let hits = Hits::default();
    let recorded = hits.clone();
    let routes = Arc::new(routes);
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let routes = Arc::clone(&routes);
        let recorded = recorded.clone();
        async move {
            recorded.0.lock().unwrap().push(uri.path().to_owned());
            let Some((_, status, headers, body)) = routes.iter().find(|r| r.0 == uri.path()) else {
                return axum::response::Response::builder()
                    .status(Status::NOT_FOUND)
                    .body(axum::body::Body::empty())
                    .unwrap();
            };
            let mut response = axum::response::Response::builder().status(*status);
            for (name, value) in headers {
                response = response
                    .header(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
            }
            response.body(axum::body::Body::from(body.clone())).unwrap()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    (address, hits, cancel.drop_guard())
}

/// Sends one raw request to the proxy and returns the whole answer.
async fn through_proxy(proxy: &CheckingProxy, request: &str) -> String {
    let address = proxy.url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the proxy answers")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_proxy_refuses_private_targets_before_connecting_and_relays_allowed_ones() {
    let (server, hits, _stop) =
        serve(vec![("/ok", 200, vec![("content-type", "text/plain".into())], b"hello".to_vec())])
            .await;
    let proxy =
        CheckingProxy::start(OutboundPolicy::with_allowed(["127.0.0.0/8".parse().unwrap()]))
            .await
            .unwrap();

    let answer = through_proxy(
        &proxy,
        &format!("GET http://{server}/ok HTTP/1.1\r\nHost: {server}\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("hello"), "{answer}");
    assert_eq!(hits.paths(), ["/ok"]);
    // A tunnel (what HTTPS uses) to an allowed address carries whatever goes through it.
    let answer = through_proxy(
        &proxy,
        &format!("CONNECT {server} HTTP/1.1\r\n\r\nGET /ok HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(
        answer.starts_with("HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.1 200"),
        "{answer}"
    );
    assert!(answer.ends_with("hello"), "{answer}");
    assert_eq!(hits.paths(), ["/ok", "/ok"]);

    for (request, address) in [
        ("GET http://10.0.0.1/seg.ts HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n", "10.0.0.1"),
        ("GET http://[::ffff:192.168.0.1]/x HTTP/1.1\r\n\r\n", "::ffff:192.168.0.1"),
        ("GET http://0xc0.0xa8.0.1/x HTTP/1.1\r\n\r\n", "192.168.0.1"),
        ("CONNECT 172.16.5.5:443 HTTP/1.1\r\nHost: 172.16.5.5:443\r\n\r\n", "172.16.5.5"),
        ("CONNECT [2002:c0a8:1::]:443 HTTP/1.1\r\n\r\n", "2002:c0a8:1::"),
    ] {
        let answer = through_proxy(&proxy, request).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{request}: {answer}");
        assert!(answer.contains(address), "{request}: {answer}");
        assert_eq!(proxy.last_refusal().as_deref().map(|r| r.contains(address)), Some(true));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hls_feed_whose_segments_point_at_private_addresses_ingests_nothing_and_says_why() {
    hls_feed_with_private_segments(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_hls_feed_whose_segments_are_refused_says_why_while_ffmpeg_keeps_trying() {
    // Without an end tag FFmpeg skips the segments it cannot open and reloads the playlist
    // for as long as the feed runs: the refusal must show without waiting for it to give up.
    hls_feed_with_private_segments(false).await;
}

/// Registers an HLS feed whose playlist is on loopback (an allowed network here): its first
/// segment is on a private address, its second on loopback but redirecting to another
/// private address. Checks that nothing is ingested, that `last_error` says why, and that
/// the loopback parts were fetched (through the proxy: FFmpeg connects nowhere else).
async fn hls_feed_with_private_segments(ended: bool) {
    let end = if ended { "#EXT-X-ENDLIST\n" } else { "" };
    let playlist = format!(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n\
         #EXTINF:2.0,\nhttp://10.0.0.1/seg0.ts\n#EXTINF:2.0,\n/seg1.ts\n{end}"
    );
    let (server, hits, _stop) = serve(vec![
        (
            "/live.m3u8",
            200,
            vec![("content-type", "application/vnd.apple.mpegurl".into())],
            playlist.into_bytes(),
        ),
        ("/seg1.ts", 302, vec![("location", "http://192.168.77.1/seg1.ts".into())], Vec::new()),
    ])
    .await;
    let app = crate::common::spawn_app_on(Db::Sqlite, |c| {
        c.allow_private_urls = false;
        c.allow_private_networks = vec!["127.0.0.0/8".parse().unwrap()];
    })
    .await;
    let (_, owner_key) = app.rights_holder("Careful Sports").await;
    let live_url = format!("http://{server}/live.m3u8");
    let response = app
        .create_hash_reference(
            &owner_key,
            &json!({"title": "Cup final, live", "live_url": live_url}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let live = loop {
        let reference: Value = app.get_reference(&owner_key, &id).await.json().await.unwrap();
        let live = reference["live"].clone();
        if live["last_error"].as_str().is_some_and(|e| e.contains("refused")) {
            break live;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no refusal reported: {reference:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let error = live["last_error"].as_str().unwrap();
    assert!(error.contains("not public (private)"), "{error}");
    assert!(error.contains("10.0.0.1") || error.contains("192.168.77.1"), "{error}");
    assert_eq!(live["frames"].as_i64().unwrap_or(0), 0, "{live:#}");
    // The loopback playlist was read through the proxy, and the loopback redirect was followed
    // to the refused address (the proxy saw it, so FFmpeg never connected to it itself).
    let paths = hits.paths();
    assert!(paths.iter().any(|p| p == "/live.m3u8"), "{paths:?}");
    assert!(paths.iter().any(|p| p == "/seg1.ts"), "{paths:?}");
}
