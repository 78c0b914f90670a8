//! [`LiveService`]: claims live feeds, ingests them, keeps the live feeds of this process's library
//! current.
//!
//! Every process runs one. Each second it reads the feed rows: feeds it does not know any more
//! (deleted) leave its library, frames past their retention expire, and every feed whose
//! event is on and whose lease is free (or expired: its holder died) is claimed and ingested
//! here. The ingest decodes on a blocking thread and hands each frame's hashes (and, once a
//! second, its local features) to the async side, which makes them matchable at once (this process's library directly; other processes
//! through the [`LiveFanout`]), counts them, renews the lease with the counters every second,
//! and collects the archive when asked to. A lost lease (this process stalled past the lease
//! and another took over) stops the ingest without touching the feed.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fingerprints::CropVariant;
use fingerprints::features::{FeatureConfig, LocalFeatures};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::LiveInput;
use super::fanout::{FrameBatch, LiveFanout};
use super::store::{self as feeds, Heartbeat, LiveFeed};
use crate::domain::FeedStatus;
use crate::media::{InputOptions, LIVE_PROBE, LumaOptions, MediaError, Still, decode_luma_frames};
use crate::net::OutboundPolicy;
use crate::net::ffmpeg::{FeedUrlError, FfmpegInput};
use crate::queue::backoff::Backoff;
use crate::recognition::{
    FeatureFrame, FeatureSampler, FramePruner, LiveWindow, ReferenceFrame, SharedLibrary,
};
use crate::store::references;
use crate::store::stills;
use crate::store::{Store, now_ms};

/// How feeds are ingested.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// How often the service looks for feeds to claim, expires frames and drops deleted feeds.
    pub poll: Duration,
    /// How long a lease lasts without renewal; a dead holder's feed is taken over after it.
    pub lease_ttl: Duration,
    /// How often the holder renews its lease and writes the counters.
    pub heartbeat: Duration,
    /// Frames hashed per second of feed at most (frames in between are decoded, not hashed).
    pub max_fps: f64,
    /// Frames below this PDQ quality are not indexed (PDQ's own threshold).
    pub min_quality: u8,
    /// Crops indexed besides the full frame, as for uploaded references.
    pub variants: Vec<CropVariant>,
    /// A frame is not indexed when it is within this many bits of the last kept frame of its
    /// variant, unless that one is [`Self::max_pruned_gap_ms`] old (as for references).
    pub dedup_distance: u32,
    /// See [`Self::dedup_distance`].
    pub max_pruned_gap_ms: i64,
    /// One frame per this many ms of stream time gets local features for the geometric tier,
    /// as for file references ([`crate::recognition::ReferenceHashOptions::feature_interval_ms`]:
    /// the same grid, [`FeatureConfig::reference`] settings); `None` turns the tier off for
    /// live feeds. Default 1000.
    pub feature_interval_ms: Option<i64>,
    /// A network read stalled this long counts as a dropped feed.
    pub read_timeout: Duration,
    /// First and longest wait before reopening a dropped feed.
    pub reconnect_backoff: (Duration, Duration),
    /// How often the archive collected so far is written to the database.
    pub archive_flush: Duration,
    /// Which addresses a feed may reach; checked again at every (re)connection and, for
    /// HTTP(S), at every connection FFmpeg makes ([`crate::net::ffmpeg::confine`]). Local
    /// files are read only when it allows every address. Default: public addresses only.
    pub outbound: OutboundPolicy,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self {
            poll: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(10),
            heartbeat: Duration::from_secs(1),
            // Every frame of ordinary video, like reference hashing: at 10 fps a pirate
            // keyframe on a shot boundary may fall between two hashed frames and match nothing.
            // Measured cost for a 720p25 feed stays near a tenth of a core.
            max_fps: 30.0,
            min_quality: 50,
            variants: vec![CropVariant::Portrait9x16, CropVariant::Square, CropVariant::Classic4x3],
            dedup_distance: 8,
            max_pruned_gap_ms: 500,
            feature_interval_ms: Some(1000),
            read_timeout: Duration::from_secs(5),
            reconnect_backoff: (Duration::from_millis(500), Duration::from_secs(10)),
            archive_flush: Duration::from_secs(10),
            outbound: OutboundPolicy::public_only(),
        }
    }
}

/// What the ingest makes of one decoded frame of a feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveBatch {
    /// Its PDQ hashes that were kept (full frame, inner picture, crops; pruned, may be empty),
    /// each at the frame's air time (Unix ms).
    pub frames: Vec<ReferenceFrame>,
    /// Its local features, when the frame was sampled for the geometric tier: `ts_ms` is the
    /// air time (Unix ms), the time its PDQ hashes get.
    pub features: Option<FeatureFrame>,
    /// A still of the frame (its `ts_ms` the air time, Unix ms), one per second of the feed,
    /// for reviewers; stored by the ingesting process, not sent to other processes.
    pub still: Option<crate::media::Still>,
}

/// Claims and ingests live feeds; keeps the process's live library in step with the database.
pub struct LiveService {
    store: Store,
    library: SharedLibrary,
    fanout: Option<Arc<LiveFanout>>,
    instance: String,
    options: IngestOptions,
}

impl std::fmt::Debug for LiveService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveService").field("instance", &self.instance).finish_non_exhaustive()
    }
}

/// The ingests this process runs, by feed, with the token that stops each. The handles abort
/// their tasks when dropped, so an ingest never outlives the service that renews its lease.
type Running = HashMap<String, (AbortOnDropHandle<()>, CancellationToken)>;

/// How one ingest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The event is over (end time, end of a file input, or the feed was deleted).
    Ended,
    /// Another process holds the lease now.
    LeaseLost,
    /// This process is shutting down.
    Shutdown,
}

impl LiveService {
    /// A service for this process; `instance` names it in leases (unique per process).
    pub fn new(
        store: Store,
        library: SharedLibrary,
        fanout: Option<Arc<LiveFanout>>,
        instance: impl Into<String>,
        options: IngestOptions,
    ) -> Self {
        Self { store, library, fanout, instance: instance.into(), options }
    }

    /// This process's lease holder name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Runs until `cancel` fires, then stops its ingests and gives their leases up.
    ///
    /// Dropped instead (its task aborted, as when the process dies), it aborts its ingests
    /// with it: they neither renew nor release their leases, which run out, and another
    /// process takes the feeds over.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut running: Running = HashMap::new();
        loop {
            running.retain(|_, (task, _)| !task.is_finished());
            if let Err(err) = self.tick(&mut running, &cancel).await {
                tracing::warn!(error = %format!("{err:#}"), "live feed poll failed; retrying");
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(self.options.poll) => {}
            }
        }
        for (_, (task, stop)) in running.drain() {
            stop.cancel();
            let _ = task.await;
        }
    }

    async fn tick(
        self: &Arc<Self>,
        running: &mut Running,
        cancel: &CancellationToken,
    ) -> anyhow::Result<()> {
        let all = feeds::list(self.store.pool()).await?;
        let now = now_ms();
        {
            let mut library =
                self.library.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            for id in library.live_ids() {
                // Deleted feeds stop matching; archived ones are ordinary references now.
                let keep = all
                    .iter()
                    .any(|f| f.reference_id == id && !(f.archive && f.status == FeedStatus::Ended));
                if !keep {
                    library.remove_live(&id);
                }
            }
            // The window the workers look up with (`pipeline`): feature frames beyond its
            // reach go.
            library.expire_live(now, LiveWindow::default());
        }
        for feed in all {
            if feed.status == FeedStatus::Ended || running.contains_key(&feed.reference_id) {
                continue;
            }
            if feed.starts_at.is_some_and(|t| t > now) {
                continue;
            }
            let ttl = ms(self.options.lease_ttl);
            if !feeds::claim(self.store.pool(), &feed.reference_id, &self.instance, now, ttl)
                .await?
            {
                continue;
            }
            tracing::info!(reference_id = %feed.reference_id, instance = %self.instance, "live feed claimed");
            let stop = cancel.child_token();
            let id = feed.reference_id.clone();
            let task =
                AbortOnDropHandle::new(tokio::spawn(Arc::clone(self).ingest(feed, stop.clone())));
            running.insert(id, (task, stop));
        }
        Ok(())
    }

    /// Ingests one claimed feed until it ends, the lease is lost or `stop` fires.
    async fn ingest(self: Arc<Self>, feed: LiveFeed, stop: CancellationToken) {
        let id = feed.reference_id.clone();
        let outcome = self.ingest_loop(&feed, &stop).await;
        let result = match outcome {
            Ok(Stop::Ended) => self.finish(&feed).await,
            Ok(Stop::Shutdown) => {
                feeds::release(self.store.pool(), &id, &self.instance).await.map_err(Into::into)
            }
            Ok(Stop::LeaseLost) => {
                tracing::warn!(reference_id = %id, "live feed lease lost; another process ingests it");
                Ok(())
            }
            Err(err) => Err(err),
        };
        if let Err(err) = result {
            // The lease runs out and the feed is claimed again (here or elsewhere).
            tracing::warn!(reference_id = %id, error = %format!("{err:#}"), "live ingest failed");
        }
    }

    /// Ends the feed and, if asked, turns its archive into an ordinary reference.
    async fn finish(&self, feed: &LiveFeed) -> anyhow::Result<()> {
        let now = now_ms();
        if feeds::end(self.store.pool(), &feed.reference_id, now).await? {
            tracing::info!(reference_id = %feed.reference_id, "live feed ended");
        }
        if feed.archive && references::finish_archive(self.store.pool(), &feed.reference_id).await?
        {
            tracing::info!(reference_id = %feed.reference_id, "live feed archived as a ready reference");
        }
        Ok(())
    }

    async fn ingest_loop(&self, feed: &LiveFeed, stop: &CancellationToken) -> anyhow::Result<Stop> {
        let id = feed.reference_id.as_str();
        let input = LiveInput::classify(&feed.url);
        let mut backoff =
            Backoff::new(self.options.reconnect_backoff.0, self.options.reconnect_backoff.1);
        let mut state = IngestState::new(feed, &self.options);
        let mut first_attempt = true;
        loop {
            if feed.ends_at.is_some_and(|t| now_ms() >= t) {
                state.flush_archive(&self.store, id).await?;
                return Ok(Stop::Ended);
            }
            if !first_attempt {
                state.beat.status = Some(FeedStatus::Reconnecting);
                state.beat.reconnects_added += 1;
                if !self.heartbeat(id, &mut state).await? {
                    return Ok(Stop::LeaseLost);
                }
                let wait = backoff.next_delay();
                if let Some(stopped) = self.wait(feed, &mut state, wait, stop).await? {
                    return Ok(stopped);
                }
            }
            first_attempt = false;
            let (tx, mut rx) = mpsc::channel::<LiveBatch>(256);
            let halt = Arc::new(AtomicBool::new(false));
            let _halt_on_drop = HaltOnDrop(Arc::clone(&halt));
            // Resolved and checked again at every connection: what was allowed at registration
            // (or at the last connection) may not be now.
            let mut opened = open_input(&input, &self.options).await;
            // The checking proxy stays on this side, alive until the decoder is joined below,
            // so that the heartbeat can report what it refuses while FFmpeg keeps going.
            let proxy = opened.as_mut().ok().and_then(|o| o.proxy.take());
            let decoder = {
                let options = self.options.clone();
                let halt = Arc::clone(&halt);
                let paced = matches!(input, LiveInput::File(_));
                let proxy_refusal = proxy.as_ref().map(|p| p.refusals());
                tokio::task::spawn_blocking(move || -> Result<(), FeedError> {
                    let opened = opened?;
                    decode_feed(&opened, paced, &options, &halt, &tx).map_err(|source| {
                        match proxy_refusal.and_then(|r| r.last()) {
                            Some(refusal) => FeedError::Refused { refusal, source },
                            None => FeedError::Media(source),
                        }
                    })
                })
            };
            let mut ticker = tokio::time::interval(self.options.heartbeat);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let stopped = loop {
                tokio::select! {
                    batch = rx.recv() => match batch {
                        Some(batch) => {
                            if state.beat.status != Some(FeedStatus::Live) {
                                state.beat.status = Some(FeedStatus::Live);
                                backoff.reset();
                            }
                            self.publish(feed, &batch).await;
                            state.collect(feed, &batch);
                        }
                        None => break None,
                    },
                    _ = ticker.tick() => {
                        if feed.ends_at.is_some_and(|t| now_ms() >= t) {
                            break Some(Stop::Ended);
                        }
                        // FFmpeg skips an HLS segment it cannot open and keeps going, so a
                        // refused connection shows here, not only when the input fails.
                        if let Some(refusal) = proxy.as_ref().and_then(|p| p.take_new_refusal()) {
                            tracing::warn!(reference_id = id, error = %refusal, "live feed connection refused");
                            state.beat.error = Some(refusal);
                        }
                        match self.heartbeat(id, &mut state).await {
                            Ok(true) => {}
                            Ok(false) => break Some(self.why_lease_is_gone(id).await),
                            Err(err) => tracing::warn!(reference_id = id, error = %err, "live heartbeat failed"),
                        }
                        if let Err(err) = state.flush_stills(&self.store, id).await {
                            tracing::warn!(reference_id = id, error = %format!("{err:#}"), "live stills write failed; kept for the next heartbeat");
                        }
                        if state.archive_due()
                            && let Err(err) = state.flush_archive(&self.store, id).await
                        {
                            tracing::warn!(reference_id = id, error = %format!("{err:#}"), "archive write failed; kept for the next flush");
                        }
                    }
                    () = stop.cancelled() => break Some(Stop::Shutdown),
                }
            };
            halt.store(true, Ordering::Relaxed);
            // Drain what the decoder still sends so it never blocks on a full channel.
            let drain = async { while rx.recv().await.is_some() {} };
            let (_, decoded) = tokio::join!(drain, decoder);
            if let Err(err) = state.flush_stills(&self.store, id).await {
                tracing::warn!(reference_id = id, error = %format!("{err:#}"), "live stills write failed");
            }
            if let Some(stopped) = stopped {
                if stopped != Stop::LeaseLost {
                    self.heartbeat(id, &mut state).await.ok();
                }
                if stopped == Stop::Ended {
                    state.flush_archive(&self.store, id).await?;
                }
                return Ok(stopped);
            }
            match decoded {
                Ok(Ok(())) if matches!(input, LiveInput::File(_)) => {
                    // A file replayed as a feed is over when it ends.
                    self.heartbeat(id, &mut state).await.ok();
                    state.flush_archive(&self.store, id).await?;
                    return Ok(Stop::Ended);
                }
                Ok(Ok(())) => {
                    tracing::warn!(
                        reference_id = id,
                        "live feed ended by the sender; reconnecting"
                    );
                    state.beat.error = Some("the input ended".to_owned());
                }
                Ok(Err(err)) => {
                    tracing::warn!(reference_id = id, error = %err, "live feed dropped; reconnecting");
                    state.beat.error = Some(err.to_string());
                }
                Err(err) => {
                    state.beat.error = Some(format!("decoder task failed: {err}"));
                }
            }
        }
    }

    /// Whether the feed was deleted or ended by someone else, or another process took it.
    async fn why_lease_is_gone(&self, id: &str) -> Stop {
        match feeds::get(self.store.pool(), id).await {
            Ok(None) => Stop::Ended,
            Ok(Some(f)) if f.status == FeedStatus::Ended => Stop::Ended,
            _ => Stop::LeaseLost,
        }
    }

    /// Sleeps `wait` while keeping the lease; returns early when the feed must stop.
    async fn wait(
        &self,
        feed: &LiveFeed,
        state: &mut IngestState,
        wait: Duration,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<Stop>> {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            let step = self.options.heartbeat.min(until - Instant::now());
            tokio::select! {
                () = stop.cancelled() => return Ok(Some(Stop::Shutdown)),
                () = tokio::time::sleep(step) => {}
            }
            if feed.ends_at.is_some_and(|t| now_ms() >= t) {
                state.flush_archive(&self.store, &feed.reference_id).await?;
                return Ok(Some(Stop::Ended));
            }
            if !self.heartbeat(&feed.reference_id, state).await? {
                return Ok(Some(self.why_lease_is_gone(&feed.reference_id).await));
            }
        }
        Ok(None)
    }

    async fn heartbeat(&self, id: &str, state: &mut IngestState) -> anyhow::Result<bool> {
        let ttl = ms(self.options.lease_ttl);
        let held =
            feeds::heartbeat(self.store.pool(), id, &self.instance, now_ms(), ttl, &state.beat)
                .await?;
        // Counted once written; on failure (an error above) they are sent with the next beat.
        state.beat = Heartbeat { status: None, ..Heartbeat::default() };
        Ok(held)
    }

    /// Makes frames matchable: this process's library at once, every other one via the fanout.
    async fn publish(&self, feed: &LiveFeed, batch: &LiveBatch) {
        self.library.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert_live(
            &feed.reference_id,
            feed.origin_ms,
            feed.retention_ms,
            &batch.frames,
            batch.features.as_slice(),
        );
        if let Some(fanout) = &self.fanout {
            let batch = FrameBatch {
                reference_id: feed.reference_id.clone(),
                origin_ms: feed.origin_ms,
                retention_ms: feed.retention_ms,
                frames: batch.frames.clone(),
                features: batch.features.iter().cloned().collect(),
            };
            if let Err(err) = fanout.publish(&batch).await {
                tracing::warn!(reference_id = %feed.reference_id, error = %err, "live frames not fanned out");
            }
        }
    }
}

/// Stops the decoder thread when the ingest future goes away, however it goes (a runtime
/// shutting down drops futures without running them to the end).
struct HaltOnDrop(Arc<AtomicBool>);

impl Drop for HaltOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Why a feed could not be read this time.
#[derive(Debug, thiserror::Error)]
enum FeedError {
    /// The URL is not allowed now (checked again at every connection), or the outbound proxy
    /// did not start.
    #[error(transparent)]
    Url(#[from] FeedUrlError),
    /// A file input while the outbound policy does not allow every address.
    #[error("file inputs are only read with allow_private_urls")]
    FileNotAllowed,
    /// FFmpeg failed after the outbound proxy refused one of its connections: that is why.
    #[error("{refusal} (then FFmpeg: {source})")]
    Refused {
        /// What was refused and why.
        refusal: String,
        /// FFmpeg's own error.
        source: MediaError,
    },
    /// FFmpeg failed.
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// What FFmpeg opens for `input`, checked against the outbound policy now.
async fn open_input(input: &LiveInput, options: &IngestOptions) -> Result<FfmpegInput, FeedError> {
    match input {
        LiveInput::File(path) if options.outbound.allows_all() => {
            Ok(FfmpegInput { url: path.clone(), options: Vec::new(), proxy: None })
        }
        LiveInput::File(_) => Err(FeedError::FileNotAllowed),
        LiveInput::Url(raw) => {
            let mut confined = crate::net::ffmpeg::confine(raw, &options.outbound).await?;
            confined.url = ffmpeg_input(&confined.url, options.read_timeout);
            Ok(confined)
        }
    }
}

/// The FFmpeg URL for a feed URL. FFmpeg's UDP reader ignores `rw_timeout` (its receive thread
/// waits forever), so a dropped UDP feed is only noticed with the protocol's own `timeout`.
fn ffmpeg_input(raw: &str, read_timeout: Duration) -> String {
    if raw.starts_with("udp://") && !raw.contains("timeout=") {
        let separator = if raw.contains('?') { '&' } else { '?' };
        format!("{raw}{separator}timeout={}", read_timeout.as_micros())
    } else {
        raw.to_owned()
    }
}

/// The counters and archive of one running ingest.
struct IngestState {
    beat: Heartbeat,
    /// Frames and feature frames (event times) not yet written, when the feed is archived.
    archive: Option<(Vec<ReferenceFrame>, Vec<FeatureFrame>)>,
    /// Stills (event times) not yet written; written at every heartbeat, archived or not (the
    /// stills retention prunes them past the feed's retention unless it is archived).
    stills: Vec<Still>,
    last_flush: Instant,
    flush_every: Duration,
}

impl IngestState {
    fn new(feed: &LiveFeed, options: &IngestOptions) -> Self {
        Self {
            beat: Heartbeat::default(),
            archive: feed.archive.then(Default::default),
            stills: Vec::new(),
            last_flush: Instant::now(),
            flush_every: options.archive_flush,
        }
    }

    fn collect(&mut self, feed: &LiveFeed, batch: &LiveBatch) {
        if let Some(still) = &batch.still {
            // On the event timeline, as the feed's hits are.
            self.stills
                .push(Still { ts_ms: still.ts_ms - feed.origin_ms, jpeg: still.jpeg.clone() });
        }
        if let Some((frames, features)) = &mut self.archive {
            frames.extend(
                batch
                    .frames
                    .iter()
                    .map(|f| ReferenceFrame { ts_ms: f.ts_ms - feed.origin_ms, ..*f }),
            );
            // The archived reference gets the geometric tier too, on the event timeline.
            features.extend(batch.features.iter().map(|f| FeatureFrame {
                ts_ms: f.ts_ms - feed.origin_ms,
                features: f.features.clone(),
            }));
        }
        let Some(newest) = batch.frames.iter().map(|f| f.ts_ms).max() else { return };
        self.beat.frames_added += 1;
        self.beat.last_frame_at = Some(newest);
    }

    /// Writes the stills collected since the last call; kept for the next call on failure.
    async fn flush_stills(&mut self, store: &Store, id: &str) -> anyhow::Result<()> {
        if self.stills.is_empty() {
            return Ok(());
        }
        let mut conn = store.pool().acquire().await?;
        stills::insert_reference_stills(&mut conn, id, &self.stills).await?;
        self.stills.clear();
        Ok(())
    }

    fn archive_due(&self) -> bool {
        self.archive.as_ref().is_some_and(|(f, x)| !f.is_empty() || !x.is_empty())
            && self.last_flush.elapsed() >= self.flush_every
    }

    async fn flush_archive(&mut self, store: &Store, id: &str) -> anyhow::Result<()> {
        let Some((frames, features)) = &mut self.archive else { return Ok(()) };
        self.last_flush = Instant::now();
        if frames.is_empty() && features.is_empty() {
            return Ok(());
        }
        let mut tx = store.pool().begin().await?;
        references::append_archive_frames(&mut tx, id, frames).await?;
        references::append_features(&mut tx, id, features).await?;
        tx.commit().await?;
        frames.clear();
        features.clear();
        Ok(())
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A gap between stream time and the clock larger than the smallest seen by this much is a
/// discontinuity (the sender restarted its clock), not buffering: the mapping starts over.
const MAX_BUFFERING_MS: i64 = 10_000;
/// A frame decoded this much closer to its stream time than the previous one shows the decoder
/// working through a backlog faster than real time.
const CATCH_UP_MS: i64 = 20;

/// Dates a feed's decoded frames with the wall-clock time they aired.
///
/// Frames do not always reach the decoder when they air: FFmpeg reads seconds of input ahead
/// while it probes a new connection (about 5 s for RTMP/FLV), HLS delivers whole segments at
/// once, and a TCP feed catches up after a network stall. Stamping frames with the time they
/// are decoded would date every frame of such a burst to the same moment. The frame decoded
/// soonest after it aired shows the true delay best, so the clock keeps the smallest
/// `decoded - stream time` seen and dates each frame `stream time + that`. Frames are held
/// until a frame arrives at the pace of real time (the next one, normally a frame interval
/// later), so the frames of a backlog are dated with the delay the decoder reaches once it has
/// caught up, not with their decode time. A frame whose delay exceeds the smallest by more than
/// [`MAX_BUFFERING_MS`] marks a jump of the sender's clock: what is held is dated with the old
/// mapping and a new one starts.
#[derive(Debug)]
struct AirClock<T> {
    offset_ms: Option<i64>,
    last_lag_ms: Option<i64>,
    held: Vec<(i64, T)>,
}

impl<T> Default for AirClock<T> {
    fn default() -> Self {
        Self { offset_ms: None, last_lag_ms: None, held: Vec::new() }
    }
}

impl<T> AirClock<T> {
    /// Takes `item`, the frame at stream time `ts_ms` decoded at `decoded_ms`; returns the held
    /// items whose air time is now known, with that time, in order.
    fn push(&mut self, ts_ms: i64, decoded_ms: i64, item: T) -> Vec<(i64, T)> {
        let lag = decoded_ms - ts_ms;
        let mut out = Vec::new();
        if self.offset_ms.is_some_and(|o| lag - o > MAX_BUFFERING_MS) {
            out = self.flush();
            *self = Self::default();
        }
        let catching_up = self.last_lag_ms.is_some_and(|last| lag + CATCH_UP_MS < last);
        self.offset_ms = Some(self.offset_ms.map_or(lag, |o| o.min(lag)));
        if !catching_up {
            out.extend(self.flush());
        }
        self.held.push((ts_ms, item));
        self.last_lag_ms = Some(lag);
        out
    }

    /// Every held item with its air time (at the end of the input).
    fn flush(&mut self) -> Vec<(i64, T)> {
        let offset = self.offset_ms.unwrap_or(0);
        self.held.drain(..).map(|(ts, item)| (ts + offset, item)).collect()
    }
}

/// Decodes the feed on this (blocking) thread and sends each kept frame's hashes, and the
/// local features of one frame per [`IngestOptions::feature_interval_ms`], stamped with the
/// wall-clock time the frame aired ([`AirClock`]), until the input ends, fails or `halt` is set.
fn decode_feed(
    input: &FfmpegInput,
    paced: bool,
    options: &IngestOptions,
    halt: &Arc<AtomicBool>,
    tx: &mpsc::Sender<LiveBatch>,
) -> Result<(), MediaError> {
    let luma_options = LumaOptions {
        input: InputOptions {
            read_timeout: (!paced).then_some(options.read_timeout),
            cancel: Some(Arc::clone(halt)),
            decoder_threads: 1,
            probe: Some(LIVE_PROBE),
            avoptions: input.options.clone(),
        },
        max_fps: Some(options.max_fps),
        skip_loop_filter: true,
        still_interval_ms: Some(crate::references::engine::STILL_INTERVAL_MS),
        ..LumaOptions::default()
    };
    let started = Instant::now();
    let mut first_ts: Option<i64> = None;
    let mut pruner = FramePruner::new(options.dedup_distance, options.max_pruned_gap_ms);
    let mut clock = AirClock::default();
    let mut sampler = options.feature_interval_ms.map(FeatureSampler::new);
    let feature_config = FeatureConfig::reference();
    let decoded = decode_luma_frames(&input.url, &luma_options, |frame| {
        if halt.load(Ordering::Relaxed) {
            return ControlFlow::Break(());
        }
        if paced {
            // A file is replayed as if it aired now: each frame no earlier than its stream time.
            let first = *first_ts.get_or_insert(frame.ts_ms);
            let due = Duration::from_millis(u64::try_from(frame.ts_ms - first).unwrap_or(0));
            let elapsed = started.elapsed();
            if due > elapsed {
                std::thread::sleep(due - elapsed);
            }
        }
        let decoded_ms = now_ms();
        // Pruned and sampled on stream time like a file reference, so bursts (HLS segments, a
        // TCP catch-up) do not change which frames are kept or get features.
        let kept = pruner.frames(&frame.luma, frame.ts_ms, &options.variants, options.min_quality);
        let features = sampler
            .as_mut()
            .is_some_and(|s| s.sample(frame.ts_ms))
            .then(|| LocalFeatures::extract(&frame.luma, &feature_config))
            .filter(|f| !f.is_empty());
        let still = frame.still;
        if kept.is_empty() && features.is_none() && still.is_none() {
            return ControlFlow::Continue(());
        }
        for (time_ms, (kept, features, still)) in
            clock.push(frame.ts_ms, decoded_ms, (kept, features, still))
        {
            if tx.blocking_send(live_batch(time_ms, kept, features, still)).is_err() {
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })
    .map(|_| ());
    for (time_ms, (kept, features, still)) in clock.flush() {
        if tx.blocking_send(live_batch(time_ms, kept, features, still)).is_err() {
            break;
        }
    }
    decoded
}

/// The batch of one decoded frame that aired at `time_ms`.
fn live_batch(
    time_ms: i64,
    kept: Vec<ReferenceFrame>,
    features: Option<LocalFeatures>,
    still: Option<Vec<u8>>,
) -> LiveBatch {
    LiveBatch {
        frames: kept.into_iter().map(|f| ReferenceFrame { ts_ms: time_ms, ..f }).collect(),
        features: features.map(|features| FeatureFrame { ts_ms: time_ms, features }),
        still: still.map(|jpeg| Still { ts_ms: time_ms, jpeg }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_that_arrive_in_bursts_are_dated_when_they_aired() {
        // The feed airs stream time t at 1000 + t and frames reach the decoder 300 ms later,
        // except in bursts. `push` returns (air time, stream time) of the frames it releases.
        let mut clock = AirClock::default();
        let mut push = |ts: i64, decoded: i64| clock.push(ts, decoded, ts);
        // A new connection: FFmpeg probes for 4 s, then the first five frames decode at once.
        for ts in [0, 1_000, 2_000, 3_000] {
            assert!(push(ts, 5_300).is_empty(), "held while the decoder catches up");
        }
        assert!(push(4_000, 5_300).is_empty());
        // The first frame at the pace of real time dates the whole backlog.
        let released = push(5_000, 6_300);
        assert_eq!(
            released,
            [(1_300, 0), (2_300, 1_000), (3_300, 2_000), (4_300, 3_000), (5_300, 4_000)]
        );
        assert_eq!(push(6_000, 7_300), [(6_300, 5_000)]);
        // An HLS segment of four frames arrives at once, 300 ms after its last frame aired.
        assert_eq!(push(7_000, 11_300), [(7_300, 6_000)]);
        for ts in [8_000, 9_000, 10_000] {
            assert!(push(ts, 11_300).is_empty());
        }
        let released = push(11_000, 12_300);
        assert_eq!(released, [(8_300, 7_000), (9_300, 8_000), (10_300, 9_000), (11_300, 10_000)]);
        // A frame held up by the network keeps its air time; the next, on time again, is
        // decoded closer to its air time (catching up), and the one after releases both.
        assert_eq!(push(12_000, 15_000), [(12_300, 11_000)]);
        assert!(push(13_000, 14_300).is_empty());
        assert_eq!(push(14_000, 15_300), [(13_300, 12_000), (14_300, 13_000)]);
        // The sender restarts its clock: what is held keeps the old mapping, a new one starts.
        assert_eq!(push(0, 40_000), [(15_300, 14_000)]);
        assert_eq!(push(1_000, 41_000), [(40_000, 0)]);
        assert_eq!(clock.flush(), [(41_000, 1_000)], "the end of the input releases the rest");
    }

    #[test]
    fn udp_feeds_get_a_read_timeout_that_ffmpeg_honours() {
        let t = Duration::from_secs(5);
        assert_eq!(ffmpeg_input("udp://127.0.0.1:5000", t), "udp://127.0.0.1:5000?timeout=5000000");
        assert_eq!(
            ffmpeg_input("udp://127.0.0.1:5000?fifo_size=100000", t),
            "udp://127.0.0.1:5000?fifo_size=100000&timeout=5000000"
        );
        assert_eq!(ffmpeg_input("rtmp://203.0.113.7/live/x", t), "rtmp://203.0.113.7/live/x");
    }
}
