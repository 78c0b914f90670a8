//! Test helpers: `spawn_app()` builds the real application on port 0 with a fresh database
//! (an SQLite file in a temp dir, or a fresh PostgreSQL database with `spawn_app_pg()`), creates
//! an admin key through the store, and returns a [`TestApp`] with one method per endpoint.
//! Logs only with `TEST_LOG=1`.
#![allow(dead_code)] // each test binary uses a different subset of the helpers

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use offside::app::{App, Mode};
use offside::config::{Config, LogFormat, SecretUrl};
use offside::references::engine::SharedLibrary;
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

/// A running app plus a client.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub admin_key: String,
    pub store: Store,
    pub library: SharedLibrary,
    pub env: TestEnv,
    cancel: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    /// Stops the app when the test drops it.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

pub fn init_logs() {
    if std::env::var("TEST_LOG").is_ok_and(|v| v == "1") {
        offside::telemetry::init(LogFormat::Text);
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
    start(env, config, None).await
}

async fn start(env: TestEnv, config: Config, admin_key: Option<String>) -> TestApp {
    let app = App::build(config, Mode::Serve).await.expect("app builds");
    let address = format!("http://{}", app.local_addr().expect("listening"));
    let store = app.state().store.clone();
    let library = app.state().library.clone();
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
        env,
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
