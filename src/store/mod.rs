//! Storage: one set of SQL queries that runs on SQLite (the embedded default) and PostgreSQL.
//!
//! Queries go through sqlx's `Any` driver so the same strings serve both databases: `$1`
//! placeholders, TEXT ids (UUID v7 strings, so they sort by creation time), BIGINT millisecond
//! timestamps and BLOB/BYTEA bytes. Only the DDL differs, so there are two migration folders
//! (`migrations/sqlite`, `migrations/postgres`), chosen by the URL scheme.
//!
//! Every query function takes an executor (`impl Executor<'_, Database = Any>`) so callers can
//! run it on the pool or inside a transaction.

pub mod audit;
pub mod cases;
pub mod keys;
pub mod outbox;
pub mod queue;
pub mod references;
pub mod rights_holders;
pub mod sessions;
pub mod stills;
pub mod streams;
pub mod webhooks;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor as _};

/// How long a query waits for a pooled connection before giving up (`PoolTimedOut`).
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The database flavour behind a [`Store`], chosen by the URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// An embedded SQLite file (`sqlite://`).
    Sqlite,
    /// A PostgreSQL server (`postgres://` or `postgresql://`).
    Postgres,
}

impl DbKind {
    /// Recognises the database kind from a connection URL.
    ///
    /// # Errors
    /// When the scheme is neither SQLite nor PostgreSQL.
    pub fn from_url(url: &str) -> anyhow::Result<Self> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            anyhow::bail!("unsupported database URL scheme (expected sqlite:// or postgres://)")
        }
    }
}

/// A connection pool plus the database kind it talks to.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    kind: DbKind,
}

impl Store {
    /// Connects to `url`, creating the SQLite file (and its directory) if needed.
    ///
    /// SQLite runs in WAL mode (readers don't block the writer) with a busy timeout (writers
    /// wait for each other instead of failing) and foreign keys on.
    ///
    /// # Errors
    /// When the URL is invalid or the database cannot be reached.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let kind = DbKind::from_url(url)?;
        let url = match kind {
            DbKind::Sqlite => prepare_sqlite_url(url)?,
            DbKind::Postgres => url.to_owned(),
        };
        let options = AnyConnectOptions::from_str(&url).context("parsing the database URL")?;
        // A request waits at most this long for a connection: when the database is down or
        // saturated, the API answers 503 with Retry-After quickly (ApiError maps the pool's
        // timeout) instead of holding the client for the old 10 s and then answering 500.
        // Background loops (jobs, delivery, index sync) retry on their own schedule.
        let mut pool_options = AnyPoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        pool_options = match kind {
            DbKind::Sqlite => pool_options.max_connections(8).after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            }),
            DbKind::Postgres => pool_options.max_connections(16),
        };
        let pool = pool_options
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to the {kind:?} database"))?;
        Ok(Self { pool, kind })
    }

    /// Applies the pending migrations for this database kind.
    ///
    /// # Errors
    /// When a migration fails or an applied migration was changed.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.kind {
            DbKind::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            DbKind::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.run(&self.pool).await.context("running database migrations")?;
        Ok(())
    }

    /// The pool, for queries and transactions.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this store talks to.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// Checks that the database answers (for `/readyz`).
    ///
    /// # Errors
    /// When the database cannot be reached.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.context("database ping")?;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Makes sure the SQLite file's directory exists and asks SQLite to create the file.
fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    };
    if path != ":memory:"
        && !path.is_empty()
        && let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating the database directory {}", parent.display()))?;
    }
    Ok(match query {
        Some(query) if query.contains("mode=") => url.to_owned(),
        Some(query) => format!("sqlite://{path}?{query}&mode=rwc"),
        None => format!("sqlite://{path}?mode=rwc"),
    })
}

/// The current time in milliseconds since the Unix epoch, the unit of every stored timestamp.
pub fn now_ms() -> i64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// A new time-ordered id (UUID v7 as a string).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Whether `err` is a unique-constraint violation (the HTTP layer turns it into 409).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}
