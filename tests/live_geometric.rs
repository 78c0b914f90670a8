//! The geometric tier on live feeds, end to end: the ffmpeg CLI airs a development-set clip as
//! MPEG-TS over UDP on loopback, Offside ingests it as a live reference, and a pirate that
//! shows the same clip shrunk to 75 % inside a coloured surround with a box over a corner (a
//! streamer's layout) trails it by ten seconds as keyframes through the HTTP API. PDQ cannot
//! see that picture; the feed's local features verify it.
//!
//! Needs the ffmpeg CLI and the development set in `../shared` beside the repository.

mod common;

use std::net::UdpSocket;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::spawn_app;
use offside::live::LiveWindow;
use offside::media::{KeyframeOptions, extract_keyframes};
use offside::recognition::{
    KeyframeHashes, RecognitionConfig, StreamRecognizer, Tiers, hash_keyframe,
};
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
/// The reference's policy: flag after this much consistent evidence.
const MIN_MATCH_SECONDS: f64 = 8.0;

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

/// The pirate's keyframes: the clip shrunk to 75 % in the middle of a blue-grey surround, a
/// solid box (a face-cam) over its lower right corner, one 480-pixel JPEG every keyframe
/// interval (as `offside tap` extracts them), keyed by clip position in ms.
fn prepare_pirate(dir: &Path) -> Vec<(i64, Vec<u8>)> {
    let layout = dir.join("pirate.mp4");
    ffmpeg(&[
        "-i",
        dev_clip().to_str().unwrap(),
        "-t",
        &FEED_SECONDS.to_string(),
        "-an",
        "-vf",
        "scale=iw*0.75:ih*0.75,pad=iw/0.75:ih/0.75:(ow-iw)/2:(oh-ih)/2:color=0x305070,\
         drawbox=x=iw*0.6:y=ih*0.55:w=iw*0.4:h=ih*0.45:color=0xc08040:t=fill",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        layout.to_str().unwrap(),
    ]);
    let options = KeyframeOptions {
        interval: Duration::from_millis(KEYFRAME_EVERY_MS.unsigned_abs()),
        max_long_side: Some(480),
        jpeg_quality: 70,
        ..KeyframeOptions::default()
    };
    let mut out = Vec::new();
    extract_keyframes(layout.to_str().unwrap(), &options, |k| {
        if k.ts_ms >= PIRATE_FROM_MS {
            out.push((k.ts_ms, k.jpeg));
        }
        ControlFlow::Continue(())
    })
    .expect("the pirate layout decodes");
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

/// One keyframe the pirate sent: stream time, capture time, and its hashes and features.
struct Sent {
    stream_ts_ms: i64,
    captured_at_ms: i64,
    hashes: KeyframeHashes,
}

/// Replays the sent keyframes through this process's live lookup with only `tiers`, under the
/// default decision rule and the reference's `min_match_seconds`: whether it would flag, and
/// how many hits the tiers gave.
fn decides_with(app: &common::TestApp, sent: &[Sent], tiers: Tiers) -> (bool, usize) {
    let config = RecognitionConfig { tiers, ..RecognitionConfig::default() };
    let verify = app.library.read().unwrap().verify_config().clone();
    let live = app.live.read().unwrap();
    let mut recognizer = StreamRecognizer::new(config.clone());
    let mut hits = 0;
    for s in sent {
        let found: Vec<_> = live
            .lookup_tiers(&s.hashes, s.captured_at_ms, LiveWindow::default(), &config, &verify)
            .into_iter()
            .map(|(_, hit)| hit)
            .collect();
        hits += found.len();
        recognizer.observe_hits(s.stream_ts_ms, &found);
    }
    let flagged = recognizer
        .evidence()
        .iter()
        .any(|e| e.is_conclusive_after(&config.matcher, MIN_MATCH_SECONDS));
    (flagged, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restream_in_a_streamer_layout_is_flagged_against_a_live_feed_by_its_local_features() {
    let mut app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let feed_ts = prepare_feed(dir.path());
    let pirate = prepare_pirate(dir.path());
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
                "policy": {"action": "flag", "min_match_seconds": MIN_MATCH_SECONDS},
            }),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created = json_of(response).await;
    assert_eq!(created["status"], "live");
    let id = created["id"].as_str().unwrap().to_owned();
    let reference = json_of(app.get_reference(&owner_key, &id).await).await;
    let origin_ms = reference["live"]["origin_ms"].as_i64().unwrap();

    // Air the feed once the ingest has claimed it (what it misses while FFmpeg opens the port
    // is the clip's opening, which the pirate does not show).
    common::eventually(Duration::from_secs(10), "the feed is claimed", || async {
        let reference = json_of(app.get_reference(&owner_key, &id).await).await;
        reference["live"]["ingested_by"].is_string().then_some(())
    })
    .await;
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
    // counts from the event's time zero, like the feed's. It stops once flagged.
    let stream = "pirate-layout-1";
    let path = format!("/v1/streams/{stream}");
    let mut sent: Vec<Sent> = Vec::new();
    let mut view = Value::Null;
    'pirate: for (position, jpeg) in &pirate {
        let due = aired_at + DELAY_MS + position;
        while now_ms() < due {
            if !sent.is_empty() {
                view = json_of(app.get(Some(&app.admin_key), &path).await).await;
                if view["status"] == "flagged" {
                    break 'pirate;
                }
            }
            let left = u64::try_from((due - now_ms()).clamp(0, 200)).unwrap();
            tokio::time::sleep(Duration::from_millis(left)).await;
        }
        let captured_at = now_ms();
        let stream_ts = captured_at - origin_ms;
        let response = app
            .client
            .post(app.url(&format!(
                "{path}/keyframes?ts_ms={stream_ts}&captured_at_ms={captured_at}&account_id=pirate"
            )))
            .bearer_auth(&ingest_key)
            .header("content-type", "image/jpeg")
            .body(jpeg.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        sent.push(Sent {
            stream_ts_ms: stream_ts,
            captured_at_ms: captured_at,
            hashes: hash_keyframe(jpeg).unwrap(),
        });
    }
    // The last keyframes may still be in the worker.
    let deadline = Instant::now() + Duration::from_secs(5);
    while view["status"] != "flagged" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        view = json_of(app.get(Some(&app.admin_key), &path).await).await;
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

    // The same keyframes at the same capture times through the same live lookup: the PDQ tier
    // alone would not have flagged the stream; the geometric tier alone does.
    let (pdq_flags, pdq_hits) = decides_with(&app, &sent, Tiers::Pdq);
    assert!(!pdq_flags, "the PDQ tier alone flags it ({pdq_hits} hits)");
    let (features_flag, feature_hits) = decides_with(&app, &sent, Tiers::Features);
    assert!(features_flag, "the geometric tier alone misses it ({feature_hits} hits)");
    eprintln!(
        "live geometric e2e: offset {offset} ms (delay {DELAY_MS} ms), flagged after {} keyframes; \
         PDQ {pdq_hits} hits, features {feature_hits} hits; {} feature frames held; match {matched}",
        sent.len(),
        app.live.read().unwrap().feature_frames(),
    );
    tokio::time::timeout(Duration::from_secs(20), app.stop()).await.expect("the app stops");
}
