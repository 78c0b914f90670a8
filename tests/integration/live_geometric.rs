//! The geometric tier on live feeds, end to end: the ffmpeg CLI airs a development-set clip as
//! MPEG-TS over UDP on loopback, Offside ingests it as a live reference, and a pirate that
//! shows the same clip shrunk to 75 % inside a coloured surround with a box over a corner (a
//! streamer's layout) trails it by ten seconds as keyframes through the HTTP API. PDQ cannot
//! see that picture; the feed's local features verify it.
//!
//! Needs the ffmpeg CLI and the development set in `../shared` beside the repository.

use std::path::Path;

use std::time::{Duration, Instant};

use crate::common::live::{
    air_udp, dev_clip, encode_feed, ffmpeg, free_udp_port, json_of, pirate_keyframes,
};
use crate::common::spawn_app;
use offside::recognition::{
    KeyframeHashes, LiveQuery, RecognitionConfig, StreamRecognizer, Tiers, hash_keyframe,
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
    pirate_keyframes(&layout, KEYFRAME_EVERY_MS, PIRATE_FROM_MS, i64::MAX)
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
fn decides_with(app: &crate::common::TestApp, sent: &[Sent], tiers: Tiers) -> (bool, usize) {
    let config = RecognitionConfig { tiers, ..RecognitionConfig::default() };
    let library = app.library.read().unwrap();
    let mut recognizer = StreamRecognizer::new(config.clone());
    let mut hits = 0;
    for s in sent {
        let found = library.hits(&s.hashes, &config, Some(LiveQuery::at(s.captured_at_ms)));
        hits += found.len();
        recognizer.observe(s.stream_ts_ms, &found);
    }
    let flagged = recognizer
        .evidence()
        .iter()
        .any(|(_, e)| e.is_conclusive_after(&config.matcher, MIN_MATCH_SECONDS));
    (flagged, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restream_in_a_streamer_layout_is_flagged_against_a_live_feed_by_its_local_features() {
    let mut app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let feed_ts = dir.path().join("feed.ts");
    encode_feed(&feed_ts, 0, FEED_SECONDS);
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
    crate::common::eventually(Duration::from_secs(10), "the feed is claimed", || async {
        let reference = json_of(app.get_reference(&owner_key, &id).await).await;
        reference["live"]["ingested_by"].is_string().then_some(())
    })
    .await;
    let (_sender, aired_at) = air_udp(&feed_ts, feed_port).await;

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
        app.library.read().unwrap().live_feature_frames(),
    );
    tokio::time::timeout(Duration::from_secs(20), app.stop()).await.expect("the app stops");
}
