//! Live reference feeds end to end: the ffmpeg CLI airs a development-set clip as MPEG-TS over
//! UDP on loopback, Offside ingests it as a live reference, and a pirate copy of the same clip
//! trailing it by ten seconds arrives as keyframes through the HTTP API.
//!
//! Needs the ffmpeg CLI and the development set in `../shared` beside the repository.

use std::time::{Duration, Instant};

use crate::common::live::{
    air_udp, dev_clip, encode_feed, ffmpeg, free_udp_port, json_of, pirate_keyframes,
};
use crate::common::spawn_app;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restream_trailing_a_live_feed_by_ten_seconds_is_flagged_with_the_delay_as_offset() {
    let mut app = spawn_app().await;
    let dir = tempfile::tempdir().unwrap();
    let feed_ts = dir.path().join("feed.ts");
    encode_feed(&feed_ts, 0, FEED_SECONDS);
    let pirate = pirate_keyframes(
        &dev_clip(),
        KEYFRAME_EVERY_MS,
        PIRATE_FROM_MS,
        i64::from(FEED_SECONDS) * 1000,
    );
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
    let (_sender, aired_at) = air_udp(&feed_ts, feed_port).await;

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
    // A reviewer reads how far the re-stream trails the feed, and sees the feed's pictures.
    let delay = matched["delay_ms"].as_i64().expect("a live match reports its delay");
    assert!((delay - DELAY_MS).abs() <= 1_000, "delay {delay} ms for a {DELAY_MS} ms delay");
    let cases =
        json_of(app.get(Some(&app.admin_key), &format!("/v1/cases?stream_id={stream}")).await)
            .await;
    let pairs = cases[0]["evidence"].as_array().expect("the flag's case");
    assert!(
        pairs
            .iter()
            .all(|p| p["reference_still_url"].is_string() && p["stream_still_url"].is_string()),
        "every evidence pair shows the feed's still and the keyframe's: {pairs:?}"
    );
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
    let app =
        crate::common::spawn_app_on(crate::common::Db::Sqlite, |c| c.allow_private_urls = false)
            .await;
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
