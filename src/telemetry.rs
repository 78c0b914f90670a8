//! Logs and metrics.
//!
//! Logs go through `tracing`, filtered by `RUST_LOG` (default `info`), as text or JSON lines.
//! Each HTTP request runs in a span carrying its request id (the `x-request-id` header, made up
//! when the client sent none), so every line a request causes can be found by that id.
//! Metrics are recorded with the `metrics` facade into one process-wide Prometheus recorder,
//! rendered by `GET /metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// Installs the global log subscriber. A second call (tests build many apps in one process) is
/// a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _already_installed = match format {
        LogFormat::Text => {
            registry.with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr)).try_init()
        }
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

/// The process-wide Prometheus recorder, installed on first use. The `metrics` facade has one
/// global recorder per process, so every app built in the process shares it.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder was installed first; metrics then go there.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "offside_http_requests_total",
        "HTTP requests by route, method and status"
    );
    metrics::describe_histogram!(
        "offside_http_request_duration_seconds",
        "HTTP request latency by route"
    );
    metrics::describe_counter!(
        "offside_reference_jobs_total",
        "Reference hashing jobs finished, by outcome"
    );
    metrics::describe_gauge!(
        "offside_reference_jobs_running",
        "Reference hashing jobs running now"
    );
    metrics::describe_gauge!("offside_index_references", "References in this process's index");
    metrics::describe_gauge!("offside_index_frames", "Reference frames in this process's index");
}
