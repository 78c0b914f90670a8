//! Issue #15: on the embedded default (SQLite, no RabbitMQ), a keyframe answered 202 is handled
//! even when the process is killed right after answering. This test runs the real binary,
//! `kill -9`s it right after a burst of keyframes was accepted, and restarts it on the same
//! database.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{eval_mini, eventually};
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
    common::init_logs();
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
    let lines: String = frames
        .iter()
        .enumerate()
        .map(|(i, (_, hex, quality))| format!("{},{hex},{quality}\n", i as i64 * KEYFRAME_EVERY_MS))
        .collect();
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
