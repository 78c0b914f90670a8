//! The web console in a real browser: headless Chromium driven through chromedriver (see
//! `crate::common::browser`), against the real application on SQLite (and PostgreSQL for tenancy).
//! Each test has its own app and its own browser, so they run in parallel.
//!
//! Cases come from the real pipeline: a reference uploaded as a video file from the fixtures,
//! a re-stream's keyframes posted as the platform would, the stream flagged by its policy.
//!
//! The run also saves screenshots of the review queue and of a case page to
//! `target/console-screenshots/`; `OFFSIDE_SCREENSHOTS_DIR=docs/screenshots cargo test --test
//! integration console_browser::` refreshes the README's copies.

use std::time::Duration;

use crate::common::browser::Browser;
use crate::common::{
    TestApp, WebhookReceiver, eval_mini, eventually, query_keyframes, signature_is_valid,
    spawn_app, spawn_app_pg,
};
use fantoccini::key::Key;
use offside::store::keys::Role;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A stream flagged by the pipeline and the case it opened.
struct Flagged {
    stream_id: String,
    case_id: String,
    /// The case as the API shows it to the admin (evidence with still links).
    case: Value,
}

/// Uploads the eval-mini reference `file` titled `title` with `key`, under a flag policy,
/// and waits until it is ready; returns its id.
async fn reference(app: &TestApp, key: &str, file: &str, title: &str) -> String {
    let bytes = std::fs::read(eval_mini().join("refs").join(file)).expect("fixture");
    let policy = json!({"action": "flag", "min_match_seconds": 4});
    let r =
        app.upload_reference(key, &json!({"title": title, "policy": policy}), file, bytes).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned();
    let settled = app.wait_until_settled(key, &id).await;
    assert_eq!(settled["status"], "ready", "{settled}");
    id
}

/// Posts the keyframes of the eval-mini query `query` as stream `stream_id` (of the account
/// `streamer-{stream_id}`, watched by `viewers`) and waits until the stream is flagged;
/// returns the stream's case.
async fn flagged(
    app: &TestApp,
    ingest: &str,
    stream_id: &str,
    query: &str,
    viewers: u32,
) -> Flagged {
    for (ts, jpeg) in query_keyframes(query) {
        let params = format!("ts_ms={ts}&account_id=streamer-{stream_id}&viewers={viewers}");
        let r = app.post_keyframe(ingest, stream_id, &params, "image/jpeg", jpeg).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED, "keyframe {ts} of {stream_id}");
    }
    app.wait_for_stream_status(stream_id, "flagged").await;
    let listed = app.cases("?status=open").await;
    let case_id = listed
        .iter()
        .find(|c| c["stream_id"] == stream_id)
        .and_then(|c| c["id"].as_str())
        .unwrap_or_else(|| panic!("an open case on {stream_id}: {listed:?}"))
        .to_owned();
    let r = app.get(Some(&app.admin_key), &format!("/v1/cases/{case_id}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let case: Value = r.json().await.expect("json");
    Flagged { stream_id: stream_id.to_owned(), case_id, case }
}

/// The console URLs of a case's stills (the API's links, under `/console`).
fn console_still_urls(case: &Value) -> Vec<String> {
    let evidence = case["evidence"].as_array().expect("evidence");
    let urls: Vec<String> = evidence
        .iter()
        .flat_map(|e| [&e["stream_still_url"], &e["reference_still_url"]])
        .filter_map(Value::as_str)
        .map(|url| url.replacen("/v1/", "/console/", 1))
        .collect();
    assert!(!urls.is_empty(), "the case has stills: {case}");
    urls
}

/// A trust-and-safety key, as the console's reviewers have.
async fn reviewer_key(app: &TestApp) -> String {
    let body = json!({"role": "trust_safety", "name": "Dana (trust and safety)"});
    let r = app.create_key(&app.admin_key, &body).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.expect("json")["key"].as_str().expect("key").to_owned()
}

/// The selector of the page of case `id`.
fn case_page(id: &str) -> String {
    format!("#case[data-case-id='{id}']")
}

#[tokio::test]
async fn the_browser_reads_what_the_app_serves() {
    let app = spawn_app().await;
    let browser = Browser::launch(&app).await;
    browser.open("/openapi.json").await;
    let text = browser.body_text().await;
    assert!(text.contains("\"openapi\""), "{text}");
    assert_eq!(browser.fetch_status("GET", "/healthz", None).await, 200);
    assert_eq!(browser.fetch_status("GET", "/v1/references", None).await, 401);
}

#[tokio::test]
async fn the_first_case_confirmed_with_the_keyboard_kills_the_stream_and_tells_the_platform() {
    let app = spawn_app().await;
    let receiver = WebhookReceiver::start().await;
    let secret = "whsec-console-0123456789abcdef";
    let r = app.create_webhook(&app.admin_key, &receiver.url, &["stream.killed"], secret).await;
    assert_eq!(r.status(), StatusCode::CREATED);
    let (_earth, earth_key) = app.rights_holder("Earth Films").await;
    let (_cast, cast_key) = app.rights_holder("Screencasts Inc").await;
    reference(&app, &earth_key, "ref_earth.mp4", "Earth from above, first half").await;
    reference(&app, &cast_key, "ref_screencast.mp4", "Screencast of the week").await;
    let ingest = app.key_for(Role::Ingest, None).await;
    // Two pirates of one broadcast and one of another: the queue (oldest first) has the first
    // on top.
    let first = flagged(&app, &ingest, "pirate-earth-1", "earth__color__1", 1840).await;
    let second = flagged(&app, &ingest, "pirate-earth-2", "earth__fps_speed__1", 312).await;
    let third = flagged(&app, &ingest, "screen-mirror-7", "screencast__mirror__1", 57).await;

    let browser = Browser::sign_in(&app, &reviewer_key(&app).await).await;
    assert_eq!(browser.path().await, "/console");
    browser.wait_for(&format!("#case-{}", third.case_id)).await;
    let rows = browser.all("#queue tr.queue-row").await;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].attr("data-case-id").await.unwrap().as_deref(), Some(&*first.case_id));
    browser.screenshot_page("queue").await;

    // The keyboard: the first row starts selected (once the script runs), Enter opens it.
    let selected = browser.wait_for("#queue tr.queue-row.selected").await;
    assert_eq!(selected.attr("data-case-id").await.unwrap().as_deref(), Some(&*first.case_id));
    browser.press(Key::Enter).await;
    browser.wait_for(&case_page(&first.case_id)).await;
    assert_eq!(browser.path().await, format!("/console/cases/{}", first.case_id));
    assert_eq!(browser.text("#stream-status").await, "flagged");
    // The script turned the evidence pairs into a flip-book; both stills of the pair it shows
    // load: the stream's keyframe and the reference moment it matched.
    browser.wait_for("#flipbook-controls:not([hidden])").await;
    let pair = "#pairs li.pair.current";
    assert!(browser.image_loaded(&format!("{pair} img.still-stream")).await, "the stream still");
    assert!(
        browser.image_loaded(&format!("{pair} img.still-reference")).await,
        "the reference still"
    );
    browser.screenshot_page("case").await;

    // c confirms; the next case of the queue opens.
    browser.press('c').await;
    browser.wait_for(&case_page(&second.case_id)).await;
    let killed = app.wait_for_stream_status(&first.stream_id, "killed").await;
    assert_eq!(killed["id"], first.stream_id.as_str());
    let case: Value = app
        .get(Some(&app.admin_key), &format!("/v1/cases/{}", first.case_id))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(case["status"], "confirmed", "{case}");
    for other in [&second, &third] {
        assert_eq!(app.stream(&other.stream_id).await.unwrap()["status"], "flagged");
    }

    let delivered =
        eventually(Duration::from_secs(20), "the signed stream.killed webhook", || async {
            receiver
                .requests()
                .into_iter()
                .find(|r| r.body.contains("stream.killed") && r.body.contains(&first.stream_id))
        })
        .await;
    let header = delivered.signature.as_deref().expect("Offside-Signature header");
    assert!(signature_is_valid(secret, header, &delivered.body), "bad signature {header}");
    let event: Value = serde_json::from_str(&delivered.body).expect("JSON body");
    assert_eq!(event["type"], "stream.killed");
    assert_eq!(event["data"]["stream_id"], first.stream_id.as_str());
}

/// Two rights holders with a flagged stream each; the first signs in to the console and sees
/// its own case only: the other's case page and stills answer 404.
async fn a_holders_session_shows_its_own_cases_only(app: TestApp) {
    let (_earth, earth_key) = app.rights_holder("Earth Films").await;
    let (_cast, cast_key) = app.rights_holder("Screencasts Inc").await;
    reference(&app, &earth_key, "ref_earth.mp4", "Earth from above").await;
    reference(&app, &cast_key, "ref_screencast.mp4", "Screencast of the week").await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let own = flagged(&app, &ingest, "s-earth", "earth__color__1", 90).await;
    let other = flagged(&app, &ingest, "s-cast", "screencast__reencode__1", 45).await;

    let browser = Browser::sign_in(&app, &earth_key).await;
    browser.wait_for(&format!("#case-{}", own.case_id)).await;
    let rows = browser.all("#queue tr.queue-row").await;
    assert_eq!(rows.len(), 1, "only its own case is queued");
    let queue = browser.body_text().await;
    assert!(!queue.contains(&other.stream_id) && !queue.contains("Screencast"), "{queue}");

    // Its own case and stills open...
    browser.open(&format!("/console/cases/{}", own.case_id)).await;
    browser.wait_for(&case_page(&own.case_id)).await;
    for url in console_still_urls(&own.case) {
        assert_eq!(browser.fetch_status("GET", &url, None).await, 200, "{url}");
    }
    // ...the other holder's do not exist for this session, and the page says so.
    let other_page = format!("/console/cases/{}", other.case_id);
    assert_eq!(browser.fetch_status("GET", &other_page, None).await, 404);
    browser.open(&other_page).await;
    browser.wait_until("the not-found page", "!document.querySelector('#case')").await;
    let text = browser.body_text().await;
    assert!(text.contains("Not found"), "{text}");
    assert!(!text.contains(&other.stream_id), "{text}");
    for url in console_still_urls(&other.case) {
        assert_eq!(browser.fetch_status("GET", &url, None).await, 404, "{url}");
        // The still exists: the platform's admin reads it through the API.
        let api_url = url.replacen("/console/", "/v1/", 1);
        assert_eq!(app.get(Some(&app.admin_key), &api_url).await.status(), StatusCode::OK);
    }
    // Deciding is not a rights holder's, whatever the case.
    let form = [("decision", "dismiss")];
    let status = browser
        .fetch_status("POST", &format!("/console/cases/{}/decision", other.case_id), Some(&form))
        .await;
    assert!(status == 403 || status == 404, "{status}");
    assert_eq!(app.stream(&other.stream_id).await.unwrap()["status"], "flagged");
}

#[tokio::test]
async fn a_rights_holders_session_never_shows_another_holders_case() {
    a_holders_session_shows_its_own_cases_only(spawn_app().await).await;
}

#[tokio::test]
async fn a_rights_holders_session_never_shows_another_holders_case_on_postgres() {
    a_holders_session_shows_its_own_cases_only(spawn_app_pg().await).await;
}

#[tokio::test]
async fn a_decision_posted_without_the_sessions_csrf_token_is_refused() {
    let app = spawn_app().await;
    reference(&app, &app.admin_key, "ref_screencast.mp4", "Screencast of the week").await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let case = flagged(&app, &ingest, "s-cast", "screencast__mirror__1", 45).await;

    let browser = Browser::sign_in(&app, &reviewer_key(&app).await).await;
    browser.open(&format!("/console/cases/{}", case.case_id)).await;
    browser.wait_for(&case_page(&case.case_id)).await;
    let decision = format!("/console/cases/{}/decision", case.case_id);
    // From the page itself (same origin, the session's cookie): no token, a wrong token.
    let no_token = [("decision", "confirm")];
    assert_eq!(browser.fetch_status("POST", &decision, Some(&no_token)).await, 403);
    let wrong = [("decision", "confirm"), ("csrf", &"0".repeat(64))];
    assert_eq!(browser.fetch_status("POST", &decision, Some(&wrong)).await, 403);
    // The page's own form with its token field removed: refused, and the page says why.
    browser
        .client()
        .execute("document.querySelector('#decision-form input[name=csrf]').remove();", vec![])
        .await
        .expect("remove the token");
    browser.click("#action-confirm").await;
    browser.wait_until("the refusal page", "!document.querySelector('#case')").await;
    let text = browser.body_text().await;
    assert!(text.contains("Forbidden") && text.contains("security token"), "{text}");

    assert_eq!(app.stream(&case.stream_id).await.unwrap()["status"], "flagged");
    assert_eq!(app.cases("?status=open").await.len(), 1);
    // With the token, the same session's form works (the refusals were the token's doing).
    browser.open(&format!("/console/cases/{}", case.case_id)).await;
    browser.click("#action-confirm").await;
    app.wait_for_stream_status(&case.stream_id, "killed").await;
}

#[tokio::test]
async fn a_reference_titled_with_markup_shows_the_markup_as_text() {
    let app = spawn_app().await;
    let title = "<script>alert(1)</script>";
    reference(&app, &app.admin_key, "ref_screencast.mp4", title).await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let case = flagged(&app, &ingest, "s-cast", "screencast__reencode__1", 45).await;

    let browser = Browser::sign_in(&app, &reviewer_key(&app).await).await;
    let row = format!("#case-{}", case.case_id);
    browser.wait_for(&row).await;
    assert_eq!(browser.text(&format!("{row} td.reference-title")).await, title);
    browser.open(&format!("/console/cases/{}", case.case_id)).await;
    browser.wait_for(&case_page(&case.case_id)).await;
    assert_eq!(browser.text("#reference-title").await, title);
    browser.open("/console/references").await;
    browser.wait_until("the references page", "document.querySelector('#main')").await;
    assert!(browser.body_text().await.contains(title));

    assert!(!browser.dialog_is_open().await, "no script of the title ran");
    let injected = browser
        .client()
        .execute(
            "return [...document.querySelectorAll('script')].filter(s => !s.src).length;",
            vec![],
        )
        .await
        .expect("count inline scripts");
    assert_eq!(injected, json!(0), "the title made no script element");
}
