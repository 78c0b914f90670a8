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
//!   (`offside_keyframes_total`, summed over every `--metrics-url`: the `serve` and `worker`
//!   processes of a scale-out deployment), and the backlog left when the load stopped;
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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::tap::Publisher;
use crate::config::SecretUrl;
use crate::media::{KeyframeOptions, extract_keyframes};
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

fn parse_size(s: &str) -> anyhow::Result<(u32, u32)> {
    let (w, h) = s.split_once('x').context("--size is WIDTHxHEIGHT, e.g. 1280x720")?;
    Ok((w.trim().parse().context("--size width")?, h.trim().parse().context("--size height")?))
}

/// Reads up to `max` JPEGs under `dir` (sorted, so runs are repeatable), optionally of one
/// size, leaving out positive queries of `exclude_reference` when a manifest says which.
fn load_keyframes(
    dir: &Path,
    size: Option<(u32, u32)>,
    max: usize,
    exclude_reference: Option<&str>,
) -> anyhow::Result<Vec<Bytes>> {
    let mut excluded = std::collections::HashSet::new();
    if let (Some(reference), Ok(manifest)) =
        (exclude_reference, std::fs::read_to_string(dir.join("manifest.tsv")))
    {
        for line in manifest.lines().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            if cols.len() > 3 && (cols[3] == reference || cols.get(7) == Some(&reference)) {
                excluded.insert(cols[0].to_owned());
            }
        }
    }
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let entries = std::fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if !name.is_some_and(|n| excluded.contains(&n)) {
                    pending.push(path);
                }
            } else if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
            {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for path in files {
        if out.len() >= max {
            break;
        }
        if let Some(want) = size {
            let got = image::ImageReader::open(&path)
                .ok()
                .and_then(|r| r.with_guessed_format().ok())
                .and_then(|r| r.into_dimensions().ok());
            if got != Some(want) {
                continue;
            }
        }
        out.push(Bytes::from(
            std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        ));
    }
    if out.is_empty() {
        bail!(
            "no JPEG keyframes{} under {}",
            size.map(|(w, h)| format!(" of {w}x{h}")).unwrap_or_default(),
            dir.display()
        );
    }
    Ok(out)
}

/// The reference's keyframes every 2 s, at its own size (up to 1280 wide), as a pirate
/// re-streaming it untouched would send them.
fn reference_keyframes(path: &str) -> anyhow::Result<Vec<Bytes>> {
    let mut frames = Vec::new();
    extract_keyframes(path, &KeyframeOptions::default(), |k| {
        frames.push(Bytes::from(k.jpeg));
        std::ops::ControlFlow::Continue(())
    })
    .with_context(|| format!("extracting keyframes of {path}"))?;
    if frames.len() < 3 {
        bail!("{path} is too short for pirate streams ({} keyframes)", frames.len());
    }
    Ok(frames)
}

/// A minimal client of the API and of the processes' `/metrics`.
struct Api {
    client: reqwest::Client,
    base: String,
    key: String,
    metrics_urls: Vec<String>,
}

impl Api {
    fn new(base: &str, key: &str, metrics_urls: &[String]) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        let base = base.trim_end_matches('/').to_owned();
        let metrics_urls = if metrics_urls.is_empty() {
            vec![format!("{base}/metrics")]
        } else {
            metrics_urls.to_vec()
        };
        Ok(Api { client, base, key: key.to_owned(), metrics_urls })
    }

    async fn check(response: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        bail!("{what}: {status}: {}", text.chars().take(300).collect::<String>())
    }

    async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let response = Self::check(response, &format!("GET {path}")).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let response = Self::check(response, &format!("POST {path}")).await?;
        Ok(response.json().await.unwrap_or(Value::Null))
    }

    async fn upload_reference(
        &self,
        file: &Path,
        min_match_seconds: f64,
    ) -> anyhow::Result<String> {
        let bytes =
            tokio::fs::read(file).await.with_context(|| format!("reading {}", file.display()))?;
        let name = file
            .file_name()
            .map_or_else(|| "reference.mp4".to_owned(), |n| n.to_string_lossy().into_owned());
        let metadata = json!({
            "title": format!("offside load {name}"),
            "policy": { "action": "kill", "min_match_seconds": min_match_seconds },
        });
        let form = reqwest::multipart::Form::new()
            .part(
                "metadata",
                reqwest::multipart::Part::text(metadata.to_string())
                    .mime_str("application/json")?,
            )
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name));
        let response = self
            .client
            .post(format!("{}/v1/references", self.base))
            .bearer_auth(&self.key)
            .multipart(form)
            .send()
            .await
            .context("uploading the reference")?;
        let created: Value = Self::check(response, "uploading the reference").await?.json().await?;
        let id = created["id"].as_str().context("the upload answer has no id")?.to_owned();
        let started = Instant::now();
        loop {
            let r = self.get_json(&format!("/v1/references/{id}")).await?;
            match r["status"].as_str() {
                Some("ready") => return Ok(id),
                Some("processing") if started.elapsed() < Duration::from_secs(600) => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => bail!("reference {id} ended {other:?}: {}", r["error"]),
            }
        }
    }

    /// Every `--metrics-url`'s exposition, one after the other (so sums run over every
    /// process). Fails when one of them does not answer: a sum that silently misses a process
    /// would under-count.
    async fn scrape(&self) -> anyhow::Result<String> {
        let mut all = String::new();
        for url in &self.metrics_urls {
            let response =
                self.client.get(url).send().await.with_context(|| format!("GET {url}"))?;
            all.push_str(&Self::check(response, &format!("GET {url}")).await?.text().await?);
            all.push('\n');
        }
        Ok(all)
    }
}

/// Keyframes the workers have finished (`offside_keyframes_total`, all outcomes, every process).
fn processed(exposition: &str) -> f64 {
    // `+ 0.0`: a sum of nothing is -0.0 for floats, which would print as "-0".
    samples(exposition, "offside_keyframes_total").map(|(_, v)| v).sum::<f64>() + 0.0
}

/// The samples of one metric in a Prometheus text exposition: (labels, value).
fn samples<'a>(exposition: &'a str, name: &'a str) -> impl Iterator<Item = (&'a str, f64)> + 'a {
    exposition.lines().filter_map(move |line| {
        let rest = line.strip_prefix(name)?;
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => r.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        Some((labels, value.split_whitespace().next()?.parse::<f64>().ok()?))
    })
}

/// A histogram's cumulative buckets `(le, count)`, summed by `le` over every series and process
/// (as `sum by (le)`), in increasing `le` (`+Inf` last).
fn histogram_buckets(exposition: &str, name: &str) -> Vec<(f64, f64)> {
    let mut by_le: Vec<(f64, f64)> = Vec::new();
    for (labels, value) in samples(exposition, &format!("{name}_bucket")) {
        let Some(le) = labels.split(',').find_map(|l| l.trim().strip_prefix("le=\"")) else {
            continue;
        };
        let Ok(le) = le.trim_end_matches('"').parse::<f64>() else { continue };
        match by_le.iter_mut().find(|(b, _)| *b == le) {
            Some(slot) => slot.1 += value,
            None => by_le.push((le, value)),
        }
    }
    by_le.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_le
}

/// Bucket counts gained between two scrapes (`before` may lack buckets: a process that had
/// recorded nothing yet).
fn bucket_growth(after: &[(f64, f64)], before: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, n)| {
            let earlier = before.iter().find(|(b, _)| *b == le).map_or(0.0, |(_, m)| *m);
            (le, (n - earlier).max(0.0))
        })
        .collect()
}

/// The `q` quantile of cumulative buckets, as Prometheus's `histogram_quantile`: linear
/// interpolation inside the bucket that holds the rank; the highest finite bound when the
/// rank falls in `+Inf`. `None` without observations.
fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let fraction = if in_bucket > 0.0 { (rank - lower.1) / in_bucket } else { 1.0 };
            return Some(lower.0 + (le - lower.0) * fraction);
        }
        lower = (le, count);
    }
    Some(lower.0)
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

/// Memory per pid: first and last sample, peak, and whether it stayed flat. Flat means the
/// mean of the last quarter of samples is within 10 % (and 32 MiB) of the mean of the second
/// quarter: the first quarter is warm-up (allocator arenas, caches filling).
fn memory_verdict(samples: &[Value], pids: &[u32]) -> Value {
    let mut out = serde_json::Map::new();
    for pid in pids {
        let series: Vec<f64> =
            samples.iter().filter_map(|s| s["rss_bytes"][pid.to_string()].as_f64()).collect();
        if series.is_empty() {
            out.insert(pid.to_string(), json!({"error": "no samples (wrong pid?)"}));
            continue;
        }
        let q = series.len() / 4;
        let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
        let (early, late) = if q >= 1 {
            (mean(&series[q..2 * q]), mean(&series[series.len() - q..]))
        } else {
            (series[0], series[series.len() - 1])
        };
        let growth = late - early;
        let flat = growth <= (early * 0.10).max(32.0 * 1024.0 * 1024.0);
        let mib = |b: f64| (b / 1024.0 / 1024.0 * 10.0).round() / 10.0;
        out.insert(
            pid.to_string(),
            json!({
                "first_mib": mib(series[0]),
                "last_mib": mib(series[series.len() - 1]),
                "peak_mib": mib(series.iter().copied().fold(0.0, f64::max)),
                "growth_after_warmup_mib": mib(growth),
                "samples": series.len(),
                "flat": flat,
            }),
        );
    }
    Value::Object(out)
}

fn percentiles(xs: &[f64]) -> Value {
    if xs.is_empty() {
        return Value::Null;
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    json!({ "n": v.len(), "p50": at(0.5), "p99": at(0.99), "max": v[v.len() - 1] })
}

/// Starts the webhook receiver; returns its address and the task serving it until `cancel`.
async fn start_receiver(
    listen: SocketAddr,
    secret: String,
    shared: Arc<Mutex<Shared>>,
    cancel: CancellationToken,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use axum::http::HeaderMap;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let secret = Arc::new(secret);
    let hook = move |headers: HeaderMap, body: Bytes| {
        let arrived_us = now_us();
        let secret = secret.clone();
        let shared = shared.clone();
        async move {
            let signed = headers
                .get(crate::enforce::webhook::SIGNATURE_HEADER)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|sig| verify(&secret, sig, &body));
            let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut s = lock(&shared);
            if !signed {
                s.bad_signatures += 1;
                return axum::http::StatusCode::UNAUTHORIZED;
            }
            let stream = event["data"]["stream_id"].as_str().unwrap_or_default().to_owned();
            let ts = event["data"]["decided_at_ts_ms"].as_i64().unwrap_or(-1);
            match s.pirate_sent_us.remove(&(stream.clone(), ts)) {
                Some(sent) => {
                    s.webhook_ms.push((arrived_us - sent) as f64 / 1000.0);
                    if let Some(created) = event["created_at"].as_str().and_then(parse_rfc3339_us) {
                        s.decision_ms.push((created - sent) as f64 / 1000.0);
                    }
                    s.killed.insert(stream);
                }
                None => s.unmatched_webhooks += 1,
            }
            axum::http::StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(hook));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    });
    Ok((addr, task))
}

fn parse_rfc3339_us(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// Checks `t=UNIX,v1=HEX` against HMAC-SHA256(secret, "{t}.{body}").
fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", x)) => t = Some(x),
            Some(("v1", x)) => v1 = Some(x),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let Ok(expected) = hex::decode(v1) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else { return false };
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn render(r: &Value) -> String {
    let ms = |v: &Value| {
        if v.is_null() {
            "-".to_owned()
        } else {
            format!(
                "p50 {:.1} ms, p99 {:.1} ms",
                v["p50"].as_f64().unwrap_or(f64::NAN),
                v["p99"].as_f64().unwrap_or(f64::NAN)
            )
        }
    };
    let mut out = String::new();
    out.push_str(&format!(
        "load: {} streams ({} pirate) via {}, target {} keyframes/s for {:.0} s\n",
        r["streams"],
        r["pirate_streams"],
        r["via"].as_str().unwrap_or(""),
        r["target_rate"],
        r["duration_s"].as_f64().unwrap_or(0.0)
    ));
    out.push_str(&format!(
        "published      {} keyframes, {:.1}/s ({} errors{}); broker/API answer {}\n",
        r["published"],
        r["published_per_s"].as_f64().unwrap_or(0.0),
        r["publish_errors"],
        r["last_publish_error"].as_str().map(|e| format!(": {e}")).unwrap_or_default(),
        ms(&r["publish_ms"]),
    ));
    out.push_str(&format!(
        "processed      {:.0} during load ({:.1}/s), {:.0} in all after a {:.1} s drain ({:.1}/s end to end)\n",
        r["processed_during_load"].as_f64().unwrap_or(0.0),
        r["processed_per_s_during_load"].as_f64().unwrap_or(0.0),
        r["processed_total"].as_f64().unwrap_or(0.0),
        r["drain_s"].as_f64().unwrap_or(0.0),
        r["end_to_end_per_s"].as_f64().unwrap_or(0.0),
    ));
    out.push_str(&format!(
        "keyframe -> outcome (pipeline histogram, during load)  {}\n",
        ms(&r["keyframe_latency_ms"])
    ));
    out.push_str(&format!(
        "worker handling time (pipeline histogram, during load) {}\n",
        ms(&r["keyframe_handle_ms"])
    ));
    out.push_str(&format!(
        "decisions      {}: deciding keyframe -> decision {}; -> webhook {} ({} bad signatures, {} unmatched)\n",
        r["decisions"], ms(&r["decision_ms"]), ms(&r["webhook_ms"]), r["bad_signatures"], r["unmatched_webhooks"]
    ));
    if let Some(mem) = r["memory"].as_object() {
        for (pid, m) in mem {
            out.push_str(&format!(
                "memory pid {pid}: first {} MiB, last {} MiB, peak {} MiB, growth after warm-up {} MiB over {} samples: {}\n",
                m["first_mib"], m["last_mib"], m["peak_mib"], m["growth_after_warmup_mib"], m["samples"],
                if m["flat"].as_bool() == Some(true) { "flat" } else { "NOT flat" }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = "# HELP offside_keyframes_total x\n# TYPE offside_keyframes_total counter\n\
offside_keyframes_total{outcome=\"no_match\"} 90\n\
offside_keyframes_total{outcome=\"decided\"} 10\n\
offside_keyframe_latency_seconds_bucket{le=\"0.01\"} 50\n\
offside_keyframe_latency_seconds_bucket{le=\"0.02\"} 90\n\
offside_keyframe_latency_seconds_bucket{le=\"+Inf\"} 100\n\
offside_keyframe_latency_seconds_sum 1.5\n\
offside_keyframe_latency_seconds_count 100\n";

    #[test]
    fn counters_and_buckets_add_up_over_every_process() {
        let two = format!("{ONE}\n{}", ONE.replace(" 90\n", " 10\n"));
        assert_eq!(processed(ONE), 100.0);
        // The second process: 10 no_match, and 10 keyframes in its 0.02 bucket.
        assert_eq!(processed(&two), 120.0);
        let buckets = histogram_buckets(&two, "offside_keyframe_latency_seconds");
        assert_eq!(buckets, vec![(0.01, 100.0), (0.02, 100.0), (f64::INFINITY, 200.0)]);
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket_like_prometheus() {
        let buckets = histogram_buckets(ONE, "offside_keyframe_latency_seconds");
        // Rank 50 of 100 is the top of the first bucket; rank 70 is half way into the second.
        assert!((histogram_quantile(0.5, &buckets).unwrap() - 0.01).abs() < 1e-12);
        assert!((histogram_quantile(0.7, &buckets).unwrap() - 0.015).abs() < 1e-12);
        // Past the last finite bound: that bound.
        assert_eq!(histogram_quantile(0.99, &buckets), Some(0.02));
        assert_eq!(histogram_quantile(0.5, &[]), None);
        assert_eq!(histogram_quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
    }

    #[test]
    fn only_what_the_load_added_counts() {
        let before = vec![(0.01, 40.0), (0.02, 40.0), (f64::INFINITY, 40.0)];
        let after = vec![(0.01, 40.0), (0.02, 60.0), (f64::INFINITY, 60.0)];
        let grown = bucket_growth(&after, &before);
        assert_eq!(grown, vec![(0.01, 0.0), (0.02, 20.0), (f64::INFINITY, 20.0)]);
        assert!((histogram_quantile(0.5, &grown).unwrap() - 0.015).abs() < 1e-12);
        // A process that had recorded nothing before the load: all of it counts.
        assert_eq!(bucket_growth(&after, &[]), after);
    }
}
