//! The worker: a keyframe in, a decision (maybe) out.
//!
//! [`handle`] holds the logic and is tested directly; [`run_consumer`] is the one loop that
//! receives, calls it, and settles the delivery (ack after commit, dead-letter on a permanent
//! failure, requeue after a pause on a transient one).
//!
//! Per-stream evidence lives in the database (`stream_hits`), not in one worker's memory: any
//! worker may take any keyframe of a stream (see [`crate::queue`]), and a worker that dies loses
//! nothing. Only keyframes with index hits write anything, so negative traffic costs one cached
//! status read. A keyframe is hashed ([`crate::recognition::hash_keyframe`]) and looked up
//! ([`crate::recognition::Library::hits`]) by the very functions `offside eval` runs, and the
//! evidence is computed by the one recogniser it runs ([`StreamRecognizer`]: one per stream
//! over every reference's hits, so a keyframe's vote is split between references exactly as in
//! the evaluation), with the reference policy (`min_match_seconds`, accounts, window) on top.
//!
//! Replaying a stream's stored hits on every keyframe would cost O(n) per keyframe, O(n²) over
//! a long stream. So each process keeps the stream's recogniser in memory with the stream's
//! `hit_version`: when this worker's commit bumped the version from exactly the one it holds,
//! nobody else added hits in between and the keyframe is fed to the cached recogniser; otherwise
//! (another worker took keyframes, a keyframe arrived out of order, a restart) the stored hits
//! are replayed in stream order. Both paths give the same evidence. The decision itself is made
//! at most once per (stream, reference) by the `stream_matches` unique constraint, inside the
//! one transaction that also changes the stream, opens the case and writes the outbox events.

pub mod decide;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fingerprints::Evidence;
use tokio_util::sync::CancellationToken;

use crate::media::{STREAM_STILL_LONG_SIDE, Still, still_of_image};
use crate::queue::{DeliveryStream, KeyframeMessage, KeyframeQueue, Payload, QueueMessage};
use crate::recognition::{
    KeyframeHashes, KeyframeHit, LiveQuery, RecognitionConfig, SharedLibrary, StreamRecognizer,
    hash_keyframe,
};
use crate::store::Store;
use crate::store::streams::{self, ReferenceHit, StoredHit, StreamStatus};

/// How far back (stream time) stored hits are replayed into the matcher. Bounds the work per
/// keyframe on a long pirate stream; evidence older than this cannot join a new run anyway.
pub const EVIDENCE_WINDOW_MS: i64 = 10 * 60 * 1000;

/// What the worker needs.
#[derive(Clone)]
pub struct Deps {
    /// The database.
    pub store: Store,
    /// The recognition library: file references and live feeds.
    pub library: SharedLibrary,
    /// The decision rule (radius, matcher thresholds): the one `offside eval` measures.
    pub recognition: RecognitionConfig,
    /// Wakes the webhook delivery loop after a decision (same process).
    pub outbox_wake: Arc<tokio::sync::Notify>,
    status_cache: Arc<Mutex<HashMap<String, (StreamStatus, Instant)>>>,
    recognizers: Arc<Mutex<HashMap<String, CachedRecognizer>>>,
}

impl Deps {
    /// Dependencies with an empty stream-status cache.
    pub fn new(store: Store, library: SharedLibrary, recognition: RecognitionConfig) -> Self {
        Deps {
            store,
            library,
            recognition,
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            status_cache: Arc::new(Mutex::new(HashMap::new())),
            recognizers: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// How long a stream's status is trusted from the cache. A stale `live` only means a few more
/// keyframes of a just-killed stream are recognised; decisions re-check in their transaction.
const STATUS_TTL: Duration = Duration::from_secs(1);
/// Most streams whose status is cached; beyond it the cache is cleared (cheap to refill).
const STATUS_CACHE_MAX: usize = 100_000;
/// Most streams whose recogniser is kept in memory; beyond it the cache is cleared (a miss
/// costs one replay from the database).
const RECOGNIZER_CACHE_MAX: usize = 10_000;

/// One stream's recogniser as of a `hit_version`.
struct CachedRecognizer {
    version: i64,
    latest_ts_ms: i64,
    recognizer: StreamRecognizer,
}

impl CachedRecognizer {
    fn new(recognition: &RecognitionConfig) -> Self {
        CachedRecognizer {
            version: 0,
            latest_ts_ms: i64::MIN,
            recognizer: StreamRecognizer::new(recognition.clone()),
        }
    }

    /// Feeds one keyframe's stored hits (all references) to the recogniser: with the weights
    /// as stored, so the cached and the replayed path see the same numbers.
    fn observe(&mut self, stream_ts_ms: i64, hits: &[ReferenceHit]) {
        let hits: Vec<KeyframeHit> = hits
            .iter()
            .map(|h| KeyframeHit {
                reference_id: h.reference_id.clone(),
                reference_ts_ms: h.hit.reference_ts_ms,
                distance: h.hit.distance,
                weight: h.hit.weight,
                tier: h.hit.tier,
            })
            .collect();
        self.recognizer.observe(stream_ts_ms, &hits);
        self.latest_ts_ms = self.latest_ts_ms.max(stream_ts_ms);
    }
}

/// What handling a message did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The stream ended.
    Ended,
    /// The stream is killed or ended: keyframe dropped.
    Dropped,
    /// Nothing to look up: no PDQ view of usable quality and no local features (black,
    /// flat or tiny).
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
    streams::ensure(deps.store.pool(), &k.stream_id, k.account_id.as_deref(), k.viewers).await?;
    let status = streams::get(deps.store.pool(), &k.stream_id)
        .await?
        // An ended stream keeps a flagged status, but its late keyframes are dropped.
        .map_or(StreamStatus::Live, |s| {
            if s.ended_at.is_some() { StreamStatus::Ended } else { s.status }
        });
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
            streams::ensure(deps.store.pool(), &e.stream_id, None, None).await?;
            // A flagged or killed stream keeps its status (its decision stays visible) and
            // gets an `ended_at`; a live one becomes `ended`.
            streams::end(deps.store.pool(), &e.stream_id, "ended by the platform").await?;
            lock(&deps.status_cache).remove(&e.stream_id);
            return Ok(Outcome::Ended);
        }
        QueueMessage::Keyframe(k) => k,
    };
    if !stream_status(deps, k).await?.accepts_keyframes() {
        return Ok(Outcome::Dropped);
    }
    let payload = k.payload().map_err(|e| HandleError::Permanent(e.to_string()))?;
    let (library, config) = (Arc::clone(&deps.library), deps.recognition.clone());
    let (stream_id, ts_ms) = (k.stream_id.clone(), k.ts_ms);
    // Live references are aligned by wall-clock time: the capture time when the platform sent
    // one, else now (arrival).
    let at_ms = k.captured_at_ms.unwrap_or_else(crate::store::now_ms);
    // Decoding and hashing are CPU-bound: keep them off the async threads.
    let found = tokio::task::spawn_blocking(move || {
        let (hashes, image) = match payload {
            Payload::Image(_, bytes) => (
                hash_keyframe(&bytes).map_err(|e| HandleError::Permanent(format!("image: {e}")))?,
                Some(bytes),
            ),
            Payload::Pdq { hash, quality } => (KeyframeHashes::from_hash(hash, quality), None),
        };
        if !hashes.carries_evidence() {
            return Ok(None);
        }
        let hits = library.read().unwrap_or_else(std::sync::PoisonError::into_inner).hits(
            &hashes,
            &config,
            Some(LiveQuery::at(at_ms)),
        );
        // A keyframe with hits gets its still made here, on the blocking thread; whether the
        // stream keeps it is decided with the hits' commit. Keyframes without hits cost nothing.
        let still = if hits.is_empty() {
            None
        } else {
            image.and_then(|b| still_of(&stream_id, ts_ms, &b))
        };
        Ok::<_, HandleError>(Some((hits, still)))
    })
    .await
    .map_err(|e| HandleError::Transient(anyhow::anyhow!("hashing task failed: {e}")))??;
    let Some((hits, still)) = found else { return Ok(Outcome::LowQuality) };
    if hits.is_empty() {
        return Ok(Outcome::NoMatch);
    }

    let hits: Vec<ReferenceHit> = hits
        .into_iter()
        .map(|h| ReferenceHit {
            reference_id: h.reference_id,
            hit: StoredHit {
                stream_ts_ms: k.ts_ms,
                reference_ts_ms: h.reference_ts_ms,
                distance: h.distance,
                weight: streams::stored_weight(h.weight),
                tier: h.tier,
            },
        })
        .collect();
    // The still is committed with the hits (when the stream keeps it), so any evidence a case
    // is opened on has its picture already.
    let (version, kept) = streams::record_hits(
        deps.store.pool(),
        &k.stream_id,
        k.viewers,
        &hits,
        still.as_ref(),
        keeps_still,
    )
    .await?;
    let candidates = candidates_after(deps, &k.stream_id, version, k.ts_ms, &hits).await?;
    // A keyframe that may decide keeps its still whatever the keep rule says, before deciding.
    let may_decide = !candidates.is_empty();
    if let Some(still) = still.filter(|_| may_decide && !kept) {
        let mut conn = deps.store.pool().acquire().await?;
        crate::store::stills::insert_stream_still(&mut conn, &k.stream_id, &still).await?;
        metrics::counter!("offside_stream_stills_total").increment(1);
    } else if kept {
        metrics::counter!("offside_stream_stills_total").increment(1);
    }

    // The recogniser's candidates, best first, each judged under its reference's policy
    // (`decide::check_policy`: its `min_match_seconds`, accounts and window); one decision
    // per reference.
    let mut done: std::collections::HashSet<String> =
        streams::matches(deps.store.pool(), &k.stream_id)
            .await?
            .into_iter()
            .map(|m| m.reference_id)
            .collect();
    let mut references: HashMap<String, Option<crate::store::references::Reference>> =
        HashMap::new();
    let mut decisions = Vec::new();
    for (reference_id, evidence) in candidates {
        if done.contains(&reference_id) {
            continue;
        }
        let reference = match references.get(&reference_id) {
            Some(r) => r.clone(),
            None => {
                let r = crate::store::references::get(deps.store.pool(), &reference_id).await?;
                references.insert(reference_id.clone(), r.clone());
                r
            }
        };
        // Deleted since the index was loaded: nothing to enforce.
        let Some(reference) = reference else { continue };
        if let Some(d) = decide::decide(deps, k, &reference, &evidence).await? {
            done.insert(reference_id);
            decisions.push(d);
        }
    }
    if decisions.is_empty() { Ok(Outcome::Accumulating) } else { Ok(Outcome::Decided(decisions)) }
}

/// Keyframes with hits whose stills a stream keeps in full; after them, one in
/// [`STILL_EVERY_AFTER`]. A pirate stream hits on nearly every keyframe (one every 2 s), and a
/// case's evidence is its first few keyframes with hits: 32 stills cover any decision the
/// policies allow (`min_match_seconds` up to a minute) while a stream left flagged for an hour
/// keeps 32 + 30 stills of about 15 KB, under 1 MB. A deciding keyframe's still is always kept.
pub const STILLS_IN_FULL: i64 = 32;
/// See [`STILLS_IN_FULL`]: one still in this many keyframes with hits after the first ones
/// (every two minutes at one keyframe per 2 s).
pub const STILL_EVERY_AFTER: i64 = 60;

/// Whether the keyframe whose hits bumped the stream's hit version to `version` keeps a still.
fn keeps_still(version: i64) -> bool {
    version <= STILLS_IN_FULL || version % STILL_EVERY_AFTER == 0
}

/// A still of a keyframe with hits. A keyframe that was hashed but cannot be made into a still
/// (it decoded for hashing, so this is rare) keeps its hits without a picture.
fn still_of(stream_id: &str, ts_ms: i64, image: &[u8]) -> Option<Still> {
    match still_of_image(image, STREAM_STILL_LONG_SIDE) {
        Ok(jpeg) => Some(Still { ts_ms, jpeg }),
        Err(e) => {
            tracing::warn!(stream_id, ts_ms, error = %e, "no still of a keyframe with hits");
            None
        }
    }
}

/// The stream's candidates ([`StreamRecognizer::candidates`]) after the keyframe at `ts_ms`
/// whose `hits` were committed as `version`: from the cached recogniser when it is exactly one
/// version behind and the keyframe is not older than what it has seen, else by replaying the
/// stored hits.
async fn candidates_after(
    deps: &Deps,
    stream_id: &str,
    version: i64,
    ts_ms: i64,
    hits: &[ReferenceHit],
) -> Result<Vec<(String, Evidence)>, HandleError> {
    let cached = lock(&deps.recognizers).remove(stream_id);
    let state = match cached {
        Some(mut c) if c.version + 1 == version && ts_ms >= c.latest_ts_ms => {
            c.observe(ts_ms, hits);
            c.version = version;
            metrics::counter!("offside_matcher_updates_total", "path" => "cached").increment(1);
            c
        }
        _ => {
            let stored = streams::stream_hits(
                deps.store.pool(),
                stream_id,
                ts_ms.saturating_sub(EVIDENCE_WINDOW_MS),
                ts_ms.saturating_add(EVIDENCE_WINDOW_MS),
            )
            .await?;
            let mut c = CachedRecognizer::new(&deps.recognition);
            for frame in stored.chunk_by(|a, b| a.hit.stream_ts_ms == b.hit.stream_ts_ms) {
                c.observe(frame[0].hit.stream_ts_ms, frame);
            }
            c.version = version;
            metrics::counter!("offside_matcher_updates_total", "path" => "replay").increment(1);
            c
        }
    };
    let candidates = state.recognizer.candidates();
    let mut cache = lock(&deps.recognizers);
    if cache.len() >= RECOGNIZER_CACHE_MAX {
        cache.clear();
    }
    // Another task of this process may have cached a newer state meanwhile: keep the newer.
    match cache.get(stream_id) {
        Some(other) if other.version >= state.version => {}
        _ => {
            cache.insert(stream_id.to_owned(), state);
        }
    }
    Ok(candidates)
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
        // Capture (or publication) to outcome, queue wait included: what `offside load` reports.
        if let (Ok(_), QueueMessage::Keyframe(k)) = (&result, &message)
            && let Some(at) = k.captured_at_ms
        {
            let age_ms = crate::store::now_ms().saturating_sub(at).max(0);
            metrics::histogram!("offside_keyframe_latency_seconds").record(age_ms as f64 / 1000.0);
        }
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
