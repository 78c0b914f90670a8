//! Typed configuration: every setting is a command-line flag with an `OFFSIDE_*` environment
//! variable and a default that runs the embedded setup (SQLite under `./offside-data`, the
//! keyframe queue in that database, `127.0.0.1:8080`).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// The default database: an SQLite file under the default data directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://./offside-data/offside.db";
/// The default listen address: loopback only, so a fresh install is not exposed.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The default data directory (uploads in progress, the SQLite file).
pub const DEFAULT_DATA_DIR: &str = "./offside-data";
/// The default upload limit: 16 GiB, enough for a full match (two hours of 1080p at 15 Mbit/s
/// is about 13.5 GB).
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// The default limit for ordinary request bodies (JSON, keyframe images).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;

/// Everything `offside serve`, `offside worker` and the admin commands need to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Database URL: `sqlite://PATH` (the file and its directory are created) or
    /// `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(long, env = "OFFSIDE_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: SecretUrl,

    /// RabbitMQ URL (`amqp://USER:PASSWORD@HOST:5672/%2f`). Absent: the keyframe queue is a
    /// table of the database (`crate::queue::db`), durable across restarts.
    #[arg(long, env = "OFFSIDE_AMQP_URL", global = true)]
    pub amqp_url: Option<SecretUrl>,

    /// Prefix of every exchange and queue name Offside declares on RabbitMQ (empty in
    /// production); lets several deployments or test runs share one broker without mixing.
    #[arg(long, env = "OFFSIDE_AMQP_PREFIX", default_value = "", global = true)]
    pub amqp_prefix: String,

    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "OFFSIDE_LISTEN", default_value = DEFAULT_LISTEN, global = true)]
    pub listen: SocketAddr,

    /// Directory for uploads being processed (and the default SQLite file).
    #[arg(long, env = "OFFSIDE_DATA_DIR", default_value = DEFAULT_DATA_DIR, global = true)]
    pub data_dir: PathBuf,

    /// Let webhooks and live feeds reach loopback and private addresses (tests, private
    /// networks). Off by default so a URL from a client cannot probe the internal network.
    #[arg(long, env = "OFFSIDE_ALLOW_PRIVATE_URLS", default_value_t = false, global = true)]
    pub allow_private_urls: bool,

    /// Networks (comma-separated CIDRs, e.g. `10.20.0.0/16,fd12:3456::/48`) that webhooks and
    /// live feeds may reach although they are not public; every other loopback, private or
    /// otherwise non-public address stays refused. For a feed on one private network, and for
    /// tests that serve on loopback (`127.0.0.0/8`) but must still see the other private
    /// ranges refused. `--allow-private-urls` allows every address instead.
    #[arg(long, env = "OFFSIDE_ALLOW_PRIVATE_NETWORKS", value_delimiter = ',', global = true)]
    pub allow_private_networks: Vec<crate::net::Cidr>,

    /// Log format: `text` for people, `json` for log collectors. Levels come from `RUST_LOG`.
    #[arg(long, env = "OFFSIDE_LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: LogFormat,

    /// Largest accepted reference upload, in bytes (suffixes KB, MB, GB, KiB, MiB, GiB allowed).
    #[arg(long, env = "OFFSIDE_MAX_UPLOAD_BYTES", default_value = "16GiB", value_parser = parse_size, global = true)]
    pub max_upload_bytes: u64,

    /// Largest accepted body for every other request, in bytes (suffixes allowed).
    #[arg(long, env = "OFFSIDE_MAX_BODY_BYTES", default_value = "16MiB", value_parser = parse_size, global = true)]
    pub max_body_bytes: u64,

    /// Seconds a request may take before it is answered 408 (uploads are exempt: they take as
    /// long as the client needs to send the file).
    #[arg(long, env = "OFFSIDE_REQUEST_TIMEOUT_SECS", default_value_t = 30, global = true)]
    pub request_timeout_secs: u64,

    /// Seconds a client may send nothing: while its request headers arrive, or in the middle of
    /// a body (an upload is cut with 408 and its connection closed). A slow upload that keeps
    /// sending is never cut, however long it takes.
    #[arg(long, env = "OFFSIDE_CLIENT_IDLE_TIMEOUT_SECS", default_value_t = 30, global = true)]
    pub client_idle_timeout_secs: u64,

    /// Reference files hashed at the same time. Hashing is CPU-bound; one job keeps the API
    /// and the workers responsive on small machines. 0 runs no jobs in this process (an API
    /// node that leaves hashing to another; uploads wait as `processing` until one runs).
    #[arg(long, env = "OFFSIDE_REFERENCE_JOBS", default_value_t = 1, global = true)]
    pub reference_jobs: usize,

    /// How often, in milliseconds, each process reconciles its in-memory reference index with
    /// the database (picks up references other processes made ready or deleted).
    #[arg(long, env = "OFFSIDE_INDEX_SYNC_MS", default_value_t = 1000, global = true)]
    pub index_sync_ms: u64,

    /// Keyframe consumers in this process; unset: one per core. 0 runs none: a node that serves
    /// the API or ingests live feeds and leaves keyframes to `offside worker` processes (needs
    /// RabbitMQ: the scale-out deployment this is for).
    #[arg(long, env = "OFFSIDE_KEYFRAME_WORKERS", global = true)]
    pub keyframe_workers: Option<usize>,

    /// How long, in milliseconds, a live feed's ingest lease lasts without renewal: when the
    /// ingesting process dies, another takes the feed over after at most this long. The holder
    /// renews it every second, so values below 3000 are raised to 3000.
    #[arg(long, env = "OFFSIDE_LIVE_LEASE_TTL_MS", default_value_t = 10_000, global = true)]
    pub live_lease_ttl_ms: u64,
    /// How many days the stills of stream keyframes (the visual evidence of cases) are kept;
    /// after that a case keeps its numbers but not its pictures. Reference stills live as long
    /// as their reference (a live feed's, as long as its retention unless archived).
    #[arg(long, env = "OFFSIDE_STILLS_RETENTION_DAYS", default_value_t = 30, global = true)]
    pub stills_retention_days: u32,

    /// The longest wait, in seconds, between two attempts to deliver a takedown webhook to a
    /// receiver that keeps failing. Deliveries are retried until a 2xx, waiting 1 s, 2 s, 4 s …
    /// up to this; so a receiver that comes back gets its events within this long.
    #[arg(long, env = "OFFSIDE_WEBHOOK_RETRY_MAX_SECS", default_value_t = 600, global = true)]
    pub webhook_retry_max_secs: u64,

    /// Also serve `/metrics` and `/healthz` (no API, no key) on this address: how Prometheus
    /// scrapes an `offside worker`, which has no HTTP API, or any process on a separate port.
    #[arg(long, env = "OFFSIDE_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Config {
    /// The embedded defaults, identical to running with no flags and no environment.
    fn default() -> Self {
        Self {
            database_url: SecretUrl(DEFAULT_DATABASE_URL.to_owned()),
            amqp_url: None,
            amqp_prefix: String::new(),
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080))),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            allow_private_urls: false,
            allow_private_networks: Vec::new(),
            log_format: LogFormat::Text,
            max_upload_bytes: DEFAULT_MAX_UPLOAD_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout_secs: 30,
            client_idle_timeout_secs: 30,
            reference_jobs: 1,
            index_sync_ms: 1000,
            keyframe_workers: None,
            live_lease_ttl_ms: 10_000,
            stills_retention_days: 30,
            webhook_retry_max_secs: 600,
            metrics_listen: None,
        }
    }
}

impl Config {
    /// The outbound address policy of webhooks and live feeds.
    pub fn outbound_policy(&self) -> crate::net::OutboundPolicy {
        if self.allow_private_urls {
            crate::net::OutboundPolicy::allow_all()
        } else {
            crate::net::OutboundPolicy::with_allowed(self.allow_private_networks.iter().copied())
        }
    }

    /// The request timeout as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs.max(1))
    }

    /// How long a client may send nothing (headers or body) before it is cut off.
    pub fn client_idle_timeout(&self) -> Duration {
        Duration::from_secs(self.client_idle_timeout_secs.max(1))
    }

    /// How long stream stills are kept.
    pub fn stills_retention(&self) -> Duration {
        Duration::from_secs(u64::from(self.stills_retention_days) * 86_400)
    }

    /// The longest wait between two attempts of a webhook delivery (at least a second).
    pub fn webhook_retry_max(&self) -> Duration {
        Duration::from_secs(self.webhook_retry_max_secs.max(1))
    }

    /// The live feed lease duration (at least three heartbeats).
    pub fn live_lease_ttl(&self) -> Duration {
        Duration::from_millis(self.live_lease_ttl_ms.max(3_000))
    }

    /// Where uploads wait for their job.
    pub fn uploads_dir(&self) -> PathBuf {
        self.data_dir.join("uploads")
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A URL that may carry a password: its `Debug` and `Display` hide the password so logs and
/// panic messages never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, password included, for the driver that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with its password replaced by `***`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut url) if url.password().is_some() => {
                // set_password only fails for URLs that cannot have one, which is not this case.
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            Ok(_) => self.0.clone(),
            // Unparseable: show only the scheme so nothing secret leaks.
            Err(_) => format!("{}://***", self.0.split("://").next().unwrap_or("?")),
        }
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Parses a byte size: a plain number of bytes, or a number with KB/MB/GB (powers of 1000) or
/// KiB/MiB/GiB (powers of 1024).
///
/// # Errors
/// When the text is not such a size or overflows.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size in bytes"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000 * 1000,
        "gb" => 1000 * 1000 * 1000,
        "kib" => 1024,
        "mib" => 1024 * 1024,
        "gib" => 1024 * 1024 * 1024,
        other => {
            return Err(format!("unknown size unit {other:?} (use KB, MB, GB, KiB, MiB or GiB)"));
        }
    };
    number.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_password_never_shows_in_debug_output() {
        let config = Config {
            database_url: SecretUrl::new("postgres://offside:hunter2@db.internal/offside"),
            amqp_url: Some(SecretUrl::new("amqp://guest:s3cret@mq:5672/%2f")),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db.internal"), "{shown}");
    }

    #[test]
    fn allowed_private_networks_are_a_comma_separated_list_of_cidrs() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let cli = <Cli as clap::Parser>::try_parse_from([
            "offside",
            "--allow-private-networks",
            "127.0.0.0/8,::1",
        ])
        .unwrap();
        let policy = cli.config.outbound_policy();
        assert!(policy.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(policy.check("::1".parse().unwrap()).is_ok());
        assert!(policy.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(!policy.allows_all());
        assert!(
            <Cli as clap::Parser>::try_parse_from(["offside", "--allow-private-networks", "lan"])
                .is_err()
        );
        assert!(Config::default().outbound_policy().check("127.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn sizes_accept_plain_bytes_and_binary_and_decimal_units() {
        assert_eq!(parse_size("1048576"), Ok(1_048_576));
        assert_eq!(parse_size("16GiB"), Ok(DEFAULT_MAX_UPLOAD_BYTES));
        assert_eq!(parse_size("2 MB"), Ok(2_000_000));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("99999999999GiB").is_err());
    }
}
