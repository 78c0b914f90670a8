//! Operations: what `/metrics` tells an operator (every metric described, latencies as
//! histograms, webhook outcomes, queue and delivery gauges), a flagged stream that ends staying
//! visible, and the admin command line saying which database it uses.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::common::{Db, WebhookReceiver, eventually, query_keyframes, spawn_app, spawn_app_on};
use offside::store::keys::Role;
use offside::telemetry::{METRICS, MetricKind};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The metric families of a Prometheus text exposition: name -> (TYPE, has HELP).
fn families(exposition: &str) -> BTreeMap<String, (String, bool)> {
    let mut out: BTreeMap<String, (String, bool)> = BTreeMap::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            out.entry(name.to_owned()).or_default().1 = true;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
            out.entry(name.to_owned()).or_default().0 = kind.to_owned();
        }
    }
    out
}

/// The metric names of every sample line, folded onto their family (`_bucket`, `_sum` and
/// `_count` of a histogram belong to it).
fn sample_families(exposition: &str, types: &BTreeMap<String, (String, bool)>) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_owned())
        .map(|name| {
            for suffix in ["_bucket", "_sum", "_count"] {
                if let Some(base) = name.strip_suffix(suffix)
                    && types.get(base).is_some_and(|(t, _)| t == "histogram" || t == "summary")
                {
                    return base.to_owned();
                }
            }
            name
        })
        .collect()
}

fn now_ms() -> i64 {
    offside::store::now_ms()
}

/// One story for the operator: a flag reference, a pirate stream (keyframes stamped with
/// their capture time), a webhook receiver that fails its first attempt, then the stream ends.
#[tokio::test]
async fn after_traffic_every_metric_has_help_latencies_are_histograms_and_outcomes_are_counted() {
    // Retries at most 2 s apart, so a retry is never further off than the wait below.
    let app = spawn_app_on(Db::Sqlite, |c| c.webhook_retry_max_secs = 2).await;
    let receiver = WebhookReceiver::start().await;
    receiver.status.store(503, Ordering::SeqCst);
    let r = app
        .create_webhook(&app.admin_key, &receiver.url, &["case.created"], "whsec-ops-0123456789")
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);
    app.enforced_reference("ref_earth.mp4", "flag").await;
    let ingest = app.key_for(Role::Ingest, None).await;
    for (ts, jpeg) in query_keyframes("earth__color__1") {
        let query = format!("ts_ms={ts}&captured_at_ms={}", now_ms());
        let r = app.post_keyframe(&ingest, "ops-pirate", &query, "image/jpeg", jpeg).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    app.wait_for_stream_status("ops-pirate", "flagged").await;
    eventually(Duration::from_secs(10), "a failed first attempt", || async {
        (!receiver.requests().is_empty()).then_some(())
    })
    .await;
    receiver.status.store(200, Ordering::SeqCst);
    eventually(Duration::from_secs(20), "the retried delivery", || async {
        (receiver.requests().len() >= 2).then_some(())
    })
    .await;

    let metrics = || async { app.get(None, "/metrics").await.text().await.expect("text") };
    // The sampler reports the deliveries gauges every few seconds.
    let text = eventually(Duration::from_secs(20), "the sampled gauges", || async {
        let text = metrics().await;
        (text.contains("offside_webhook_deliveries_pending ")
            && text.contains("offside_webhook_oldest_pending_age_seconds ")
            && text.contains("offside_live_feeds{")
            && text.contains("offside_keyframe_queue_depth{queue=\"work\"}")
            && text.contains("offside_keyframe_queue_oldest_age_seconds{queue=\"work\"}"))
        .then_some(text)
    })
    .await;

    let types = families(&text);
    let exported = sample_families(&text, &types);
    for name in &exported {
        let (kind, help) = types.get(name).cloned().unwrap_or_default();
        assert!(help, "{name} has no # HELP line");
        assert_ne!(kind, "summary", "{name} is a summary: its quantiles cannot be aggregated");
        let catalogued = METRICS.iter().find(|m| m.name == name);
        let catalogued =
            catalogued.unwrap_or_else(|| panic!("{name} is not in telemetry::METRICS"));
        let expected = match catalogued.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        };
        assert_eq!(kind, expected, "{name}");
    }
    for name in [
        "offside_http_requests_total",
        "offside_http_request_duration_seconds",
        "offside_keyframes_total",
        "offside_keyframe_latency_seconds",
        "offside_keyframe_handle_seconds",
        "offside_webhook_deliveries_total",
        "offside_webhook_delivery_seconds",
        "offside_decisions_total",
    ] {
        assert!(exported.contains(name), "{name} missing after traffic:\n{text}");
    }
    // Histograms with the buckets of the targets: 1 ms ... 10 s for keyframes.
    assert!(text.contains("offside_keyframe_latency_seconds_bucket{le=\"0.001\"}"), "{text}");
    assert!(text.contains("offside_keyframe_latency_seconds_bucket{le=\"10\"}"), "{text}");
    assert!(!text.contains("quantile="), "no summaries:\n{text}");
    for outcome in ["delivered", "failed_attempt"] {
        let series = format!("offside_webhook_deliveries_total{{outcome=\"{outcome}\"}} ");
        assert!(text.contains(&series), "{series} missing:\n{text}");
    }
}

#[tokio::test]
async fn a_flagged_stream_that_ends_stays_flagged_with_its_end_time_until_its_case_is_decided() {
    let app = spawn_app().await;
    app.enforced_reference("ref_earth.mp4", "flag").await;
    let ingest = app.key_for(Role::Ingest, None).await;
    app.post_keyframes(&ingest, "ends-flagged", &query_keyframes("earth__color__1")).await;
    app.wait_for_stream_status("ends-flagged", "flagged").await;
    assert_eq!(app.end_stream(&ingest, "ends-flagged").await.status(), StatusCode::ACCEPTED);
    let ended = eventually(Duration::from_secs(30), "the stream's end", || async {
        app.stream("ends-flagged").await.filter(|s| s["ended_at"].is_i64())
    })
    .await;
    assert_eq!(ended["status"], "flagged", "the decision stays visible: {ended}");

    // The review list still shows it while its case is open.
    let flagged: Vec<Value> =
        app.list_streams(&app.admin_key, "?status=flagged").await.json().await.unwrap();
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(flagged[0]["id"], "ends-flagged");
    assert!(flagged[0]["ended_at"].is_i64());

    // Keyframes arriving after the end are dropped, as for any ended stream.
    let late = query_keyframes("earth__color__1").remove(0).1;
    let r = app.post_keyframe(&ingest, "ends-flagged", "ts_ms=60000", "image/jpeg", late).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // Dismissing the case lifts the flag; the stream is off the air, so it reads ended.
    let cases = app.cases("?status=open").await;
    assert_eq!(cases.len(), 1, "{cases:?}");
    let case_id = cases[0]["id"].as_str().unwrap();
    let r = app.decide_case(&app.admin_key, case_id, "dismiss", "not the match").await;
    assert_eq!(r.status(), StatusCode::OK);
    let after = app.stream("ends-flagged").await.unwrap();
    assert_eq!(after["status"], "ended", "{after}");
    assert_eq!(after["ended_at"], ended["ended_at"]);

    // A stream with nothing decided ends as before.
    let negative = query_keyframes("neg_webcam_take2__none__1");
    app.post_keyframes(&ingest, "ends-live", &negative).await;
    app.end_stream(&ingest, "ends-live").await;
    let s = app.wait_for_stream_status("ends-live", "ended").await;
    assert!(s["ended_at"].is_i64(), "{s}");
    assert_eq!(s["matches"], json!([]));
}

#[tokio::test]
async fn a_reference_reports_progress_from_zero_at_upload_to_one_when_ready() {
    // No reference jobs in this process: the upload waits, unhashed, as a fresh one does.
    let app = spawn_app_on(Db::Sqlite, |c| c.reference_jobs = 0).await;
    let id = app.accepted_clip("Derby").await;
    let waiting: Value = app.get_reference(&app.admin_key, &id).await.json().await.unwrap();
    assert_eq!(waiting["status"], "processing", "{waiting}");
    assert_eq!(waiting["progress"], 0.0, "a number from the start: {waiting}");
    // A process that runs jobs picks it up and finishes it.
    let app = app.restart(|c| c.reference_jobs = 1).await;
    let ready = app.wait_until_settled(&app.admin_key, &id).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["progress"], 1.0, "{ready}");
}

fn offside() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_offside"));
    // The command line must not pick up a developer's environment.
    for (var, _) in std::env::vars() {
        if var.starts_with("OFFSIDE_") || var == "NO_COLOR" {
            command.env_remove(var);
        }
    }
    command
}

#[test]
fn keys_create_refuses_a_missing_sqlite_database_unless_asked_and_names_the_one_it_uses() {
    let dir = tempfile::tempdir().unwrap();
    // From a directory where no `serve` ever ran: the default relative database is missing.
    let out = offside()
        .current_dir(dir.path())
        .args(["keys", "create", "--role", "admin", "--name", "me"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no database at") && stderr.contains("--create-database"), "{stderr}");
    assert!(out.stdout.is_empty(), "no key is printed");
    assert!(!dir.path().join("offside-data").exists(), "nothing is created");

    // Asked to: it creates the database and says where.
    let out = offside()
        .current_dir(dir.path())
        .env("RUST_LOG", "debug")
        .args(["keys", "create", "--role", "admin", "--name", "me", "--create-database"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let db = dir.path().join("offside-data/offside.db");
    assert!(db.exists());
    assert!(stderr.contains(&format!("database: {}", db.display())), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().last().is_some_and(|k| k.starts_with("off_")), "{stdout}");
    // Logs written to a file (stderr is a pipe here) carry no colour codes.
    assert!(stderr.contains("DEBUG"), "debug logs were written: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "ANSI escape codes in logs written to a file: {stderr:?}");

    // The database now exists: a second key needs no flag, and `keys list` sees both.
    let out = offside()
        .current_dir(dir.path())
        .args(["keys", "create", "--role", "ingest", "--name", "platform"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = offside().current_dir(dir.path()).args(["keys", "list"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
}

fn keyframe(stream_id: &str, ts_ms: i64) -> offside::queue::QueueMessage {
    offside::queue::QueueMessage::Keyframe(offside::queue::KeyframeMessage {
        stream_id: stream_id.to_owned(),
        ts_ms,
        account_id: None,
        captured_at_ms: None,
        viewers: None,
        content_type: "application/vnd.offside.pdq".to_owned(),
        body: bytes::Bytes::from_static(
            b"0000000000000000000000000000000000000000000000000000000000000000",
        ),
    })
}

async fn the_database_queue_reports_its_depth_and_oldest_age(db: crate::common::Db) {
    use offside::queue::KeyframeQueue as _;
    let (_env, store) = crate::common::fresh(db).await;
    let empty = offside::telemetry::database_queue(&store).await.unwrap();
    assert_eq!((empty.depth, empty.dead, empty.oldest_age_ms), (0, 0, None));
    let queue = offside::queue::db::DbQueue::new(store.clone(), Default::default());
    for ts in [0, 2000, 4000] {
        queue.publish(&keyframe("depth", ts)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let q = offside::telemetry::database_queue(&store).await.unwrap();
    assert_eq!((q.depth, q.dead), (3, 0));
    assert!(q.oldest_age_ms.is_some_and(|age| age >= 20), "{q:?}");
}

on_both_databases!(the_database_queue_reports_its_depth_and_oldest_age);

#[tokio::test]
async fn the_rabbitmq_queue_depth_is_read_with_a_passive_declare() {
    // An API node that leaves keyframes to workers that are not running: they wait in the queue.
    let app = crate::common::spawn_app_on(Db::Sqlite, |c| {
        c.amqp_url = Some(offside::config::SecretUrl::new(crate::common::amqp_url()));
        c.amqp_prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
        c.keyframe_workers = Some(0);
    })
    .await;
    let ingest = app.key_for(Role::Ingest, None).await;
    for ts in [0, 2000, 4000] {
        let hash = "0".repeat(64).into_bytes();
        let query = format!("ts_ms={ts}");
        let r = app
            .post_keyframe(&ingest, "waiting", &query, "application/vnd.offside.pdq", hash)
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    let mut cfg = offside::queue::amqp::AmqpConfig::new(crate::common::amqp_url());
    cfg.prefix.clone_from(&app.config.amqp_prefix);
    let mut probe = offside::telemetry::QueueProbe::new(cfg);
    let started = std::time::Instant::now();
    let sample = loop {
        let sample = probe.read().await;
        if let Ok(s) = sample
            && s.depth == 3
        {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "queue depth: {sample:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(sample.dead, 0);
}

#[tokio::test]
async fn a_worker_serves_its_metrics_for_prometheus_on_the_metrics_address() {
    use offside::app::{App, Mode};
    let app = spawn_app().await;
    let mut config = app.config.clone();
    config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let worker = App::build(config, Mode::Worker).await.expect("worker builds");
    let address = worker.metrics_addr().expect("a metrics address");
    let cancel = tokio_util::sync::CancellationToken::new();
    let handle = tokio::spawn(worker.run(cancel.clone()));
    let get = |path: &'static str| reqwest::get(format!("http://{address}{path}"));
    let metrics = get("/metrics").await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    // From its first scrape, before it has handled anything: which version it runs.
    let text = metrics.text().await.unwrap();
    let build = format!("offside_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
    assert!(text.contains("# HELP offside_build_info") && text.contains(&build), "{text}");
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    // Only metrics: the API stays on `serve`.
    assert_eq!(get("/v1/streams").await.unwrap().status(), StatusCode::NOT_FOUND);
    cancel.cancel();
    handle.await.unwrap().expect("the worker stops cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reference_reads_ready_only_once_the_process_that_hashed_it_can_match_it() {
    // No periodic sync to load it behind the job's back: only the job's own step counts.
    let app = spawn_app_on(Db::Sqlite, |c| c.index_sync_ms = 3_600_000).await;
    // Hold this process's index for reading, as a long lookup would, while the reference is
    // hashed: its job cannot load it into the index meanwhile.
    let library = app.library.clone();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held, holding) = tokio::sync::oneshot::channel();
    let holder = std::thread::spawn(move || {
        let _reading = library.read().unwrap();
        held.send(()).unwrap();
        released.recv().ok();
    });
    holding.await.unwrap();
    let id = app.accepted_clip("Derby").await;
    // A two-second clip is hashed well within this; while the index cannot take it, the
    // reference must not say ready, or a client would post keyframes that find nothing.
    let until = std::time::Instant::now() + Duration::from_secs(6);
    while std::time::Instant::now() < until {
        let reference =
            offside::store::references::get(app.store.pool(), &id).await.unwrap().unwrap();
        assert_ne!(
            reference.status,
            offside::domain::ReferenceStatus::Ready,
            "ready before this process's index holds it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    release.send(()).unwrap();
    holder.join().unwrap();
    let ready = app.wait_until_settled(&app.admin_key, &id).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(app.library.read().unwrap().contains(&id));
}
