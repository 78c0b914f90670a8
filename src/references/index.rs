//! Keeps this process's in-memory reference index in step with the database.
//!
//! The database says which references are matchable (`ready` or `live`) and how many frames
//! each has. Every process (API, workers) reconciles its index with that list on a short
//! interval and whenever a job in this process finishes, so a reference turning ready becomes
//! matchable everywhere within about one interval, and a deleted one disappears everywhere,
//! without any index rebuild. Reconciling against the full list (ids and counts only) rather
//! than an event log means a missed notification can never leave an index wrong for long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::recognition::{FeatureFrame, ReferenceFrame, SharedLibrary};
use crate::store::Store;
use crate::store::references;

/// The index plus what this process believes it holds.
pub struct IndexSync {
    library: SharedLibrary,
    /// Reference id -> frame count loaded.
    loaded: Mutex<HashMap<String, i64>>,
    wake: Notify,
    /// Held by a reconcile from its read of the database to its last change of the index, and
    /// by a job of this process from before it marks a reference ready until that commits
    /// ([`IndexSync::exclusive`]): otherwise a reconcile that read the list just before the
    /// commit drops the reference the job has just added, and nothing matches it until the
    /// next reconcile.
    updates: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for IndexSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexSync").field("references", &self.len()).finish_non_exhaustive()
    }
}

impl IndexSync {
    /// Wraps an (empty) library.
    pub fn new(library: SharedLibrary) -> Self {
        Self {
            library,
            loaded: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            updates: tokio::sync::Mutex::new(()),
        }
    }

    /// Keeps reconciles out until the guard drops: a job holds it across adding a reference and
    /// committing it as ready.
    pub async fn exclusive(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.updates.lock().await
    }

    /// The number of references loaded.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no reference is loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is loaded.
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // A panic while holding this lock leaves a plain map behind, still consistent.
        self.loaded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads a reference's frames and feature frames now (a job in this process just
    /// finished).
    pub fn add(&self, id: &str, frames: &[ReferenceFrame], features: &[FeatureFrame]) {
        // A poisoned lock means a panic mid-update elsewhere; the library is still usable
        // (at worst one reference is partly indexed and is replaced on the next sync).
        let mut library = self.library.write().unwrap_or_else(PoisonError::into_inner);
        if let Err(err) = library.insert_reference(id, frames, features) {
            tracing::error!(reference_id = id, error = %format!("{err:#}"), "could not index reference");
        }
        drop(library);
        self.lock().insert(id.to_owned(), i64::try_from(frames.len()).unwrap_or(i64::MAX));
        self.publish_gauges();
    }

    /// Drops a reference now (it was deleted in this process).
    pub fn remove(&self, id: &str) {
        self.library.write().unwrap_or_else(PoisonError::into_inner).remove_reference(id);
        self.lock().remove(id);
        self.publish_gauges();
    }

    /// Asks the sync loop to reconcile right away.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// Brings the index in line with the database once.
    ///
    /// # Errors
    /// A database error; the index keeps what it had.
    pub async fn reconcile(&self, store: &Store) -> anyhow::Result<()> {
        let _updates = self.updates.lock().await;
        let wanted: HashMap<String, i64> =
            references::list_indexable(store.pool()).await?.into_iter().collect();
        let stale: Vec<String> = {
            let loaded = self.lock();
            loaded.keys().filter(|id| !wanted.contains_key(*id)).cloned().collect()
        };
        let mut changed = !stale.is_empty();
        for id in stale {
            self.remove(&id);
        }
        for (id, frames) in wanted {
            if self.lock().get(&id) == Some(&frames) {
                continue;
            }
            let stored = references::load_frames(store.pool(), &id).await?;
            // Re-check: the reference may have been deleted while its frames were loading.
            if stored.is_empty() && frames > 0 {
                continue;
            }
            // Stored in the transaction that stored the frames, so present whenever they are
            // (empty for hash imports, live archives and references hashed before features).
            let features = references::load_features(store.pool(), &id).await?;
            self.add(&id, &stored, &features);
            changed = true;
        }
        if changed {
            // A start-up load or another process's uploads: one bulk change.
            self.library.write().unwrap_or_else(PoisonError::into_inner).compact();
        }
        Ok(())
    }

    fn publish_gauges(&self) {
        let (count, frames) = {
            let loaded = self.lock();
            (loaded.len(), loaded.values().sum::<i64>())
        };
        #[allow(clippy::cast_precision_loss)] // counts stay far below 2^52
        {
            metrics::gauge!("offside_index_references").set(count as f64);
            metrics::gauge!("offside_index_frames").set(frames as f64);
        }
    }

    /// Reconciles every `interval` (or when poked) until `cancel` fires.
    pub async fn run(self: Arc<Self>, store: Store, interval: Duration, cancel: CancellationToken) {
        loop {
            if let Err(err) = self.reconcile(&store).await {
                tracing::warn!(error = %format!("{err:#}"), "reference index sync failed; retrying");
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
                () = self.wake.notified() => {}
            }
        }
    }
}
