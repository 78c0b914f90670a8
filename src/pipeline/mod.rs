//! The worker: a keyframe in, a decision (maybe) out.
//!
//! [`handle`] holds the logic and is tested directly; [`run_consumer`] is the one loop that
//! receives, calls it, and settles the delivery (ack after commit, dead-letter on a permanent
//! failure, requeue after a pause on a transient one).
//!
//! Per-stream evidence lives in the database (`stream_hits`), not in one worker's memory: any
//! worker may take any keyframe of a stream (see [`crate::queue`]), and a worker that dies loses
//! nothing. Only keyframes with index hits write anything, so negative traffic costs one cached
//! status read. On every hit the worker replays that (stream, reference)'s stored hits, in
//! stream time order, into a fresh [`StreamMatcher`]: the evidence is the same whatever order
//! the keyframes arrived in and whichever worker saw them. The decision itself is made at most
//! once per (stream, reference) by the `stream_matches` unique constraint, inside the one
//! transaction that also changes the stream, opens the case and writes the outbox events.

pub mod decide;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fingerprints::{Hit, MatcherConfig, StreamMatcher};
use tokio_util::sync::CancellationToken;

use crate::queue::{DeliveryStream, KeyframeMessage, KeyframeQueue, Payload, QueueMessage};
use crate::recognition::{KeyframeHashes, hash_keyframe};
use crate::store::Store;
use crate::store::streams::{self, StoredHit, StreamStatus};

/// Frames below this PDQ quality carry no evidence (DESIGN.md).
pub const MIN_QUALITY: u8 = 50;

/// How far back (stream time) stored hits are replayed into the matcher. Bounds the work per
/// keyframe on a long pirate stream; evidence older than this cannot join a new run anyway.
pub const EVIDENCE_WINDOW_MS: i64 = 10 * 60 * 1000;

/// Looks a keyframe's hashes up in the reference library: `(reference id, hit)` pairs.
/// Implemented over `recognition::Library`; tests use a fixed table.
pub trait Lookup: Send + Sync + 'static {
    /// The hits of one keyframe.
    fn lookup(&self, hashes: &KeyframeHashes) -> Vec<(String, Hit)>;

    /// The hits of one keyframe captured at `at_ms` (Unix ms): what [`Lookup::lookup`] finds
    /// plus, where live feeds are indexed, what they aired shortly before `at_ms`.
    fn lookup_at(&self, hashes: &KeyframeHashes, at_ms: i64) -> Vec<(String, Hit)> {
        let _ = at_ms;
        self.lookup(hashes)
    }
}

/// What the worker needs.
#[derive(Clone)]
pub struct Deps {
    /// The database.
    pub store: Store,
    /// The reference library.
    pub lookup: Arc<dyn Lookup>,
    /// The temporal matcher's settings.
    pub matcher: MatcherConfig,
    /// Wakes the webhook delivery loop after a decision (same process).
    pub outbox_wake: Arc<tokio::sync::Notify>,
    status_cache: Arc<Mutex<HashMap<String, (StreamStatus, Instant)>>>,
}

impl Deps {
    /// Dependencies with an empty stream-status cache.
    pub fn new(store: Store, lookup: Arc<dyn Lookup>, matcher: MatcherConfig) -> Self {
        Deps {
            store,
            lookup,
            matcher,
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            status_cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// How long a stream's status is trusted from the cache. A stale `live` only means a few more
/// keyframes of a just-killed stream are recognised; decisions re-check in their transaction.
const STATUS_TTL: Duration = Duration::from_secs(1);
/// Most streams whose status is cached; beyond it the cache is cleared (cheap to refill).
const STATUS_CACHE_MAX: usize = 100_000;

/// What handling a message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The stream ended.
    Ended,
    /// The stream is killed or ended: keyframe dropped.
    Dropped,
    /// Quality too low to carry evidence.
    LowQuality,
    /// No reference matched.
    NoMatch,
    /// Hits recorded, no decision yet.
    Accumulating,
    /// Decisions taken on these references (or already taken elsewhere).
    Decided(Vec<decide::Decision>),
}

impl Outcome {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Ended => "ended",
            Outcome::Dropped => "dropped",
            Outcome::LowQuality => "low_quality",
            Outcome::NoMatch => "no_match",
            Outcome::Accumulating => "accumulating",
            Outcome::Decided(_) => "decided",
        }
    }
}

/// Why a message could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// Retrying would fail the same way (corrupt image, ...): dead-letter it with this reason.
    #[error("{0}")]
    Permanent(String),
    /// The database or something else failed for now: requeue.
    #[error(transparent)]
    Transient(#[from] anyhow::Error),
}

impl From<sqlx::Error> for HandleError {
    fn from(e: sqlx::Error) -> Self {
        HandleError::Transient(e.into())
    }
}

async fn stream_status(deps: &Deps, k: &KeyframeMessage) -> Result<StreamStatus, HandleError> {
    if let Some((s, at)) = lock(&deps.status_cache).get(&k.stream_id)
        && at.elapsed() < STATUS_TTL
    {
        return Ok(*s);
    }
    streams::ensure(deps.store.pool(), &k.stream_id, k.account_id.as_deref()).await?;
    let status = streams::get(deps.store.pool(), &k.stream_id)
        .await?
        .map_or(StreamStatus::Live, |s| s.status);
    let mut cache = lock(&deps.status_cache);
    if cache.len() >= STATUS_CACHE_MAX {
        cache.clear();
    }
    cache.insert(k.stream_id.clone(), (status, Instant::now()));
    Ok(status)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Handles one message. Idempotent: a redelivered message changes nothing more.
///
/// # Errors
/// [`HandleError::Permanent`] for a message that can never be used, else transient.
pub async fn handle(message: &QueueMessage, deps: &Deps) -> Result<Outcome, HandleError> {
    let k = match message {
        QueueMessage::StreamEnd(e) => {
            streams::ensure(deps.store.pool(), &e.stream_id, None).await?;
            streams::transition(
                deps.store.pool(),
                &e.stream_id,
                &[StreamStatus::Live, StreamStatus::Flagged],
                StreamStatus::Ended,
                "ended by the platform",
            )
            .await?;
            lock(&deps.status_cache).remove(&e.stream_id);
            return Ok(Outcome::Ended);
        }
        QueueMessage::Keyframe(k) => k,
    };
    if !stream_status(deps, k).await?.accepts_keyframes() {
        return Ok(Outcome::Dropped);
    }
    let payload = k.payload().map_err(|e| HandleError::Permanent(e.to_string()))?;
    let lookup = Arc::clone(&deps.lookup);
    // Live references are aligned by wall-clock time: the capture time when the platform sent
    // one, else now (arrival).
    let at_ms = k.captured_at_ms.unwrap_or_else(crate::store::now_ms);
    // Decoding and hashing are CPU-bound: keep them off the async threads.
    let (quality, hits) = tokio::task::spawn_blocking(move || {
        let hashes = match payload {
            Payload::Image(_, bytes) => {
                hash_keyframe(&bytes).map_err(|e| HandleError::Permanent(format!("image: {e}")))?
            }
            Payload::Pdq { hash, quality } => KeyframeHashes::from_hash(hash, quality),
        };
        if hashes.quality < MIN_QUALITY {
            return Ok((hashes.quality, Vec::new()));
        }
        Ok::<_, HandleError>((hashes.quality, lookup.lookup_at(&hashes, at_ms)))
    })
    .await
    .map_err(|e| HandleError::Transient(anyhow::anyhow!("hashing task failed: {e}")))??;
    if quality < MIN_QUALITY {
        return Ok(Outcome::LowQuality);
    }
    if hits.is_empty() {
        return Ok(Outcome::NoMatch);
    }

    let mut by_reference: HashMap<String, Vec<Hit>> = HashMap::new();
    for (reference, hit) in hits {
        by_reference.entry(reference).or_default().push(hit);
    }
    let decided: std::collections::HashSet<String> =
        streams::matches(deps.store.pool(), &k.stream_id)
            .await?
            .into_iter()
            .map(|m| m.reference_id)
            .collect();
    let mut decisions = Vec::new();
    for (reference, hits) in by_reference {
        if decided.contains(&reference) {
            continue;
        }
        for h in &hits {
            let stored = StoredHit {
                stream_ts_ms: k.ts_ms,
                reference_ts_ms: h.reference_ts_ms,
                distance: h.distance,
                weight: h.weight,
            };
            streams::insert_hit(deps.store.pool(), &k.stream_id, &reference, &stored).await?;
        }
        let Some(evidence) = evidence_for(deps, &k.stream_id, &reference, k.ts_ms).await? else {
            continue;
        };
        if let Some(d) = decide::decide(deps, k, &reference, &evidence).await? {
            decisions.push(d);
        }
    }
    if decisions.is_empty() { Ok(Outcome::Accumulating) } else { Ok(Outcome::Decided(decisions)) }
}

/// Replays a (stream, reference)'s stored hits into a fresh matcher and returns its best
/// evidence, if any.
async fn evidence_for(
    deps: &Deps,
    stream_id: &str,
    reference: &str,
    ts_ms: i64,
) -> Result<Option<fingerprints::Evidence>, HandleError> {
    let stored = streams::hits(
        deps.store.pool(),
        stream_id,
        reference,
        ts_ms.saturating_sub(EVIDENCE_WINDOW_MS),
        ts_ms.saturating_add(EVIDENCE_WINDOW_MS),
    )
    .await?;
    let mut matcher = StreamMatcher::new(deps.matcher.clone());
    let mut i = 0;
    while i < stored.len() {
        let ts = stored[i].stream_ts_ms;
        let mut frame = Vec::new();
        while i < stored.len() && stored[i].stream_ts_ms == ts {
            let s = stored[i];
            frame.push(Hit {
                reference: 0,
                reference_ts_ms: s.reference_ts_ms,
                distance: s.distance,
                weight: s.weight,
            });
            i += 1;
        }
        matcher.observe(ts, &frame);
    }
    Ok(matcher.evidence().into_iter().find(|e| e.reference == 0))
}

/// Receives, handles and settles messages until `cancel` fires.
pub async fn run_consumer(queue: Arc<dyn KeyframeQueue>, deps: Deps, cancel: CancellationToken) {
    let mut backoff =
        crate::queue::backoff::Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let mut stream: Box<dyn DeliveryStream> = loop {
        match queue.consume().await {
            Ok(s) => break s,
            Err(e) => {
                let wait = backoff.next_delay();
                tracing::warn!(error = %e, "cannot start consuming; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    };
    backoff.reset();
    loop {
        let delivery = tokio::select! {
            () = cancel.cancelled() => return,
            d = stream.next() => match d { Some(d) => d, None => return },
        };
        let started = Instant::now();
        let message = match &delivery.message {
            Ok(m) => m.clone(),
            Err(e) => {
                let reason = e.to_string();
                metrics::counter!("offside_keyframes_dead_lettered_total", "reason" => "message")
                    .increment(1);
                if let Err(err) = delivery.dead_letter(reason).await {
                    tracing::warn!(error = %err, "dead-lettering failed; the broker will redeliver");
                }
                continue;
            }
        };
        let result = handle(&message, &deps).await;
        metrics::histogram!("offside_keyframe_handle_seconds")
            .record(started.elapsed().as_secs_f64());
        let settled = match result {
            Ok(outcome) => {
                backoff.reset();
                metrics::counter!("offside_keyframes_total", "outcome" => outcome.label())
                    .increment(1);
                if matches!(outcome, Outcome::Decided(_)) {
                    deps.outbox_wake.notify_one();
                }
                delivery.ack().await
            }
            Err(HandleError::Permanent(reason)) => {
                tracing::warn!(stream_id = message.stream_id(), %reason, "unusable keyframe");
                metrics::counter!("offside_keyframes_dead_lettered_total", "reason" => "content")
                    .increment(1);
                delivery.dead_letter(reason).await
            }
            Err(HandleError::Transient(err)) => {
                tracing::warn!(error = %format!("{err:#}"), "keyframe failed; requeueing");
                metrics::counter!("offside_keyframes_requeued_total").increment(1);
                // Pause before requeueing so a database outage does not spin the queue.
                let wait = backoff.next_delay();
                tokio::select! {
                    () = cancel.cancelled() => {}
                    () = tokio::time::sleep(wait) => {}
                }
                delivery.requeue().await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "settling a delivery failed; the broker will redeliver it");
        }
    }
}

/// [`Lookup`] over the process's shared reference library.
pub struct LibraryLookup {
    /// The library the index sync keeps current.
    pub library: crate::references::engine::SharedLibrary,
    /// Radius, quality floor and hit cap (the same rule `offside eval` measures).
    pub config: crate::recognition::RecognitionConfig,
    /// Live feeds' recent frames, searched by wall-clock alignment ([`Lookup::lookup_at`]).
    pub live: Option<crate::live::SharedLiveLibrary>,
}

impl Lookup for LibraryLookup {
    fn lookup(&self, hashes: &KeyframeHashes) -> Vec<(String, Hit)> {
        let library = self.library.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        library
            .lookup(hashes, self.config.radius, self.config.max_hits_per_keyframe)
            .into_iter()
            .filter_map(|h| library.reference_id(h.reference).map(|id| (id.to_owned(), h)))
            .collect()
    }

    fn lookup_at(&self, hashes: &KeyframeHashes, at_ms: i64) -> Vec<(String, Hit)> {
        let mut hits = self.lookup(hashes);
        if let Some(live) = &self.live {
            let live = live.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            hits.extend(live.lookup(
                hashes,
                at_ms,
                crate::live::LiveWindow::default(),
                self.config.radius,
                self.config.max_hits_per_keyframe,
            ));
        }
        hits
    }
}
