//! `offside tap URL --stream-id ID`: reads a video input the way a platform's ingest would and
//! publishes one JPEG keyframe every N seconds per the keyframe contract, to RabbitMQ or to the
//! HTTP API. Reaching the end of the input ends the stream.
//!
//! Decoding and JPEG encoding run on a blocking thread ([`crate::media::extract_keyframes`]);
//! keyframes cross to the async side through a small bounded channel, so a slow broker or API
//! pushes back on the decoder instead of buffering a live input in memory.
//!
//! Ctrl-C (or SIGTERM) stops reading at once (a blocked network read is interrupted), lets the
//! keyframe being published finish and exits without ending the stream: the broadcast itself
//! may well continue, only this tap stopped.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::SecretUrl;
use crate::media::{InputOptions, KeyframeOptions, LIVE_PROBE, extract_keyframes};
use crate::queue::amqp::{AmqpConfig, AmqpQueue};
use crate::queue::backoff::Backoff;
use crate::queue::message::{self, MessageLimits, RawFields};
use crate::queue::{KeyframeMessage, KeyframeQueue, QueueMessage, StreamEndMessage};

/// Arguments of `offside tap`. The broker URL is the global `--amqp-url` (`OFFSIDE_AMQP_URL`).
#[derive(Debug, Clone, clap::Args)]
pub struct TapArgs {
    /// Anything FFmpeg opens: a file, `rtmp://`, `srt://`, `udp://`, an HLS `.m3u8` URL...
    pub input: String,
    /// The platform's id of the stream (AMQP routing key and `stream_id` header).
    #[arg(long)]
    pub stream_id: String,
    /// The streamer's account (`account_id` header or parameter).
    #[arg(long)]
    pub account_id: Option<String>,
    /// Seconds of stream time between two keyframes.
    #[arg(long, default_value_t = 2.0)]
    pub every_secs: f64,
    /// Pace a file as if it were live: each keyframe leaves no earlier than its stream time
    /// after the start (live inputs are paced by their source already).
    #[arg(long)]
    pub realtime: bool,
    /// Publish through the HTTP API at this base URL (e.g. `http://127.0.0.1:8080`) instead
    /// of RabbitMQ.
    #[arg(long, env = "OFFSIDE_API_URL")]
    pub api_url: Option<String>,
    /// API key with the `ingest` role, for `--api-url`.
    #[arg(long, env = "OFFSIDE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Prefix of the exchange name (`PREFIXoffside.keyframes`): the global `--amqp-prefix`
    /// (`OFFSIDE_AMQP_PREFIX`), copied here by the command line.
    #[arg(skip)]
    pub amqp_prefix: String,
    /// JPEG quality of the keyframes, 1-100.
    #[arg(long, default_value_t = 80)]
    pub jpeg_quality: u8,
    /// Shrink keyframes whose longer side exceeds this many pixels (never upscaled).
    #[arg(long, default_value_t = 1280)]
    pub max_long_side: u32,
    /// Give up when a network input stalls this many seconds.
    #[arg(long, default_value_t = 30)]
    pub read_timeout_secs: u64,
    /// Do not end the stream when the input ends (e.g. to tap several files into one stream).
    #[arg(long)]
    pub no_end: bool,
}

/// What a tap run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapSummary {
    /// Keyframes the broker or API accepted.
    pub published: u64,
    /// Stream time of the last published keyframe.
    pub last_ts_ms: Option<i64>,
    /// Whether the end of the stream was published.
    pub ended: bool,
    /// Whether the run was interrupted before the end of the input.
    pub interrupted: bool,
}

/// Where keyframes go: the broker (publisher confirms) or the HTTP API.
pub enum Publisher {
    /// RabbitMQ through [`AmqpQueue`]: each publication waits for the broker's confirm.
    Amqp(Box<AmqpQueue>),
    /// `POST /v1/streams/{id}/keyframes` and `/end` with a bearer key.
    Http(HttpPublisher),
}

impl Publisher {
    /// The publisher the arguments ask for: HTTP when `api_url` is set, else RabbitMQ. Connects
    /// to the broker once so a wrong URL is reported before any decoding starts.
    ///
    /// # Errors
    /// Neither target given, a key missing, or the broker unreachable.
    pub async fn connect(
        api_url: Option<&str>,
        api_key: Option<&str>,
        amqp_url: Option<&SecretUrl>,
        amqp_prefix: &str,
    ) -> anyhow::Result<Self> {
        if let Some(api) = api_url {
            let key = api_key.context("--api-url needs --api-key (a key with the ingest role)")?;
            return Ok(Publisher::Http(HttpPublisher::new(api, key)?));
        }
        let Some(url) = amqp_url else {
            bail!("nowhere to publish: give --amqp-url (or OFFSIDE_AMQP_URL) or --api-url");
        };
        let mut cfg = AmqpConfig::new(url.expose());
        cfg.prefix = amqp_prefix.to_owned();
        let queue = AmqpQueue::new(cfg);
        queue
            .ensure_topology()
            .await
            .with_context(|| format!("connecting to RabbitMQ at {}", url.redacted()))?;
        Ok(Publisher::Amqp(Box::new(queue)))
    }

    /// Publishes one message; returns once the broker confirmed it or the API answered 2xx.
    ///
    /// # Errors
    /// The broker refused or timed out, or the API refused the message (with its reason).
    pub async fn publish(&self, message: &QueueMessage) -> anyhow::Result<()> {
        match self {
            Publisher::Amqp(queue) => queue.publish(message).await.map_err(anyhow::Error::from),
            Publisher::Http(http) => http.publish(message).await,
        }
    }
}

/// Publishes through the HTTP API, retrying transient failures (connection errors, 408, 429,
/// 5xx) with backoff for up to [`HttpPublisher::RETRY_FOR`].
#[derive(Clone)]
pub struct HttpPublisher {
    client: reqwest::Client,
    base: url::Url,
    key: String,
}

impl std::fmt::Debug for HttpPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPublisher").field("base", &self.base.as_str()).finish_non_exhaustive()
    }
}

impl HttpPublisher {
    /// How long a transient failure is retried before the publication fails.
    pub const RETRY_FOR: Duration = Duration::from_secs(30);

    /// A publisher for the API at `base` (scheme, host, port; a path prefix is kept).
    ///
    /// # Errors
    /// `base` is not an http(s) URL.
    pub fn new(base: &str, key: &str) -> anyhow::Result<Self> {
        let mut base = url::Url::parse(base).with_context(|| format!("--api-url {base:?}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("--api-url must be http:// or https://, not {}", base.scheme());
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(HttpPublisher { client, base, key: key.to_owned() })
    }

    fn stream_url(&self, stream_id: &str, action: &str) -> anyhow::Result<url::Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("--api-url cannot be a base URL"))?
            .pop_if_empty()
            .extend(["v1", "streams", stream_id, action]);
        Ok(url)
    }

    async fn publish(&self, message: &QueueMessage) -> anyhow::Result<()> {
        let (url, content_type, body, what) = match message {
            QueueMessage::Keyframe(k) => {
                let mut url = self.stream_url(&k.stream_id, "keyframes")?;
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("ts_ms", &k.ts_ms.to_string());
                    if let Some(a) = &k.account_id {
                        q.append_pair("account_id", a);
                    }
                    if let Some(c) = k.captured_at_ms {
                        q.append_pair("captured_at_ms", &c.to_string());
                    }
                }
                (
                    url,
                    Some(k.content_type.clone()),
                    k.body.clone(),
                    format!("keyframe at {} ms", k.ts_ms),
                )
            }
            QueueMessage::StreamEnd(e) => {
                (self.stream_url(&e.stream_id, "end")?, None, Bytes::new(), "stream end".to_owned())
            }
        };
        let deadline = tokio::time::Instant::now() + Self::RETRY_FOR;
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let mut request =
                self.client.post(url.clone()).bearer_auth(&self.key).body(body.clone());
            if let Some(ct) = &content_type {
                request = request.header(reqwest::header::CONTENT_TYPE, ct.as_str());
            }
            let failure = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    let reason = api_error_text(&text);
                    let transient = status.is_server_error()
                        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status == reqwest::StatusCode::REQUEST_TIMEOUT;
                    if !transient {
                        bail!("the API refused the {what}: {status}: {reason}");
                    }
                    format!("{status}: {reason}")
                }
                Err(e) => format!("{e}"),
            };
            let wait = backoff.next_delay();
            if tokio::time::Instant::now() + wait >= deadline {
                bail!("the API did not accept the {what} within {:?}: {failure}", Self::RETRY_FOR);
            }
            tracing::warn!(%failure, retry_in_ms = wait.as_millis() as u64, "publishing the {what} failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// The `message` of a contract error body `{error: {code, message}}`, else the raw text.
fn api_error_text(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some(format!(
                "{} ({})",
                e.get("message")?.as_str()?,
                e.get("code").and_then(|c| c.as_str()).unwrap_or("?")
            ))
        })
        .unwrap_or_else(|| body.chars().take(200).collect())
}

/// Checks the ids the way the service will, so a bad id fails before decoding starts.
fn validate_ids(stream_id: &str, account_id: Option<&str>) -> anyhow::Result<()> {
    let fields = RawFields {
        stream_id: Some(stream_id.to_owned()),
        ts_ms: Some("0".to_owned()),
        account_id: account_id.map(str::to_owned),
        content_type: Some("image/jpeg".to_owned()),
        ..RawFields::default()
    };
    message::parse(fields, Bytes::from_static(b"\xff"), &MessageLimits::default())
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs `offside tap` until the input ends, publishing fails, or `cancel` fires.
///
/// # Errors
/// Bad arguments, an unreachable broker or API, a refused keyframe, or an input FFmpeg cannot
/// open or decode (then the stream is not ended: the broadcast may resume).
pub async fn run(
    args: &TapArgs,
    amqp_url: Option<&SecretUrl>,
    cancel: CancellationToken,
) -> anyhow::Result<TapSummary> {
    if !(args.every_secs.is_finite() && args.every_secs > 0.0) {
        bail!("--every-secs must be a positive number of seconds, not {}", args.every_secs);
    }
    validate_ids(&args.stream_id, args.account_id.as_deref())?;
    let publisher = Publisher::connect(
        args.api_url.as_deref(),
        args.api_key.as_deref(),
        amqp_url,
        &args.amqp_prefix,
    )
    .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let opts = KeyframeOptions {
        input: InputOptions {
            read_timeout: Some(Duration::from_secs(args.read_timeout_secs.max(1))),
            cancel: Some(stop.clone()),
            decoder_threads: 0,
            probe: Some(LIVE_PROBE),
            ..InputOptions::default()
        },
        interval: Duration::from_secs_f64(args.every_secs),
        jpeg_quality: args.jpeg_quality,
        max_long_side: Some(args.max_long_side.max(16)),
        realtime: args.realtime,
    };
    // Two keyframes of slack: enough to overlap encoding with publishing, small enough that a
    // stalled broker stops the decoder within seconds.
    let (tx, mut rx) = mpsc::channel::<(crate::media::Keyframe, i64)>(2);
    let input = args.input.clone();
    let extractor = tokio::task::spawn_blocking(move || {
        extract_keyframes(&input, &opts, |keyframe| {
            // Wall-clock capture time, taken as the frame leaves the decoder.
            let captured_at_ms = crate::store::now_ms();
            match tx.blocking_send((keyframe, captured_at_ms)) {
                Ok(()) => ControlFlow::Continue(()),
                Err(_) => ControlFlow::Break(()),
            }
        })
    });

    let mut summary =
        TapSummary { published: 0, last_ts_ms: None, ended: false, interrupted: false };
    let mut failure = None;
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => { summary.interrupted = true; break; }
            next = rx.recv() => next,
        };
        let Some((keyframe, captured_at_ms)) = next else { break };
        let message = QueueMessage::Keyframe(KeyframeMessage {
            stream_id: args.stream_id.clone(),
            ts_ms: keyframe.ts_ms,
            account_id: args.account_id.clone(),
            captured_at_ms: Some(captured_at_ms),
            viewers: None,
            content_type: "image/jpeg".to_owned(),
            body: Bytes::from(keyframe.jpeg),
        });
        let published = tokio::select! {
            () = cancel.cancelled() => { summary.interrupted = true; break; }
            r = publisher.publish(&message) => r,
        };
        match published {
            Ok(()) => {
                summary.published += 1;
                summary.last_ts_ms = Some(keyframe.ts_ms);
                tracing::info!(
                    stream_id = %args.stream_id,
                    ts_ms = keyframe.ts_ms,
                    width = keyframe.width,
                    height = keyframe.height,
                    bytes = message_len(&message),
                    "published keyframe"
                );
            }
            Err(e) => {
                failure =
                    Some(e.context(format!("publishing the keyframe at {} ms", keyframe.ts_ms)));
                break;
            }
        }
    }
    // Stop the decoder (it may be blocked on a network read or on the full channel) and wait.
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    let decoded = extractor.await.context("the decoding thread panicked")?;
    if let Some(e) = failure {
        return Err(e);
    }
    if summary.interrupted {
        return Ok(summary);
    }
    let decoded = decoded.with_context(|| format!("reading {}", args.input))?;
    if decoded.stopped_early {
        summary.interrupted = true;
        return Ok(summary);
    }
    if !args.no_end {
        let end = QueueMessage::StreamEnd(StreamEndMessage { stream_id: args.stream_id.clone() });
        publisher.publish(&end).await.context("publishing the end of the stream")?;
        summary.ended = true;
    }
    Ok(summary)
}

fn message_len(m: &QueueMessage) -> usize {
    match m {
        QueueMessage::Keyframe(k) => k.body.len(),
        QueueMessage::StreamEnd(_) => 0,
    }
}

/// The `offside tap` subcommand: [`run`] with Ctrl-C handling and a closing line on stderr.
///
/// # Errors
/// As [`run`].
pub async fn command(mut args: TapArgs, config: &crate::config::Config) -> anyhow::Result<()> {
    args.amqp_prefix.clone_from(&config.amqp_prefix);
    let amqp_url = config.amqp_url.clone();
    let cancel = CancellationToken::new();
    crate::app::cancel_on_signals(cancel.clone());
    let summary = run(&args, amqp_url.as_ref(), cancel).await?;
    let last = summary.last_ts_ms.map_or_else(|| "-".to_owned(), |t| format!("{t} ms"));
    let how = if summary.ended {
        "stream ended"
    } else if summary.interrupted {
        "interrupted; stream not ended"
    } else {
        "stream left open (--no-end)"
    };
    eprintln!(
        "tapped {} keyframes of {} into stream {} (last at {last}); {how}",
        summary.published, args.input, args.stream_id
    );
    Ok(())
}
