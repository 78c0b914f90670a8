//! `offside load`: drives many concurrent keyframe streams at a running `offside serve` (and
//! its workers) and measures it.
//!
//! What it does:
//! - negative streams replay real JPEG keyframes from a directory (an eval-set build, filtered
//!   to one picture size if asked); with a `manifest.tsv` there, positive queries of the load
//!   reference are left out so "negative" stays negative;
//! - pirate streams (a share of the streams) replay the keyframes of `--reference`, which the
//!   tool uploads with a kill policy; each pirate stream runs until it is killed, then ends and
//!   a fresh one takes its place, so decisions keep coming during the whole run;
//! - a webhook receiver inside the tool is registered for `stream.killed` and checks each
//!   delivery's signature.
//!
//! What it reports:
//! - keyframes/s published (broker-confirmed or API-accepted) and processed
//!   (`offside_keyframes_total` but its stream ends, summed over every `--metrics-url`: the
//!   `serve` and `worker` processes of a scale-out deployment), and the backlog left when the
//!   load stopped;
//! - keyframe-to-decision latency: the pipeline's `offside_keyframe_latency_seconds` histogram
//!   (from the `captured_at_ms` the tool stamps at publication to the worker's outcome, queue
//!   wait included), p50/p99 computed from its buckets as Prometheus's `histogram_quantile`
//!   does, over the load only (the buckets' growth from the start of the load to its end,
//!   summed over every process);
//! - for deciding keyframes: publication to the decision (the event's `created_at`) and to the
//!   webhook's arrival, p50/p99 from the tool's own clock (same machine, same clock);
//! - resident memory of the given server and worker pids over time, and whether it stayed flat.
//!
//! Streams advance 2 s of stream time per keyframe, as platforms send; the wall-clock rate is
//! the `--rate` spread round-robin over `--streams`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

mod api;
mod exposition;
mod input;
mod receiver;
mod report;

use self::api::Api;
use self::exposition::{bucket_growth, histogram_buckets, histogram_quantile, processed};
use self::input::{load_keyframes, parse_size, reference_keyframes};
use self::receiver::start_receiver;
use self::report::{memory_verdict, percentiles, render};
use super::tap::Publisher;
use crate::config::SecretUrl;
use crate::queue::{KeyframeMessage, QueueMessage, StreamEndMessage};

/// How keyframes travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// RabbitMQ (the global `--amqp-url`), publisher confirms.
    Amqp,
    /// `POST /v1/streams/{id}/keyframes` with the API key.
    Http,
}

/// Arguments of `offside load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Base URL of the running `offside serve` (uploads, webhooks, `/metrics`).
    #[arg(long, env = "OFFSIDE_API_URL")]
    pub api_url: String,
    /// The `/metrics` URL of every process that handles keyframes (repeatable): each `serve`
    /// and `worker` of a scale-out deployment. Counters and histogram buckets are summed over
    /// them. Default: `{api-url}/metrics` alone.
    #[arg(long = "metrics-url")]
    pub metrics_urls: Vec<String>,
    /// An admin API key.
    #[arg(long, env = "OFFSIDE_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// How keyframes travel.
    #[arg(long, value_enum, default_value = "amqp")]
    pub via: Via,
    /// Exchange name prefix: the global `--amqp-prefix`, copied here by the command line.
    #[arg(skip)]
    pub amqp_prefix: String,
    /// Directory searched (recursively) for the JPEG keyframes of negative streams.
    #[arg(long)]
    pub keyframes: PathBuf,
    /// Use only keyframes of this size, e.g. `1280x720`.
    #[arg(long)]
    pub size: Option<String>,
    /// Most distinct negative keyframes kept in memory.
    #[arg(long, default_value_t = 400)]
    pub max_keyframes: usize,
    /// A reference video: uploaded with a kill policy; pirate streams replay its keyframes.
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// The policy's `min_match_seconds`.
    #[arg(long, default_value_t = 6.0)]
    pub min_match_seconds: f64,
    /// Keyframes per second, all streams together.
    #[arg(long, default_value_t = 150.0)]
    pub rate: f64,
    /// Concurrent streams (default: rate x 2, i.e. one keyframe per stream every 2 s).
    #[arg(long)]
    pub streams: Option<usize>,
    /// Share of the streams that are pirate streams (with `--reference`).
    #[arg(long, default_value_t = 0.05)]
    pub pirate_share: f64,
    /// How long to drive load, in seconds (a soak: 600).
    #[arg(long, default_value_t = 60)]
    pub duration_secs: u64,
    /// Seconds between memory and progress samples.
    #[arg(long, default_value_t = 5)]
    pub sample_secs: u64,
    /// Server or worker process ids whose resident memory is sampled (repeatable).
    #[arg(long)]
    pub pid: Vec<u32>,
    /// Where the tool's webhook receiver listens (the server must be allowed to reach it:
    /// `--allow-private-urls` for loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub webhook_listen: SocketAddr,
    /// Publications in flight at once.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

/// Publication times of pirate keyframes and what the webhook receiver saw.
#[derive(Default)]
struct Shared {
    /// (stream id, ts_ms) -> publication time, Unix µs.
    pirate_sent_us: HashMap<(String, i64), i64>,
    /// Streams killed (webhook received).
    killed: std::collections::HashSet<String>,
    /// Deciding keyframe publication -> decision committed (event `created_at`), ms.
    decision_ms: Vec<f64>,
    /// Deciding keyframe publication -> webhook arrival, ms.
    webhook_ms: Vec<f64>,
    /// Deliveries whose signature did not verify.
    bad_signatures: u64,
    /// Deliveries for streams the tool did not send (other traffic) or duplicates.
    unmatched_webhooks: u64,
    /// Broker confirm / API answer time per keyframe, ms.
    publish_ms: Vec<f64>,
    published: u64,
    publish_errors: u64,
    last_error: Option<String>,
}

fn now_us() -> i64 {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_micros()).unwrap_or(i64::MAX)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `offside load` subcommand.
///
/// # Errors
/// Bad arguments, no keyframes found, the server or broker unreachable, the reference failing.
pub async fn command(mut args: LoadArgs, config: &crate::config::Config) -> anyhow::Result<()> {
    args.amqp_prefix.clone_from(&config.amqp_prefix);
    let amqp_url = config.amqp_url.clone();
    let cancel = CancellationToken::new();
    crate::app::cancel_on_signals(cancel.clone());
    let report = run(&args, amqp_url.as_ref(), cancel).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// Runs the load and returns the report as JSON.
///
/// # Errors
/// As [`command`].
pub async fn run(
    args: &LoadArgs,
    amqp_url: Option<&SecretUrl>,
    cancel: CancellationToken,
) -> anyhow::Result<Value> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        bail!("--rate must be positive");
    }
    let streams = args.streams.unwrap_or((args.rate * 2.0).ceil() as usize).max(1);
    let api = Api::new(&args.api_url, &args.api_key, &args.metrics_urls)?;
    api.get_json("/healthz").await.context("the server at --api-url is not answering")?;

    let size = args.size.as_deref().map(parse_size).transpose()?;
    let exclude_ref = args
        .reference
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let negatives = {
        let dir = args.keyframes.clone();
        let max = args.max_keyframes;
        tokio::task::spawn_blocking(move || load_keyframes(&dir, size, max, exclude_ref.as_deref()))
            .await??
    };
    eprintln!("loaded {} negative keyframes from {}", negatives.len(), args.keyframes.display());

    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let shared = Arc::new(Mutex::new(Shared::default()));
    let secret = format!("load-{}", uuid::Uuid::new_v4().simple());

    // Pirate side: the reference (uploaded with a kill policy), its keyframes, the receiver.
    let mut pirate_frames: Vec<Bytes> = Vec::new();
    let mut receiver = None;
    if let Some(reference) = &args.reference {
        pirate_frames = {
            let path = reference.to_string_lossy().into_owned();
            tokio::task::spawn_blocking(move || reference_keyframes(&path)).await??
        };
        let id = api.upload_reference(reference, args.min_match_seconds).await?;
        eprintln!("reference {id} is ready ({} pirate keyframes)", pirate_frames.len());
        let (addr, task) =
            start_receiver(args.webhook_listen, secret.clone(), shared.clone(), cancel.clone())
                .await?;
        api.post_json(
            "/v1/webhooks",
            &json!({ "url": format!("http://{addr}/hook"), "events": ["stream.killed"], "secret": secret }),
        )
        .await
        .context("registering the webhook (is the server run with --allow-private-urls?)")?;
        receiver = Some(task);
    }

    let publisher = Arc::new(match args.via {
        Via::Amqp => Publisher::connect(None, None, amqp_url, &args.amqp_prefix).await?,
        Via::Http => Publisher::connect(Some(&args.api_url), Some(&args.api_key), None, "").await?,
    });

    let pirates = if pirate_frames.is_empty() {
        0
    } else {
        ((streams as f64 * args.pirate_share).round() as usize).clamp(1, streams)
    };
    let mut states: Vec<StreamState> = (0..streams)
        .map(|n| StreamState { n, generation: 0, next: 0, pirate: n < pirates })
        .collect();
    let negatives = Arc::new(negatives);
    let pirate_frames = Arc::new(pirate_frames);

    let scrape_at_start = api.scrape().await.unwrap_or_default();
    let processed_at_start = processed(&scrape_at_start);
    let started = Instant::now();
    let load_for = Duration::from_secs(args.duration_secs);
    let permits = Arc::new(Semaphore::new(args.max_in_flight.max(1)));
    let mut samples: Vec<Value> = Vec::new();
    let mut next_sample = Duration::ZERO;
    let tick = Duration::from_secs_f64(1.0 / args.rate);
    let mut n: u64 = 0;
    eprintln!(
        "driving {streams} streams ({pirates} pirate) at {} keyframes/s for {} s via {:?}",
        args.rate, args.duration_secs, args.via
    );
    loop {
        let elapsed = started.elapsed();
        if elapsed >= load_for || cancel.is_cancelled() {
            break;
        }
        if elapsed >= next_sample {
            samples.push(sample(&api, &args.pid, &shared, elapsed).await);
            next_sample += Duration::from_secs(args.sample_secs.max(1));
        }
        let due = started + tick.mul_f64(n as f64);
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(due.into()) => {}
        }
        let Ok(permit) = permits.clone().acquire_owned().await else { break };
        let state = &mut states[(n % streams as u64) as usize];
        n += 1;
        let stream_id = format!("load-{run_id}-{}-{}", state.n, state.generation);
        let ts_ms = i64::try_from(state.next).unwrap_or(i64::MAX) * 2000;
        let body = if state.pirate {
            let killed = lock(&shared).killed.contains(&stream_id);
            if killed || state.next >= pirate_frames.len() {
                // Killed or out of frames: end it and start a fresh pirate stream.
                let end = QueueMessage::StreamEnd(StreamEndMessage { stream_id });
                let publisher = publisher.clone();
                tokio::spawn(async move {
                    let _ = publisher.publish(&end).await;
                    drop(permit);
                });
                state.generation += 1;
                state.next = 0;
                continue;
            }
            pirate_frames[state.next].clone()
        } else {
            negatives[(state.n * 7 + state.next) % negatives.len()].clone()
        };
        state.next += 1;
        let sent_us = now_us();
        if state.pirate {
            lock(&shared).pirate_sent_us.insert((stream_id.clone(), ts_ms), sent_us);
        }
        let message = QueueMessage::Keyframe(KeyframeMessage {
            stream_id,
            ts_ms,
            account_id: Some(format!("load-account-{}", state.n)),
            captured_at_ms: Some(sent_us / 1000),
            viewers: Some(i64::try_from(state.n % 5000).unwrap_or(0) + 1),
            content_type: "image/jpeg".to_owned(),
            body,
        });
        let publisher = publisher.clone();
        let shared = shared.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let result = publisher.publish(&message).await;
            let mut s = lock(&shared);
            match result {
                Ok(()) => {
                    s.published += 1;
                    s.publish_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                Err(e) => {
                    s.publish_errors += 1;
                    s.last_error = Some(format!("{e:#}"));
                }
            }
            drop(permit);
        });
    }
    let load_elapsed = started.elapsed();
    // Let publications in flight finish.
    let _ = permits.acquire_many(args.max_in_flight.max(1) as u32).await;
    let published = lock(&shared).published;
    let scrape_at_stop = api.scrape().await.unwrap_or_default();
    let processed_at_stop = processed(&scrape_at_stop).max(processed_at_start);
    let during_load = |name: &str| {
        let buckets = bucket_growth(
            &histogram_buckets(&scrape_at_stop, name),
            &histogram_buckets(&scrape_at_start, name),
        );
        Some((histogram_quantile(0.5, &buckets)?, histogram_quantile(0.99, &buckets)?))
    };
    let latency = during_load("offside_keyframe_latency_seconds");
    let handle = during_load("offside_keyframe_handle_seconds");

    // Drain: wait until the server has processed everything that was published.
    let drain_started = Instant::now();
    let mut processed_total = processed_at_stop;
    while drain_started.elapsed() < Duration::from_secs(60) && !cancel.is_cancelled() {
        processed_total = api.scrape().await.map_or(processed_total, |t| processed(&t));
        if processed_total - processed_at_start >= published as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drain = drain_started.elapsed();
    // Give webhooks of the last decisions a moment, then end every stream still open.
    if receiver.is_some() {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for state in &states {
        let stream_id = format!("load-{run_id}-{}-{}", state.n, state.generation);
        let _ = publisher.publish(&QueueMessage::StreamEnd(StreamEndMessage { stream_id })).await;
    }
    samples.push(sample(&api, &args.pid, &shared, started.elapsed()).await);
    cancel.cancel();
    if let Some(task) = receiver {
        let _ = task.await;
    }

    let s = lock(&shared);
    let secs = load_elapsed.as_secs_f64();
    let processed_during = processed_at_stop - processed_at_start;
    let processed_all = processed_total - processed_at_start;
    let memory = memory_verdict(&samples, &args.pid);
    Ok(json!({
        "via": format!("{:?}", args.via).to_lowercase(),
        "streams": streams,
        "pirate_streams": pirates,
        "target_rate": args.rate,
        "duration_s": secs,
        "negative_keyframes": negatives.len(),
        "published": published,
        "publish_errors": s.publish_errors,
        "last_publish_error": s.last_error,
        "published_per_s": published as f64 / secs,
        "publish_ms": percentiles(&s.publish_ms),
        "processed_during_load": processed_during,
        "processed_per_s_during_load": processed_during / secs,
        "processed_total": processed_all,
        "drain_s": drain.as_secs_f64(),
        "end_to_end_per_s": processed_all / (secs + drain.as_secs_f64()),
        "keyframe_latency_ms": latency.map(|q| json!({"p50": q.0 * 1000.0, "p99": q.1 * 1000.0})),
        "keyframe_handle_ms": handle.map(|q| json!({"p50": q.0 * 1000.0, "p99": q.1 * 1000.0})),
        "decisions": s.decision_ms.len(),
        "decision_ms": percentiles(&s.decision_ms),
        "webhook_ms": percentiles(&s.webhook_ms),
        "bad_signatures": s.bad_signatures,
        "unmatched_webhooks": s.unmatched_webhooks,
        "memory": memory,
        "samples": samples,
    }))
}

struct StreamState {
    n: usize,
    generation: u64,
    next: usize,
    pirate: bool,
}

/// Resident memory of a process in bytes (`VmRSS` of `/proc/PID/status`).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

async fn sample(api: &Api, pids: &[u32], shared: &Mutex<Shared>, at: Duration) -> Value {
    let rss: HashMap<String, Option<u64>> =
        pids.iter().map(|&p| (p.to_string(), rss_bytes(p))).collect();
    let processed = api.scrape().await.ok().map(|t| processed(&t));
    let (published, decisions) = {
        let s = lock(shared);
        (s.published, s.decision_ms.len())
    };
    let line = json!({
        "t_s": at.as_secs_f64(),
        "published": published,
        "processed": processed,
        "decisions": decisions,
        "rss_bytes": rss,
    });
    eprintln!("{line}");
    line
}
