//! Logs and metrics.
//!
//! Logs go through `tracing`, filtered by `RUST_LOG` (default `info`), as text or JSON lines.
//! Each HTTP request runs in a span carrying its request id (the `x-request-id` header, made up
//! when the client sent none), so every line a request causes can be found by that id. Text logs
//! are coloured only when stderr is a terminal: escape codes in a file or a log collector are
//! noise.
//!
//! Metrics are recorded with the `metrics` facade into one process-wide Prometheus recorder,
//! rendered by `GET /metrics`. [`METRICS`] is the catalogue of every metric the service exports,
//! with its kind, unit and help text; it is described to the recorder once, so every metric has
//! a `# HELP` line, and the ops pack (`ops/`) is checked against it. Latencies are Prometheus
//! histograms (buckets, not summaries), so quantiles aggregate across the processes of a
//! scale-out deployment: `histogram_quantile(0.99, sum by (le) (rate(NAME_bucket[5m])))`.
//!
//! [`run_sampler`] samples what no single event changes (queue depth and age, pending webhook
//! deliveries, live feeds by state) every few seconds. These gauges describe the whole
//! deployment (a shared database and broker), so every process reports the same value:
//! aggregate them with `max`, not `sum`.

use std::io::IsTerminal as _;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use sqlx::Row as _;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;
use crate::store::{Store, now_ms};

/// Installs the global log subscriber. A second call (tests build many apps in one process) is
/// a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _already_installed = match format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(colour_logs(std::io::stderr().is_terminal()))
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}

/// Whether text logs get colour: only for a person at a terminal, and never with `NO_COLOR`
/// set (<https://no-color.org>).
fn colour_logs(stderr_is_terminal: bool) -> bool {
    stderr_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The kind of a metric, as Prometheus shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up (`_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution with buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One metric the service exports.
#[derive(Debug, Clone, Copy)]
pub struct MetricInfo {
    /// Its name.
    pub name: &'static str,
    /// Its kind.
    pub kind: MetricKind,
    /// Its unit, when it has one.
    pub unit: Option<Unit>,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Its labels (for the docs and the ops pack).
    pub labels: &'static [&'static str],
}

const fn metric(
    name: &'static str,
    kind: MetricKind,
    unit: Option<Unit>,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricInfo {
    MetricInfo { name, kind, unit, help, labels }
}

use MetricKind::{Counter, Gauge, Histogram};

/// Every metric the service exports. Add a metric here when you add a `metrics::` call: the
/// test of `/metrics` fails on a metric without help text, and the ops pack is checked against
/// these names.
pub const METRICS: &[MetricInfo] = &[
    metric(
        "offside_build_info",
        Gauge,
        None,
        &["version"],
        "Always 1, labelled with the running build's version: which version each process of a \
         deployment runs, and a series present from the moment a process starts",
    ),
    metric(
        "offside_http_requests_total",
        Counter,
        Some(Unit::Count),
        &["route", "method", "status"],
        "HTTP requests answered, by route template, method and status",
    ),
    metric(
        "offside_http_request_duration_seconds",
        Histogram,
        Some(Unit::Seconds),
        &["route", "method"],
        "HTTP request latency, from the request's arrival to its answer, by route template",
    ),
    metric(
        "offside_reference_jobs_total",
        Counter,
        Some(Unit::Count),
        &["outcome"],
        "Reference hashing jobs finished, by outcome (ready, failed, deleted, interrupted, error)",
    ),
    metric(
        "offside_reference_jobs_running",
        Gauge,
        Some(Unit::Count),
        &[],
        "Reference hashing jobs running in this process now",
    ),
    metric(
        "offside_index_references",
        Gauge,
        Some(Unit::Count),
        &[],
        "References in this process's in-memory index",
    ),
    metric(
        "offside_index_frames",
        Gauge,
        Some(Unit::Count),
        &[],
        "Reference frames in this process's in-memory index",
    ),
    metric(
        "offside_keyframes_published_total",
        Counter,
        Some(Unit::Count),
        &["via"],
        "Keyframes (and stream ends) accepted by this process's API and queued for the workers",
    ),
    metric(
        "offside_keyframes_total",
        Counter,
        Some(Unit::Count),
        &["outcome"],
        "Queue messages handled by this process's workers, by outcome (no_match, accumulating, \
         decided, low_quality, dropped, ended)",
    ),
    metric(
        "offside_geometric_lookups_total",
        Counter,
        Some(Unit::Count),
        &[],
        "Keyframes this process's workers looked up in the geometric tier (local features), as \
         its schedule (recognition::FeatureSchedule) picks them",
    ),
    metric(
        "offside_keyframe_latency_seconds",
        Histogram,
        Some(Unit::Seconds),
        &[],
        "Keyframe capture (captured_at_ms, else publication) to the worker's outcome, queue wait \
         included",
    ),
    metric(
        "offside_keyframe_handle_seconds",
        Histogram,
        Some(Unit::Seconds),
        &[],
        "Worker time spent handling one queue message (decode, hash, look up, decide)",
    ),
    metric(
        "offside_keyframes_dead_lettered_total",
        Counter,
        Some(Unit::Count),
        &["reason"],
        "Messages dead-lettered as unusable: reason message (malformed) or content (undecodable)",
    ),
    metric(
        "offside_keyframes_requeued_total",
        Counter,
        Some(Unit::Count),
        &[],
        "Messages returned to the queue after a transient failure (database down, ...)",
    ),
    metric(
        "offside_keyframe_queue_depth",
        Gauge,
        Some(Unit::Count),
        &["queue"],
        "Messages in the keyframe queue, waiting or being handled (queue=work), and dead letters \
         kept (queue=dead), deployment-wide; sampled every few seconds",
    ),
    metric(
        "offside_keyframe_queue_oldest_age_seconds",
        Gauge,
        Some(Unit::Seconds),
        &["queue"],
        "Age of the oldest message in the keyframe queue (0 when empty; the database queue only: \
         RabbitMQ does not say), deployment-wide; sampled every few seconds",
    ),
    metric(
        "offside_queue_reconnects_total",
        Counter,
        Some(Unit::Count),
        &[],
        "Reconnections of this process's keyframe consumers to RabbitMQ",
    ),
    metric(
        "offside_matcher_updates_total",
        Counter,
        Some(Unit::Count),
        &["path"],
        "Per-stream evidence updates: path cached (in memory) or replay (rebuilt from the database)",
    ),
    metric(
        "offside_decisions_total",
        Counter,
        Some(Unit::Count),
        &["action"],
        "Decisions taken by policy, by action (monitor, flag, kill)",
    ),
    metric(
        "offside_stream_stills_total",
        Counter,
        Some(Unit::Count),
        &[],
        "Stream keyframe stills kept as visual evidence",
    ),
    metric(
        "offside_webhook_attempts_total",
        Counter,
        Some(Unit::Count),
        &["delivered"],
        "Webhook delivery attempts, by whether the receiver answered 2xx",
    ),
    metric(
        "offside_webhook_deliveries_total",
        Counter,
        Some(Unit::Count),
        &["outcome"],
        "Webhook delivery attempts by outcome: delivered (2xx) or failed_attempt (retried with \
         backoff; deliveries never give up)",
    ),
    metric(
        "offside_webhook_delivery_seconds",
        Histogram,
        Some(Unit::Seconds),
        &[],
        "Event decided to its webhook delivered (2xx), retries included",
    ),
    metric(
        "offside_webhook_deliveries_pending",
        Gauge,
        Some(Unit::Count),
        &[],
        "Webhook deliveries not yet delivered, deployment-wide; sampled every few seconds",
    ),
    metric(
        "offside_webhook_oldest_pending_age_seconds",
        Gauge,
        Some(Unit::Seconds),
        &[],
        "Age of the oldest webhook delivery not yet delivered (0 when none), deployment-wide; \
         sampled every few seconds",
    ),
    metric(
        "offside_live_feeds",
        Gauge,
        Some(Unit::Count),
        &["status"],
        "Live reference feeds by status (live, reconnecting, ended), deployment-wide; sampled \
         every few seconds",
    ),
];

/// Buckets of the keyframe latencies: 1 ms to 10 s, finest around the 50 ms target.
pub const KEYFRAME_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets of webhook delivery: 5 ms to 10 min (the longest retry delay), around the 1 s target.
pub const WEBHOOK_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0];
/// Buckets of HTTP requests and any other histogram: 1 ms to 30 s (the request timeout).
pub const DEFAULT_BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The process-wide Prometheus recorder, installed on first use. The `metrics` facade has one
/// global recorder per process, so every app built in the process shares it.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder was installed first; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            metrics::gauge!("offside_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
        })
        .clone()
}

fn builder() -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in [
        ("offside_keyframe_latency_seconds", KEYFRAME_BUCKETS),
        ("offside_keyframe_handle_seconds", KEYFRAME_BUCKETS),
        ("offside_webhook_delivery_seconds", WEBHOOK_BUCKETS),
    ] {
        builder = match builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets) {
            Ok(b) => b,
            // Only an empty bucket list fails, and these are constants.
            Err(_) => unreachable!("non-empty buckets"),
        };
    }
    // Every other histogram gets the default buckets: none is ever a summary, whose quantiles
    // cannot be added up across processes.
    builder.set_buckets(DEFAULT_BUCKETS).unwrap_or_else(|_| unreachable!("non-empty buckets"))
}

fn describe() {
    for m in METRICS {
        let (name, help) = (m.name, m.help);
        match (m.kind, m.unit) {
            (Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
            (Counter, None) => metrics::describe_counter!(name, help),
            (Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (Gauge, None) => metrics::describe_gauge!(name, help),
            (Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

/// Serves `GET /metrics` and `GET /healthz` alone on `listener` until `cancel` (the
/// `--metrics-listen` address): an `offside worker` has no API, and Prometheus must scrape
/// every process for the sums and histogram quantiles to cover the deployment.
pub async fn serve_metrics(listener: tokio::net::TcpListener, cancel: CancellationToken) {
    let handle = metrics();
    let router = axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let handle = handle.clone();
                async move {
                    (
                        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        handle.render(),
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(|| async { "ok" }));
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "metrics listening");
    }
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}

/// How often [`run_sampler`] samples.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(5);

/// Samples the deployment-wide gauges every [`SAMPLE_INTERVAL`] until `cancel`: pending webhook
/// deliveries and the oldest one's age, live feeds by status, and the keyframe queue's depth:
/// with RabbitMQ (`amqp`), the message counts of a passive declare of the work and dead-letter
/// queues; without, the database queue's rows, the oldest one's age and the dead letters kept.
/// A failed sample is logged at debug and tried again at the next tick.
pub async fn run_sampler(store: Store, amqp: Option<QueueProbe>, cancel: CancellationToken) {
    let mut amqp = amqp;
    loop {
        if let Err(e) = sample_database(&store).await {
            tracing::debug!(error = %e, "sampling the database gauges failed");
        }
        match &mut amqp {
            Some(probe) => probe.sample().await,
            None => {
                if let Err(e) = sample_database_queue(&store).await {
                    tracing::debug!(error = %e, "sampling the database queue failed");
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(SAMPLE_INTERVAL) => {}
        }
    }
}

/// One sample of the gauges kept in the database.
///
/// # Errors
/// Any database error.
pub async fn sample_database(store: &Store) -> sqlx::Result<()> {
    let now = now_ms();
    // Deliveries of a deleted webhook are never sent: they are not waiting for anything.
    let row = sqlx::query(
        "SELECT COUNT(*), MIN(d.created_at) FROM webhook_deliveries d \
         JOIN webhooks w ON w.id = d.webhook_id \
         WHERE d.status = 'pending' AND w.deleted_at IS NULL",
    )
    .fetch_one(store.pool())
    .await?;
    let pending: i64 = row.try_get(0)?;
    let oldest: Option<i64> = row.try_get(1)?;
    metrics::gauge!("offside_webhook_deliveries_pending").set(pending as f64);
    metrics::gauge!("offside_webhook_oldest_pending_age_seconds")
        .set(oldest.map_or(0.0, |t| (now - t).max(0) as f64 / 1000.0));

    let mut counts = [("live", 0_i64), ("reconnecting", 0), ("ended", 0)];
    for row in sqlx::query("SELECT status, COUNT(*) FROM live_feeds GROUP BY status")
        .fetch_all(store.pool())
        .await?
    {
        let status: String = row.try_get(0)?;
        let n: i64 = row.try_get(1)?;
        if let Some(slot) = counts.iter_mut().find(|(s, _)| *s == status) {
            slot.1 = n;
        }
    }
    for (status, n) in counts {
        metrics::gauge!("offside_live_feeds", "status" => status).set(n as f64);
    }
    Ok(())
}

/// One sample of the database keyframe queue (`crate::queue::db`): messages queued (ready or
/// being handled), the oldest one's age, and the dead letters kept.
///
/// # Errors
/// Any database error.
pub async fn sample_database_queue(store: &Store) -> sqlx::Result<()> {
    let q = database_queue(store).await?;
    q.set_gauges();
    metrics::gauge!("offside_keyframe_queue_oldest_age_seconds", "queue" => "work")
        .set(q.oldest_age_ms.unwrap_or(0) as f64 / 1000.0);
    Ok(())
}

/// What the keyframe queue holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSample {
    /// Messages queued, waiting or being handled.
    pub depth: i64,
    /// Dead letters kept.
    pub dead: i64,
    /// Age of the oldest queued message (database queue only).
    pub oldest_age_ms: Option<i64>,
}

impl QueueSample {
    fn set_gauges(self) {
        metrics::gauge!("offside_keyframe_queue_depth", "queue" => "work").set(self.depth as f64);
        metrics::gauge!("offside_keyframe_queue_depth", "queue" => "dead").set(self.dead as f64);
    }
}

/// The database keyframe queue's depth, oldest message and dead letters (a count and a MIN over
/// a table that stays small: the queue is bounded).
///
/// # Errors
/// Any database error.
pub async fn database_queue(store: &Store) -> sqlx::Result<QueueSample> {
    let now = now_ms();
    let row = sqlx::query("SELECT COUNT(*), MIN(created_at) FROM keyframe_queue")
        .fetch_one(store.pool())
        .await?;
    let depth: i64 = row.try_get(0)?;
    let oldest: Option<i64> = row.try_get(1)?;
    let dead: i64 = sqlx::query("SELECT COUNT(*) FROM keyframe_dead_letters")
        .fetch_one(store.pool())
        .await?
        .try_get(0)?;
    Ok(QueueSample { depth, dead, oldest_age_ms: oldest.map(|t| (now - t).max(0)) })
}

/// Reads the RabbitMQ keyframe queues' message counts with passive declares, on a connection of
/// its own (opened on first use, reopened after a failure).
pub struct QueueProbe {
    cfg: crate::queue::amqp::AmqpConfig,
    link: Option<(lapin::Connection, lapin::Channel)>,
}

impl QueueProbe {
    /// A probe of the queues `cfg` names.
    pub fn new(cfg: crate::queue::amqp::AmqpConfig) -> Self {
        Self { cfg, link: None }
    }

    /// Sets `offside_keyframe_queue_depth` for the work and dead-letter queues.
    pub async fn sample(&mut self) {
        match self.read().await {
            Ok(sample) => sample.set_gauges(),
            Err(e) => {
                tracing::debug!(error = %e, "sampling the RabbitMQ queue depth failed");
                if let Some((connection, _)) = self.link.take() {
                    let _ = connection.close(200, "reopening".into()).await;
                }
            }
        }
    }

    /// The work and dead-letter queues' message counts (ready, not yet delivered to a consumer;
    /// RabbitMQ does not give the oldest message's age).
    ///
    /// # Errors
    /// The broker is unreachable or a queue does not exist (yet).
    pub async fn read(&mut self) -> Result<QueueSample, lapin::Error> {
        use lapin::options::QueueDeclareOptions;
        use lapin::types::FieldTable;
        let usable = self.link.as_ref().is_some_and(|(connection, channel)| {
            connection.status().connected() && channel.status().connected()
        });
        if !usable {
            let props = lapin::ConnectionProperties::default()
                .with_connection_name("offside-metrics".into());
            let connection = lapin::Connection::connect(&self.cfg.url, props).await?;
            let channel = connection.create_channel().await?;
            self.link = Some((connection, channel));
        }
        let Some((_, channel)) = &self.link else { unreachable!("opened above") };
        // Passive: only reads the queue (a missing queue fails, and the channel is reopened at
        // the next sample, by when a worker has declared it).
        let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
        let work = channel
            .queue_declare(self.cfg.work_queue().into(), passive, FieldTable::default())
            .await?;
        let dead = channel
            .queue_declare(self.cfg.dead_letter_queue().into(), passive, FieldTable::default())
            .await?;
        Ok(QueueSample {
            depth: i64::from(work.message_count()),
            dead: i64::from(dead.message_count()),
            oldest_age_ms: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_logs_are_coloured_only_on_a_terminal() {
        assert!(!colour_logs(false));
        if std::env::var_os("NO_COLOR").is_none() {
            assert!(colour_logs(true));
        }
    }

    #[test]
    fn every_metric_is_catalogued_once_with_help() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a metric is catalogued twice");
        for m in METRICS {
            assert!(m.name.starts_with("offside_") && !m.help.is_empty(), "{m:?}");
            assert_eq!(m.kind == Counter, m.name.ends_with("_total"), "{m:?}");
        }
    }
}
