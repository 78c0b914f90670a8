//! The reference library over HTTP: uploads hashed by jobs, failures with reasons, the upload
//! limit, hash import, policies, paging, deletion from the index, and jobs surviving restarts.

use std::time::{Duration, Instant};

use crate::common::{Db, TestApp, error_code, make_video, spawn_app, spawn_app_on};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn upload_video_becomes_ready_with_frames(db: Db) {
    let app = spawn_app_on(db, |_| {}).await;
    let (_holder, key) = app.rights_holder("League").await;
    let video = make_video(app.env.dir.path(), "clip.mp4", 3);
    let response = app
        .upload_reference(
            &key,
            &json!({"title": "Derby", "policy": {"action": "kill", "min_match_seconds": 6}}),
            "clip.mp4",
            std::fs::read(&video).unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let accepted: Value = response.json().await.unwrap();
    assert_eq!(accepted["status"], "processing");
    let id = accepted["id"].as_str().unwrap();

    let reference = app.wait_until_settled(&key, id).await;
    assert_eq!(reference["status"], "ready", "{reference}");
    assert!(reference["frames"].as_i64().unwrap() > 0, "{reference}");
    assert_eq!(reference["policy"]["action"], "kill");
    assert_eq!(reference["source"], "video");
    assert_eq!(reference["progress"], 1.0, "a ready reference's progress is complete");
    // Matchable: the library of this process holds it.
    assert!(app_library_contains(&app, id));
    // The upload is gone once hashed.
    wait_for_no_uploads_left(&app).await;
}

/// The job loads a finished reference's frames into its process's library before the
/// reference reads as ready, so a ready reference is matchable at once.
fn app_library_contains(app: &TestApp, id: &str) -> bool {
    app.library.read().unwrap().contains(id)
}

fn uploads_left(app: &TestApp) -> usize {
    let dir = app.env.dir.path().join("data").join("uploads");
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// A settled reference's upload is deleted right after its outcome is committed (never
/// before: a job that dies in between runs again from the upload), so it may still be there
/// for a moment when the status is read.
async fn wait_for_no_uploads_left(app: &TestApp) {
    crate::common::eventually(Duration::from_secs(10), "the upload to be deleted", || async {
        (uploads_left(app) == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_uploaded_video_becomes_ready_with_frames_on_sqlite() {
    upload_video_becomes_ready_with_frames(Db::Sqlite).await;
}

#[tokio::test]
async fn an_uploaded_video_becomes_ready_with_frames_on_postgres() {
    upload_video_becomes_ready_with_frames(Db::Postgres).await;
}

#[tokio::test]
async fn a_corrupt_video_fails_with_a_reason() {
    let app = spawn_app().await;
    // An MP4 signature (so the upload is taken for a video) followed by noise.
    let mut garbage = b"\0\0\0\x20ftypisom\0\0\x02\0isomiso2avc1mp41".to_vec();
    garbage.extend((0..50_000_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let response = app
        .upload_reference(&app.admin_key, &json!({"title": "Noise"}), "noise.mp4", garbage)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let reference = app.wait_until_settled(&app.admin_key, &id).await;
    assert_eq!(reference["status"], "failed", "{reference}");
    let reason = reference["error"].as_str().unwrap();
    assert!(!reason.is_empty());
    assert_eq!(reference["frames"], 0);
    wait_for_no_uploads_left(&app).await;
}

#[tokio::test]
async fn an_image_upload_is_a_one_frame_reference() {
    let app = spawn_app().await;
    let dir = app.env.dir.path();
    let status = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360",
            "-frames:v",
            "1",
        ])
        .arg(dir.join("still.jpg"))
        .status()
        .unwrap();
    assert!(status.success());
    let response = app
        .upload_reference(
            &app.admin_key,
            &json!({"title": "Poster"}),
            "still.jpg",
            std::fs::read(dir.join("still.jpg")).unwrap(),
        )
        .await;
    let id = response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let reference = app.wait_until_settled(&app.admin_key, &id).await;
    assert_eq!(reference["status"], "ready", "{reference}");
    assert_eq!(reference["source"], "image");
    let frames = reference["frames"].as_i64().unwrap();
    // One picture: the full frame plus at most its three centre crops, all at time 0.
    assert!((1..=4).contains(&frames), "{reference}");
}

#[tokio::test]
async fn uploads_over_the_limit_get_413_and_leave_no_file() {
    let app = spawn_app_on(Db::Sqlite, |config| config.max_upload_bytes = 64 * 1024).await;
    let response = app
        .upload_reference(
            &app.admin_key,
            &json!({"title": "Too big"}),
            "big.mp4",
            [b"\0\0\0\x20ftypisom".as_slice(), &[7_u8; 200 * 1024]].concat(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_code(response).await, "payload_too_large");
    wait_for_no_uploads_left(&app).await;
    let listed: Value = app.list_references(&app.admin_key, "").await.json().await.unwrap();
    assert_eq!(listed["items"], json!([]));
}

#[tokio::test]
async fn uploads_with_a_bad_policy_or_no_file_are_refused() {
    let app = spawn_app().await;
    let bad_policy = app
        .upload_reference(
            &app.admin_key,
            &json!({"title": "x", "policy": {"action": "flag", "min_match_seconds": -1}}),
            "a.mp4",
            vec![1; 10],
        )
        .await;
    assert_eq!(bad_policy.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bad_action = app
        .upload_reference(
            &app.admin_key,
            &json!({"title": "x", "policy": {"action": "nuke"}}),
            "a.mp4",
            vec![1; 10],
        )
        .await;
    assert_eq!(bad_action.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // A policy is left out for the default; `null` is not a policy (as OpenAPI says).
    let null_policy = app
        .upload_reference(
            &app.admin_key,
            &json!({"title": "x", "policy": null}),
            "a.mp4",
            vec![1; 10],
        )
        .await;
    assert_eq!(null_policy.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let message = null_policy.json::<Value>().await.unwrap()["error"]["message"].to_string();
    assert!(message.contains("null"), "{message}");
    let form = reqwest::multipart::Form::new().text("metadata", json!({"title": "x"}).to_string());
    let no_file = app
        .client
        .post(app.url("/v1/references"))
        .bearer_auth(&app.admin_key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(no_file.status(), StatusCode::BAD_REQUEST);
    wait_for_no_uploads_left(&app).await;
}

async fn hash_import_adds_frames_and_names_bad_lines(db: Db) {
    let app = spawn_app_on(db, |_| {}).await;
    let (_holder, key) = app.rights_holder("League").await;
    let created = app.create_hash_reference(&key, &json!({"title": "Hash list"})).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();

    let a = "f0".repeat(32);
    let b = "0f".repeat(32);
    let body = format!("# exported hashes\n0,{a}\n40,{b},87\n\n80,{a},90\n");
    let imported = app.import_hashes(&key, &id, &body).await;
    assert_eq!(imported.status(), StatusCode::OK);
    let imported: Value = imported.json().await.unwrap();
    assert_eq!((imported["imported"].as_i64(), imported["frames"].as_i64()), (Some(3), Some(3)));

    let bad = app.import_hashes(&key, &id, &format!("0,{a}\n40,{b}\n80,nothex\n")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let message =
        bad.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("line 3"), "{message}");
    // All or nothing: the good lines of the bad body were not imported.
    let reference: Value = app.get_reference(&key, &id).await.json().await.unwrap();
    assert_eq!(reference["frames"], 3);
    assert_eq!(reference["status"], "ready");

    // The imported frames become matchable without a rebuild.
    let started = Instant::now();
    while !app.library.read().unwrap().contains(&id) {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "imported reference not indexed within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn hash_import_adds_frames_and_names_bad_lines_on_sqlite() {
    hash_import_adds_frames_and_names_bad_lines(Db::Sqlite).await;
}

#[tokio::test]
async fn hash_import_adds_frames_and_names_bad_lines_on_postgres() {
    hash_import_adds_frames_and_names_bad_lines(Db::Postgres).await;
}

#[tokio::test]
async fn a_deleted_reference_leaves_the_index_and_the_listing() {
    let app = spawn_app().await;
    let id = app
        .create_hash_reference(&app.admin_key, &json!({"title": "Temp"}))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.import_hashes(&app.admin_key, &id, &format!("0,{}", "ab".repeat(32))).await;
    let started = Instant::now();
    while !app.library.read().unwrap().contains(&id) {
        assert!(started.elapsed() < Duration::from_secs(2));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.delete_reference(&app.admin_key, &id).await.status(), StatusCode::NO_CONTENT);
    assert!(!app.library.read().unwrap().contains(&id));
    assert_eq!(app.get_reference(&app.admin_key, &id).await.status(), StatusCode::NOT_FOUND);
    assert_eq!(app.delete_reference(&app.admin_key, &id).await.status(), StatusCode::NOT_FOUND);
    // And it does not come back with the next index sync.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!app.library.read().unwrap().contains(&id));
}

#[tokio::test]
async fn policies_are_validated_and_replaced() {
    let app = spawn_app().await;
    let id = app
        .create_hash_reference(&app.admin_key, &json!({"title": "P"}))
        .await
        .json::<Value>()
        .await
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let policy = json!({"action": "kill", "min_match_seconds": 12, "valid_from": "2030-01-01T00:00:00Z",
                        "valid_until": "2030-01-02T00:00:00Z", "allow_accounts": ["official-channel"]});
    let updated = app.set_policy(&app.admin_key, &id, &policy).await;
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["policy"]["action"], "kill");
    assert_eq!(updated["policy"]["allow_accounts"], json!(["official-channel"]));
    let inverted = json!({"action": "flag", "valid_from": "2030-01-02T00:00:00Z", "valid_until": "2030-01-01T00:00:00Z"});
    assert_eq!(
        app.set_policy(&app.admin_key, &id, &inverted).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    let kept: Value = app.get_reference(&app.admin_key, &id).await.json().await.unwrap();
    assert_eq!(kept["policy"]["min_match_seconds"], 12.0);
}

#[tokio::test]
async fn listing_pages_through_every_reference_once() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for n in 0..5 {
        let body: Value = app
            .create_hash_reference(&app.admin_key, &json!({"title": format!("R{n}")}))
            .await
            .json()
            .await
            .unwrap();
        created.push(body["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut query = "?limit=2".to_owned();
    loop {
        let page: Value = app.list_references(&app.admin_key, &query).await.json().await.unwrap();
        seen.extend(
            page["items"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, created);
    assert_eq!(
        app.list_references(&app.admin_key, "?limit=0").await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

async fn a_job_interrupted_by_a_restart_runs_again(db: Db) {
    // The first process runs no reference jobs, like one stopped before its job finished.
    let app = spawn_app_on(db, |config| config.reference_jobs = 0).await;
    let id = app.accepted_clip("Resumed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pending: Value = app.get_reference(&app.admin_key, &id).await.json().await.unwrap();
    assert_eq!(pending["status"], "processing");

    let app = app.restart(|_| {}).await;
    let reference = app.wait_until_settled(&app.admin_key, &id).await;
    assert_eq!(reference["status"], "ready", "{reference}");
    assert!(reference["frames"].as_i64().unwrap() > 0);
}

#[tokio::test]
async fn a_job_interrupted_by_a_restart_runs_again_on_sqlite() {
    a_job_interrupted_by_a_restart_runs_again(Db::Sqlite).await;
}

#[tokio::test]
async fn a_job_interrupted_by_a_restart_runs_again_on_postgres() {
    a_job_interrupted_by_a_restart_runs_again(Db::Postgres).await;
}
