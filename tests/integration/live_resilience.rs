//! Live reference feeds beyond the happy path of `live_feed.rs`: frames crossing RabbitMQ to a
//! worker that ingests nothing and decides, a feed that goes silent and comes back, an
//! ingesting process that dies holding its lease, and the other protocols a rights holder's
//! encoder or streaming server speaks (RTMP, SRT, HLS).
//!
//! The ffmpeg CLI plays the rights holder's side on loopback, airing a development-set clip in
//! real time. Needs the ffmpeg CLI, the development set in `../shared` beside the repository,
//! and PostgreSQL and RabbitMQ for the scale-out and takeover tests (see the README).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::live::{
    Sender, air_udp, dev_clip, encode_feed, free_tcp_port, free_udp_port, pirate_keyframes,
};
use crate::common::{Db, TestApp, Worker, amqp_url, eventually, spawn_app, spawn_app_on};
use offside::config::SecretUrl;
use offside::store::keys::Role;
use offside::store::now_ms;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Clip position (ms) the feed starts at: the clip's dark, low-detail opening stays out.
const FEED_FROM_MS: i64 = 12_000;
/// Seconds of the clip the feed airs.
const FEED_SECONDS: u32 = 30;
/// How far the pirate trails the feed.
const DELAY_MS: i64 = 10_000;
/// Keyframe interval of the pirate stream (what platforms send).
const KEYFRAME_EVERY_MS: i64 = 2_000;
/// Frames hashed that show a feed flowing (about two seconds of the 24 fps clip).
const FLOWING: i64 = 50;

/// The broadcast as a rights holder's encoder sends it: MPEG-TS, 640x360 H.264 with a keyframe
/// every second so a receiver can join at any time. Every test airs it, so it is encoded once
/// and kept in the target's temporary directory.
fn feed_ts() -> &'static str {
    static FEED: OnceLock<String> = OnceLock::new();
    FEED.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live_resilience");
        std::fs::create_dir_all(&dir).expect("target tmp dir");
        let out = dir.join(format!("sintel-{FEED_FROM_MS}ms-{FEED_SECONDS}s.ts"));
        if !out.is_file() {
            encode_feed(&out, FEED_FROM_MS, FEED_SECONDS);
        }
        out.to_str().expect("UTF-8 path").to_owned()
    })
}

/// Whether the system FFmpeg (the CLI and the libavformat it shares with Offside) reads and
/// writes `protocol`.
fn ffmpeg_has_protocol(protocol: &str) -> bool {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-protocols"])
        .output()
        .expect("ffmpeg CLI installed");
    let listing = String::from_utf8_lossy(&out.stdout);
    let (input, output) = listing.split_once("Output:").unwrap_or((&listing, ""));
    let has = |section: &str| section.split_whitespace().any(|p| p == protocol);
    has(input) && has(output)
}

/// Registers a live feed on `url` for a new rights holder, with `policy` if given (else the
/// default one): `(owner key, reference id)`.
async fn register(app: &TestApp, url: &str, policy: Option<Value>) -> (String, String) {
    let (_, owner_key) = app.rights_holder("Sintel Sports").await;
    let mut body = json!({"title": "Sintel Cup final, live", "live_url": url});
    if let Some(policy) = policy {
        body["policy"] = policy;
    }
    let response = app.create_hash_reference(&owner_key, &body).await;
    let status = response.status();
    let created: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    assert_eq!(created["status"], "live", "{created:#}");
    (owner_key, created["id"].as_str().unwrap().to_owned())
}

/// The `live` part of the reference as its owner sees it.
async fn feed_state(app: &TestApp, key: &str, id: &str) -> Value {
    let response = app.get_reference(key, id).await;
    assert_eq!(response.status(), StatusCode::OK);
    let reference: Value = response.json().await.unwrap();
    reference["live"].clone()
}

fn frames(live: &Value) -> i64 {
    live["frames"].as_i64().unwrap_or(0)
}

fn reconnects(live: &Value) -> i64 {
    live["reconnects"].as_i64().unwrap_or(0)
}

/// Polls the feed until `done` holds and returns its state; fails after `timeout` showing the
/// last state seen.
async fn wait_for_feed(
    app: &TestApp,
    key: &str,
    id: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let live = feed_state(app, key, id).await;
        if done(&live) {
            return live;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}: {live:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops an app as `offside serve` does on SIGTERM, bounded: a decoder left blocked on a
/// network read would hang here.
async fn stop(app: &mut TestApp) {
    tokio::time::timeout(Duration::from_secs(20), app.stop()).await.expect("the app stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_ingests_nothing_flags_a_restream_of_a_feed_another_process_ingests() {
    let started = Instant::now();
    let pirate = tokio::task::spawn_blocking(|| {
        pirate_keyframes(
            &dev_clip(),
            KEYFRAME_EVERY_MS,
            FEED_FROM_MS,
            FEED_FROM_MS + i64::from(FEED_SECONDS) * 1000,
        )
    })
    .await
    .unwrap();
    assert!(pirate.len() >= 10, "pirate keyframes: {}", pirate.len());
    // The API node of a scaled-out deployment: it ingests the feed and hands keyframes to
    // RabbitMQ but handles none itself.
    let mut app = spawn_app_on(Db::Postgres, |c| {
        c.amqp_url = Some(SecretUrl::new(amqp_url()));
        c.amqp_prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
        c.keyframe_workers = Some(0);
    })
    .await;
    let port = free_udp_port();
    let (owner_key, id) =
        register(&app, &format!("udp://127.0.0.1:{port}"), Some(json!({"action": "flag"}))).await;
    // Alone, the API node claims the feed...
    let claimed = wait_for_feed(&app, &owner_key, &id, Duration::from_secs(10), "the claim", |l| {
        l["ingested_by"] == app.instance.as_str()
    })
    .await;
    let origin_ms = claimed["origin_ms"].as_i64().unwrap();
    // ...so the worker started now cannot while the lease is renewed: the only live frames it
    // gets are those the API node fans out through the broker. It handles every keyframe.
    let mut worker = Worker::start_with(&app, |c| c.keyframe_workers = None).await;
    let (_sender, aired_at) = air_udp(Path::new(feed_ts()), port).await;
    let crossed = eventually(Duration::from_secs(15), "feed frames in the worker", || async {
        let library = worker.library.read().unwrap();
        (library.contains_live(&id) && library.live_frames() > 0).then(|| library.live_frames())
    })
    .await;

    // The pirate: clip position p is captured DELAY_MS after the feed aired it, stamped with
    // its capture time; its stream clock counts from the event's time zero, like the feed's.
    let ingest_key = app.key_for(Role::Ingest, None).await;
    let stream = "pirate-over-rabbitmq";
    let mut sent = 0;
    'pirate: for (position, jpeg) in &pirate {
        let due = aired_at + DELAY_MS + (position - FEED_FROM_MS);
        while now_ms() < due {
            if sent > 0 && app.stream(stream).await.is_some_and(|s| s["status"] == "flagged") {
                break 'pirate;
            }
            let left = u64::try_from((due - now_ms()).clamp(0, 200)).unwrap();
            tokio::time::sleep(Duration::from_millis(left)).await;
        }
        let captured_at = now_ms();
        let query = format!(
            "ts_ms={}&captured_at_ms={captured_at}&account_id=pirate",
            captured_at - origin_ms
        );
        let response =
            app.post_keyframe(&ingest_key, stream, &query, "image/jpeg", jpeg.clone()).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        sent += 1;
    }
    let view = app.wait_for_stream_status(stream, "flagged").await;
    let matched = view["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["reference_id"] == id.as_str())
        .unwrap_or_else(|| panic!("a match on the live reference: {view:#}"))
        .clone();
    let offset = matched["offset_ms"].as_i64().unwrap();
    assert!((offset + DELAY_MS).abs() <= 1_000, "offset {offset} ms for a {DELAY_MS} ms delay");

    // The API node held the feed throughout: the worker decided on frames that crossed the
    // broker, and keeps receiving them.
    let live = feed_state(&app, &owner_key, &id).await;
    assert_eq!(live["ingested_by"], app.instance.as_str(), "{live:#}");
    assert_ne!(app.instance, worker.instance);
    assert_eq!(live["status"], "live", "{live:#}");
    let in_worker = eventually(Duration::from_secs(10), "more frames in the worker", || async {
        let n = worker.library.read().unwrap().live_frames();
        (n > crossed).then_some(n)
    })
    .await;
    // The geometric tier's feature frames (one per second of feed) cross it as well.
    let feature_frames =
        eventually(Duration::from_secs(5), "feature frames in the worker", || async {
            let n = worker.library.read().unwrap().live_feature_frames();
            (n > 0).then_some(n)
        })
        .await;
    eprintln!(
        "fanout: offset {offset} ms (delay {DELAY_MS} ms) after {sent} pirate keyframes; \
         feed frames {} hashed by the API node, worker library {crossed} -> {in_worker} hashes \
         and {feature_frames} feature frames; {:?} in all",
        frames(&live),
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(20), worker.stop()).await.expect("the worker stops");
    stop(&mut app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_feed_that_goes_silent_is_reconnecting_and_live_again_when_the_sender_returns() {
    let started = Instant::now();
    let mut app = spawn_app().await;
    let port = free_udp_port();
    let (key, id) = register(&app, &format!("udp://127.0.0.1:{port}"), None).await;
    wait_for_feed(&app, &key, &id, Duration::from_secs(10), "the claim", |l| {
        l["ingested_by"].is_string()
    })
    .await;
    let (mut sender, _) = air_udp(Path::new(feed_ts()), port).await;
    let before = wait_for_feed(&app, &key, &id, Duration::from_secs(20), "frames", |l| {
        l["status"] == "live" && frames(l) > FLOWING
    })
    .await;

    // The encoder goes away without a word: UDP has no connection to close, so only the
    // silence tells.
    sender.kill();
    let silent = Instant::now();
    let dropped = wait_for_feed(&app, &key, &id, Duration::from_secs(30), "reconnecting", |l| {
        l["status"] == "reconnecting" && reconnects(l) > reconnects(&before)
    })
    .await;
    let noticed_after = silent.elapsed();
    assert!(dropped["last_error"].is_string(), "{dropped:#}");

    let (_sender, _) = air_udp(Path::new(feed_ts()), port).await;
    let back = Instant::now();
    let resumed = wait_for_feed(&app, &key, &id, Duration::from_secs(30), "live again", |l| {
        l["status"] == "live" && frames(l) > frames(&dropped) + FLOWING
    })
    .await;
    assert!(reconnects(&resumed) >= 1 && reconnects(&resumed) > reconnects(&before), "{resumed:#}");
    assert_eq!(resumed["ingested_by"], dropped["ingested_by"], "the same process reconnected");
    eprintln!(
        "reconnect: silence noticed after {noticed_after:?} ({} frames), {} more frames {:?} \
         after the sender returned, reconnects {} -> {}; {:?} in all",
        frames(&dropped),
        frames(&resumed) - frames(&dropped),
        back.elapsed(),
        reconnects(&before),
        reconnects(&resumed),
        started.elapsed()
    );
    stop(&mut app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_ingesting_process_dies_another_takes_its_feed_over_once_the_lease_expires() {
    let started = Instant::now();
    let lease_ms = 4_000;
    let mut first = spawn_app_on(Db::Postgres, |c| c.live_lease_ttl_ms = lease_ms).await;
    let port = free_udp_port();
    let (key, id) = register(&first, &format!("udp://127.0.0.1:{port}"), None).await;
    wait_for_feed(&first, &key, &id, Duration::from_secs(10), "the first process's claim", |l| {
        l["ingested_by"] == first.instance.as_str()
    })
    .await;
    let (_sender, _) = air_udp(Path::new(feed_ts()), port).await;
    wait_for_feed(&first, &key, &id, Duration::from_secs(20), "frames", |l| {
        l["status"] == "live" && frames(l) > FLOWING
    })
    .await;
    // A second process of the deployment, on the same database.
    let mut second = first.sibling(|_| {}).await;

    // The first dies: nothing stops gracefully and nothing gives the lease up.
    first.abort();
    let killed = Instant::now();
    let held = feed_state(&second, &key, &id).await;
    assert_eq!(
        held["ingested_by"],
        first.instance.as_str(),
        "the dead holder keeps the lease: {held:#}"
    );

    let taken = wait_for_feed(&second, &key, &id, Duration::from_secs(30), "the takeover", |l| {
        l["ingested_by"] == second.instance.as_str()
            && l["status"] == "live"
            && frames(l) > frames(&held) + FLOWING
    })
    .await;
    let taken_after = killed.elapsed();
    assert!(
        second.library.read().unwrap().contains_live(&id),
        "the second process indexes the feed it took over"
    );
    eprintln!(
        "takeover: lease {lease_ms} ms; the second process ingests {taken_after:?} after the \
         kill, frames {} -> {}; {:?} in all",
        frames(&held),
        frames(&taken),
        started.elapsed()
    );
    stop(&mut second).await;
}

/// Registers `url`, served by `server`, as a feed of a fresh embedded app and checks it goes
/// live and keeps hashing frames.
async fn a_pulled_feed_goes_live(protocol: &str, url: &str, mut server: Sender) {
    let started = Instant::now();
    let mut app = spawn_app().await;
    let (key, id) = register(&app, url, None).await;
    let first = wait_for_feed(&app, &key, &id, Duration::from_secs(30), "frames", |l| {
        l["status"] == "live" && frames(l) > FLOWING
    })
    .await;
    let first_after = started.elapsed();
    let later = wait_for_feed(&app, &key, &id, Duration::from_secs(20), "more frames", |l| {
        l["status"] == "live" && frames(l) > frames(&first) + FLOWING
    })
    .await;
    assert!(app.library.read().unwrap().contains_live(&id), "the feed's frames are matchable");
    eprintln!(
        "{protocol}: live with {} frames after {first_after:?}, {} after {:?}, reconnects {} \
         ({})",
        frames(&first),
        frames(&later),
        started.elapsed(),
        reconnects(&later),
        later["last_error"].as_str().unwrap_or("no error")
    );
    // The server first, so the app's shutdown does not make it complain about a lost player.
    server.kill();
    stop(&mut app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_pulled_from_an_rtmp_server_goes_live() {
    if !ffmpeg_has_protocol("rtmp") {
        eprintln!("SKIPPED: the system FFmpeg has no rtmp protocol");
        return;
    }
    let url = format!("rtmp://127.0.0.1:{}/live/feed", free_tcp_port());
    // The streaming server: waits for one player, then airs the feed to it in real time.
    // Offside retries with backoff while the server is not listening yet.
    let server =
        Sender::spawn(&["-re", "-i", feed_ts(), "-c", "copy", "-f", "flv", "-listen", "1", &url]);
    a_pulled_feed_goes_live("rtmp", &url, server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_pulled_from_an_srt_listener_goes_live() {
    if !ffmpeg_has_protocol("srt") {
        eprintln!("SKIPPED: the system FFmpeg has no srt protocol (libsrt)");
        return;
    }
    let port = free_udp_port();
    let listener = format!("srt://127.0.0.1:{port}?mode=listener");
    let server = Sender::spawn(&["-re", "-i", feed_ts(), "-c", "copy", "-f", "mpegts", &listener]);
    a_pulled_feed_goes_live("srt", &format!("srt://127.0.0.1:{port}"), server).await;
}

/// Serves the files of `dir` over HTTP on loopback, as a CDN edge serves an HLS stream.
async fn serve_dir(dir: PathBuf) -> (String, tokio_util::sync::DropGuard) {
    use axum::extract::Path as UrlPath;
    use axum::http::{StatusCode as Status, header};
    let app = axum::Router::new().route(
        "/{file}",
        axum::routing::get(move |UrlPath(file): UrlPath<String>| {
            let dir = dir.clone();
            async move {
                if file.contains("..") {
                    return Err(Status::NOT_FOUND);
                }
                let body = tokio::fs::read(dir.join(&file)).await.map_err(|_| Status::NOT_FOUND)?;
                let kind = if file.ends_with(".m3u8") {
                    "application/vnd.apple.mpegurl"
                } else {
                    "video/mp2t"
                };
                Ok(([(header::CONTENT_TYPE, kind)], body))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let stop = cancel.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
    });
    (format!("http://{address}"), cancel.drop_guard())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_pulled_as_live_hls_over_http_goes_live() {
    if !ffmpeg_has_protocol("http") {
        eprintln!("SKIPPED: the system FFmpeg has no http protocol");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let playlist = dir.path().join("live.m3u8");
    // The packager: one-second segments written as the feed airs, the playlist listing the
    // last six (a live playlist: no end tag while it runs).
    let packager = Sender::spawn(&[
        "-re",
        "-i",
        feed_ts(),
        "-c",
        "copy",
        "-f",
        "hls",
        "-hls_time",
        "1",
        "-hls_list_size",
        "6",
        "-hls_flags",
        "delete_segments+temp_file",
        playlist.to_str().unwrap(),
    ]);
    let (base, _server) = serve_dir(dir.path().to_owned()).await;
    // Announced once its playlist is up, as a stream is.
    eventually(Duration::from_secs(10), "the HLS playlist", || async {
        playlist.is_file().then_some(())
    })
    .await;
    a_pulled_feed_goes_live("hls", &format!("{base}/live.m3u8"), packager).await;
}

#[tokio::test]
async fn a_process_without_keyframe_workers_is_refused_without_rabbitmq() {
    let env = crate::common::TestEnv::new(Db::Sqlite).await;
    let mut config = env.config();
    config.keyframe_workers = Some(0);
    let refused = offside::app::App::build(config, offside::app::Mode::Serve).await;
    let error = format!("{:#}", refused.err().expect("nothing would handle keyframes"));
    assert!(error.contains("RabbitMQ"), "{error}");
}
