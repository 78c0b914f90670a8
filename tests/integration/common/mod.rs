//! Test helpers: `spawn_app()` builds the real application on port 0 with a fresh database
//! (an SQLite file in a temp dir, or a fresh PostgreSQL database with `spawn_app_pg()`), creates
//! an admin key through the store, and returns a [`TestApp`] with one method per endpoint.
//! Logs: the application's warnings and errors always, into the test's captured output (shown
//! only when a test fails, so a rare failure says what the app saw); everything with
//! `TEST_LOG=1` (`RUST_LOG` filters).

pub mod browser;
pub mod live;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use offside::app::{App, Mode};
use offside::config::{Config, LogFormat, SecretUrl};
use offside::recognition::SharedLibrary;
use offside::store::Store;
use offside::store::keys::{self, Role};
use reqwest::multipart::{Form, Part};
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The PostgreSQL server the tests create their databases on: `OFFSIDE_TEST_POSTGRES_URL`
/// (a URL to its maintenance database), by default the local server as user `postgres`.
pub fn pg_admin_url() -> String {
    std::env::var("OFFSIDE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Which database a test app uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh PostgreSQL database, dropped when the test ends.
pub struct PgDatabase {
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        sqlx::any::install_default_drivers();
        let name = format!("offside_test_{}", uuid::Uuid::new_v4().simple());
        let admin_url = pg_admin_url();
        let admin =
            sqlx::AnyPool::connect(&admin_url).await.expect("PostgreSQL reachable (see README)");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let mut url = url::Url::parse(&admin_url).expect("OFFSIDE_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Self { url: url.to_string(), name }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context guarantees; use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async move {
                if let Ok(admin) = sqlx::AnyPool::connect(&pg_admin_url()).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&admin)
                    .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// Everything that outlives one run of the app: the data directory and the database.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub database_url: String,
    pub pg: Option<PgDatabase>,
}

impl TestEnv {
    pub async fn new(db: Db) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (database_url, pg) = match db {
            Db::Sqlite => (format!("sqlite://{}", dir.path().join("offside.db").display()), None),
            Db::Postgres => {
                let pg = PgDatabase::create().await;
                (pg.url.clone(), Some(pg))
            }
        };
        Self { dir, database_url, pg }
    }

    pub fn config(&self) -> Config {
        Config {
            database_url: SecretUrl::new(self.database_url.clone()),
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: self.dir.path().join("data"),
            allow_private_urls: true,
            log_format: LogFormat::Text,
            index_sync_ms: 200,
            ..Config::default()
        }
    }
}

/// A migrated store on a fresh database of `db`'s kind, for the storage tests; keep the
/// [`TestEnv`] alive as long as the store.
pub async fn fresh(db: Db) -> (TestEnv, Store) {
    let env = TestEnv::new(db).await;
    let store = Store::connect(&env.database_url).await.expect("connect");
    store.migrate().await.expect("migrate");
    (env, store)
}

/// Runs each named `async fn(Db)` of the calling file as a test on SQLite and on PostgreSQL
/// (`sqlite::NAME`, `postgres::NAME`).
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::Db::Sqlite).await })+
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::Db::Postgres).await })+
        }
    };
}

/// A running app plus a client.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_key: String,
    pub store: Store,
    /// This process's recognition library (file references and live feeds).
    pub library: SharedLibrary,
    /// The name this process holds live feed leases under (`ingested_by`).
    pub instance: String,
    /// Shared by the apps of one deployment ([`TestApp::sibling`]).
    pub env: Arc<TestEnv>,
    /// The configuration the app was built with (workers of the same deployment reuse it).
    pub config: Config,
    cancel: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    /// Stops the app when the test drops it.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

pub fn init_logs() {
    if std::env::var("TEST_LOG").is_ok_and(|v| v == "1") {
        offside::telemetry::init(LogFormat::Text);
    } else {
        // Already installed by an earlier app of the same test process: keep that one.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_test_writer()
            .try_init();
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_on(Db::Sqlite, |_| {}).await
}

pub async fn spawn_app_pg() -> TestApp {
    spawn_app_on(Db::Postgres, |_| {}).await
}

pub async fn spawn_app_on(db: Db, tweak: impl FnOnce(&mut Config)) -> TestApp {
    init_logs();
    let env = TestEnv::new(db).await;
    let mut config = env.config();
    tweak(&mut config);
    start(Arc::new(env), config, None).await
}

async fn start(env: Arc<TestEnv>, config: Config, admin_key: Option<String>) -> TestApp {
    let app = App::build(config.clone(), Mode::Serve).await.expect("app builds");
    let address = format!("http://{}", app.local_addr().expect("listening"));
    let store = app.state().store.clone();
    let library = app.state().library.clone();
    let instance = app.instance().to_owned();
    let admin_key = match admin_key {
        Some(key) => key,
        None => {
            keys::create(store.pool(), "test admin", Role::Admin, None)
                .await
                .expect("admin key")
                .secret
        }
    };
    let cancel = CancellationToken::new();
    let handle = tokio::spawn(app.run(cancel.clone()));
    let _stop_on_drop = cancel.clone().drop_guard();
    TestApp {
        address,
        client: reqwest::Client::new(),
        admin_key,
        store,
        library,
        instance,
        env,
        config,
        cancel,
        handle: Some(handle),
        _stop_on_drop,
    }
}

impl TestApp {
    /// Stops the app (as on SIGTERM) and waits until it has drained.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("app task").expect("app stops cleanly");
        }
    }

    /// Stops the app and starts a new one on the same database and data directory.
    pub async fn restart(mut self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        self.stop().await;
        let admin_key = self.admin_key.clone();
        let TestApp { env, .. } = self;
        let mut config = env.config();
        tweak(&mut config);
        start(env, config, Some(admin_key)).await
    }

    /// Kills the app as when its process dies: its task is aborted mid-work, with everything
    /// it runs, and nothing is released (live feed leases stay held until they expire).
    pub fn abort(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }

    /// Another `offside serve` of the same deployment, on the same database (and broker), with
    /// its own data directory, port and live library; the same admin key works on both.
    pub async fn sibling(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config.clone();
        config.data_dir =
            self.env.dir.path().join(format!("data-{}", uuid::Uuid::new_v4().simple()));
        tweak(&mut config);
        start(Arc::clone(&self.env), config, Some(self.admin_key.clone())).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, key: Option<&str>, path: &str) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("request")
    }

    pub async fn create_rights_holder(&self, key: &str, name: &str) -> Response {
        self.client
            .post(self.url("/v1/rights-holders"))
            .bearer_auth(key)
            .json(&json!({ "name": name }))
            .send()
            .await
            .expect("request")
    }

    pub async fn create_key(&self, key: &str, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/keys"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn list_keys(&self, key: &str) -> Response {
        self.get(Some(key), "/v1/keys").await
    }

    pub async fn revoke_key(&self, key: &str, id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/v1/keys/{id}")))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    /// Creates a rights holder and a key scoped to it: `(rights_holder_id, key)`.
    pub async fn rights_holder(&self, name: &str) -> (String, String) {
        let created: Value =
            self.create_rights_holder(&self.admin_key, name).await.json().await.expect("json");
        let id = created["id"].as_str().expect("id").to_owned();
        let key = self.key_for(Role::RightsHolder, Some(&id)).await;
        (id, key)
    }

    /// Creates a key with `role` through the API.
    pub async fn key_for(&self, role: Role, rights_holder_id: Option<&str>) -> String {
        let body = json!({ "role": role.as_str(), "name": format!("{role} key"), "rights_holder_id": rights_holder_id });
        let response = self.create_key(&self.admin_key, &body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let created: Value = response.json().await.expect("json");
        created["key"].as_str().expect("key").to_owned()
    }

    pub async fn upload_reference(
        &self,
        key: &str,
        metadata: &Value,
        file_name: &str,
        bytes: Vec<u8>,
    ) -> Response {
        let form = Form::new()
            .part(
                "metadata",
                Part::text(metadata.to_string()).mime_str("application/json").expect("mime"),
            )
            .part("file", Part::bytes(bytes).file_name(file_name.to_owned()));
        self.client
            .post(self.url("/v1/references"))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .expect("request")
    }

    pub async fn create_hash_reference(&self, key: &str, metadata: &Value) -> Response {
        self.client
            .post(self.url("/v1/references"))
            .bearer_auth(key)
            .json(metadata)
            .send()
            .await
            .expect("request")
    }

    pub async fn import_hashes(&self, key: &str, id: &str, lines: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/references/{id}/hashes")))
            .bearer_auth(key)
            .header("content-type", "text/plain")
            .body(lines.to_owned())
            .send()
            .await
            .expect("request")
    }

    pub async fn get_reference(&self, key: &str, id: &str) -> Response {
        self.get(Some(key), &format!("/v1/references/{id}")).await
    }

    pub async fn list_references(&self, key: &str, query: &str) -> Response {
        self.get(Some(key), &format!("/v1/references{query}")).await
    }

    pub async fn delete_reference(&self, key: &str, id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/v1/references/{id}")))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    pub async fn set_policy(&self, key: &str, id: &str, policy: &Value) -> Response {
        self.client
            .put(self.url(&format!("/v1/references/{id}/policy")))
            .bearer_auth(key)
            .json(policy)
            .send()
            .await
            .expect("request")
    }

    /// Polls a reference until it leaves `processing` (or two minutes pass) and returns it.
    pub async fn wait_until_settled(&self, key: &str, id: &str) -> Value {
        let started = Instant::now();
        loop {
            let reference: Value = self.get_reference(key, id).await.json().await.expect("json");
            if reference["status"] != "processing" || started.elapsed() > Duration::from_secs(120) {
                return reference;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reads the error code of an error response.
pub async fn error_code(response: Response) -> String {
    let body: Value = response.json().await.expect("error body is JSON");
    body["error"]["code"].as_str().expect("error.code").to_owned()
}

/// Makes a small test video with the ffmpeg CLI: `seconds` of a moving test pattern.
pub fn make_video(dir: &Path, name: &str, seconds: u32) -> PathBuf {
    let path = dir.join(name);
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=320x240:rate=25:duration={seconds}"))
        .args(["-pix_fmt", "yuv420p", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25"])
        .arg(&path)
        .status()
        .expect("ffmpeg CLI installed");
    assert!(status.success(), "ffmpeg failed to make the test video");
    path
}

// ---------------------------------------------------------------------------------------------
// Enforcement: RabbitMQ deployments, worker instances, the streams/cases/webhooks/audit
// endpoints, the eval-mini fixture and a webhook receiver.

/// The RabbitMQ server of the tests: `OFFSIDE_TEST_AMQP_URL`, by default the local one.
pub fn amqp_url() -> String {
    std::env::var("OFFSIDE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A scaled-out deployment's `offside serve`: PostgreSQL, RabbitMQ under a unique prefix.
pub async fn spawn_app_amqp() -> TestApp {
    spawn_app_on(Db::Postgres, |c| {
        c.amqp_url = Some(SecretUrl::new(amqp_url()));
        c.amqp_prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    })
    .await
}

/// An `offside worker` of the same deployment as `app` (same database, broker and prefix),
/// running in this process with its own reference index, matchers and consumers.
pub struct Worker {
    /// The worker's library (its live feeds' frames come through the live fanout).
    pub library: SharedLibrary,
    /// The name the worker holds live feed leases under.
    pub instance: String,
    cancel: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl Worker {
    /// A worker of `app`'s deployment with its configuration changed by `tweak`.
    pub async fn start_with(app: &TestApp, tweak: impl FnOnce(&mut Config)) -> Worker {
        let mut config = app.config.clone();
        tweak(&mut config);
        let built = App::build(config, Mode::Worker).await.expect("worker builds");
        let library = built.state().library.clone();
        let instance = built.instance().to_owned();
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(built.run(cancel.clone()));
        Worker {
            library,
            instance,
            _stop_on_drop: cancel.clone().drop_guard(),
            cancel,
            handle: Some(handle),
        }
    }

    /// Stops the worker as on SIGTERM and waits until it has drained.
    pub async fn stop(&mut self) {
        self.cancel.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("worker task").expect("worker stops cleanly");
        }
    }
}

/// [`within`], failing the test (naming `what`) when `timeout` passes first.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(timeout, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Polls `check` every 50 ms until it gives a value, for at most `timeout`; `None` after.
pub async fn within<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if started.elapsed() >= timeout {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl TestApp {
    pub async fn post_keyframe(
        &self,
        key: &str,
        stream_id: &str,
        query: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Response {
        self.client
            .post(self.url(&format!("/v1/streams/{stream_id}/keyframes?{query}")))
            .bearer_auth(key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request")
    }

    /// Posts a stream's keyframes in order, every one accepted.
    pub async fn post_keyframes(&self, key: &str, stream_id: &str, frames: &[(i64, Vec<u8>)]) {
        for (ts, jpeg) in frames {
            let r = self
                .post_keyframe(key, stream_id, &format!("ts_ms={ts}"), "image/jpeg", jpeg.clone())
                .await;
            assert_eq!(r.status(), StatusCode::ACCEPTED, "keyframe {ts} of {stream_id}");
        }
    }

    pub async fn end_stream(&self, key: &str, stream_id: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/streams/{stream_id}/end")))
            .bearer_auth(key)
            .send()
            .await
            .expect("request")
    }

    pub async fn get_stream(&self, key: &str, stream_id: &str) -> Response {
        self.get(Some(key), &format!("/v1/streams/{stream_id}")).await
    }

    /// The stream as JSON, or `None` while it is unknown (404).
    pub async fn stream(&self, stream_id: &str) -> Option<Value> {
        let r = self.get_stream(&self.admin_key, stream_id).await;
        if r.status() == StatusCode::NOT_FOUND {
            return None;
        }
        assert_eq!(r.status(), StatusCode::OK);
        Some(r.json().await.expect("json"))
    }

    /// Waits until the stream has the `status`, and returns it.
    pub async fn wait_for_stream_status(&self, stream_id: &str, status: &str) -> Value {
        let last = std::sync::Mutex::new(None);
        let what = format!("stream {stream_id} {status}");
        let waited = within(Duration::from_secs(30), || async {
            let stream = self.stream(stream_id).await;
            *last.lock().unwrap() = stream.clone();
            stream.filter(|s| s["status"] == status)
        })
        .await;
        waited.unwrap_or_else(|| {
            panic!("timed out after 30s waiting for {what}; last seen: {:?}", last.lock().unwrap())
        })
    }

    pub async fn list_streams(&self, key: &str, query: &str) -> Response {
        self.get(Some(key), &format!("/v1/streams{query}")).await
    }

    pub async fn kill_stream(&self, key: &str, stream_id: &str, reason: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/streams/{stream_id}/kill")))
            .bearer_auth(key)
            .json(&json!({ "reason": reason }))
            .send()
            .await
            .expect("request")
    }

    pub async fn restore_stream(&self, key: &str, stream_id: &str, reason: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/streams/{stream_id}/restore")))
            .bearer_auth(key)
            .json(&json!({ "reason": reason }))
            .send()
            .await
            .expect("request")
    }

    pub async fn list_cases(&self, key: &str, query: &str) -> Response {
        self.get(Some(key), &format!("/v1/cases{query}")).await
    }

    /// The cases (as admin) matching `query`.
    pub async fn cases(&self, query: &str) -> Vec<Value> {
        let r = self.list_cases(&self.admin_key, query).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.json().await.expect("json")
    }

    pub async fn decide_case(
        &self,
        key: &str,
        case_id: &str,
        decision: &str,
        note: &str,
    ) -> Response {
        self.client
            .post(self.url(&format!("/v1/cases/{case_id}/decision")))
            .bearer_auth(key)
            .json(&json!({ "decision": decision, "note": note }))
            .send()
            .await
            .expect("request")
    }

    pub async fn create_webhook(
        &self,
        key: &str,
        url: &str,
        events: &[&str],
        secret: &str,
    ) -> Response {
        self.client
            .post(self.url("/v1/webhooks"))
            .bearer_auth(key)
            .json(&json!({ "url": url, "events": events, "secret": secret }))
            .send()
            .await
            .expect("request")
    }

    pub async fn audit(&self, key: &str, query: &str) -> Response {
        self.get(Some(key), &format!("/v1/audit{query}")).await
    }

    /// Uploads a reference file, expects it accepted (202) and returns its id; its job may still
    /// be running.
    pub async fn accepted_reference(
        &self,
        key: &str,
        metadata: &Value,
        file_name: &str,
        bytes: Vec<u8>,
    ) -> String {
        let r = self.upload_reference(key, metadata, file_name, bytes).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        r.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned()
    }

    /// A generated two-second clip uploaded by the admin as a reference titled `title`
    /// ([`Self::accepted_reference`]).
    pub async fn accepted_clip(&self, title: &str) -> String {
        let video = make_video(self.env.dir.path(), "clip.mp4", 2);
        let bytes = std::fs::read(&video).expect("clip");
        self.accepted_reference(&self.admin_key, &json!({ "title": title }), "clip.mp4", bytes)
            .await
    }

    /// Uploads an eval-mini reference file with `policy` and waits until it is ready; returns
    /// its id.
    pub async fn ready_reference(&self, key: &str, file: &str, policy: &Value) -> String {
        let bytes = std::fs::read(eval_mini().join("refs").join(file)).expect("fixture");
        let metadata = json!({ "title": file, "policy": policy });
        let id = self.accepted_reference(key, &metadata, file, bytes).await;
        let settled = self.wait_until_settled(key, &id).await;
        assert_eq!(settled["status"], "ready", "{settled}");
        id
    }

    /// [`Self::ready_reference`] of an eval-mini reference, owned by the platform (admin key),
    /// whose policy takes `action` after 4 s of matching: the setup the enforcement tests share.
    pub async fn enforced_reference(&self, file: &str, action: &str) -> String {
        let policy = json!({"action": action, "min_match_seconds": 4});
        self.ready_reference(&self.admin_key, file, &policy).await
    }
}

/// The committed subset of the development set.
pub fn eval_mini() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval-mini")
}

/// The keyframes of an eval-mini query, `(ts_ms, JPEG)` in stream order.
pub fn query_keyframes(query: &str) -> Vec<(i64, Vec<u8>)> {
    let dir = eval_mini().join(query);
    let mut frames: Vec<(i64, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("query folder")
        .map(|e| {
            let path = e.expect("entry").path();
            let ts = path.file_stem().and_then(|s| s.to_str()).and_then(|s| s.parse().ok());
            (ts.expect("<ts_ms>.jpg"), std::fs::read(&path).expect("keyframe"))
        })
        .collect();
    frames.sort_by_key(|(ts, _)| *ts);
    frames
}

/// One request a [`WebhookReceiver`] got.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: Option<String>,
    pub body: String,
}

/// A real HTTP server on 127.0.0.1:0 that records every POST and answers `status` (settable,
/// so a test can make the first attempts fail).
pub struct WebhookReceiver {
    pub url: String,
    pub received: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
    pub status: std::sync::Arc<std::sync::atomic::AtomicU16>,
    _stop_on_drop: tokio_util::sync::DropGuard,
}

impl WebhookReceiver {
    pub async fn start() -> WebhookReceiver {
        Self::start_on("127.0.0.1:0").await
    }

    /// A receiver on `address` (a port a webhook was registered with while nothing listened).
    pub async fn start_on(address: &str) -> WebhookReceiver {
        use std::sync::atomic::{AtomicU16, Ordering};
        use std::sync::{Arc, Mutex};
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(200));
        let (rec, st) = (Arc::clone(&received), Arc::clone(&status));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (rec, st) = (Arc::clone(&rec), Arc::clone(&st));
                async move {
                    let signature = headers
                        .get("offside-signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    rec.lock().expect("lock").push(Received { signature, body });
                    axum::http::StatusCode::from_u16(st.load(Ordering::SeqCst))
                        .unwrap_or(axum::http::StatusCode::OK)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
        });
        WebhookReceiver { url, received, status, _stop_on_drop: cancel.drop_guard() }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// The bodies received so far, parsed.
    pub fn events(&self) -> Vec<Value> {
        self.requests().iter().map(|r| serde_json::from_str(&r.body).expect("JSON body")).collect()
    }
}

/// Checks an `Offside-Signature: t=UNIX,v1=HEX` header against `body` independently of the
/// service's code: HMAC-SHA256(secret, "{t}.{body}").
pub fn signature_is_valid(secret: &str, header: &str, body: &str) -> bool {
    use hmac::Mac as _;
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.to_owned()),
            Some(("v1", v)) => v1.push(v.to_owned()),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("{t}.{body}").as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    v1.contains(&expected)
}
