//! Live feeds in the database: the feed row, its ingest lease and its counters.
//!
//! The lease is one conditional `UPDATE` (free, expired or already ours), atomic on SQLite and
//! PostgreSQL alike, so exactly one process ingests a feed at a time; a holder that dies simply
//! stops renewing and another process takes the feed over once `lease_expires_at` passes.

use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Executor, Row as _};

use crate::domain::FeedStatus;
use crate::store::now_ms;

/// A live feed as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveFeed {
    /// The reference it feeds.
    pub reference_id: String,
    /// The input URL (or file path).
    pub url: String,
    /// Where it is in its life.
    pub status: FeedStatus,
    /// Time zero of the event, Unix ms: live frames' reference times count from it.
    pub origin_ms: i64,
    /// Ingest starts at this time (Unix ms), if set.
    pub starts_at: Option<i64>,
    /// Ingest stops at this time (Unix ms), if set.
    pub ends_at: Option<i64>,
    /// How long live frames stay matchable, in ms.
    pub retention_ms: i64,
    /// Whether the frames become an ordinary reference when the event ends.
    pub archive: bool,
    /// The process holding the ingest lease.
    pub lease_holder: Option<String>,
    /// When the lease runs out unless renewed (Unix ms).
    pub lease_expires_at: Option<i64>,
    /// The holder's last renewal (Unix ms).
    pub heartbeat_at: Option<i64>,
    /// Frames hashed so far.
    pub frames: i64,
    /// Wall-clock time of the last frame hashed (Unix ms).
    pub last_frame_at: Option<i64>,
    /// How many times the input was reopened after dropping.
    pub reconnects: i64,
    /// Why the input last failed.
    pub last_error: Option<String>,
    /// When the feed ended (Unix ms).
    pub ended_at: Option<i64>,
    /// Registration time (Unix ms).
    pub created_at: i64,
}

/// What [`insert`] needs.
#[derive(Debug, Clone)]
pub struct NewFeed<'a> {
    /// The reference row, already inserted in the same transaction.
    pub reference_id: &'a str,
    /// The validated input.
    pub url: &'a str,
    /// Time zero of the event.
    pub origin_ms: i64,
    /// Start of ingest, Unix ms.
    pub starts_at: Option<i64>,
    /// End of ingest, Unix ms.
    pub ends_at: Option<i64>,
    /// Retention of live frames, ms.
    pub retention_ms: i64,
    /// Archive when the event ends.
    pub archive: bool,
}

const COLUMNS: &str = "reference_id, url, status, origin_ms, starts_at, ends_at, retention_ms, \
                       archive, lease_holder, lease_expires_at, heartbeat_at, frames, \
                       last_frame_at, reconnects, last_error, ended_at, created_at";

fn from_row(row: &AnyRow) -> sqlx::Result<LiveFeed> {
    let status: String = row.try_get(2)?;
    let archive: i64 = row.try_get(7)?;
    Ok(LiveFeed {
        reference_id: row.try_get(0)?,
        url: row.try_get(1)?,
        status: status.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
        origin_ms: row.try_get(3)?,
        starts_at: row.try_get(4)?,
        ends_at: row.try_get(5)?,
        retention_ms: row.try_get(6)?,
        archive: archive != 0,
        lease_holder: row.try_get(8)?,
        lease_expires_at: row.try_get(9)?,
        heartbeat_at: row.try_get(10)?,
        frames: row.try_get(11)?,
        last_frame_at: row.try_get(12)?,
        reconnects: row.try_get(13)?,
        last_error: row.try_get(14)?,
        ended_at: row.try_get(15)?,
        created_at: row.try_get(16)?,
    })
}

/// Inserts a feed (status `live`, no lease).
///
/// # Errors
/// Any database error.
pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    new: &NewFeed<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO live_feeds (reference_id, url, status, origin_ms, starts_at, ends_at, \
         retention_ms, archive, frames, reconnects, created_at, updated_at) \
         VALUES ($1, $2, 'live', $3, $4, $5, $6, $7, 0, 0, $8, $8)",
    )
    .bind(new.reference_id)
    .bind(new.url)
    .bind(new.origin_ms)
    .bind(new.starts_at)
    .bind(new.ends_at)
    .bind(new.retention_ms)
    .bind(i64::from(new.archive))
    .bind(now_ms())
    .execute(db)
    .await?;
    Ok(())
}

/// The feed of reference `id`, if it is one.
///
/// # Errors
/// Any database error.
pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<LiveFeed>> {
    let sql = format!("SELECT {COLUMNS} FROM live_feeds WHERE reference_id = $1");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(db).await?;
    row.as_ref().map(from_row).transpose()
}

/// Every feed (ended ones too: their frames stay matchable until they expire).
///
/// # Errors
/// Any database error.
pub async fn list<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<LiveFeed>> {
    let sql = format!("SELECT {COLUMNS} FROM live_feeds ORDER BY reference_id");
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(db).await?;
    rows.iter().map(from_row).collect()
}

/// Takes (or renews) the ingest lease of a feed that has not ended: succeeds when the lease is
/// free, expired, or already `holder`'s. Returns whether `holder` now holds it.
///
/// # Errors
/// Any database error.
pub async fn claim<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    holder: &str,
    now: i64,
    ttl_ms: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE live_feeds SET lease_holder = $2, lease_expires_at = $3, heartbeat_at = $4, \
         updated_at = $4 \
         WHERE reference_id = $1 AND status <> 'ended' \
         AND (lease_holder IS NULL OR lease_holder = $2 OR lease_expires_at < $4)",
    )
    .bind(id)
    .bind(holder)
    .bind(now.saturating_add(ttl_ms))
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What the holder reports with each heartbeat.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    /// The feed's state now.
    pub status: Option<FeedStatus>,
    /// Frames hashed since the last heartbeat.
    pub frames_added: i64,
    /// Time of the newest frame, if any arrived since the last heartbeat.
    pub last_frame_at: Option<i64>,
    /// Reconnects since the last heartbeat.
    pub reconnects_added: i64,
    /// The latest input error, if one happened since the last heartbeat.
    pub error: Option<String>,
}

/// Renews the lease and adds the counters. Returns false when `holder` no longer holds the
/// lease (it expired and another process took the feed, or the feed was deleted or ended):
/// the caller must stop ingesting.
///
/// # Errors
/// Any database error.
pub async fn heartbeat<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    holder: &str,
    now: i64,
    ttl_ms: i64,
    beat: &Heartbeat,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE live_feeds SET lease_expires_at = $3, heartbeat_at = $4, updated_at = $4, \
         status = COALESCE($5, status), frames = frames + $6, \
         last_frame_at = COALESCE($7, last_frame_at), reconnects = reconnects + $8, \
         last_error = COALESCE($9, last_error) \
         WHERE reference_id = $1 AND lease_holder = $2 AND status <> 'ended'",
    )
    .bind(id)
    .bind(holder)
    .bind(now.saturating_add(ttl_ms))
    .bind(now)
    .bind(beat.status.map(FeedStatus::as_str))
    .bind(beat.frames_added)
    .bind(beat.last_frame_at)
    .bind(beat.reconnects_added)
    .bind(beat.error.as_deref())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Gives the lease up (this process is stopping) so another process takes over at once.
///
/// # Errors
/// Any database error.
pub async fn release<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    holder: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE live_feeds SET lease_holder = NULL, lease_expires_at = NULL, updated_at = $3 \
         WHERE reference_id = $1 AND lease_holder = $2",
    )
    .bind(id)
    .bind(holder)
    .bind(now_ms())
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a feed ended and frees its lease. Returns false when it was already ended or gone.
///
/// # Errors
/// Any database error.
pub async fn end<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    now: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE live_feeds SET status = 'ended', ended_at = $2, lease_holder = NULL, \
         lease_expires_at = NULL, updated_at = $2 WHERE reference_id = $1 AND status <> 'ended'",
    )
    .bind(id)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
