//! Reference jobs: turn an uploaded file into stored, indexed frames.
//!
//! An upload is written under the data directory and its reference row is `processing` with the
//! file's path. A job hashes the file on a blocking thread (the recognition core is CPU-bound),
//! writes progress and the running frame count to the row about twice a second, then in one
//! transaction stores the frames and marks the reference `ready` (or `failed` with the reason),
//! loads the frames into this process's index, and deletes the file. Because the file is only
//! deleted after the row leaves `processing`, a job interrupted by a restart is simply re-run:
//! at start every `processing` reference is queued again.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::engine::RecognitionHasher;
use super::index::IndexSync;
use crate::domain::{ReferenceSource, ReferenceStatus};
use crate::recognition::ReferenceHashes;
use crate::store::Store;
use crate::store::references;
use crate::store::stills;

/// How far a running job is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobProgress {
    /// Fraction of the input done, 0.0–1.0.
    pub fraction: f64,
    /// Frames kept so far.
    pub frames: u64,
}

/// The handle the HTTP layer uses to queue jobs.
#[derive(Clone, Debug)]
pub struct Jobs {
    tx: mpsc::UnboundedSender<String>,
}

impl Jobs {
    /// Queues the job of reference `id`. Jobs queued after shutdown began are picked up at the
    /// next start (the reference is still `processing`).
    pub fn enqueue(&self, id: &str) {
        if self.tx.send(id.to_owned()).is_err() {
            tracing::info!(reference_id = id, "job runner stopped; the job runs at next start");
        }
    }
}

/// Runs queued jobs.
pub struct JobRunner {
    store: Store,
    index: Arc<IndexSync>,
    hasher: Arc<RecognitionHasher>,
    rx: Mutex<mpsc::UnboundedReceiver<String>>,
}

/// Creates the queue: the handle for producers and the runner that consumes it.
pub fn channel(
    store: Store,
    index: Arc<IndexSync>,
    hasher: Arc<RecognitionHasher>,
) -> (Jobs, Arc<JobRunner>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Jobs { tx }, Arc::new(JobRunner { store, index, hasher, rx: Mutex::new(rx) }))
}

/// Queues every reference left `processing` by an earlier run.
///
/// # Errors
/// A database error.
pub async fn resume_interrupted(store: &Store, jobs: &Jobs) -> anyhow::Result<usize> {
    let pending = references::list_processing(store.pool()).await?;
    for reference in &pending {
        tracing::info!(reference_id = %reference.id, "resuming interrupted reference job");
        jobs.enqueue(&reference.id);
    }
    Ok(pending.len())
}

impl JobRunner {
    /// Takes jobs one at a time until `cancel` fires. Run several of these for parallel jobs.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => break,
                id = async { self.rx.lock().await.recv().await } => id,
            };
            let Some(id) = next else { break };
            metrics::gauge!("offside_reference_jobs_running").increment(1.0);
            let outcome = self.process(&id, &cancel).await;
            metrics::gauge!("offside_reference_jobs_running").decrement(1.0);
            match outcome {
                Ok(outcome) => {
                    metrics::counter!("offside_reference_jobs_total", "outcome" => outcome.as_str()).increment(1);
                }
                Err(err) => {
                    metrics::counter!("offside_reference_jobs_total", "outcome" => "error")
                        .increment(1);
                    tracing::error!(reference_id = %id, error = %format!("{err:#}"), "reference job could not record its result; it runs again at next start");
                }
            }
        }
    }

    async fn process(&self, id: &str, cancel: &CancellationToken) -> anyhow::Result<Outcome> {
        let Some(reference) = references::get(self.store.pool(), id).await? else {
            return Ok(Outcome::Gone);
        };
        if reference.status != ReferenceStatus::Processing {
            return Ok(Outcome::Gone);
        }
        let Some(path) = reference.upload_path.clone().map(PathBuf::from) else {
            references::mark_failed(
                self.store.pool(),
                id,
                "the upload of this reference is missing",
            )
            .await?;
            return Ok(Outcome::Failed);
        };
        if !path.exists() {
            references::mark_failed(
                self.store.pool(),
                id,
                "the uploaded file is gone (was the data directory cleared?)",
            )
            .await?;
            return Ok(Outcome::Failed);
        }
        tracing::info!(reference_id = id, source = %reference.source, "reference job started");

        let result = self.hash(id, &path, reference.source, cancel).await;
        let outcome = match result {
            HashResult::Cancelled => return Ok(Outcome::Interrupted),
            HashResult::Failed(reason) => {
                tracing::info!(reference_id = id, reason = %reason, "reference job failed");
                references::mark_failed(self.store.pool(), id, &reason).await?;
                Outcome::Failed
            }
            HashResult::Done(hashed) if hashed.frames.is_empty() => {
                references::mark_failed(
                    self.store.pool(),
                    id,
                    "no usable frames: the file has no decodable picture",
                )
                .await?;
                Outcome::Failed
            }
            HashResult::Done(hashed) => {
                if self.store_frames(id, &hashed).await? {
                    tracing::info!(
                        reference_id = id,
                        frames = hashed.frames.len(),
                        feature_frames = hashed.features.len(),
                        "reference ready"
                    );
                    Outcome::Ready
                } else {
                    Outcome::Gone
                }
            }
        };
        remove_upload(&path).await;
        Ok(outcome)
    }

    /// Stores the frames and feature frames and marks the reference ready in one transaction;
    /// false when the reference was deleted while its job ran.
    ///
    /// The reference joins this process's index before that transaction commits, so a client
    /// that reads `ready` finds it matched by the next keyframe this process takes (other
    /// processes load it on their next sync). A failed commit takes it out again. This
    /// process's reconciles wait meanwhile ([`IndexSync::exclusive`]).
    async fn store_frames(&self, id: &str, hashed: &ReferenceHashes) -> anyhow::Result<bool> {
        // No reconcile of this process runs between the add and the commit below.
        let _index = self.index.exclusive().await;
        let mut tx = self.store.pool().begin().await?;
        if references::get(&mut *tx, id).await?.is_none() {
            return Ok(false);
        }
        references::clear_frames(&mut tx, id).await?;
        references::append_features(&mut tx, id, &hashed.features).await?;
        references::append_frames(&mut tx, id, &hashed.frames).await?;
        stills::insert_reference_stills(&mut tx, id, &hashed.stills).await?;
        let still_there = references::mark_ready(&mut *tx, id).await?;
        if still_there {
            self.index.add(id, &hashed.frames, &hashed.features);
        }
        let committed = tx.commit().await.context("committing reference frames");
        if committed.is_err() && still_there {
            self.index.remove(id);
        }
        committed?;
        Ok(still_there)
    }

    async fn hash(
        &self,
        id: &str,
        path: &Path,
        source: ReferenceSource,
        cancel: &CancellationToken,
    ) -> HashResult {
        // The blocking hasher reports into these; an async task copies them to the database.
        let permille = Arc::new(AtomicU64::new(0));
        let frames = Arc::new(AtomicU64::new(0));
        let reporter_stop = CancellationToken::new();
        let reporter = tokio::spawn(report_progress(
            self.store.clone(),
            id.to_owned(),
            Arc::clone(&permille),
            Arc::clone(&frames),
            reporter_stop.clone(),
        ));

        let hasher = Arc::clone(&self.hasher);
        let path_owned = path.to_owned();
        let cancel_blocking = cancel.clone();
        let (permille_w, frames_w) = (Arc::clone(&permille), Arc::clone(&frames));
        let joined = tokio::task::spawn_blocking(move || {
            let mut progress = |p: JobProgress| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                // clamped to 0..=1000
                permille_w
                    .store((p.fraction.clamp(0.0, 1.0) * 1000.0).round() as u64, Ordering::Relaxed);
                frames_w.store(p.frames, Ordering::Relaxed);
                if cancel_blocking.is_cancelled() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            hasher.hash_file(&path_owned, source, &mut progress)
        })
        .await;

        reporter_stop.cancel();
        let _ = reporter.await;
        if cancel.is_cancelled() {
            return HashResult::Cancelled;
        }
        match joined {
            Ok(Ok(frames)) => HashResult::Done(frames),
            Ok(Err(err)) => {
                tracing::info!(reference_id = id, path = %path.display(), error = %format!("{err:#}"), "reference file cannot be hashed");
                HashResult::Failed(reason_for_owner(&err, path))
            }
            Err(join) => {
                tracing::error!(reference_id = id, error = %join, "reference hasher panicked");
                HashResult::Failed("internal error while hashing the file".to_owned())
            }
        }
    }
}

/// Why a reference file cannot be hashed, in words for the rights holder who uploaded it (the
/// reference's `error`): what is wrong with the file, never where this server keeps it nor
/// FFmpeg's internals. The full error, path included, goes to the log for the operator.
fn reason_for_owner(err: &anyhow::Error, path: &Path) -> String {
    use crate::media::MediaError;
    let media = err.chain().find_map(|e| e.downcast_ref::<MediaError>());
    let reason = match media {
        Some(MediaError::Open { .. }) => {
            "the file cannot be opened as a video: its format is unknown or it is damaged"
                .to_owned()
        }
        Some(MediaError::NoVideoStream { .. }) => "the file has no video track".to_owned(),
        Some(MediaError::Codec { codec, .. }) => {
            format!("the video is encoded with {codec}, which cannot be decoded")
        }
        Some(MediaError::PixelFormat { format, progress, .. }) => {
            format!("the video's pixel format {format} is not supported ({progress})")
        }
        Some(MediaError::Decode { progress, .. }) => {
            format!("the video is damaged: decoding stopped after {progress}")
        }
        Some(MediaError::Truncated { progress, expected_ms, .. }) => format!(
            "the file is truncated: it ends after {progress}, but should last {:.1} s",
            *expected_ms as f64 / 1000.0
        ),
        Some(MediaError::NoFrames { .. }) => {
            "the file contains no picture that can be decoded".to_owned()
        }
        // The service's own messages (image too large or too flat, no detailed frame) are
        // written for the owner already; only a path could slip in through a context.
        _ => format!("{err:#}"),
    };
    let shown = path.display().to_string();
    if shown.is_empty() { reason } else { reason.replace(&shown, "the file") }
}

async fn report_progress(
    store: Store,
    id: String,
    permille: Arc<AtomicU64>,
    frames: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut last = (u64::MAX, u64::MAX);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let now = (permille.load(Ordering::Relaxed), frames.load(Ordering::Relaxed));
        if now == last {
            continue;
        }
        last = now;
        let (p, f) =
            (i64::try_from(now.0).unwrap_or(1000), i64::try_from(now.1).unwrap_or(i64::MAX));
        if let Err(err) = references::update_progress(store.pool(), &id, p, f).await {
            tracing::warn!(reference_id = %id, error = %err, "could not record job progress");
        }
    }
}

async fn remove_upload(path: &Path) {
    if let Err(err) = tokio::fs::remove_file(path).await
        && err.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %err, "could not delete a processed upload");
    }
}

enum HashResult {
    Done(ReferenceHashes),
    Failed(String),
    Cancelled,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ready,
    Failed,
    Gone,
    Interrupted,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Gone => "deleted",
            Self::Interrupted => "interrupted",
        }
    }
}
