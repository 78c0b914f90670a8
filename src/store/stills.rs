//! Stills: the pictures behind the evidence (see [`crate::media::Still`]).
//!
//! Kept in the database, not on a local disk, because every process of a scale-out deployment
//! writes or reads them: reference jobs and live ingests on one machine, workers on others,
//! the API and console on yet another. At 8-20 KB a still that is a few dozen MB per reference
//! hour, which either database holds without trouble.

use sqlx::{Any, AnyConnection, Executor, Row as _};

use super::now_ms;
use crate::media::Still;

/// How far from a matched reference time a reference still may be and still stand for it:
/// stills are kept one per second, so the nearest is at most half a second away.
pub const REFERENCE_STILL_TOLERANCE_MS: i64 = 1000;

/// Rows per multi-row INSERT (4 parameters each).
const STILLS_PER_INSERT: usize = 100;

async fn insert(
    conn: &mut AnyConnection,
    table: &'static str,
    key: &'static str,
    owner: &str,
    stills: &[Still],
) -> sqlx::Result<()> {
    let now = now_ms();
    for chunk in stills.chunks(STILLS_PER_INSERT) {
        let mut sql = format!("INSERT INTO {table} ({key}, ts_ms, image, created_at) VALUES ");
        for i in 0..chunk.len() {
            let b = i * 4;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
        }
        // A redelivered keyframe or a re-run job keeps the still it already has.
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for s in chunk {
            q = q.bind(owner).bind(s.ts_ms).bind(s.jpeg.as_slice()).bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Stores stills of a reference (reference times). Deleting the reference deletes them.
///
/// # Errors
/// Any database error (a foreign-key violation when the reference was deleted meanwhile).
pub async fn insert_reference_stills(
    conn: &mut AnyConnection,
    reference_id: &str,
    stills: &[Still],
) -> sqlx::Result<()> {
    insert(conn, "reference_stills", "reference_id", reference_id, stills).await
}

/// Stores a still of a stream keyframe (stream time).
///
/// # Errors
/// Any database error.
pub async fn insert_stream_still(
    conn: &mut AnyConnection,
    stream_id: &str,
    still: &Still,
) -> sqlx::Result<()> {
    insert(conn, "stream_stills", "stream_id", stream_id, std::slice::from_ref(still)).await
}

/// The reference still nearest to `ts_ms`, if one was kept within
/// [`REFERENCE_STILL_TOLERANCE_MS`] of it: stills are one per second, a matched moment is
/// anywhere in between.
///
/// # Errors
/// Any database error.
pub async fn reference_still<'e>(
    db: impl Executor<'e, Database = Any>,
    reference_id: &str,
    ts_ms: i64,
) -> sqlx::Result<Option<Vec<u8>>> {
    let tolerance_ms = REFERENCE_STILL_TOLERANCE_MS;
    // Both neighbours come from the primary key's range; the closer one wins.
    let row = sqlx::query(
        "SELECT image FROM reference_stills WHERE reference_id = $1 AND ts_ms BETWEEN $2 AND $3 \
         ORDER BY ABS(ts_ms - $4), ts_ms LIMIT 1",
    )
    .bind(reference_id)
    .bind(ts_ms.saturating_sub(tolerance_ms))
    .bind(ts_ms.saturating_add(tolerance_ms))
    .bind(ts_ms)
    .fetch_optional(db)
    .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// The still of a stream's keyframe at exactly `ts_ms`.
///
/// # Errors
/// Any database error.
pub async fn stream_still<'e>(
    db: impl Executor<'e, Database = Any>,
    stream_id: &str,
    ts_ms: i64,
) -> sqlx::Result<Option<Vec<u8>>> {
    let row = sqlx::query("SELECT image FROM stream_stills WHERE stream_id = $1 AND ts_ms = $2")
        .bind(stream_id)
        .bind(ts_ms)
        .fetch_optional(db)
        .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// Stream times of a stream's kept stills, in order.
///
/// # Errors
/// Any database error.
pub async fn stream_still_times<'e>(
    db: impl Executor<'e, Database = Any>,
    stream_id: &str,
) -> sqlx::Result<Vec<i64>> {
    let rows = sqlx::query("SELECT ts_ms FROM stream_stills WHERE stream_id = $1 ORDER BY ts_ms")
        .bind(stream_id)
        .fetch_all(db)
        .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Reference times of a reference's stills, in order.
///
/// # Errors
/// Any database error.
pub async fn reference_still_times<'e>(
    db: impl Executor<'e, Database = Any>,
    reference_id: &str,
) -> sqlx::Result<Vec<i64>> {
    let rows =
        sqlx::query("SELECT ts_ms FROM reference_stills WHERE reference_id = $1 ORDER BY ts_ms")
            .bind(reference_id)
            .fetch_all(db)
            .await?;
    rows.iter().map(|r| r.try_get(0)).collect()
}

/// Removes a reference's stills older than `before_ts_ms` (reference time): a live feed's, past
/// its retention. Returns how many were removed.
///
/// # Errors
/// Any database error.
pub async fn prune_reference_stills<'e>(
    db: impl Executor<'e, Database = Any>,
    reference_id: &str,
    before_ts_ms: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM reference_stills WHERE reference_id = $1 AND ts_ms < $2")
        .bind(reference_id)
        .bind(before_ts_ms)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Removes every stream still stored before `before_ms` (Unix ms): the stills retention.
/// Returns how many were removed.
///
/// # Errors
/// Any database error.
pub async fn prune_stream_stills<'e>(
    db: impl Executor<'e, Database = Any>,
    before_ms: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query("DELETE FROM stream_stills WHERE created_at < $1")
        .bind(before_ms)
        .execute(db)
        .await?;
    Ok(done.rows_affected())
}

/// Count and bytes of a reference's stills, for the storage figures.
///
/// # Errors
/// Any database error.
pub async fn reference_still_bytes<'e>(
    db: impl Executor<'e, Database = Any>,
    reference_id: &str,
) -> sqlx::Result<(i64, i64)> {
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(image)), 0) FROM reference_stills \
         WHERE reference_id = $1",
    )
    .bind(reference_id)
    .fetch_one(db)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Count and bytes of a stream's stills.
///
/// # Errors
/// Any database error.
pub async fn stream_still_bytes<'e>(
    db: impl Executor<'e, Database = Any>,
    stream_id: &str,
) -> sqlx::Result<(i64, i64)> {
    let row = sqlx::query(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(image)), 0) FROM stream_stills WHERE stream_id = $1",
    )
    .bind(stream_id)
    .fetch_one(db)
    .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}
