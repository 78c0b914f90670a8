//! The worker: a keyframe in, a decision (maybe) out.
//!
//! [`handle`] holds the logic and is tested directly; [`run_consumer`] is the one loop that
//! receives, calls it, and settles the delivery (ack after commit, dead-letter on a permanent
//! failure, requeue after a pause on a transient one).
//!
//! Per-stream evidence lives in the database (`stream_hits`), not in one worker's memory: any
//! worker may take any keyframe of a stream (see [`crate::queue`]), and a worker that dies loses
//! nothing. Only keyframes with index hits write anything, so negative traffic costs one cached
//! status read. A keyframe is hashed and looked up ([`crate::recognition::look_up_luma`], the
//! geometric tier on the keyframes its schedule picks) by the very function `offside eval`
//! runs, and the
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

use bytes::Bytes;
use fingerprints::Evidence;
use tokio_util::sync::CancellationToken;

use crate::media::{STREAM_STILL_LONG_SIDE, Still, still_of_image};
use crate::queue::{DeliveryStream, KeyframeMessage, KeyframeQueue, Payload, QueueMessage};
use crate::recognition::{
    KeyframeCost, KeyframeHashes, KeyframeHit, LiveQuery, RecognitionConfig, SharedLibrary,
    StreamActivity, StreamRecognizer, decode_keyframe, look_up_luma,
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
    streams_seen: Arc<Mutex<HashMap<String, StreamMemo>>>,
    recognizers: Arc<Mutex<HashMap<String, CachedRecognizer>>>,
    /// One permit per still being made after its keyframe's outcome ([`StillToKeep`]).
    stills_in_flight: Arc<tokio::sync::Semaphore>,
}

impl Deps {
    /// Dependencies with an empty stream-status cache.
    pub fn new(store: Store, library: SharedLibrary, recognition: RecognitionConfig) -> Self {
        Deps {
            store,
            library,
            recognition,
            outbox_wake: Arc::new(tokio::sync::Notify::new()),
            streams_seen: Arc::new(Mutex::new(HashMap::new())),
            recognizers: Arc::new(Mutex::new(HashMap::new())),
            stills_in_flight: Arc::new(tokio::sync::Semaphore::new(STILLS_IN_FLIGHT)),
        }
    }

    /// Returns once no still this process started after a keyframe's outcome ([`StillToKeep`])
    /// is still being made or stored.
    pub(crate) async fn wait_for_stills_in_flight(&self) {
        let every = u32::try_from(STILLS_IN_FLIGHT).unwrap_or(u32::MAX);
        drop(self.stills_in_flight.acquire_many(every).await);
    }
}

/// How long a stream's status is trusted from the cache. A stale `live` only means a few more
/// keyframes of a just-killed stream are recognised; decisions re-check in their transaction.
const STATUS_TTL: Duration = Duration::from_secs(1);
/// Most streams this process remembers ([`StreamMemo`]); beyond it the memory is cleared
/// (cheap to refill: one status read, and one more geometric lookup, per stream).
const STREAMS_SEEN_MAX: usize = 100_000;

/// What this process knows of a stream: its status as read at `read_at`, and what it did for
/// the geometric tier's schedule ([`crate::recognition::FeatureSchedule`]). The stream's first
/// keyframe and latest hit are read from the database with the status, so an opening or a hit
/// another process recorded counts here within [`STATUS_TTL`]; the latest geometric lookup is
/// this process's own (with several workers a quiet stream is looked at once per interval by
/// each that takes its keyframes: more often, never less).
#[derive(Debug, Clone, Copy)]
struct StreamMemo {
    status: StreamStatus,
    read_at: Instant,
    activity: StreamActivity,
}
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

/// The stream's status and activity: from this process's memory when read within
/// [`STATUS_TTL`], else one read (and, for a stream never seen, one insert first).
async fn stream_status(
    deps: &Deps,
    k: &KeyframeMessage,
) -> Result<(StreamStatus, StreamActivity), HandleError> {
    let remembered = lock(&deps.streams_seen).get(&k.stream_id).copied();
    if let Some(m) = remembered
        && m.read_at.elapsed() < STATUS_TTL
    {
        return Ok((m.status, m.activity));
    }
    let pool = deps.store.pool();
    let stored = match streams::get(pool, &k.stream_id).await? {
        Some(s) => Some(s),
        None => {
            let (account, viewers) = (k.account_id.as_deref(), k.viewers);
            streams::ensure(pool, &k.stream_id, account, viewers, Some(k.ts_ms)).await?;
            streams::get(pool, &k.stream_id).await?
        }
    };
    // An ended stream keeps a flagged status, but its late keyframes are dropped.
    let status = stored.as_ref().map_or(StreamStatus::Live, |s| {
        if s.ended_at.is_some() { StreamStatus::Ended } else { s.status }
    });
    let mut activity = remembered.map(|m| m.activity).unwrap_or_default();
    if let Some(s) = stored {
        activity.opened_ms = s.first_ts_ms;
        if let Some(t) = s.last_hit_ts_ms {
            activity.record(t, false, true);
        }
    }
    let mut seen = lock(&deps.streams_seen);
    if seen.len() >= STREAMS_SEEN_MAX {
        seen.clear();
    }
    seen.insert(k.stream_id.clone(), StreamMemo { status, read_at: Instant::now(), activity });
    Ok((status, activity))
}

/// Remembers what a keyframe of the stream did for the geometric tier's schedule.
fn remember_activity(
    deps: &Deps,
    stream_id: &str,
    ts_ms: i64,
    looked_up_features: bool,
    hit: bool,
) {
    if let Some(m) = lock(&deps.streams_seen).get_mut(stream_id) {
        m.activity.record(ts_ms, looked_up_features, hit);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A handled message: its outcome, and the still its keyframe leaves to keep.
#[derive(Debug)]
pub struct Handled {
    /// What handling the message did.
    pub outcome: Outcome,
    /// The keyframe's still, when the stream keeps it and it was not made already: see
    /// [`StillToKeep`].
    pub still: Option<StillToKeep>,
}

impl From<Outcome> for Handled {
    fn from(outcome: Outcome) -> Self {
        Handled { outcome, still: None }
    }
}

/// A keyframe with hits whose still is kept: every keyframe that decides, and the others the
/// stream keeps ([`keeps_still`]). The still (a second decode, in colour, shrunk and encoded: a
/// few ms of CPU) is made after the keyframe's outcome, beside the next keyframes, so it delays
/// no outcome and no decision (`offside load` measured a deciding keyframe 7 ms slower at p99
/// when its still was made on its way, even on another thread: docs/LOAD.md). The delivery is
/// acknowledged only once the still is stored, so a worker that dies in between leaves the
/// keyframe to be handled again. A decision first waits for the stills its process is making
/// ([`decide::decide`]), so a case opens with the pictures of its earlier keyframes, and the
/// deciding keyframe's own still follows within milliseconds; this process's webhook delivery
/// loop is woken only after it. (Its 200 ms poll, or another process's still in a scale-out
/// deployment, can come in between: a bundle fetched at that very moment lacks that picture.)
#[derive(Debug)]
pub struct StillToKeep {
    stream_id: String,
    ts_ms: i64,
    image: Bytes,
}

impl StillToKeep {
    /// Makes the still on a blocking thread and stores it. A keyframe that cannot be made into
    /// a still (it decoded for hashing, so this is rare) keeps its hits without a picture.
    ///
    /// # Errors
    /// A database error (transient).
    pub async fn store(self, deps: &Deps) -> Result<(), HandleError> {
        let StillToKeep { stream_id, ts_ms, image } = self;
        let made = tokio::task::spawn_blocking(move || {
            still_of(&stream_id, ts_ms, &image).map(|still| (stream_id, still))
        })
        .await
        .map_err(|e| HandleError::Transient(anyhow::anyhow!("still task failed: {e}")))?;
        if let Some((stream_id, still)) = made {
            let mut conn = deps.store.pool().acquire().await?;
            crate::store::stills::insert_stream_still(&mut conn, &stream_id, &still).await?;
            metrics::counter!("offside_stream_stills_total").increment(1);
        }
        Ok(())
    }
}

/// Handles one message. Idempotent: a redelivered message changes nothing more.
///
/// # Errors
/// [`HandleError::Permanent`] for a message that can never be used, else transient.
pub async fn handle(message: &QueueMessage, deps: &Deps) -> Result<Handled, HandleError> {
    let k = match message {
        QueueMessage::StreamEnd(e) => {
            streams::ensure(deps.store.pool(), &e.stream_id, None, None, None).await?;
            // A flagged or killed stream keeps its status (its decision stays visible) and
            // gets an `ended_at`; a live one becomes `ended`.
            streams::end(deps.store.pool(), &e.stream_id, "ended by the platform").await?;
            lock(&deps.streams_seen).remove(&e.stream_id);
            return Ok(Outcome::Ended.into());
        }
        QueueMessage::Keyframe(k) => k,
    };
    let (status, activity) = stream_status(deps, k).await?;
    if !status.accepts_keyframes() {
        return Ok(Outcome::Dropped.into());
    }
    let payload = k.payload().map_err(|e| HandleError::Permanent(e.to_string()))?;
    let (library, config) = (Arc::clone(&deps.library), deps.recognition.clone());
    // Live references are aligned by wall-clock time: the capture time when the platform sent
    // one, else now (arrival).
    let at_ms = k.captured_at_ms.unwrap_or_else(crate::store::now_ms);
    let ts_ms = k.ts_ms;
    // Decoding and hashing are CPU-bound: keep them off the async threads.
    let found = tokio::task::spawn_blocking(move || {
        // The library is read-locked for each lookup only, not while the keyframe is decoded
        // and hashed: live feeds add frames meanwhile.
        let library = || library.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let live = Some(LiveQuery::at(at_ms));
        let (hashes, hits, image) = match payload {
            Payload::Image(_, bytes) => {
                let luma = decode_keyframe(&bytes)
                    .map_err(|e| HandleError::Permanent(format!("image: {e}")))?;
                let mut cost = KeyframeCost::default();
                let found = look_up_luma(library, &luma, &config, live, ts_ms, activity, &mut cost);
                // Reference numbers are never reused, so they resolve under a later lock.
                let hits = library().keyframe_hits(&found.hits, config.tiers);
                (found.hashes, hits, Some(bytes))
            }
            Payload::Pdq { hash, quality } => {
                let hashes = KeyframeHashes::from_hash(hash, quality);
                let hits = library().hits(&hashes, &config, live);
                (hashes, hits, None)
            }
        };
        Ok::<_, HandleError>((hashes, hits, image))
    })
    .await
    .map_err(|e| HandleError::Transient(anyhow::anyhow!("hashing task failed: {e}")))??;
    let (hashes, hits, image) = found;
    let looked_up_features = hashes.features.is_some();
    remember_activity(deps, &k.stream_id, k.ts_ms, looked_up_features, !hits.is_empty());
    if looked_up_features {
        metrics::counter!("offside_geometric_lookups_total").increment(1);
    }
    // Nothing to look up: no PDQ view of usable quality, and no local features where the
    // geometric tier looked (a keyframe it skipped on schedule is only unmatched).
    if !hashes.carries_evidence() && (looked_up_features || image.is_none()) {
        return Ok(Outcome::LowQuality.into());
    }
    if hits.is_empty() {
        return Ok(Outcome::NoMatch.into());
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
    let version = streams::record_hits(deps.store.pool(), &k.stream_id, k.viewers, &hits).await?;
    let candidates = candidates_after(deps, &k.stream_id, version, k.ts_ms, &hits).await?;
    // The recogniser's candidates, best first, on references the stream has no decision on yet.
    let mut done: std::collections::HashSet<String> = if candidates.is_empty() {
        std::collections::HashSet::new()
    } else {
        streams::matches(deps.store.pool(), &k.stream_id)
            .await?
            .into_iter()
            .map(|m| m.reference_id)
            .collect()
    };
    let candidates: Vec<_> = candidates.into_iter().filter(|(r, _)| !done.contains(r)).collect();
    // Each candidate is judged under its reference's policy (`decide::check_policy`: its
    // `min_match_seconds`, accounts and window); one decision per reference.
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
    // The keyframe's still when it decided or the stream keeps it: a stream past its first
    // keyframes with hits (a flagged stream goes on being recognised) keeps one in
    // [`STILL_EVERY_AFTER`], and the others cost no decoding at all.
    let keep = keeps_still(version) || !decisions.is_empty();
    let still = image.filter(|_| keep).map(|image| StillToKeep {
        stream_id: k.stream_id.clone(),
        ts_ms: k.ts_ms,
        image,
    });
    let outcome =
        if decisions.is_empty() { Outcome::Accumulating } else { Outcome::Decided(decisions) };
    Ok(Handled { outcome, still })
}

/// Keyframes with hits whose stills a stream keeps in full; after them, one in
/// [`STILL_EVERY_AFTER`]. A pirate stream hits on nearly every keyframe (one every 2 s), and a
/// case's evidence is its first few keyframes with hits: 32 stills cover any decision the
/// policies allow (`min_match_seconds` up to a minute) while a stream left flagged for an hour
/// keeps 32 + 30 stills of about 15 KB, under 1 MB. A keyframe that decides always keeps its
/// still.
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

/// Stills ([`StillToKeep`]) a process makes beside its next keyframes; a consumer with one
/// more to make waits for a permit.
const STILLS_IN_FLIGHT: usize = 4;

/// Makes and stores `still` in a task of its own, then wakes the webhook delivery loop when the
/// keyframe `decided` and acks its delivery (requeues it when the still could not be stored:
/// handling is idempotent). Waits first while the process already has [`STILLS_IN_FLIGHT`]
/// stills in the making.
async fn keep_still_then_ack(
    still: StillToKeep,
    delivery: crate::queue::Delivery,
    decided: bool,
    deps: &Deps,
) {
    let Ok(permit) = Arc::clone(&deps.stills_in_flight).acquire_owned().await else {
        unreachable!("the semaphore is never closed")
    };
    let deps = deps.clone();
    tokio::spawn(async move {
        let stored = still.store(&deps).await;
        if decided {
            deps.outbox_wake.notify_one();
        }
        let settled = match stored {
            Ok(()) => delivery.ack().await,
            Err(e) => {
                tracing::warn!(error = %e, "storing a still failed; requeueing");
                metrics::counter!("offside_keyframes_requeued_total").increment(1);
                delivery.requeue().await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(error = %e, "settling a delivery failed; the broker will redeliver it");
        }
        drop(permit);
    });
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
            Ok(Handled { outcome, still }) => {
                backoff.reset();
                tracing::debug!(
                    stream_id = message.stream_id(),
                    ts_ms = ?message.ts_ms(),
                    outcome = outcome.label(),
                    handle_ms = started.elapsed().as_millis() as u64,
                    "keyframe handled"
                );
                metrics::counter!("offside_keyframes_total", "outcome" => outcome.label())
                    .increment(1);
                let decided = matches!(outcome, Outcome::Decided(_));
                match still {
                    None => {
                        if decided {
                            deps.outbox_wake.notify_one();
                        }
                        delivery.ack().await
                    }
                    // Made beside the next keyframes; its task settles the delivery.
                    Some(still) => {
                        keep_still_then_ack(still, delivery, decided, &deps).await;
                        Ok(())
                    }
                }
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
