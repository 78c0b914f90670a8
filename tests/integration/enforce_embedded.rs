//! The enforcement pipeline in the embedded deployment (SQLite, the database keyframe queue): keyframes
//! posted to the HTTP API become flags, kills, cases and signed takedown webhooks.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::{
    Db, WebhookReceiver, eventually, query_keyframes, signature_is_valid, spawn_app, spawn_app_on,
};
use offside::recognition::{KeyframeHit, RecognitionConfig, StreamRecognizer, hash_keyframe};
use offside::store::keys::Role;
use offside::store::streams;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// What the app's library finds for a fixture keyframe, with the default configuration.
fn library_hits(app: &crate::common::TestApp, jpeg: &[u8]) -> Vec<KeyframeHit> {
    let hashes = hash_keyframe(jpeg).expect("fixture keyframe hashes");
    app.library.read().expect("library").hits(&hashes, &RecognitionConfig::default(), None)
}

/// The keyframe at which the decision rule `offside eval` applies decides, for `frames` against
/// the app's library with `min_seconds` from the policy: what the pipeline must reproduce.
fn rule_decides_at(
    app: &crate::common::TestApp,
    frames: &[(i64, Vec<u8>)],
    min_seconds: f64,
) -> Option<(String, i64)> {
    let mut recognizer = StreamRecognizer::new(RecognitionConfig::default());
    for (ts, jpeg) in frames {
        let hits = library_hits(app, jpeg);
        recognizer.observe(*ts, &hits);
        if let Some(m) = recognizer.decision_with(|_| Some(min_seconds)) {
            return Some((m.reference_id, *ts));
        }
    }
    None
}

#[tokio::test]
async fn a_pirate_stream_is_flagged_where_the_eval_rule_decides_and_a_negative_never_is() {
    let app = spawn_app().await;
    let reference = app.enforced_reference("ref_earth.mp4", "flag").await;
    let ingest = app.key_for(Role::Ingest, None).await;

    let pirate = query_keyframes("earth__color__1");
    let expected = rule_decides_at(&app, &pirate, 4.0).expect("the rule flags this query");
    assert_eq!(expected.0, reference);
    app.post_keyframes(&ingest, "pirate-1", &pirate).await;
    let stream = app.wait_for_stream_status("pirate-1", "flagged").await;
    let m = &stream["matches"][0];
    assert_eq!(m["reference_id"], reference.as_str());
    // The pipeline applies the eval's rule; with two consumers a stream's keyframes can be
    // handled concurrently and out of order. A keyframe may be matched before an earlier one's
    // hits are committed (neither completes the evidence, and the next keyframe decides, 2 s
    // later than in order), or after later ones' (the earlier keyframe completes the evidence,
    // and the decision carries the stream time the evidence reaches, as in order). Either way
    // the evidence is the rule's: 4 s of agreement.
    let decided_at = m["decided_at_ts_ms"].as_i64().unwrap();
    assert!(
        (expected.1..=expected.1 + 2_000).contains(&decided_at),
        "the pipeline decides where the eval rule does ({}), or a keyframe later: {m}",
        expected.1
    );
    assert!(m["matched_seconds"].as_f64().unwrap() >= 4.0, "{m}");
    assert!(m["first_match_ts_ms"].as_i64().unwrap() <= expected.1);

    let cases = app.cases("?status=open").await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0]["stream_id"], "pirate-1");
    assert_eq!(cases[0]["reference_id"], reference.as_str());
    // At least the two agreeing keyframes the rule decides on (more as later keyframes land).
    let evidence = cases[0]["evidence"].as_array().expect("evidence");
    assert!(evidence.len() >= 2, "{evidence:?}");
    for e in evidence {
        assert!(e["distance"].as_u64().unwrap() <= 31, "{e}");
        assert!(e["stream_ts_ms"].is_i64() && e["reference_ts_ms"].is_i64(), "{e}");
    }

    // The hard negative (another take of a similar scene) and a plain one: never flagged.
    for (stream, query) in
        [("negative-1", "neg_webcam_take2__none__1"), ("negative-2", "neg_cup__none__1")]
    {
        app.post_keyframes(&ingest, stream, &query_keyframes(query)).await;
        assert_eq!(app.end_stream(&ingest, stream).await.status(), StatusCode::ACCEPTED);
        let ended = app.wait_for_stream_status(stream, "ended").await;
        assert_eq!(ended["matches"], json!([]), "{ended}");
    }
    assert_eq!(app.cases("").await.len(), 1);
    let flagged: Vec<Value> =
        app.list_streams(&app.admin_key, "?status=flagged").await.json().await.unwrap();
    assert_eq!(flagged.len(), 1);
    assert_eq!(flagged[0]["id"], "pirate-1");
}

#[tokio::test]
async fn a_late_keyframe_that_completes_the_evidence_dates_the_decision_where_the_evidence_reaches()
{
    // Several consumers, a redelivery or the platform's own queue can hand a stream's keyframes
    // over out of order. Here every keyframe up to the rule's decision arrives latest first, each
    // handled before the next is posted: an earlier keyframe completes the evidence, and the
    // decision is dated by the stream time the evidence reaches, the rule's, not by the keyframe
    // that happened to arrive last.
    let app = spawn_app().await;
    let reference = app.enforced_reference("ref_earth.mp4", "flag").await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let frames = query_keyframes("earth__color__1");
    let (expected_reference, decided_ts) = rule_decides_at(&app, &frames, 4.0).expect("rule flags");
    assert_eq!(expected_reference, reference);
    let upto: Vec<_> = frames.iter().filter(|(ts, _)| *ts <= decided_ts).cloned().collect();
    assert!(upto.len() >= 3, "the rule needs 4 s of agreement: {} keyframes", upto.len());
    let flagged = || async { app.stream("late").await.is_some_and(|s| s["status"] == "flagged") };
    for (ts, jpeg) in upto.iter().rev() {
        if flagged().await {
            break;
        }
        app.post_keyframes(&ingest, "late", &[(*ts, jpeg.clone())]).await;
        if library_hits(&app, jpeg).is_empty() {
            continue; // nothing of it to wait for
        }
        eventually(Duration::from_secs(20), "the keyframe's hits", || async {
            let stored = streams::stream_hits(app.store.pool(), "late", *ts, *ts).await.unwrap();
            (!stored.is_empty() || flagged().await).then_some(())
        })
        .await;
    }
    let stream = app.wait_for_stream_status("late", "flagged").await;
    let m = &stream["matches"][0];
    assert_eq!(m["reference_id"], reference.as_str());
    assert_eq!(m["decided_at_ts_ms"], decided_ts, "{m}");
    assert!(m["first_match_ts_ms"].as_i64().unwrap() < decided_ts, "{m}");
}

#[tokio::test]
async fn a_kill_policy_sends_exactly_one_signed_webhook_despite_failures_and_duplicates() {
    // Retries at most 2 s apart (the default doubles up to 600 s), so the retry after the
    // receiver comes back is never far off.
    let app = spawn_app_on(Db::Sqlite, |c| c.webhook_retry_max_secs = 2).await;
    let receiver = WebhookReceiver::start().await;
    // The platform's endpoint fails at first: the delivery is retried until a 2xx.
    receiver.status.store(503, std::sync::atomic::Ordering::SeqCst);
    let secret = "whsec-test-0123456789abcdef";
    let r = app
        .create_webhook(&app.admin_key, &receiver.url, &["stream.killed", "case.created"], secret)
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let reference = app.enforced_reference("ref_screencast.mp4", "kill").await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let frames = query_keyframes("screencast__reencode__1");
    app.post_keyframes(&ingest, "pirate-kill", &frames).await;
    let stream = app.wait_for_stream_status("pirate-kill", "killed").await;
    assert_eq!(stream["matches"][0]["reference_id"], reference.as_str());

    let delivered = |kind: &'static str| {
        let receiver = &receiver;
        async move { receiver.events().into_iter().filter(|e| e["type"] == kind).collect::<Vec<_>>() }
    };
    // Both events fail at least once before the receiver comes back (the two deliveries are
    // independent: switching after the first request alone let the other one through at its
    // first attempt on a busy machine, and it was never retried).
    eventually(Duration::from_secs(10), "a failed attempt of each event", || async {
        let killed = delivered("stream.killed").await;
        let created = delivered("case.created").await;
        (!killed.is_empty() && !created.is_empty()).then_some(())
    })
    .await;
    receiver.status.store(200, std::sync::atomic::Ordering::SeqCst);
    eventually(Duration::from_secs(20), "the takedown after retries", || async {
        let killed = delivered("stream.killed").await;
        let created = delivered("case.created").await;
        (killed.len() >= 2 && created.len() >= 2).then_some(())
    })
    .await;

    // Redelivered and duplicate keyframes (the whole stream again) change nothing.
    app.post_keyframes(&ingest, "pirate-kill", &frames).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    for request in receiver.requests() {
        let header = request.signature.as_deref().expect("Offside-Signature header");
        assert!(signature_is_valid(secret, header, &request.body), "bad signature {header}");
        assert!(!signature_is_valid("another-secret-0000", header, &request.body));
    }
    // At least once: the failed attempt and the successful one carry the same event id.
    for kind in ["stream.killed", "case.created"] {
        let ids: HashSet<String> = delivered(kind)
            .await
            .iter()
            .map(|e| e["id"].as_str().expect("event id").to_owned())
            .collect();
        assert_eq!(ids.len(), 1, "exactly one {kind} event");
    }
    let killed = delivered("stream.killed").await;
    let data = &killed[0]["data"];
    assert_eq!(data["stream_id"], "pirate-kill");
    assert_eq!(data["reference_id"], reference.as_str());
    assert_eq!(data["action"], "kill");
    assert!(killed[0]["created_at"].is_string() || killed[0]["created_at"].is_i64());
    let cases = app.cases("").await;
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["status"], "confirmed");
}

/// A receiver that is down (nothing listens on its port) for what stands for ten minutes, then
/// comes back: every event decided meanwhile arrives once, signed. Time is scaled down 60-fold:
/// the longest wait between attempts is 10 s instead of the default 600 s, the outage 10 s.
#[tokio::test]
async fn a_webhook_receiver_down_for_ten_minutes_then_up_gets_every_event_once_signed() {
    const RETRY_MAX_SECS: u64 = 10;
    let app = spawn_app_on(Db::Sqlite, |c| c.webhook_retry_max_secs = RETRY_MAX_SECS).await;
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string();
    let secret = "whsec-outage-0123456789abcdef";
    let created = app
        .create_webhook(
            &app.admin_key,
            &format!("http://{address}/hook"),
            &["stream.killed", "case.created"],
            secret,
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let webhook: Value = created.json().await.unwrap();
    let webhook_id = webhook["id"].as_str().expect("webhook id").to_owned();
    app.enforced_reference("ref_screencast.mp4", "kill").await;
    let ingest = app.key_for(Role::Ingest, None).await;

    // Two pirates killed while the receiver is down: four events to deliver.
    let down_since = std::time::Instant::now();
    let frames = query_keyframes("screencast__reencode__1");
    for stream in ["outage-1", "outage-2"] {
        app.post_keyframes(&ingest, stream, &frames).await;
        app.wait_for_stream_status(stream, "killed").await;
    }
    let deliveries = || async {
        let r =
            app.get(Some(&app.admin_key), &format!("/v1/webhooks/{webhook_id}/deliveries")).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json::<Vec<Value>>().await.unwrap()
    };
    // Failed attempts are recorded and retried while it is down, nothing is given up.
    let failing = eventually(Duration::from_secs(20), "retried failed attempts", || async {
        let all = deliveries().await;
        (all.len() == 4 && all.iter().all(|d| d["attempts"].as_i64() >= Some(2))).then_some(all)
    })
    .await;
    assert!(failing.iter().all(|d| d["status"] == "pending"), "{failing:?}");
    let outage = Duration::from_secs(RETRY_MAX_SECS);
    tokio::time::sleep(outage.saturating_sub(down_since.elapsed())).await;

    let receiver = WebhookReceiver::start_on(&address).await;
    // Back up: everything arrives within the longest wait between attempts (plus a pass).
    eventually(Duration::from_secs(RETRY_MAX_SECS + 5), "every event delivered", || async {
        deliveries().await.iter().all(|d| d["status"] == "delivered").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let requests = receiver.requests();
    for request in &requests {
        let header = request.signature.as_deref().expect("Offside-Signature header");
        assert!(signature_is_valid(secret, header, &request.body), "bad signature {header}");
    }
    let events = receiver.events();
    let ids: HashSet<&str> = events.iter().map(|e| e["id"].as_str().expect("event id")).collect();
    assert_eq!(ids.len(), 4, "four distinct events: {events:?}");
    assert_eq!(events.len(), 4, "each delivered exactly once: {events:?}");
    for stream in ["outage-1", "outage-2"] {
        for kind in ["stream.killed", "case.created"] {
            let n = events
                .iter()
                .filter(|e| e["type"] == kind && e["data"]["stream_id"] == stream)
                .count();
            assert_eq!(n, 1, "{kind} of {stream}: {events:?}");
        }
    }
}

#[tokio::test]
async fn trust_and_safety_review_cases_kill_and_restore_streams_and_every_action_is_audited() {
    let app = spawn_app().await;
    let (_earth_holder, earth_key) = app.rights_holder("Earth Films").await;
    let (_cast_holder, cast_key) = app.rights_holder("Screencasts Inc").await;
    let flag = json!({"action": "flag", "min_match_seconds": 4});
    let earth = app.ready_reference(&earth_key, "ref_earth.mp4", &flag).await;
    let cast = app.ready_reference(&cast_key, "ref_screencast.mp4", &flag).await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let created: Value = app
        .create_key(&app.admin_key, &json!({"role": "trust_safety", "name": "reviewer"}))
        .await
        .json()
        .await
        .unwrap();
    let (reviewer_id, reviewer) =
        (created["id"].as_str().unwrap().to_owned(), created["key"].as_str().unwrap().to_owned());

    app.post_keyframes(&ingest, "s-earth", &query_keyframes("earth__fps_speed__1")).await;
    app.post_keyframes(&ingest, "s-cast", &query_keyframes("screencast__mirror__1")).await;
    app.wait_for_stream_status("s-earth", "flagged").await;
    app.wait_for_stream_status("s-cast", "flagged").await;

    // Roles: ingest posts keyframes and reads a stream, but not cases or the audit trail.
    assert_eq!(app.get_stream(&ingest, "s-earth").await.status(), StatusCode::OK);
    assert_eq!(app.list_cases(&ingest, "").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.audit(&ingest, "").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.kill_stream(&ingest, "s-cast", "nope").await.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        app.post_keyframe(&reviewer, "s-x", "ts_ms=0", "image/jpeg", vec![0xff]).await.status(),
        StatusCode::FORBIDDEN
    );

    // Rights holders see only the cases on their own references.
    let earth_cases: Vec<Value> = app.list_cases(&earth_key, "").await.json().await.unwrap();
    assert_eq!(earth_cases.len(), 1);
    assert_eq!(earth_cases[0]["reference_id"], earth.as_str());
    let cast_case: Value = app.list_cases(&cast_key, "").await.json().await.unwrap();
    let cast_case = cast_case[0].clone();
    assert_eq!(cast_case["reference_id"], cast.as_str());
    let cast_case_id = cast_case["id"].as_str().unwrap();
    let earth_case_id = earth_cases[0]["id"].as_str().unwrap();
    assert_eq!(
        app.get(Some(&earth_key), &format!("/v1/cases/{cast_case_id}")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.decide_case(&earth_key, earth_case_id, "confirm", "mine").await.status(),
        StatusCode::FORBIDDEN
    );

    // Confirm kills; dismiss puts the stream back live and that reference never acts again.
    let r = app.decide_case(&reviewer, earth_case_id, "confirm", "clear piracy").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.stream("s-earth").await.unwrap()["status"], "killed");
    assert_eq!(
        app.decide_case(&reviewer, earth_case_id, "dismiss", "changed my mind").await.status(),
        StatusCode::CONFLICT
    );
    let r = app.decide_case(&reviewer, cast_case_id, "dismiss", "licensed rebroadcast").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.stream("s-cast").await.unwrap()["status"], "live");
    let open = app.cases("?status=open").await;
    assert!(open.is_empty(), "{open:?}");
    assert_eq!(app.cases("?status=dismissed").await.len(), 1);

    // Manual kill and restore.
    let r = app.kill_stream(&reviewer, "s-cast", "repeat offender").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "killed");
    assert_eq!(app.kill_stream(&reviewer, "s-cast", "again").await.status(), StatusCode::CONFLICT);
    let r = app.restore_stream(&reviewer, "s-cast", "appeal upheld").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "live");
    assert_eq!(
        app.kill_stream(&reviewer, "no-such-stream", "x").await.status(),
        StatusCode::NOT_FOUND
    );

    // Keyframes of a killed stream are dropped: no new case, status stays killed.
    app.post_keyframes(&ingest, "s-earth", &query_keyframes("earth__color__1")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.cases("").await.len(), 2);

    let audit: Vec<Value> = app.audit(&reviewer, "").await.json().await.unwrap();
    let by_reviewer: Vec<(String, String)> = audit
        .iter()
        .filter(|e| e["actor"] == reviewer_id.as_str())
        .map(|e| {
            (e["action"].as_str().unwrap().to_owned(), e["target_id"].as_str().unwrap().to_owned())
        })
        .collect();
    for expected in [
        ("case.confirm", earth_case_id),
        ("case.dismiss", cast_case_id),
        ("stream.kill", "s-cast"),
        ("stream.restore", "s-cast"),
    ] {
        assert!(
            by_reviewer.iter().any(|(a, t)| a == expected.0 && t == expected.1),
            "{expected:?} missing from {by_reviewer:?}"
        );
    }
    let policy: Vec<&Value> = audit.iter().filter(|e| e["actor"] == "policy").collect();
    assert_eq!(policy.len(), 2, "one automatic decision per stream: {policy:?}");
    let filtered: Vec<Value> =
        app.audit(&reviewer, "?target_type=stream&target_id=s-cast").await.json().await.unwrap();
    assert!(filtered.iter().all(|e| e["target_id"] == "s-cast"));
    assert_eq!(filtered.len(), 3, "{filtered:?}");
}

#[tokio::test]
async fn unusable_keyframes_are_refused_at_the_api_with_the_reason() {
    let app = spawn_app().await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let r = app.post_keyframe(&ingest, "s1", "", "image/jpeg", vec![0xff, 0xd8]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(crate::common::error_code(r).await == "invalid");
    let r = app.post_keyframe(&ingest, "s1", "ts_ms=0", "text/plain", b"hi".to_vec()).await;
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let r = app
        .post_keyframe(&ingest, "s1", "ts_ms=0", "application/vnd.offside.pdq", b"zz".to_vec())
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A body that is not a JPEG is refused at the edge (magic bytes and header, no decoding).
    let r = app.post_keyframe(&ingest, "s1", "ts_ms=0", "image/jpeg", b"not a jpeg".to_vec()).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // The worker carries on: the next good keyframe of the stream is processed.
    let frame = query_keyframes("neg_cup__none__1").remove(0).1;
    let r = app.post_keyframe(&ingest, "s1", "ts_ms=2000", "image/jpeg", frame).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    app.end_stream(&ingest, "s1").await;
    app.wait_for_stream_status("s1", "ended").await;
}

#[tokio::test]
async fn the_openapi_document_lists_the_enforcement_routes() {
    let app = spawn_app().await;
    let doc: Value = app.get(None, "/openapi.json").await.json().await.unwrap();
    for path in [
        "/v1/streams",
        "/v1/streams/{id}",
        "/v1/streams/{id}/keyframes",
        "/v1/streams/{id}/end",
        "/v1/streams/{id}/kill",
        "/v1/streams/{id}/restore",
        "/v1/cases",
        "/v1/cases/{id}",
        "/v1/cases/{id}/decision",
        "/v1/webhooks",
        "/v1/webhooks/{id}",
        "/v1/webhooks/{id}/deliveries",
        "/v1/audit",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} is missing from the OpenAPI document");
    }
    assert!(doc["paths"]["/v1/streams/{id}/keyframes"]["post"]["responses"]["503"].is_object());
}
