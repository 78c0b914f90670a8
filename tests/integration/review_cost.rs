//! What reviewing costs the server (issue #14's targets), measured, not asserted: run with
//! `cargo test --release --test integration review_cost:: -- --ignored --nocapture`.
//!
//! - The case page (`/console/cases/{id}`) and the case API (`/v1/cases/{id}`) of a case with
//!   300 evidence pairs, each with both stills, on the embedded default (SQLite): server time
//!   p50 / p95 over 60 requests (loopback, so the client's clock is the server's time plus
//!   well under a millisecond).
//! - The review queue with 10,000 open cases: the first page, a page 5,000 cases deep (through
//!   the `after` cursor), and the last, each p50 / p95 over 30 requests: keyset pagination
//!   costs the same wherever the page is.
//! - Stills storage: bytes per reference hour (a real clip's stills, scaled) and per flagged
//!   stream-hour (the keep rule applied to a real pirate's keyframe stills).

use std::time::{Duration, Instant};

use crate::common::{query_keyframes, spawn_app};
use offside::domain::{Policy, PolicyAction, ReferenceSource, ReferenceStatus};
use offside::media::{STREAM_STILL_LONG_SIDE, Still, still_of_image};
use offside::store::cases::{self, CaseStatus, EvidenceRow, HitTier, NewCase};
use offside::store::references::{self, NewReference};
use offside::store::streams::{self, StreamMatch};
use offside::store::{new_id, now_ms, stills};
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

fn cookie_value(set_cookie: &str, name: &str) -> Option<String> {
    set_cookie.split(';').next()?.trim().strip_prefix(&format!("{name}=")).map(str::to_owned)
}

/// Signs in to the console; returns the session cookie's value.
async fn sign_in(app: &crate::common::TestApp) -> String {
    let client =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let form = client.get(app.url("/console/login")).send().await.unwrap();
    let login_cookie = form
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .find_map(|v| cookie_value(v.to_str().unwrap(), "offside_login_csrf"))
        .expect("login cookie");
    let html = form.text().await.unwrap();
    let marker = "name=\"csrf\" value=\"";
    let start = html.find(marker).expect("csrf field") + marker.len();
    let csrf = html[start..].split('"').next().unwrap().to_owned();
    let r = client
        .post(app.url("/console/login"))
        .header("origin", &app.address)
        .header(COOKIE, format!("offside_login_csrf={login_cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("key", app.admin_key.as_str()),
                    ("csrf", &csrf),
                    ("next", "/console"),
                ])
                .finish(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .find_map(|v| cookie_value(v.to_str().unwrap(), "offside_session"))
        .expect("session cookie")
}

async fn time_get(
    app: &crate::common::TestApp,
    path: &str,
    cookie: Option<&str>,
    runs: usize,
) -> (Duration, Duration, usize) {
    let mut samples = Vec::with_capacity(runs);
    let mut size = 0;
    for _ in 0..runs {
        let mut request = app.client.get(app.url(path));
        request = match cookie {
            Some(c) => request.header(COOKIE, format!("offside_session={c}")),
            None => request.bearer_auth(&app.admin_key),
        };
        let started = Instant::now();
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        size = r.bytes().await.unwrap().len();
        samples.push(started.elapsed());
    }
    (percentile(&mut samples, 0.5), percentile(&mut samples, 0.95), size)
}

/// A reference with stills, and `n` flagged streams each with an open case: the first with
/// `pairs` evidence pairs and their stream stills, the others with three pairs; returns the
/// case ids, oldest first.
async fn seed(app: &crate::common::TestApp, n: usize, pairs: usize) -> Vec<String> {
    let pool = app.store.pool();
    let policy = Policy {
        action: PolicyAction::Flag,
        ..serde_json::from_str(r#"{"action":"flag"}"#).unwrap()
    };
    let reference = new_id();
    references::insert(
        pool,
        &NewReference {
            id: &reference,
            rights_holder_id: None,
            title: "Cup final, first half",
            source: ReferenceSource::Hashes,
            status: ReferenceStatus::Ready,
            policy: &policy,
            upload_path: None,
        },
    )
    .await
    .unwrap();
    let frames = query_keyframes("earth__color__1");
    let still =
        |i: usize| still_of_image(&frames[i % frames.len()].1, STREAM_STILL_LONG_SIDE).unwrap();
    let reference_stills: Vec<Still> =
        (0..pairs).map(|i| Still { ts_ms: 10_000 + i as i64 * 2000, jpeg: still(i) }).collect();
    let mut conn = pool.acquire().await.unwrap();
    stills::insert_reference_stills(&mut conn, &reference, &reference_stills).await.unwrap();
    let mut ids = Vec::with_capacity(n);
    for c in 0..n {
        let stream = format!("stream-{c:05}");
        let mut tx = pool.begin().await.unwrap();
        streams::ensure(&mut *tx, &stream, Some("acct"), Some((c % 997) as i64), None)
            .await
            .unwrap();
        let m = StreamMatch {
            id: new_id(),
            reference_id: reference.clone(),
            action: "flag".into(),
            offset_ms: 10_000,
            matched_seconds: pairs as f64 * 2.0,
            matched_keyframes: pairs as i64,
            delay_ms: None,
            first_match_ts_ms: 0,
            decided_at_ts_ms: 8_000,
            created_at: now_ms(),
        };
        streams::insert_match(&mut *tx, &stream, &m).await.unwrap();
        let evidence: Vec<EvidenceRow> = (0..if c == 0 { pairs } else { 3 })
            .map(|i| EvidenceRow {
                stream_ts_ms: i as i64 * 2000,
                reference_ts_ms: 10_000 + i as i64 * 2000,
                distance: (i % 30) as u32,
                tier: Some(if i % 3 == 0 { HitTier::Features } else { HitTier::Pdq }),
            })
            .collect();
        let id = new_id();
        cases::insert(
            &mut tx,
            &NewCase {
                id: &id,
                stream_id: &stream,
                reference_id: &reference,
                rights_holder_id: None,
                match_id: &m.id,
                action: "flag",
                status: CaseStatus::Open,
                evidence: &evidence,
            },
        )
        .await
        .unwrap();
        if c == 0 {
            for i in 0..pairs {
                let s = Still { ts_ms: i as i64 * 2000, jpeg: still(i + 1) };
                stills::insert_stream_still(&mut tx, &stream, &s).await.unwrap();
            }
        }
        tx.commit().await.unwrap();
        ids.push(id);
    }
    ids
}

#[tokio::test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
async fn a_case_with_300_evidence_pairs_and_a_queue_of_10000_cases() {
    let app = spawn_app().await;
    let started = Instant::now();
    let ids = seed(&app, 10_000, 300).await;
    eprintln!("seeded 10,000 open cases in {:?}", started.elapsed());
    let cookie = sign_in(&app).await;

    let case = &ids[0];
    let (p50, p95, size) =
        time_get(&app, &format!("/console/cases/{case}"), Some(&cookie), 60).await;
    eprintln!("console case page, 300 pairs: p50 {p50:?}, p95 {p95:?} ({size} bytes)");
    let (p50, p95, size) = time_get(&app, &format!("/v1/cases/{case}"), None, 60).await;
    eprintln!("GET /v1/cases/{{id}}, 300 pairs: p50 {p50:?}, p95 {p95:?} ({size} bytes)");
    let (p50, p95, _) =
        time_get(&app, &format!("/console/cases/{case}/stills/stream/2000"), Some(&cookie), 60)
            .await;
    eprintln!("a stream still: p50 {p50:?}, p95 {p95:?}");

    // The queue: first page, then follow the cursor to the middle and the end.
    let (p50, p95, _) = time_get(&app, "/console/queue", Some(&cookie), 30).await;
    eprintln!("queue, first page of 10,000: p50 {p50:?}, p95 {p95:?}");
    let mut path = "/console/queue".to_owned();
    let mut pages = 0;
    let mut deep = None;
    loop {
        let r = app
            .client
            .get(app.url(&path))
            .header(COOKIE, format!("offside_session={cookie}"))
            .send()
            .await
            .unwrap();
        let html = r.text().await.unwrap();
        pages += 1;
        // The "Next page" link: `<a href="URL" id="queue-next"`, URL escaped for HTML.
        let Some(end) = html.find("\" id=\"queue-next\"") else { break };
        let start = html[..end].rfind("href=\"").expect("the link's href") + 6;
        path = html[start..end].replace("&amp;", "&").replace("&#x2f;", "/");
        assert!(pages < 1000, "the queue keeps going: {path}");
        if pages == 50 {
            deep = Some(path.clone());
        }
    }
    eprintln!("queue: {pages} pages to the end");
    if let Some(deep) = deep {
        let (p50, p95, _) = time_get(&app, &deep, Some(&cookie), 30).await;
        eprintln!("queue, page 51 (deep): p50 {p50:?}, p95 {p95:?}");
    }
    let (p50, p95, _) = time_get(&app, &path, Some(&cookie), 30).await;
    eprintln!("queue, last page: p50 {p50:?}, p95 {p95:?}");
}

#[tokio::test]
#[ignore = "a measurement: run with --release -- --ignored --nocapture"]
async fn stills_storage_per_reference_hour_and_per_flagged_stream_hour() {
    let app = spawn_app().await;
    for file in ["ref_earth.mp4", "ref_screencast.mp4"] {
        let id = app
            .ready_reference(&app.admin_key, file, &serde_json::json!({"action": "monitor"}))
            .await;
        let (n, bytes) = stills::reference_still_bytes(app.store.pool(), &id).await.unwrap();
        let per_hour = bytes as f64 / n as f64 * 3600.0 / 1e6;
        eprintln!(
            "{file}: {n} reference stills, {} bytes each on average: {per_hour:.1} MB per reference hour",
            bytes / n
        );
    }
    // A flagged stream sends a keyframe every 2 s and nearly every one hits: the keep rule
    // keeps the first STILLS_IN_FULL, then one in STILL_EVERY_AFTER.
    let mut sizes = Vec::new();
    for query in ["earth__color__1", "screencast__reencode__1", "earth__portrait_crop__1"] {
        for (_, jpeg) in query_keyframes(query) {
            sizes.push(still_of_image(&jpeg, STREAM_STILL_LONG_SIDE).unwrap().len());
        }
    }
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    let kept_per_hour = (1..=1800)
        .filter(|v| {
            *v <= offside::pipeline::STILLS_IN_FULL || v % offside::pipeline::STILL_EVERY_AFTER == 0
        })
        .count();
    eprintln!(
        "stream stills: {mean:.0} bytes on average over {} keyframes; {kept_per_hour} kept per flagged stream-hour: {:.2} MB",
        sizes.len(),
        mean * kept_per_hour as f64 / 1e6
    );
}
