//! Live reference feeds end to end: the ffmpeg CLI airs a development-set clip as MPEG-TS over
//! UDP on loopback, Offside ingests it as a live reference, and a pirate copy of the same clip
//! trailing it by ten seconds arrives as keyframes through the HTTP API.
//!
//! Needs the ffmpeg CLI and the development set in `../shared` beside the repository.

mod common;

use std::net::UdpSocket;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::spawn_app;
use offside::media::{KeyframeOptions, extract_keyframes};
use offside::store::keys::Role;
use offside::store::now_ms;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The pirate trails the feed by this much.
const DELAY_MS: i64 = 10_000;
/// Seconds of the clip aired.
const FEED_SECONDS: u32 = 36;
/// Keyframe interval of the pirate stream (what platforms send).
const KEYFRAME_EVERY_MS: i64 = 2_000;
/// The pirate joins the feed here (the clip's dark, low-detail opening is behind it).
const PIRATE_FROM_MS: i64 = 12_000;

fn dev_clip() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/eval-dev/sources/ref_sintel.mp4");
    assert!(
        path.is_file(),
        "the development set must sit beside the repository: {}",
        path.display()
    );
    path
}

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .status()
        .expect("ffmpeg CLI installed");
    assert!(status.success(), "ffmpeg {args:?} failed");
}

/// The broadcast as a rights holder's encoder would send it: MPEG-TS with a keyframe every
/// second, so a receiver can join at any time.
fn prepare_feed(dir: &Path) -> PathBuf {
    let out = dir.join("feed.ts");
    let clip = dev_clip();
    ffmpeg(&[
        "-i",
        clip.to_str().unwrap(),
        "-t",
        &FEED_SECONDS.to_string(),
        "-an",
        "-vf",
        "scale=640:360",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-g",
        "24",
        "-f",
        "mpegts",
        out.to_str().unwrap(),
    ]);
    out
}

/// The pirate's keyframes: the same clip shrunk to 480 pixels wide, one JPEG every keyframe
/// interval (the first frame at or after each multiple, as `offside tap` extracts them), keyed
/// by clip position in ms.
fn prepare_pirate() -> Vec<(i64, Vec<u8>)> {
    let options = KeyframeOptions {
        interval: Duration::from_millis(KEYFRAME_EVERY_MS.unsigned_abs()),
        max_long_side: Some(480),
        jpeg_quality: 70,
        ..KeyframeOptions::default()
    };
    let mut out = Vec::new();
    let limit = i64::from(FEED_SECONDS) * 1000;
    extract_keyframes(dev_clip().to_str().unwrap(), &options, |k| {
        if k.ts_ms >= limit {
            return ControlFlow::Break(());
        }
        if k.ts_ms >= PIRATE_FROM_MS {
            out.push((k.ts_ms, k.jpeg));
        }
        ControlFlow::Continue(())
    })
    .expect("the development clip decodes");
    out
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Airs `ts` in real time to the feed port, copying it to a probe port the test listens on so
/// it knows when the first packet went out.
fn air(ts: &Path, feed_port: u16, probe_port: u16) -> Child {
    let tee = format!(
        "[f=mpegts]udp://127.0.0.1:{feed_port}?pkt_size=1316|[f=mpegts]udp://127.0.0.1:{probe_port}?pkt_size=1316"
    );
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
        .arg(ts)
        .args(["-c", "copy", "-map", "0", "-f", "tee", &tee])
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg CLI installed")
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn json_of(response: reqwest::Response) -> Value {
    response.json().await.expect("JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restream_trailing_a_live_feed_by_ten_seconds_is_flagged_with_the_delay_as_offset() {
    let mut app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let feed_ts = prepare_feed(dir.path());
    let pirate = prepare_pirate();
    assert!(pirate.len() >= 10, "pirate keyframes: {}", pirate.len());

    let (_, owner_key) = app.rights_holder("Sintel Sports").await;
    let ingest_key = app.key_for(Role::Ingest, None).await;
    let feed_port = free_udp_port();
    let response = app
        .create_hash_reference(
            &owner_key,
            &json!({
                "title": "Sintel Cup final, live",
                "live_url": format!("udp://127.0.0.1:{feed_port}"),
                "policy": {"action": "flag", "min_match_seconds": 8},
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = json_of(response).await;
    assert_eq!(created["status"], "live");
    let id = created["id"].as_str().unwrap().to_owned();
    let reference = json_of(app.get_reference(&owner_key, &id).await).await;
    let origin_ms = reference["live"]["origin_ms"].as_i64().unwrap();

    // Give the ingest a moment to claim the feed and listen, then air it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let probe_port = free_udp_port();
    let probe = tokio::net::UdpSocket::bind(("127.0.0.1", probe_port)).await.unwrap();
    let _sender = KillOnDrop(air(&feed_ts, feed_port, probe_port));
    let mut packet = [0_u8; 2048];
    tokio::time::timeout(Duration::from_secs(10), probe.recv(&mut packet))
        .await
        .expect("the feed airs")
        .unwrap();
    let aired_at = now_ms();

    // The pirate: clip position p is captured ten seconds after it aired; its stream clock
    // counts from the event's time zero, like the feed's.
    let stream = "pirate-udp-1";
    let mut first_sent: Option<Instant> = None;
    let mut flagged_after: Option<Duration> = None;
    for (position, jpeg) in &pirate {
        let due = aired_at + DELAY_MS + position;
        // Wait for the keyframe's capture time, watching for the flag meanwhile.
        while now_ms() < due {
            if let Some(first) = first_sent
                && flagged_after.is_none()
            {
                let path = format!("/v1/streams/{stream}");
                let status = json_of(app.get(Some(&app.admin_key), &path).await).await;
                if status["status"] == "flagged" {
                    flagged_after = Some(first.elapsed());
                }
            }
            let left = u64::try_from((due - now_ms()).clamp(0, 200)).unwrap();
            tokio::time::sleep(Duration::from_millis(left)).await;
        }
        first_sent.get_or_insert_with(Instant::now);
        let captured_at = now_ms();
        let response = app
            .client
            .post(app.url(&format!(
                "/v1/streams/{stream}/keyframes?ts_ms={}&captured_at_ms={captured_at}&account_id=pirate",
                captured_at - origin_ms
            )))
            .bearer_auth(&ingest_key)
            .header("content-type", "image/jpeg")
            .body(jpeg.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    // The last keyframes may still be in the worker.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut view = Value::Null;
    while Instant::now() < deadline {
        view = json_of(app.get(Some(&app.admin_key), &format!("/v1/streams/{stream}")).await).await;
        if view["status"] == "flagged" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(view["status"], "flagged", "{view:#}");
    let matched = view["matches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["reference_id"] == id.as_str())
        .unwrap_or_else(|| panic!("a match on the live reference: {view:#}"));
    let offset = matched["offset_ms"].as_i64().unwrap();
    // The reference runs ahead of the re-stream: its offset is minus the delay.
    assert!((offset + DELAY_MS).abs() <= 1_000, "offset {offset} ms for a {DELAY_MS} ms delay");
    eprintln!(
        "live e2e: offset {offset} ms (delay {DELAY_MS} ms); flagged {:?} after the pirate's first keyframe; match {matched}",
        flagged_after
    );

    let reference = json_of(app.get_reference(&owner_key, &id).await).await;
    assert_eq!(reference["status"], "live", "{reference:#}");
    let live = &reference["live"];
    assert!(live["frames"].as_i64().unwrap() > 100, "{reference:#}");
    assert!(live["last_frame_at"].as_i64().unwrap() > aired_at, "{reference:#}");
    assert!(live["ingested_by"].is_string(), "{reference:#}");
    // Shut down as `offside serve` does on SIGTERM: the ingest halts its decoder and gives the
    // lease up. A decoder left blocked on a network read would hang here.
    tokio::time::timeout(Duration::from_secs(20), app.stop()).await.expect("the app stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_feed_with_archive_becomes_an_ordinary_ready_reference_when_it_ends() {
    let mut app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("short.mp4");
    ffmpeg(&[
        "-ss",
        "20",
        "-t",
        "4",
        "-i",
        dev_clip().to_str().unwrap(),
        "-an",
        "-vf",
        "scale=640:360",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        clip.to_str().unwrap(),
    ]);
    let (_, owner_key) = app.rights_holder("Archive Sports").await;
    let response = app
        .create_hash_reference(
            &owner_key,
            &json!({"title": "short event", "live_url": clip.to_str().unwrap(), "archive": true}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = json_of(response).await["id"].as_str().unwrap().to_owned();

    // The file airs in real time (4 s), then the feed ends and its frames are archived.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reference = Value::Null;
    while Instant::now() < deadline {
        reference = json_of(app.get_reference(&owner_key, &id).await).await;
        if reference["status"] == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(reference["status"], "ready", "{reference:#}");
    assert_eq!(reference["live"]["status"], "ended", "{reference:#}");
    assert!(reference["frames"].as_i64().unwrap() > 20, "{reference:#}");
    assert!(reference["live"]["frames"].as_i64().unwrap() > 20, "{reference:#}");
    // Every process's index sync loads it like an uploaded reference.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.library.read().unwrap().frames_of(&id).is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let frames = app.library.read().unwrap().frames_of(&id);
    assert!(frames.len() > 20, "archived frames indexed: {}", frames.len());
    assert!(frames.iter().all(|(ts, _)| (0..10_000).contains(ts)), "event times: {frames:?}");
    // With the local features of one frame a second, for the geometric tier.
    let features = offside::store::references::load_features(app.store.pool(), &id).await.unwrap();
    assert!(features.len() >= 3, "archived feature frames: {}", features.len());
    assert!(features.iter().all(|f| (0..10_000).contains(&f.ts_ms)), "event times");
    assert_eq!(app.library.read().unwrap().stats().feature_frames, features.len());
    tokio::time::timeout(Duration::from_secs(20), app.stop()).await.expect("the app stops");
}

#[tokio::test]
async fn live_feeds_on_private_addresses_or_unknown_schemes_are_refused() {
    let app = common::spawn_app_on(common::Db::Sqlite, |c| c.allow_private_urls = false).await;
    let (_, owner_key) = app.rights_holder("Careful Sports").await;
    for url in
        ["udp://127.0.0.1:5000", "rtmp://10.1.2.3/live/x", "ftp://8.8.8.8/feed", "/etc/passwd"]
    {
        let response = app
            .create_hash_reference(&owner_key, &json!({"title": "probe", "live_url": url}))
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
    }
    let response = app
        .create_hash_reference(
            &owner_key,
            &json!({"title": "x", "live_url": "rtmp://8.8.8.8/live/x", "retention_seconds": 5}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}
