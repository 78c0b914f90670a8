//! Issue #15: on the embedded default (SQLite, no RabbitMQ), a keyframe answered 202 is handled
//! even when the process is killed right after answering. This test runs the real binary,
//! `kill -9`s it right after a burst of keyframes was accepted, and restarts it on the same
//! database.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{eval_mini, eventually};
use offside::recognition::{QueryView, hash_keyframe};
use offside::store::Store;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row as _;

/// Keyframes in the burst.
const BURST: usize = 40;
/// Stream time between keyframes, as platforms send them.
const KEYFRAME_EVERY_MS: i64 = 2_000;

/// One `offside serve` process of the test's deployment; killed when dropped.
struct Serve {
    child: Child,
    base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The deployment: a data directory with its SQLite file, outliving the processes.
struct Deployment {
    dir: tempfile::TempDir,
}

impl Deployment {
    fn new() -> Self {
        Deployment { dir: tempfile::tempdir().expect("temp dir") }
    }

    fn database_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("offside.db").display())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn offside(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_offside"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", if log_enabled() { "info" } else { "error" })
            .arg("--database-url")
            .arg(self.database_url())
            .arg("--data-dir")
            .arg(self.data_dir());
        command
    }

    /// `offside keys create`: the new key is alone on the last line of stdout.
    fn admin_key(&self) -> String {
        let out = self
            .offside()
            .args(["keys", "create", "--role", "admin", "--name", "durable-ingest"])
            .output()
            .expect("offside keys create runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        stdout.lines().last().expect("a key").trim().to_owned()
    }

    /// Starts `offside serve` on a free port and waits until it answers.
    async fn serve(&self) -> Serve {
        // Port 0 cannot be printed back, so take a free port first and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let output = || if log_enabled() { Stdio::inherit() } else { Stdio::null() };
        let child = self
            .offside()
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--index-sync-ms")
            .arg("100")
            .arg("serve")
            .stdout(output())
            .stderr(output())
            .spawn()
            .expect("offside serve starts");
        let serve = Serve { child, base: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(60), "offside serve to answer", || async {
            let r = client.get(format!("{}/healthz", serve.base)).send().await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        serve
    }
}

fn log_enabled() -> bool {
    std::env::var("TEST_LOG").is_ok_and(|v| v == "1")
}

/// Real keyframes (JPEG, so each takes a worker real time to decode and hash) with the PDQ
/// hash of the whole frame, one per distinct picture of the eval-mini queries.
fn keyframes() -> Vec<(Vec<u8>, String, u8)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(eval_mini())
        .expect("eval-mini")
        .flat_map(|e| {
            let dir = e.expect("entry").path();
            if dir.is_dir() && !dir.ends_with("refs") {
                std::fs::read_dir(&dir)
                    .expect("query folder")
                    .map(|f| f.expect("file").path())
                    .collect()
            } else {
                Vec::new()
            }
        })
        .filter(|p: &PathBuf| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    paths.sort();
    let mut seen = std::collections::HashSet::new();
    let frames: Vec<_> = paths
        .iter()
        .filter_map(|p: &PathBuf| {
            let jpeg = std::fs::read(p).expect("keyframe");
            let hashes = hash_keyframe(&jpeg).expect("fixture keyframes hash");
            let full = hashes.hashes.iter().find(|h| h.view == QueryView::Full)?;
            let hex = full.hash.to_hex();
            seen.insert(hex.clone()).then_some((jpeg, hex, full.quality))
        })
        .take(BURST)
        .collect();
    assert_eq!(frames.len(), BURST, "eval-mini has {BURST} distinct usable keyframes");
    frames
}

/// The hash-import body of a reference made of exactly `frames`, one every 2 s.
fn hash_lines(frames: &[(Vec<u8>, String, u8)]) -> String {
    frames
        .iter()
        .enumerate()
        .map(|(i, (_, hex, quality))| format!("{},{hex},{quality}\n", i as i64 * KEYFRAME_EVERY_MS))
        .collect()
}

fn api(
    client: &reqwest::Client,
    key: &str,
    method: reqwest::Method,
    url: String,
) -> reqwest::RequestBuilder {
    client.request(method, url).bearer_auth(key)
}

/// Stream times of `stream`'s keyframes whose hits are stored: each is a keyframe handled.
async fn handled(store: &Store, stream: &str) -> Vec<i64> {
    sqlx::query("SELECT DISTINCT stream_ts_ms FROM stream_hits WHERE stream_id = $1 ORDER BY 1")
        .bind(stream)
        .fetch_all(store.pool())
        .await
        .expect("stream hits")
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect()
}

async fn count(store: &Store, sql: &'static str, stream: &str) -> i64 {
    sqlx::query(sql).bind(stream).fetch_one(store.pool()).await.expect("count").get(0)
}

#[tokio::test]
async fn every_keyframe_accepted_before_a_kill_9_is_handled_after_the_restart_and_decided_once() {
    crate::common::init_logs();
    let deployment = Deployment::new();
    let frames = keyframes();
    let client = reqwest::Client::new();
    let first = deployment.serve().await;
    // After `serve` created the database, as an operator would.
    let key = deployment.admin_key();

    // A reference made of exactly these pictures, one every 2 s, with a flag policy: a pirate
    // stream sending them in order matches on every keyframe, at one offset.
    let created =
        api(&client, &key, reqwest::Method::POST, format!("{}/v1/references", first.base))
            .json(&json!({"title": "Burst", "policy": {"action": "flag", "min_match_seconds": 4}}))
            .send()
            .await
            .expect("create reference");
    assert_eq!(created.status(), StatusCode::CREATED);
    let reference = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let lines = hash_lines(&frames);
    let imported = api(
        &client,
        &key,
        reqwest::Method::POST,
        format!("{}/v1/references/{reference}/hashes", first.base),
    )
    .header("content-type", "text/plain")
    .body(lines)
    .send()
    .await
    .expect("import hashes");
    assert_eq!(imported.status(), StatusCode::OK);

    let store =
        Store::connect(&deployment.database_url()).await.expect("the deployment's database");
    // The index picks the reference up within a sync or two; a probe stream shows when.
    let mut probe_ts = 0;
    eventually(Duration::from_secs(30), "the reference to be matchable", || {
        probe_ts += 1;
        let (client, key, base, store, jpeg) = (&client, &key, &first.base, &store, &frames[0].0);
        async move {
            let r = api(
                client,
                key,
                reqwest::Method::POST,
                format!("{base}/v1/streams/probe/keyframes?ts_ms={probe_ts}"),
            )
            .header("content-type", "image/jpeg")
            .body(jpeg.clone())
            .send()
            .await
            .ok()?;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            tokio::time::sleep(Duration::from_millis(200)).await;
            (!handled(store, "probe").await.is_empty()).then_some(())
        }
    })
    .await;

    // The burst: every keyframe sent at once, every one accepted...
    let answers = futures::future::join_all(frames.iter().enumerate().map(|(i, (jpeg, _, _))| {
        let url = format!(
            "{}/v1/streams/pirate/keyframes?ts_ms={}&account_id=streamer",
            first.base,
            i as i64 * KEYFRAME_EVERY_MS
        );
        let request = client
            .post(url)
            .bearer_auth(&key)
            .header("content-type", "image/jpeg")
            .body(jpeg.clone());
        async move { request.send().await.expect("keyframe request").status() }
    }))
    .await;
    assert!(answers.iter().all(|s| *s == StatusCode::ACCEPTED), "{answers:?}");
    // ...then the process dies at once, without a chance to finish anything.
    let mut first = first;
    first.child.kill().expect("kill -9");
    first.child.wait().expect("reaped");
    let before_restart = handled(&store, "pirate").await.len();
    assert!(
        before_restart < BURST,
        "the workers had handled the whole burst before the kill; nothing was at stake"
    );

    let second = deployment.serve().await;
    let expected: Vec<i64> = (0..BURST as i64).map(|i| i * KEYFRAME_EVERY_MS).collect();
    eventually(Duration::from_secs(90), "every accepted keyframe to be handled", || async {
        (handled(&store, "pirate").await == expected).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "the queue to be empty", || async {
        (count(&store, "SELECT COUNT(*) FROM keyframe_queue WHERE stream_id = $1", "pirate").await
            == 0)
            .then_some(())
    })
    .await;

    // Redeliveries after the restart decide nothing twice: one match, one case.
    let stream: Value =
        api(&client, &key, reqwest::Method::GET, format!("{}/v1/streams/pirate", second.base))
            .send()
            .await
            .expect("stream")
            .json()
            .await
            .expect("json");
    assert_eq!(stream["status"], "flagged", "{stream}");
    let matches = stream["matches"].as_array().expect("matches");
    assert_eq!(matches.len(), 1, "{stream}");
    assert_eq!(matches[0]["reference_id"], reference.as_str());
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM stream_matches WHERE stream_id = $1", "pirate").await,
        1
    );
    assert_eq!(count(&store, "SELECT COUNT(*) FROM cases WHERE stream_id = $1", "pirate").await, 1);
    eprintln!("{before_restart} of {BURST} keyframes were handled before the kill");
}

/// Makes this test's PostgreSQL database unreachable, as a stopped server is to the service:
/// every open connection is cut and new ones are refused. (The shared server keeps running for
/// the tests beside this one, which have databases of their own.) Ends the outage on drop, so a
/// failing test leaves nothing broken.
struct PgOutage {
    admin: sqlx::AnyPool,
    name: String,
}

impl PgOutage {
    async fn start(name: &str) -> PgOutage {
        let admin =
            sqlx::AnyPool::connect(&crate::common::pg_admin_url()).await.expect("PostgreSQL");
        for sql in [
            format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&admin).await.expect("outage");
        }
        PgOutage { admin, name: name.to_owned() }
    }

    async fn end(self) {
        let sql = format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", self.name);
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&self.admin).await.expect("outage ends");
    }
}

/// What one keyframe POST of the load got.
struct Answer {
    stream: String,
    ts_ms: i64,
    status: StatusCode,
    retry_after: bool,
    took: Duration,
    sent_at: Duration,
}

/// Issue #15: PostgreSQL unreachable for 30 s while keyframes keep coming (the PostgreSQL
/// deployment's database queue). Every keyframe POST gets 202 or a quick 503 with `Retry-After`,
/// never a 500 or a hang; once the database is back the same process accepts and handles
/// keyframes again without a restart, and every keyframe it answered 202 is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_down_for_30_seconds_under_load_answers_503_then_recovers_losing_nothing() {
    const OUTAGE: Duration = Duration::from_secs(30);
    const BEFORE: Duration = Duration::from_secs(5);
    const AFTER: Duration = Duration::from_secs(10);
    const STREAMS: usize = 4;
    let app = crate::common::spawn_app_pg().await;
    let frames = keyframes();
    // A reference made of exactly these pictures: every handled keyframe leaves a hit.
    let created = app
        .create_hash_reference(
            &app.admin_key,
            &json!({"title": "Outage", "policy": {"action": "flag", "min_match_seconds": 4}}),
        )
        .await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let reference = created.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let lines = hash_lines(&frames);
    assert_eq!(
        app.import_hashes(&app.admin_key, &reference, &lines).await.status(),
        StatusCode::OK
    );
    let store = Store::connect(&app.env.database_url).await.expect("the app's database");
    eventually(Duration::from_secs(30), "the reference to be matchable", || async {
        let r = app
            .post_keyframe(&app.admin_key, "probe", "ts_ms=0", "image/jpeg", frames[0].0.clone())
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        tokio::time::sleep(Duration::from_millis(300)).await;
        (!handled(&store, "probe").await.is_empty()).then_some(())
    })
    .await;
    store.pool().close().await;

    // The load: STREAMS streams, each sending its next keyframe as soon as the last is answered
    // (pausing briefly after a 503, as a platform honouring Retry-After would, but shorter).
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let started = std::time::Instant::now();
    let run_for = BEFORE + OUTAGE + AFTER;
    let senders = (0..STREAMS).map(|s| {
        let (client, frames, key) = (client.clone(), &frames, &app.admin_key);
        let base = app.url("");
        async move {
            let stream = format!("load-{s}");
            let mut answers = Vec::new();
            let mut i = 0usize;
            while started.elapsed() < run_for {
                let ts_ms = i as i64 * KEYFRAME_EVERY_MS;
                let sent_at = started.elapsed();
                let sent = std::time::Instant::now();
                let response = client
                    .post(format!("{base}/v1/streams/{stream}/keyframes?ts_ms={ts_ms}"))
                    .bearer_auth(key)
                    .header("content-type", "image/jpeg")
                    .body(frames[(s * 7 + i) % frames.len()].0.clone())
                    .send()
                    .await
                    .expect("every keyframe POST is answered");
                let status = response.status();
                answers.push(Answer {
                    stream: stream.clone(),
                    ts_ms,
                    status,
                    retry_after: response.headers().contains_key("retry-after"),
                    took: sent.elapsed(),
                    sent_at,
                });
                if status == StatusCode::ACCEPTED {
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
            answers
        }
    });
    let outage = async {
        tokio::time::sleep(BEFORE).await;
        let name = app.env.pg.as_ref().expect("a PostgreSQL database").name.clone();
        let outage = PgOutage::start(&name).await;
        tokio::time::sleep(OUTAGE).await;
        outage.end().await;
    };
    let (answers, ()) = tokio::join!(futures::future::join_all(senders), outage);
    let answers: Vec<Answer> = answers.into_iter().flatten().collect();

    let unexpected: Vec<_> = answers
        .iter()
        .filter(|a| a.status != StatusCode::ACCEPTED && a.status != StatusCode::SERVICE_UNAVAILABLE)
        .map(|a| (a.sent_at, a.status))
        .collect();
    assert!(unexpected.is_empty(), "only 202 and 503: {unexpected:?}");
    let unavailable: Vec<&Answer> =
        answers.iter().filter(|a| a.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(unavailable.len() >= 20, "the outage was seen: {} 503s", unavailable.len());
    assert!(unavailable.iter().all(|a| a.retry_after), "every 503 says when to retry");
    let slowest = answers.iter().map(|a| a.took).max().unwrap_or_default();
    assert!(slowest < Duration::from_secs(5), "answers stay quick: the slowest took {slowest:?}");
    // Recovery without a restart: the last seconds of the load were accepted again.
    let last = |a: &&Answer| a.sent_at > BEFORE + OUTAGE + AFTER / 2;
    let late: Vec<&Answer> = answers.iter().filter(last).collect();
    assert!(!late.is_empty() && late.iter().all(|a| a.status == StatusCode::ACCEPTED));

    // Nothing lost: every keyframe answered 202, before, during or after, is handled.
    let store = Store::connect(&app.env.database_url).await.expect("the app's database");
    let mut accepted: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    for a in answers.iter().filter(|a| a.status == StatusCode::ACCEPTED) {
        accepted.entry(a.stream.as_str()).or_default().push(a.ts_ms);
    }
    assert_eq!(accepted.len(), STREAMS);
    // The backlog of the outage drains at the worker's pace, which a busy machine slows: wait
    // while the handled keyframes keep growing, and fail (naming what is missing) once nothing
    // more has been handled for 30 s.
    for (stream, expected) in &accepted {
        let (mut seen, mut progressed) = (Vec::new(), std::time::Instant::now());
        loop {
            let now = handled(&store, stream).await;
            if now == *expected {
                break;
            }
            if now.len() != seen.len() {
                (seen, progressed) = (now, std::time::Instant::now());
            } else if progressed.elapsed() > Duration::from_secs(30) {
                let missing: Vec<_> = expected.iter().filter(|t| !now.contains(t)).collect();
                let extra: Vec<_> = now.iter().filter(|t| !expected.contains(t)).collect();
                panic!(
                    "{stream}: accepted keyframes never handled at ts_ms {missing:?}; handled but not accepted: {extra:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "{} keyframes accepted, {} answered 503 during a {OUTAGE:?} outage, slowest answer {slowest:?}",
        accepted.values().map(Vec::len).sum::<usize>(),
        unavailable.len()
    );
}
