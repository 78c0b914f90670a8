//! Visual evidence (issue #14): what a reviewer sees of a case through the API, on SQLite and
//! PostgreSQL: evidence rows with their tier and both stills, the evidence bundle, tenancy of
//! stills, disputes, restore, viewers, the stills retention and deletion with the reference.

use std::io::Read as _;

use crate::common::{Db, TestApp, WebhookReceiver, eventually, query_keyframes, spawn_app_on};
use offside::store::keys::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// A rights holder's flag reference and a pirate stream (with a viewer count) flagged on it:
/// `(reference id, holder key, ingest key, case)`.
async fn flagged_case(app: &TestApp, stream: &str) -> (String, String, String, Value) {
    let (_holder, holder_key) = app.rights_holder("Example League").await;
    let reference = app
        .ready_reference(
            &holder_key,
            "ref_earth.mp4",
            &json!({"action": "flag", "min_match_seconds": 4}),
        )
        .await;
    let ingest = app.key_for(Role::Ingest, None).await;
    for (ts, jpeg) in query_keyframes("earth__color__1") {
        let r = app
            .post_keyframe(&ingest, stream, &format!("ts_ms={ts}&viewers=1234"), "image/jpeg", jpeg)
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    app.wait_for_stream_status(stream, "flagged").await;
    let cases = app.cases("?status=open").await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    // The deciding keyframe's still is stored just after its decision (`StillToKeep`).
    let id = cases[0]["id"].as_str().unwrap().to_owned();
    eventually(std::time::Duration::from_secs(10), "a still for every evidence pair", || async {
        let shown: Value =
            app.get(Some(&app.admin_key), &format!("/v1/cases/{id}")).await.json().await.ok()?;
        let pairs = shown["evidence"].as_array()?;
        pairs.iter().all(|p| p["stream_still_url"].is_string()).then_some(())
    })
    .await;
    (reference, holder_key, ingest, cases[0].clone())
}

async fn get_bytes(app: &TestApp, key: &str, path: &str) -> (StatusCode, String, Vec<u8>) {
    let r = app.get(Some(key), path).await;
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, ct, r.bytes().await.expect("body").to_vec())
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xff, 0xd8]) && image::load_from_memory(bytes).is_ok()
}

async fn a_case_shows_each_evidence_pair_with_its_tier_and_both_stills(db: Db) {
    let app = spawn_app_on(db, |_| {}).await;
    let (_, holder_key, _, case) = flagged_case(&app, "pirate-stills").await;
    let id = case["id"].as_str().unwrap();
    let shown: Value =
        app.get(Some(&app.admin_key), &format!("/v1/cases/{id}")).await.json().await.unwrap();
    let evidence = shown["evidence"].as_array().expect("evidence");
    assert!(evidence.len() >= 2, "{shown}");
    for pair in evidence {
        assert!(["pdq", "features"].contains(&pair["tier"].as_str().unwrap_or("")), "{pair}");
        for side in ["stream_still_url", "reference_still_url"] {
            let url = pair[side].as_str().unwrap_or_else(|| panic!("{side} in {pair}"));
            // The owner of the reference and a reviewer see it; it is a real picture.
            for key in [&app.admin_key, &holder_key] {
                let (status, ct, bytes) = get_bytes(&app, key, url).await;
                assert_eq!(status, StatusCode::OK, "{url}");
                assert_eq!(ct, "image/jpeg");
                assert!(is_jpeg(&bytes), "{url} is not a JPEG");
            }
        }
    }
    // The stream still is the keyframe at about 480 px; the reference still about 320 px.
    let (_, _, stream_still) =
        get_bytes(&app, &app.admin_key, evidence[0]["stream_still_url"].as_str().unwrap()).await;
    let (_, _, reference_still) =
        get_bytes(&app, &app.admin_key, evidence[0]["reference_still_url"].as_str().unwrap()).await;
    let long_side = |b: &[u8]| {
        let i = image::load_from_memory(b).unwrap();
        i.width().max(i.height())
    };
    assert!((300..=480).contains(&long_side(&stream_still)));
    assert!((240..=320).contains(&long_side(&reference_still)));

    // Another rights holder learns nothing: the case and its stills answer 404.
    let (_, other_key) = app.rights_holder("Other League").await;
    assert_eq!(
        app.get(Some(&other_key), &format!("/v1/cases/{id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    for side in ["stream_still_url", "reference_still_url"] {
        let url = evidence[0][side].as_str().unwrap();
        assert_eq!(app.get(Some(&other_key), url).await.status(), StatusCode::NOT_FOUND, "{url}");
    }
    assert_eq!(
        app.get(Some(&other_key), &format!("/v1/cases/{id}/evidence")).await.status(),
        StatusCode::NOT_FOUND
    );
    // A time that is not in the evidence is not served, even to a reviewer.
    let off = format!("/v1/cases/{id}/stills/stream/123457");
    assert_eq!(app.get(Some(&app.admin_key), &off).await.status(), StatusCode::NOT_FOUND);
    // The platform's ingest key cannot read cases or their stills.
    let ingest = app.key_for(Role::Ingest, None).await;
    let url = evidence[0]["stream_still_url"].as_str().unwrap();
    assert_eq!(app.get(Some(&ingest), url).await.status(), StatusCode::FORBIDDEN);

    // The stream remembers its reach.
    let stream = app.stream("pirate-stills").await.unwrap();
    assert_eq!(stream["viewers"], 1234, "{stream}");
}

#[tokio::test]
async fn a_case_shows_each_evidence_pair_with_its_tier_and_both_stills_on_sqlite() {
    a_case_shows_each_evidence_pair_with_its_tier_and_both_stills(Db::Sqlite).await;
}

#[tokio::test]
async fn a_case_shows_each_evidence_pair_with_its_tier_and_both_stills_on_postgres() {
    a_case_shows_each_evidence_pair_with_its_tier_and_both_stills(Db::Postgres).await;
}

#[tokio::test]
async fn the_evidence_bundle_holds_the_case_every_still_and_a_manifest_that_verifies() {
    let app = spawn_app_on(Db::Sqlite, |_| {}).await;
    let (reference, holder_key, _, case) = flagged_case(&app, "pirate-bundle").await;
    let id = case["id"].as_str().unwrap();
    let r = app.get(Some(&holder_key), &format!("/v1/cases/{id}/evidence")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/zip");
    let bytes = r.bytes().await.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip");
    let mut files = std::collections::BTreeMap::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut data = Vec::new();
        f.read_to_end(&mut data).unwrap();
        files.insert(f.name().unwrap().into_owned(), data);
    }
    let manifest = String::from_utf8(files["manifest.sha256"].clone()).unwrap();
    // Every other file is listed with its digest, and nothing else is.
    assert_eq!(manifest.lines().count(), files.len() - 1, "{manifest}");
    for line in manifest.lines() {
        let (digest, name) = line.split_once("  ").expect("sha256sum format");
        assert_eq!(digest, hex::encode(Sha256::digest(&files[name])), "{name}");
    }
    let json: Value = serde_json::from_slice(&files["case.json"]).unwrap();
    assert_eq!(json["case"]["id"], id);
    assert_eq!(json["stream"]["id"], "pirate-bundle");
    assert_eq!(json["stream"]["viewers"], 1234);
    assert_eq!(json["reference"]["id"], reference.as_str());
    assert_eq!(json["reference"]["title"], "ref_earth.mp4");
    assert_eq!(json["reference"]["policy"]["action"], "flag");
    let pairs = json["evidence"].as_array().unwrap();
    assert_eq!(pairs.len(), case["evidence"].as_array().unwrap().len());
    for pair in pairs {
        for side in ["stream_still", "reference_still"] {
            let name = pair[side].as_str().unwrap_or_else(|| panic!("{side} in {pair}"));
            assert!(is_jpeg(&files[name]), "{name}");
        }
    }
}

#[tokio::test]
async fn a_disputed_kill_goes_back_to_the_queue_and_a_restore_from_it_sends_stream_restored() {
    let app = spawn_app_on(Db::Sqlite, |_| {}).await;
    let hook = WebhookReceiver::start().await;
    let r = app
        .create_webhook(
            &app.admin_key,
            &hook.url,
            &["stream.killed", "stream.restored"],
            "a-secret-of-16-chars",
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_, _, ingest, case) = flagged_case(&app, "pirate-dispute").await;
    let id = case["id"].as_str().unwrap();
    let reviewer = app.key_for(Role::TrustSafety, None).await;
    let r = app.decide_case(&reviewer, id, "confirm", "the match is clear").await;
    assert_eq!(r.status(), StatusCode::OK);
    app.wait_for_stream_status("pirate-dispute", "killed").await;
    eventually(std::time::Duration::from_secs(20), "stream.killed", || async {
        hook.events().into_iter().find(|e| e["type"] == "stream.killed")
    })
    .await;
    assert!(app.cases("?status=open").await.is_empty());

    // Only the platform relays disputes; a reviewer's key cannot.
    let dispute = |key: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/streams/pirate-dispute/dispute"))
                .bearer_auth(key)
                .json(&json!({"reason": "this is my own footage"}))
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(dispute(reviewer.clone()).await.status(), StatusCode::FORBIDDEN);
    let r = dispute(ingest.clone()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let disputed: Value = r.json().await.unwrap();
    assert_eq!(disputed["id"], id);
    assert_eq!(disputed["status"], "open");
    assert_eq!(disputed["dispute_reason"], "this is my own footage");
    assert!(disputed["disputed_at"].is_i64());
    // Back in the queue, the stream still killed until a reviewer decides.
    let open = app.cases("?status=open").await;
    assert_eq!(open.len(), 1);
    assert_eq!(app.stream("pirate-dispute").await.unwrap()["status"], "killed");

    let r = app.decide_case(&reviewer, id, "restore", "licensed, per the dispute").await;
    assert_eq!(r.status(), StatusCode::OK);
    app.wait_for_stream_status("pirate-dispute", "live").await;
    let restored = eventually(std::time::Duration::from_secs(20), "stream.restored", || async {
        hook.events().into_iter().find(|e| e["type"] == "stream.restored")
    })
    .await;
    assert_eq!(restored["data"]["stream_id"], "pirate-dispute");
    assert_eq!(restored["data"]["case_id"], id);
    // The audit trail has the dispute and the restore.
    let audit: Value = app.audit(&app.admin_key, "").await.json().await.unwrap();
    let actions: Vec<&str> =
        audit.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"case.dispute") && actions.contains(&"case.restore"), "{actions:?}");
    // A stream with nothing decided has nothing to dispute.
    let r = app
        .client
        .post(app.url("/v1/streams/nobody/dispute"))
        .bearer_auth(&ingest)
        .json(&json!({"reason": "why"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

/// Waits until every keyframe of `stream` is handled and settled (a delivery is acked once its
/// still is stored), so the stills counted after are all there will be. Two consumers: a
/// stream's end can be handled while its last keyframes still are.
async fn wait_until_handled(app: &TestApp, stream: &str) {
    eventually(std::time::Duration::from_secs(60), "every keyframe handled", || async {
        let queued: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM keyframe_queue WHERE stream_id = $1")
                .bind(stream)
                .fetch_one(app.store.pool())
                .await
                .unwrap();
        (queued == 0).then_some(())
    })
    .await;
}

/// A flagged stream goes on being recognised; it keeps the stills of its first keyframes with
/// hits, then one in 60 (and the deciding ones): a flagged stream-hour stays under 1 MB.
#[tokio::test]
async fn a_flagged_stream_keeps_its_first_stills_then_one_in_sixty() {
    let app = spawn_app_on(Db::Sqlite, |_| {}).await;
    let stream = "pirate-long";
    let (_, _, ingest, _) = flagged_case(&app, stream).await;
    // The flagged stream goes on showing the same pictures: 80 more keyframes, most with hits.
    let frames = query_keyframes("earth__color__1");
    let first_ts = frames.last().unwrap().0 + 2000;
    let more: Vec<(i64, Vec<u8>)> =
        (0..80).map(|i| (first_ts + 2000 * i as i64, frames[i % frames.len()].1.clone())).collect();
    app.post_keyframes(&ingest, stream, &more).await;
    wait_until_handled(&app, stream).await;
    let pool = app.store.pool();
    let keyframes_with_hits: i64 =
        sqlx::query_scalar("SELECT hit_version FROM streams WHERE id = $1")
            .bind(stream)
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(keyframes_with_hits > 60, "{keyframes_with_hits} keyframes with hits");
    let (kept, _) = offside::store::stills::stream_still_bytes(pool, stream).await.unwrap();
    // Versions 1..=32 and 60; the deciding keyframes are among the first.
    let expected = (1..=keyframes_with_hits)
        .filter(|v| {
            *v <= offside::pipeline::STILLS_IN_FULL || v % offside::pipeline::STILL_EVERY_AFTER == 0
        })
        .count() as i64;
    assert_eq!(kept, expected, "{keyframes_with_hits} keyframes with hits");
    // Every evidence pair of the case still shows both pictures.
    let case = &app.cases("?status=open").await[0];
    let shown: Value = app
        .get(Some(&app.admin_key), &format!("/v1/cases/{}", case["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    for pair in shown["evidence"].as_array().expect("evidence") {
        assert!(pair["stream_still_url"].is_string(), "{pair}");
    }
}

#[tokio::test]
async fn stills_go_with_the_retention_and_with_their_reference() {
    let app = spawn_app_on(Db::Sqlite, |_| {}).await;
    let (reference, holder_key, ingest, _) = flagged_case(&app, "pirate-retention").await;
    // Every keyframe handled: the stream ends behind them.
    assert_eq!(app.end_stream(&ingest, "pirate-retention").await.status(), StatusCode::ACCEPTED);
    // A flagged stream stays flagged when it ends (its case is open): wait for its end time.
    let ended = eventually(std::time::Duration::from_secs(30), "the stream's end", || async {
        app.stream("pirate-retention").await.filter(|s| s["ended_at"].is_i64())
    })
    .await;
    assert_eq!(ended["status"], "flagged", "{ended}");
    let pool = app.store.pool();
    wait_until_handled(&app, "pirate-retention").await;
    let (kept, bytes) =
        offside::store::stills::stream_still_bytes(pool, "pirate-retention").await.unwrap();
    assert!(kept >= 2, "the keyframes with hits keep stills");
    assert!(bytes / kept < 40_000, "about 15 KB a stream still, got {}", bytes / kept);
    let (ref_stills, ref_bytes) =
        offside::store::stills::reference_still_bytes(pool, &reference).await.unwrap();
    // One a second of the 30-second clip, about 10 KB each.
    assert!((29..=31).contains(&ref_stills), "{ref_stills}");
    assert!(ref_bytes / ref_stills < 20_000, "{}", ref_bytes / ref_stills);

    // Within the retention nothing goes; past it the stream's stills do.
    let now = offside::store::now_ms();
    let day = 86_400_000;
    let pruned = offside::review::retention::prune(&app.store, now, 30 * day).await.unwrap();
    assert_eq!(pruned.stream_stills, 0);
    let pruned =
        offside::review::retention::prune(&app.store, now + 31 * day, 30 * day).await.unwrap();
    assert_eq!(pruned.stream_stills, kept as u64);
    assert_eq!(
        offside::store::stills::stream_still_bytes(pool, "pirate-retention").await.unwrap().0,
        0
    );
    // A file reference's stills are not the retention's business...
    assert_eq!(
        offside::store::stills::reference_still_bytes(pool, &reference).await.unwrap().0,
        ref_stills
    );
    // ...they go when the reference is deleted.
    assert_eq!(
        app.delete_reference(&holder_key, &reference).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(offside::store::stills::reference_still_bytes(pool, &reference).await.unwrap().0, 0);
}

/// A live feed's reference, registered straight in the store, with a still for each of its
/// first `seconds` of event time.
async fn feed_with_stills(app: &TestApp, archive: bool, origin_ms: i64, seconds: i64) -> String {
    use offside::domain::{Policy, ReferenceSource, ReferenceStatus};
    use offside::live::store::{NewFeed, insert};
    use offside::store::references::{self, NewReference};
    let pool = app.store.pool();
    let id = offside::store::new_id();
    let policy: Policy = serde_json::from_value(json!({"action": "flag"})).unwrap();
    references::insert(
        pool,
        &NewReference {
            id: &id,
            rights_holder_id: None,
            title: "Cup final, live",
            source: ReferenceSource::Hashes,
            status: ReferenceStatus::Live,
            policy: &policy,
            upload_path: None,
        },
    )
    .await
    .unwrap();
    let feed = NewFeed {
        reference_id: &id,
        url: "udp://127.0.0.1:1",
        origin_ms,
        starts_at: None,
        ends_at: None,
        retention_ms: 3_600_000,
        archive,
    };
    insert(pool, &feed).await.unwrap();
    let jpeg = query_keyframes("earth__color__1").remove(0).1;
    let stills: Vec<offside::media::Still> = (0..seconds)
        .map(|s| offside::media::Still { ts_ms: s * 1000, jpeg: jpeg.clone() })
        .collect();
    let mut conn = pool.acquire().await.unwrap();
    offside::store::stills::insert_reference_stills(&mut conn, &id, &stills).await.unwrap();
    id
}

#[tokio::test]
async fn a_live_feed_keeps_its_stills_for_its_retention_unless_it_is_archived() {
    let app = spawn_app_on(Db::Sqlite, |_| {}).await;
    let now = offside::store::now_ms();
    // Both feeds aired for two hours, ending now; their retention is one hour.
    let origin = now - 7_200_000;
    let plain = feed_with_stills(&app, false, origin, 7200).await;
    let archived = feed_with_stills(&app, true, origin, 7200).await;
    // (The app's own retention pass may run meanwhile: count what is left, not what this pass
    // removed.)
    offside::review::retention::prune(&app.store, now, 30 * 86_400_000).await.unwrap();
    let times =
        offside::store::stills::reference_still_times(app.store.pool(), &plain).await.unwrap();
    assert_eq!(times.first(), Some(&3_600_000), "what aired within the last hour stays");
    assert_eq!(times.len(), 3600, "and nothing older");
    let kept =
        offside::store::stills::reference_still_times(app.store.pool(), &archived).await.unwrap();
    assert_eq!(kept.len(), 7200, "an archived feed keeps every still");
}
