//! The web console through plain HTTP (no browser): sign-in and its cookie, sessions that end
//! with their key, CSRF and same-origin checks, roles and tenancy (the same as the API's),
//! escaping, and the review actions. Cases are seeded through the store, as the pipeline
//! writes them.

use crate::common::{TestApp, spawn_app, spawn_app_pg};
use offside::domain::{Policy, ReferenceSource, ReferenceStatus};
use offside::store::cases::{self, CaseStatus, EvidenceRow, HitTier, NewCase};
use offside::store::keys::Role;
use offside::store::references::{self, NewReference};
use offside::store::streams::{self, StreamMatch};
use offside::store::{new_id, now_ms, stills};
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode, redirect};
use serde_json::Value;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// A browser-like client of the console: no automatic redirects, cookies by hand.
struct Console<'a> {
    app: &'a TestApp,
    client: reqwest::Client,
    session: String,
    csrf: String,
    set_cookie: String,
}

/// `application/x-www-form-urlencoded`, as a browser sends a form.
fn form_body(fields: &[(&str, &str)]) -> String {
    let mut body = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        body.append_pair(k, v);
    }
    body.finish()
}

trait FormExt {
    fn form_fields(self, fields: &[(&str, &str)]) -> Self;
}

impl FormExt for reqwest::RequestBuilder {
    fn form_fields(self, fields: &[(&str, &str)]) -> Self {
        self.header(CONTENT_TYPE, "application/x-www-form-urlencoded").body(form_body(fields))
    }
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(redirect::Policy::none()).build().expect("client")
}

fn cookie_value(set_cookie: &str, name: &str) -> Option<String> {
    let (first, _) = set_cookie.split_once(';').unwrap_or((set_cookie, ""));
    let (k, v) = first.split_once('=')?;
    (k.trim() == name).then(|| v.trim().to_owned())
}

fn set_cookies(response: &Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().expect("ascii").to_owned())
        .collect()
}

/// The value of the first hidden `csrf` field in a page.
fn csrf_field(html: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("a csrf field") + marker.len();
    html[start..].split('"').next().expect("value").to_owned()
}

/// The sign-in form's double-submit cookie and hidden token.
async fn login_form(app: &TestApp) -> (String, String) {
    let r = no_redirects().get(app.url("/console/login")).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = set_cookies(&r)
        .iter()
        .find_map(|c| cookie_value(c, "offside_login_csrf"))
        .expect("login csrf cookie");
    let html = r.text().await.expect("html");
    (cookie, csrf_field(&html))
}

async fn post_login(app: &TestApp, cookie: Option<&str>, csrf: &str, key: &str) -> Response {
    let mut request = no_redirects()
        .post(app.url("/console/login"))
        .header("origin", &app.address)
        .form_fields(&[("key", key), ("csrf", csrf), ("next", "/console")]);
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, format!("offside_login_csrf={cookie}"));
    }
    request.send().await.expect("request")
}

impl<'a> Console<'a> {
    async fn sign_in(app: &'a TestApp, key: &str) -> Console<'a> {
        let (cookie, csrf) = login_form(app).await;
        let r = post_login(app, Some(&cookie), &csrf, key).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "sign-in");
        let set_cookie = set_cookies(&r)
            .into_iter()
            .find(|c| c.starts_with("offside_session="))
            .expect("session cookie");
        let session = cookie_value(&set_cookie, "offside_session").expect("value");
        let mut console =
            Console { app, client: no_redirects(), session, csrf: String::new(), set_cookie };
        let page = console.get("/console/references").await;
        assert_eq!(page.status(), StatusCode::OK);
        console.csrf = csrf_field(&page.text().await.expect("html"));
        console
    }

    async fn get(&self, path: &str) -> Response {
        self.client
            .get(self.app.url(path))
            .header(COOKIE, format!("offside_session={}", self.session))
            .send()
            .await
            .expect("request")
    }

    async fn page(&self, path: &str) -> String {
        let r = self.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        r.text().await.expect("html")
    }

    /// Posts a form as the page would: same origin, with the session's CSRF token.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        let mut form: Vec<(&str, &str)> = vec![("csrf", &self.csrf)];
        form.extend_from_slice(fields);
        self.post_raw(path, &form, Some(&self.app.address)).await
    }

    async fn post_raw(&self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Response {
        let mut request = self
            .client
            .post(self.app.url(path))
            .header(COOKIE, format!("offside_session={}", self.session))
            .form_fields(form);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send().await.expect("request")
    }
}

fn location(r: &Response) -> String {
    r.headers().get(LOCATION).expect("location").to_str().expect("ascii").to_owned()
}

/// A case as the pipeline would leave it: a reference, a stream, its match, an open case with
/// three evidence rows and a still of the deciding keyframe.
struct Seeded {
    reference_id: String,
    stream_id: String,
    case_id: String,
}

async fn seed_case(
    app: &TestApp,
    owner: Option<&str>,
    title: &str,
    viewers: Option<i64>,
) -> Seeded {
    let pool = app.store.pool();
    let reference_id = new_id();
    references::insert(
        pool,
        &NewReference {
            id: &reference_id,
            rights_holder_id: owner,
            title,
            source: ReferenceSource::Hashes,
            status: ReferenceStatus::Ready,
            policy: &Policy::default(),
            upload_path: None,
        },
    )
    .await
    .expect("reference");
    let stream_id = format!("stream-{}", uuid::Uuid::new_v4().simple());
    streams::ensure(pool, &stream_id, Some("user-7"), viewers, None).await.expect("stream");
    streams::transition(
        pool,
        &stream_id,
        &[streams::StreamStatus::Live],
        streams::StreamStatus::Flagged,
        "flag",
    )
    .await
    .expect("flag");
    let match_id = new_id();
    streams::insert_match(
        pool,
        &stream_id,
        &StreamMatch {
            id: match_id.clone(),
            reference_id: reference_id.clone(),
            action: "flag".into(),
            offset_ms: 30_000,
            matched_seconds: 4.0,
            matched_keyframes: 3,
            delay_ms: None,
            first_match_ts_ms: 0,
            decided_at_ts_ms: 4_000,
            created_at: now_ms(),
        },
    )
    .await
    .expect("match");
    let evidence = [
        EvidenceRow {
            stream_ts_ms: 0,
            reference_ts_ms: 30_000,
            distance: 12,
            tier: Some(HitTier::Pdq),
        },
        EvidenceRow {
            stream_ts_ms: 2_000,
            reference_ts_ms: 32_000,
            distance: 20,
            tier: Some(HitTier::Features),
        },
        EvidenceRow {
            stream_ts_ms: 4_000,
            reference_ts_ms: 34_000,
            distance: 8,
            tier: Some(HitTier::Pdq),
        },
    ];
    let case_id = new_id();
    let mut conn = pool.acquire().await.expect("connection");
    cases::insert(
        &mut conn,
        &NewCase {
            id: &case_id,
            stream_id: &stream_id,
            reference_id: &reference_id,
            rights_holder_id: owner,
            match_id: &match_id,
            action: "flag",
            status: CaseStatus::Open,
            evidence: &evidence,
        },
    )
    .await
    .expect("case");
    let still = offside::media::Still { ts_ms: 4_000, jpeg: b"\xFF\xD8\xFFstream still".to_vec() };
    stills::insert_stream_still(&mut conn, &stream_id, &still).await.expect("still");
    Seeded { reference_id, stream_id, case_id }
}

async fn case_status(app: &TestApp, case_id: &str) -> CaseStatus {
    cases::get(app.store.pool(), case_id).await.expect("get").expect("case").status
}

async fn stream_status(app: &TestApp, stream_id: &str) -> String {
    let stream: Value = app.get_stream(&app.admin_key, stream_id).await.json().await.expect("json");
    stream["status"].as_str().expect("status").to_owned()
}

#[tokio::test]
async fn signing_in_sets_an_http_only_strict_session_cookie_scoped_to_the_console() {
    let app = spawn_app().await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    let cookie = &console.set_cookie;
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age=43200"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert_eq!(console.session.len(), 64);
    // Only the token's SHA-256 is stored.
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM console_sessions")
        .fetch_all(app.store.pool())
        .await
        .expect("sessions");
    assert_eq!(ids, vec![offside::store::sessions::session_id(&console.session)]);
    assert_ne!(ids[0], console.session);
    let html = console.page("/console").await;
    assert!(html.contains("test admin"), "who is signed in");
}

#[tokio::test]
async fn a_page_without_a_session_redirects_to_sign_in_and_back() {
    let app = spawn_app().await;
    let r = no_redirects().get(app.url("/console/cases/abc?x=1")).send().await.expect("request");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/console/login?next=%2Fconsole%2Fcases%2Fabc%3Fx%3D1");
    // A stale or forged cookie is no session either.
    let r = no_redirects()
        .get(app.url("/console"))
        .header(COOKIE, format!("offside_session={}", "a".repeat(64)))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The login form only sends people back to console pages.
    let r = no_redirects()
        .get(app.url("/console/login?next=https://evil.example/"))
        .send()
        .await
        .expect("request");
    let html = r.text().await.expect("html");
    assert!(html.contains("name=\"next\" value=\"/console\""), "{html}");
}

#[tokio::test]
async fn sign_in_needs_the_login_forms_cookie_and_a_same_origin_post() {
    let app = spawn_app().await;
    let (cookie, csrf) = login_form(&app).await;
    let r = post_login(&app, None, &csrf, &app.admin_key).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let r = post_login(&app, Some("0000"), &csrf, &app.admin_key).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = no_redirects()
        .post(app.url("/console/login"))
        .header("origin", "https://evil.example")
        .header(COOKIE, format!("offside_login_csrf={cookie}"))
        .form_fields(&[("key", app.admin_key.as_str()), ("csrf", csrf.as_str())])
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post_login(&app, Some(&cookie), &csrf, "off_not_a_key").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("unknown or has been revoked"));
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_with_a_403_page() {
    let app = spawn_app().await;
    let seeded = seed_case(&app, None, "Final", None).await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    let path = format!("/console/cases/{}/decision", seeded.case_id);
    for form in [vec![("decision", "confirm")], vec![("decision", "confirm"), ("csrf", "0123")]] {
        let r = console.post_raw(&path, &form, Some(&app.address)).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert!(r.text().await.unwrap().contains("403"));
    }
    // The right token from another site is refused too.
    let form = [("csrf", console.csrf.as_str()), ("decision", "confirm")];
    let r = console.post_raw(&path, &form, Some("https://evil.example")).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = console.post_raw("/console/logout", &[], Some(&app.address)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(case_status(&app, &seeded.case_id).await, CaseStatus::Open);
}

#[tokio::test]
async fn an_ingest_key_gets_a_403_page() {
    let app = spawn_app().await;
    let ingest = app.key_for(Role::Ingest, None).await;
    let (cookie, csrf) = login_form(&app).await;
    let r = post_login(&app, Some(&cookie), &csrf, &ingest).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(set_cookies(&r).iter().all(|c| !c.starts_with("offside_session=")));
    assert!(r.text().await.unwrap().contains("Forbidden"));
}

#[tokio::test]
async fn a_rights_holder_gets_404_for_another_holders_case_and_its_stills() {
    let app = spawn_app().await;
    let (mine_id, mine_key) = app.rights_holder("League A").await;
    let (theirs_id, _) = app.rights_holder("League B").await;
    let mine = seed_case(&app, Some(&mine_id), "Our final", None).await;
    let theirs = seed_case(&app, Some(&theirs_id), "Their final", None).await;
    let console = Console::sign_in(&app, &mine_key).await;

    let queue = console.page("/console").await;
    assert!(queue.contains("Our final"));
    assert!(!queue.contains("Their final"));
    // Another holder's filter value changes nothing: the scope wins.
    let queue = console.page(&format!("/console?holder={theirs_id}")).await;
    assert!(!queue.contains("Their final"));

    assert_eq!(
        console.get(&format!("/console/cases/{}", mine.case_id)).await.status(),
        StatusCode::OK
    );
    for path in [
        format!("/console/cases/{}", theirs.case_id),
        format!("/console/cases/{}/stills/stream/4000", theirs.case_id),
        format!("/console/cases/{}/stills/reference/34000", theirs.case_id),
        format!("/console/references/{}", theirs.reference_id),
        format!("/console/references/{}/stills/30000", theirs.reference_id),
    ] {
        let r = console.get(&path).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"), "{path}");
    }
    // Its own case's still is served as a picture.
    let r = console.get(&format!("/console/cases/{}/stills/stream/4000", mine.case_id)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "image/jpeg");
    // Streams are for trust and safety; a rights holder decides nothing.
    assert_eq!(console.get("/console/streams").await.status(), StatusCode::FORBIDDEN);
    let r = console
        .post(&format!("/console/cases/{}/decision", mine.case_id), &[("decision", "confirm")])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let _ = theirs.stream_id;
}

#[tokio::test]
async fn a_reference_title_with_markup_is_shown_as_text() {
    let app = spawn_app().await;
    let title = "<script>alert(1)</script>";
    let seeded = seed_case(&app, None, title, None).await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    for path in [
        "/console".to_owned(),
        format!("/console/cases/{}", seeded.case_id),
        "/console/references".to_owned(),
        format!("/console/references/{}", seeded.reference_id),
        format!("/console/streams/{}", seeded.stream_id),
    ] {
        let html = console.page(&path).await;
        assert!(!html.contains(title), "{path} shows the title as markup");
        assert!(
            html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
                || html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn every_console_response_carries_the_security_headers_and_no_inline_code() {
    let app = spawn_app().await;
    let seeded = seed_case(&app, None, "Final", None).await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    for path in [
        "/console".to_owned(),
        format!("/console/cases/{}", seeded.case_id),
        format!("/console/streams/{}", seeded.stream_id),
        "/console/streams".to_owned(),
        "/console/references".to_owned(),
        "/console/audit".to_owned(),
        "/console/webhooks".to_owned(),
        "/console/no-such-page".to_owned(),
    ] {
        let r = console.get(&path).await;
        let headers = r.headers().clone();
        assert_eq!(headers["content-security-policy"], CSP, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        let html = r.text().await.expect("html");
        assert!(!html.contains(" style="), "{path} has an inline style");
        assert!(!html.contains("<script>"), "{path} has an inline script");
        assert!(!html.contains("<style"), "{path} has an inline stylesheet");
    }
    assert_eq!(console.get("/console/no-such-page").await.status(), StatusCode::NOT_FOUND);
    // A form's target asked for as a page answers an HTML page too.
    let r = console.get("/console/logout").await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert_eq!(r.headers()["content-security-policy"], CSP);
    // The assets are versioned and cached for long.
    let html = console.page("/console").await;
    let start = html.find("/console/assets/console.js?v=").expect("script tag");
    let url = html[start..].split('"').next().expect("url").to_owned();
    let r = console.get(&url).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
}

#[tokio::test]
async fn revoking_the_key_ends_its_console_session() {
    let app = spawn_app().await;
    let key = app.key_for(Role::TrustSafety, None).await;
    let console = Console::sign_in(&app, &key).await;
    assert_eq!(console.get("/console").await.status(), StatusCode::OK);
    let listed: Value = app.list_keys(&app.admin_key).await.json().await.expect("json");
    let id = listed
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["role"] == "trust_safety")
        .and_then(|k| k["id"].as_str())
        .expect("key id")
        .to_owned();
    assert_eq!(app.revoke_key(&app.admin_key, &id).await.status(), StatusCode::NO_CONTENT);
    let r = console.get("/console").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(location(&r).starts_with("/console/login"));
}

#[tokio::test]
async fn signing_out_deletes_the_session() {
    let app = spawn_app().await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    let r = console.post("/console/logout", &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/console/login");
    assert!(
        set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("offside_session=;") && c.contains("Max-Age=0"))
    );
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_sessions")
        .fetch_one(app.store.pool())
        .await
        .expect("count");
    assert_eq!(count, 0);
    assert_eq!(console.get("/console").await.status(), StatusCode::SEE_OTHER);
}

async fn confirming_from_the_queue_kills_the_stream_and_returns_to_the_queue(app: TestApp) {
    let first = seed_case(&app, None, "First", Some(10)).await;
    let second = seed_case(&app, None, "Second", Some(5000)).await;
    let key = app.key_for(Role::TrustSafety, None).await;
    let console = Console::sign_in(&app, &key).await;
    let html = console.page("/console").await;
    let (a, b) = (html.find(&first.case_id).unwrap(), html.find(&second.case_id).unwrap());
    assert!(a < b, "oldest first");
    let html = console.page("/console?order=reach").await;
    let (a, b) = (html.find(&first.case_id).unwrap(), html.find(&second.case_id).unwrap());
    assert!(b < a, "widest reach first");

    let r = console
        .post(
            &format!("/console/cases/{}/decision", first.case_id),
            &[("decision", "confirm"), ("return_to", "/console?order=reach")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/console?order=reach");
    assert_eq!(case_status(&app, &first.case_id).await, CaseStatus::Confirmed);
    assert_eq!(stream_status(&app, &first.stream_id).await, "killed");

    // From the case page, the next case of the queue opens.
    let third = seed_case(&app, None, "Third", None).await;
    let r = console
        .post(
            &format!("/console/cases/{}/decision", second.case_id),
            &[("decision", "dismiss"), ("then", "next"), ("note", "a licensed broadcaster")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), format!("/console/cases/{}", third.case_id));
    assert_eq!(stream_status(&app, &second.stream_id).await, "live");

    // Restore un-kills a confirmed case's stream; the audit trail shows all of it.
    let r = console
        .post(&format!("/console/cases/{}/decision", first.case_id), &[("decision", "restore")])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(stream_status(&app, &first.stream_id).await, "live");
    let html = console.page(&format!("/console/cases/{}", first.case_id)).await;
    assert!(html.contains("case.confirm") && html.contains("case.restore"), "audit trail");

    // A decided case cannot be decided again: a 409 page.
    let r = console
        .post(&format!("/console/cases/{}/decision", second.case_id), &[("decision", "confirm")])
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn confirming_from_the_queue_kills_the_stream_and_returns_to_the_queue_on_sqlite() {
    confirming_from_the_queue_kills_the_stream_and_returns_to_the_queue(spawn_app().await).await;
}

#[tokio::test]
async fn confirming_from_the_queue_kills_the_stream_and_returns_to_the_queue_on_postgres() {
    confirming_from_the_queue_kills_the_stream_and_returns_to_the_queue(spawn_app_pg().await).await;
}

#[tokio::test]
async fn the_bulk_form_decides_every_selected_case() {
    let app = spawn_app().await;
    let a = seed_case(&app, None, "A", None).await;
    let b = seed_case(&app, None, "B", None).await;
    let c = seed_case(&app, None, "C", None).await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    let r = console
        .post(
            "/console/queue/bulk",
            &[
                ("decision", "dismiss"),
                ("case_id", &a.case_id),
                ("case_id", &b.case_id),
                ("return_to", "/console"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&r), "/console?done=2&failed=0");
    assert_eq!(case_status(&app, &a.case_id).await, CaseStatus::Dismissed);
    assert_eq!(case_status(&app, &b.case_id).await, CaseStatus::Dismissed);
    assert_eq!(case_status(&app, &c.case_id).await, CaseStatus::Open);
    let html = console.page("/console?done=2&failed=0").await;
    assert!(html.contains("2 decided."));
}

#[tokio::test]
async fn the_case_page_shows_the_evidence_chart_and_its_pairs() {
    let app = spawn_app().await;
    let seeded = seed_case(&app, None, "Final", Some(1234)).await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    let html = console.page(&format!("/console/cases/{}", seeded.case_id)).await;
    assert!(html.contains("<svg class=\"chart\" id=\"evidence-chart\""));
    assert_eq!(html.matches("<circle class=\"hit").count(), 3);
    assert!(html.contains("hit tier-features"));
    assert!(html.contains("hit tier-pdq deciding"));
    assert!(html.contains("id=\"chart-offset-line\""));
    assert_eq!(html.matches("<li class=\"pair").count(), 3);
    let still = format!("/console/cases/{}/stills/stream/4000", seeded.case_id);
    assert!(html.contains(&format!("src=\"{still}\"")), "the deciding keyframe's still");
    assert!(html.contains("1234"), "viewers");
    let r = console.get(&still).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"\xFF\xD8\xFFstream still");
    // A time that is not in the evidence is not served.
    let r = console.get(&format!("/console/cases/{}/stills/stream/6000", seeded.case_id)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn streams_can_be_killed_and_restored_with_a_reason() {
    let app = spawn_app().await;
    let seeded = seed_case(&app, None, "Final", None).await;
    let console = Console::sign_in(&app, &app.admin_key).await;
    let table = console.page("/console/streams/table").await;
    assert!(table.contains(&seeded.stream_id));
    assert!(table.contains("data-poll=\"/console/streams/table\""));
    let path = format!("/console/streams/{}", seeded.stream_id);
    let r = console.post(&format!("{path}/kill"), &[("reason", "")]).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = console.post(&format!("{path}/kill"), &[("reason", "obvious re-stream")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(stream_status(&app, &seeded.stream_id).await, "killed");
    let r = console.post(&format!("{path}/restore"), &[("reason", "licensed")]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(stream_status(&app, &seeded.stream_id).await, "live");
    let html = console.page(&path).await;
    assert!(html.contains("/stills/4000"), "the keyframe strip");
}

#[tokio::test]
async fn references_are_uploaded_and_their_policy_changed_through_the_api_code() {
    let app = spawn_app().await;
    let (_, key) = app.rights_holder("League A").await;
    let console = Console::sign_in(&app, &key).await;
    let image = {
        let mut buf = std::io::Cursor::new(Vec::new());
        image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, 128]))
            .write_to(&mut buf, image::ImageFormat::Jpeg)
            .expect("jpeg");
        buf.into_inner()
    };
    let upload = |csrf: &str| {
        reqwest::multipart::Form::new()
            .text("csrf", csrf.to_owned())
            .text("title", "Cup final")
            .text("action", "kill")
            .text("min_match_seconds", "4")
            .part("file", reqwest::multipart::Part::bytes(image.clone()).file_name("frame.jpg"))
    };
    let send = |form: reqwest::multipart::Form| {
        console
            .client
            .post(app.url("/console/references"))
            .header(COOKIE, format!("offside_session={}", console.session))
            .header("origin", &app.address)
            .multipart(form)
            .send()
    };
    let r = send(upload("wrong")).await.expect("request");
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = send(upload(&console.csrf)).await.expect("request");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let page = location(&r);
    let id = page.trim_start_matches("/console/references/").to_owned();
    let settled = app.wait_until_settled(&key, &id).await;
    assert_eq!(settled["policy"]["action"], "kill", "{settled}");
    assert_eq!(settled["policy"]["min_match_seconds"], 4.0);

    let r = console
        .post(&format!("{page}/policy"), &[("action", "flag"), ("min_match_seconds", "-1")])
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = console
        .post(
            &format!("{page}/policy"),
            &[("action", "monitor"), ("min_match_seconds", "6"), ("allow_accounts", "a, b")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let reference: Value = app.get_reference(&key, &id).await.json().await.expect("json");
    assert_eq!(reference["policy"]["action"], "monitor");
    assert_eq!(reference["policy"]["allow_accounts"], serde_json::json!(["a", "b"]));
    let html = console.page("/console/references").await;
    assert!(html.contains("Cup final"));
}
