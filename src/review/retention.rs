//! The stills retention: stream stills are deleted after [`Config::stills_retention_days`]
//! (the stream's hits and case keep their numbers), and a live feed's stills after the feed's
//! own retention unless it is archived. One loop in every `serve` process; deleting is
//! idempotent, so several processes doing it at once is harmless.
//!
//! [`Config::stills_retention_days`]: crate::config::Config::stills_retention_days

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::live::store as feeds;
use crate::store::{Store, now_ms, stills};

/// How often the retention runs (and once at start).
pub const EVERY: Duration = Duration::from_secs(3600);

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Stream stills past the retention.
    pub stream_stills: u64,
    /// Live feeds' stills past their feed's retention.
    pub feed_stills: u64,
}

/// One pass at `now_ms`: deletes stream stills stored before `now - retention_ms`, and the
/// stills of every live feed that is not archived that aired before `now - its retention`.
///
/// # Errors
/// Any database error.
pub async fn prune(store: &Store, now_ms: i64, retention_ms: i64) -> anyhow::Result<Pruned> {
    let pool = store.pool();
    let stream_stills = stills::prune_stream_stills(pool, now_ms - retention_ms).await?;
    let mut feed_stills = 0;
    for feed in feeds::list(pool).await?.into_iter().filter(|f| !f.archive) {
        // Still times are event times: ms after the feed's origin.
        let before = now_ms - feed.retention_ms - feed.origin_ms;
        feed_stills += stills::prune_reference_stills(pool, &feed.reference_id, before).await?;
    }
    Ok(Pruned { stream_stills, feed_stills })
}

/// Runs [`prune`] every [`EVERY`] until `cancel` fires.
pub async fn run(store: Store, retention: Duration, cancel: CancellationToken) {
    let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        match prune(&store, now_ms(), retention_ms).await {
            Ok(p) => {
                if p != Pruned::default() {
                    tracing::info!(
                        stream_stills = p.stream_stills,
                        feed_stills = p.feed_stills,
                        "stills past their retention deleted"
                    );
                }
            }
            Err(err) => {
                tracing::warn!(error = %format!("{err:#}"), "stills retention failed; retrying later")
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}
