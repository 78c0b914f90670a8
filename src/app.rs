//! Building and running the application.
//!
//! [`App::build`] connects to the database, applies migrations, loads the reference index,
//! queues interrupted reference jobs and binds the listener; [`App::run`] serves until the one
//! [`CancellationToken`] fires, then waits for every background task to drain. Tests build the
//! same app on port 0 and read [`App::local_addr`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::{self, AppState};
use crate::recognition::SharedLibrary;
use crate::references::engine::RecognitionHasher;
use crate::references::index::IndexSync;
use crate::references::jobs::{self, JobRunner};
use crate::store::Store;

/// What the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// HTTP API, reference jobs and workers (`offside serve`).
    Serve,
    /// Workers only, no HTTP (`offside worker`).
    Worker,
}

/// The recognition engine the app runs on: how reference files are hashed, and the library
/// their frames are indexed in.
#[derive(Clone)]
pub struct Engine {
    /// Hashes uploaded reference files.
    pub hasher: Arc<RecognitionHasher>,
    /// The in-memory index of every reference's frames, shared with the workers.
    pub library: SharedLibrary,
}

impl Default for Engine {
    /// The recognition core with its default options and an empty library.
    fn default() -> Self {
        Self { hasher: Arc::new(RecognitionHasher::default()), library: SharedLibrary::default() }
    }
}

/// A built application, ready to run.
pub struct App {
    mode: Mode,
    state: AppState,
    listener: Option<TcpListener>,
    runner: Arc<JobRunner>,
    instance: String,
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Builds the app with the given engine.
    ///
    /// # Errors
    /// When the data directory, the database or the listen address is unusable, or when no
    /// process could handle keyframes (`keyframe_workers` 0 without RabbitMQ).
    pub async fn build_with(config: Config, mode: Mode, engine: Engine) -> anyhow::Result<Self> {
        tracing::info!(?config, ?mode, "starting offside");
        if config.keyframe_workers == Some(0) && config.amqp_url.is_none() {
            anyhow::bail!(
                "keyframe_workers = 0 needs RabbitMQ (amqp_url): nothing else would take the \
                 keyframes from the in-process queue"
            );
        }
        tokio::fs::create_dir_all(&config.data_dir).await.with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        let store = Store::connect(config.database_url.expose()).await?;
        store.migrate().await?;

        let index = Arc::new(IndexSync::new(engine.library.clone()));
        index.reconcile(&store).await.context("loading the reference index")?;
        tracing::info!(references = index.len(), "reference index loaded");

        let (jobs, runner) = jobs::channel(store.clone(), Arc::clone(&index), engine.hasher);
        if mode == Mode::Serve {
            let resumed = jobs::resume_interrupted(&store, &jobs).await?;
            if resumed > 0 {
                tracing::info!(resumed, "re-queued interrupted reference jobs");
            }
        }

        let listener = match mode {
            Mode::Serve => Some(
                TcpListener::bind(config.listen)
                    .await
                    .with_context(|| format!("listening on {}", config.listen))?,
            ),
            Mode::Worker => None,
        };
        let metrics_listener = match config.metrics_listen {
            Some(address) => Some(
                TcpListener::bind(address)
                    .await
                    .with_context(|| format!("listening for metrics on {address}"))?,
            ),
            None => None,
        };
        let queue = crate::queue::from_config(&config, &store);
        let readiness = Arc::new(readiness_checks(&config));
        let state = AppState {
            config: Arc::new(config),
            store,
            index,
            library: engine.library,
            jobs,
            metrics: crate::telemetry::metrics(),
            readiness,
            queue,
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
        };
        // Names this process in live feed leases (`ingested_by`) and in the live fanout.
        let instance = format!("offside-{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Ok(Self { mode, state, listener, runner, instance, metrics_listener })
    }

    /// The address `/metrics` is also served on (`--metrics-listen`), if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address the HTTP API listens on (`None` for workers).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The name this process holds live feed leases under (`ingested_by` of a live reference).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The shared state (store, index, jobs), for tests and embedding.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Runs until `cancel` fires, then stops accepting work and waits for in-flight work.
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let Self { mode, state, listener, runner, instance, metrics_listener } = self;
        let mut tasks: JoinSet<()> = JoinSet::new();
        if let Some(listener) = metrics_listener {
            tasks.spawn(crate::telemetry::serve_metrics(listener, cancel.clone()));
        }

        // Background tasks, each stopped by the same token.
        let sync_interval = Duration::from_millis(state.config.index_sync_ms.max(50));
        tasks.spawn(Arc::clone(&state.index).run(
            state.store.clone(),
            sync_interval,
            cancel.clone(),
        ));
        // Keyframe workers, in both modes: one consumer per core, each with its own prefetch.
        let recognition = crate::recognition::RecognitionConfig::default();
        let mut deps =
            crate::pipeline::Deps::new(state.store.clone(), state.library.clone(), recognition);
        deps.outbox_wake = Arc::clone(&state.outbox_wake);
        // Live reference feeds: every process may ingest a feed (one at a time per feed, by
        // lease) and every process matches against all of them. With RabbitMQ, frames reach the
        // other processes through the live fanout.
        let fanout = state.config.amqp_url.as_ref().map(|url| {
            Arc::new(crate::live::fanout::LiveFanout::new(
                url.expose(),
                &state.config.amqp_prefix,
                instance.clone(),
            ))
        });
        if let Some(fanout) = &fanout {
            let fanout = Arc::clone(fanout);
            let (library, cancel) = (state.library.clone(), cancel.clone());
            tasks.spawn(async move { fanout.run_consumer(library, cancel).await });
        }
        let live_service = Arc::new(crate::live::LiveService::new(
            state.store.clone(),
            state.library.clone(),
            fanout,
            instance,
            crate::live::IngestOptions {
                lease_ttl: state.config.live_lease_ttl(),
                outbound: state.config.outbound_policy(),
                ..crate::live::IngestOptions::default()
            },
        ));
        tasks.spawn(live_service.run(cancel.clone()));
        // Deployment-wide gauges (queue depth and age, pending webhooks, live feeds).
        let probe = state.config.amqp_url.as_ref().map(|url| {
            let mut cfg = crate::queue::amqp::AmqpConfig::new(url.expose());
            cfg.prefix.clone_from(&state.config.amqp_prefix);
            crate::telemetry::QueueProbe::new(cfg)
        });
        tasks.spawn(crate::telemetry::run_sampler(state.store.clone(), probe, cancel.clone()));
        let workers = state.config.keyframe_workers.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        for _ in 0..workers {
            tasks.spawn(crate::pipeline::run_consumer(
                Arc::clone(&state.queue),
                deps.clone(),
                cancel.clone(),
            ));
        }
        if mode == Mode::Serve {
            for _ in 0..state.config.reference_jobs {
                tasks.spawn(Arc::clone(&runner).run(cancel.clone()));
            }
            tasks.spawn(crate::review::retention::run(
                state.store.clone(),
                state.config.stills_retention(),
                cancel.clone(),
            ));
            // Takedown webhooks: the outbox is in the database, so one loop here delivers the
            // decisions of every worker process.
            let client = crate::enforce::webhook::WebhookClient::new(
                Duration::from_secs(10),
                state.config.outbound_policy(),
            )
            .context("building the webhook client")?;
            tasks.spawn(crate::enforce::delivery::run(
                state.store.clone(),
                client,
                crate::enforce::delivery::DeliveryConfig {
                    retry_max: state.config.webhook_retry_max(),
                    ..crate::enforce::delivery::DeliveryConfig::default()
                },
                Arc::clone(&state.outbox_wake),
                cancel.clone(),
            ));
        }

        if let Some(listener) = listener {
            tracing::info!(address = %listener.local_addr()?, "HTTP API listening");
            let router = http::router(state.clone());
            let shutdown = cancel.clone();
            serve(listener, router, state.config.client_idle_timeout(), shutdown).await;
        } else {
            cancel.cancelled().await;
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(err) = joined {
                tracing::error!(error = %err, "a background task panicked");
            }
        }
        state.store.close().await;
        tracing::info!("offside stopped");
        Ok(())
    }
}

/// Serves `router` on `listener` until `cancel` fires, then lets in-flight requests finish.
///
/// This is `axum::serve` plus what it does not expose: a header read timeout, so a client that
/// opens a connection and sends its headers slowly (or never) is cut off after
/// `header_timeout` instead of holding the connection forever. Bodies have their own idle
/// timeout where they are read (see `http::references`).
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    header_timeout: Duration,
    cancel: CancellationToken,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use tower::ServiceExt as _;

    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            () = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let service = hyper_util::service::TowerToHyperService::new(router.clone().map_request(
            |request: hyper::Request<hyper::body::Incoming>| request.map(axum::body::Body::new),
        ));
        let connection =
            graceful.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%remote, error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Fires `cancel` on Ctrl-C or SIGTERM.
pub fn cancel_on_signals(cancel: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = async {
            if let Err(err) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %err, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            () = ctrl_c => {}
            () = term => {}
        }
        tracing::info!("shutdown requested; draining");
        cancel.cancel();
    });
}

/// What `/readyz` checks besides the database: RabbitMQ when the app uses it.
fn readiness_checks(config: &Config) -> Vec<Arc<dyn http::health::ReadinessCheck>> {
    let mut checks: Vec<Arc<dyn http::health::ReadinessCheck>> = Vec::new();
    if let Some(url) = &config.amqp_url {
        checks.push(Arc::new(http::health::AmqpCheck::new(url.expose())));
    }
    checks
}

impl App {
    /// Builds the app on the recognition core (`crate::recognition`).
    ///
    /// # Errors
    /// As [`App::build_with`].
    pub async fn build(config: Config, mode: Mode) -> anyhow::Result<Self> {
        Self::build_with(config, mode, Engine::default()).await
    }
}
