//! Streams, their persisted matcher hits and their decisions (matches).

use sqlx::{Any, Executor, Row as _};

use super::now_ms;
use crate::recognition::HitTier;

/// A stream's lifecycle.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    /// Receiving keyframes, nothing decided.
    Live,
    /// Flagged for review (stays flagged when the stream ends: the decision is still open).
    Flagged,
    /// Killed: its keyframes are dropped.
    Killed,
    /// Ended by the platform with nothing decided: its keyframes are dropped.
    Ended,
}

impl StreamStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            StreamStatus::Live => "live",
            StreamStatus::Flagged => "flagged",
            StreamStatus::Killed => "killed",
            StreamStatus::Ended => "ended",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [StreamStatus::Live, StreamStatus::Flagged, StreamStatus::Killed, StreamStatus::Ended]
            .into_iter()
            .find(|v| v.as_str() == s)
    }

    /// Whether keyframes of a stream in this status are still worth recognising.
    pub fn accepts_keyframes(self) -> bool {
        matches!(self, StreamStatus::Live | StreamStatus::Flagged)
    }
}

fn decode_err(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unexpected {what}").into())
}

/// A stream as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The platform's id.
    pub id: String,
    /// The streamer's account, as first seen.
    pub account_id: Option<String>,
    /// Status.
    pub status: StreamStatus,
    /// Why the status last changed.
    pub status_reason: Option<String>,
    /// First keyframe seen (ms since epoch).
    pub created_at: i64,
    /// Last status change.
    pub updated_at: i64,
    /// The latest viewer count the platform sent with a keyframe that hit a reference (or with
    /// the stream's first keyframe).
    pub viewers: Option<i64>,
    /// When the platform ended it (ms since epoch). A flagged or killed stream keeps its
    /// status when it ends, so the decision stays visible; this says it is off the air.
    pub ended_at: Option<i64>,
    /// Stream time of its latest keyframe with a hit, if any.
    pub last_hit_ts_ms: Option<i64>,
    /// Stream time of the first keyframe seen of it (none for a stream recorded otherwise).
    pub first_ts_ms: Option<i64>,
}

const STREAM_COLUMNS: &str = "id, account_id, status, status_reason, created_at, updated_at, \
                              viewers, ended_at, last_hit_ts_ms, first_ts_ms";

fn stream_from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<Stream> {
    let status: String = row.try_get(2)?;
    Ok(Stream {
        id: row.try_get(0)?,
        account_id: row.try_get(1)?,
        status: StreamStatus::parse(&status).ok_or_else(|| decode_err("stream status"))?,
        status_reason: row.try_get(3)?,
        created_at: row.try_get(4)?,
        updated_at: row.try_get(5)?,
        viewers: row.try_get(6)?,
        ended_at: row.try_get(7)?,
        last_hit_ts_ms: row.try_get(8)?,
        first_ts_ms: row.try_get(9)?,
    })
}

/// Records a stream the first time one of its keyframes (at stream time `first_ts_ms`) or its
/// end is seen; a no-op afterwards.
///
/// # Errors
/// Any database error.
pub async fn ensure<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    account_id: Option<&str>,
    viewers: Option<i64>,
    first_ts_ms: Option<i64>,
) -> sqlx::Result<()> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO streams (id, account_id, status, created_at, updated_at, viewers, \
         first_ts_ms) VALUES ($1, $2, 'live', $3, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(account_id)
    .bind(now)
    .bind(viewers)
    .bind(first_ts_ms)
    .execute(db)
    .await?;
    Ok(())
}

/// Looks a stream up.
///
/// # Errors
/// Any database error.
pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<Stream>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {STREAM_COLUMNS} FROM streams WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(stream_from_row).transpose()
}

/// Lists streams, optionally by status, newest first, at most `limit`.
///
/// # Errors
/// Any database error.
pub async fn list<'e>(
    db: impl Executor<'e, Database = Any>,
    status: Option<StreamStatus>,
    limit: i64,
) -> sqlx::Result<Vec<Stream>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {STREAM_COLUMNS} FROM streams WHERE ($1 IS NULL OR status = $1) \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    )))
    .bind(status.map(StreamStatus::as_str))
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter().map(stream_from_row).collect()
}

/// Records that the platform ended a stream: `ended_at` is set (once), and a stream with nothing
/// decided (`live`) becomes `ended`. A flagged or killed stream keeps its status, so
/// `?status=flagged` still lists it while its case is open. Returns whether anything changed.
///
/// # Errors
/// Any database error.
pub async fn end<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    reason: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE streams SET ended_at = $1, \
         status = CASE WHEN status = 'live' THEN 'ended' ELSE status END, \
         status_reason = CASE WHEN status = 'live' THEN $2 ELSE status_reason END, \
         updated_at = $1 WHERE id = $3 AND ended_at IS NULL AND status <> 'ended'",
    )
    .bind(now_ms())
    .bind(reason)
    .bind(id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Moves a stream to `to` if its status is one of `from`. Returns whether it changed. A stream
/// that has ended and is moved to `live` (a restore, a dismissed case) becomes `ended`: it is
/// not on the air any more.
///
/// # Errors
/// Any database error.
pub async fn transition<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    from: &[StreamStatus],
    to: StreamStatus,
    reason: &str,
) -> sqlx::Result<bool> {
    // At most four statuses: spell them out rather than build an IN list per database.
    let mut allowed = from.iter().map(|s| s.as_str()).collect::<Vec<_>>();
    allowed.resize(4, "");
    let done = sqlx::query(
        "UPDATE streams SET status = CASE WHEN $1 = 'live' AND ended_at IS NOT NULL \
         THEN 'ended' ELSE $1 END, status_reason = $2, updated_at = $3 \
         WHERE id = $4 AND status IN ($5, $6, $7, $8)",
    )
    .bind(to.as_str())
    .bind(reason)
    .bind(now_ms())
    .bind(id)
    .bind(allowed[0])
    .bind(allowed[1])
    .bind(allowed[2])
    .bind(allowed[3])
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// One index hit of one keyframe of a stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoredHit {
    /// Stream time of the keyframe.
    pub stream_ts_ms: i64,
    /// Reference time of the matching frame.
    pub reference_ts_ms: i64,
    /// Hamming distance.
    pub distance: u32,
    /// Weight (frames that match too much weigh less).
    pub weight: f32,
    /// The tier that produced it (`None` for hits stored before tiers were recorded).
    pub tier: Option<HitTier>,
}

/// A decision on a (stream, reference).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct StreamMatch {
    /// Its id.
    #[serde(skip)]
    pub id: String,
    /// The reference matched.
    pub reference_id: String,
    /// The action taken (monitor, flag, kill).
    pub action: String,
    /// Reference time minus stream time.
    pub offset_ms: i64,
    /// Seconds of consistent evidence at the decision.
    pub matched_seconds: f64,
    /// Keyframes in the evidence.
    pub matched_keyframes: i64,
    /// For a live reference: how far the re-stream trails the feed (capture time minus air
    /// time, ms). `None` for file references.
    pub delay_ms: Option<i64>,
    /// Stream time of the first matching keyframe.
    pub first_match_ts_ms: i64,
    /// Stream time at which the evidence sufficed: its last counted keyframe. Handled in
    /// order, that is the keyframe that decided; when a stream's keyframes are handled out of
    /// order (several consumers), an earlier keyframe can complete the evidence, and the
    /// decision still carries the stream time the evidence reaches.
    pub decided_at_ts_ms: i64,
    /// When it was decided (ms since epoch).
    pub created_at: i64,
}

/// Records a decision. Fails with a unique violation when the pair was already decided: that
/// is how a decision happens at most once across workers and redeliveries.
///
/// # Errors
/// A unique violation as above; any database error.
pub async fn insert_match<'e>(
    db: impl Executor<'e, Database = Any>,
    stream_id: &str,
    m: &StreamMatch,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO stream_matches (id, stream_id, reference_id, action, offset_ms, matched_ms, \
         matched_keyframes, first_match_ts_ms, decided_at_ts_ms, created_at, delay_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&m.id)
    .bind(stream_id)
    .bind(&m.reference_id)
    .bind(&m.action)
    .bind(m.offset_ms)
    .bind((m.matched_seconds * 1000.0).round() as i64)
    .bind(m.matched_keyframes)
    .bind(m.first_match_ts_ms)
    .bind(m.decided_at_ts_ms)
    .bind(m.created_at)
    .bind(m.delay_ms)
    .execute(db)
    .await?;
    Ok(())
}

/// The references already decided on a stream.
///
/// # Errors
/// Any database error.
pub async fn matches<'e>(
    db: impl Executor<'e, Database = Any>,
    stream_id: &str,
) -> sqlx::Result<Vec<StreamMatch>> {
    let rows = sqlx::query(
        "SELECT id, reference_id, action, offset_ms, matched_ms, matched_keyframes, \
         first_match_ts_ms, decided_at_ts_ms, created_at, delay_ms FROM stream_matches \
         WHERE stream_id = $1 ORDER BY created_at, id",
    )
    .bind(stream_id)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let matched_ms: i64 = r.try_get(4)?;
            Ok(StreamMatch {
                id: r.try_get(0)?,
                reference_id: r.try_get(1)?,
                action: r.try_get(2)?,
                offset_ms: r.try_get(3)?,
                matched_seconds: matched_ms as f64 / 1000.0,
                matched_keyframes: r.try_get(5)?,
                first_match_ts_ms: r.try_get(6)?,
                decided_at_ts_ms: r.try_get(7)?,
                created_at: r.try_get(8)?,
                delay_ms: r.try_get(9)?,
            })
        })
        .collect()
}

/// One index hit of one keyframe, with the reference it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceHit {
    /// The reference's id.
    pub reference_id: String,
    /// The hit.
    pub hit: StoredHit,
}

/// Rows per multi-row INSERT: 8 parameters each stays far below SQLite's parameter limit.
const HITS_PER_INSERT: usize = 500;

/// Stores every hit of one keyframe (all references) and bumps the stream's hit version, in
/// one transaction; returns the new version. A redelivered keyframe adds no hits (the primary
/// key) but still bumps the version, which only costs the next keyframe a replay.
///
/// # Errors
/// Any database error.
pub async fn record_hits(
    pool: &sqlx::AnyPool,
    stream_id: &str,
    viewers: Option<i64>,
    hits: &[ReferenceHit],
) -> sqlx::Result<i64> {
    let now = now_ms();
    let mut tx = pool.begin().await?;
    for chunk in hits.chunks(HITS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO stream_hits (stream_id, reference_id, stream_ts_ms, reference_ts_ms, \
             distance, weight_micros, created_at, tier) VALUES ",
        );
        for i in 0..chunk.len() {
            let b = i * 8;
            if i > 0 {
                sql.push_str(", ");
            }
            let params: Vec<String> = (1..=8).map(|k| format!("${}", b + k)).collect();
            sql.push_str(&format!("({})", params.join(", ")));
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for h in chunk {
            q = q
                .bind(stream_id)
                .bind(h.reference_id.as_str())
                .bind(h.hit.stream_ts_ms)
                .bind(h.hit.reference_ts_ms)
                .bind(i64::from(h.hit.distance))
                .bind(weight_to_micros(h.hit.weight))
                .bind(now)
                .bind(h.hit.tier.map(HitTier::as_str));
        }
        q.execute(&mut *tx).await?;
    }
    // The viewer count rides on this update: keyframes without hits write nothing, and only
    // streams with hits can reach the review queue that orders by it.
    // So is the stream time of its latest hit, which schedules the geometric tier
    // (`recognition::FeatureSchedule`) in whichever process takes the next keyframe.
    let latest_hit_ms = hits.iter().map(|h| h.hit.stream_ts_ms).max();
    let row = sqlx::query(
        "UPDATE streams SET hit_version = hit_version + 1, viewers = COALESCE($2, viewers), \
         last_hit_ts_ms = CASE WHEN last_hit_ts_ms IS NULL OR last_hit_ts_ms < $3 THEN $3 \
         ELSE last_hit_ts_ms END \
         WHERE id = $1 RETURNING hit_version",
    )
    .bind(stream_id)
    .bind(viewers)
    .bind(latest_hit_ms)
    .fetch_one(&mut *tx)
    .await?;
    let version: i64 = row.try_get(0)?;
    tx.commit().await?;
    Ok(version)
}

fn weight_to_micros(weight: f32) -> i64 {
    (f64::from(weight) * 1e6).round() as i64
}

/// A weight as it comes back from the database (stored in millionths). The worker feeds its
/// in-memory matcher the same value, so a replay and an incremental update agree exactly.
pub fn stored_weight(weight: f32) -> f32 {
    (weight_to_micros(weight) as f64 / 1e6) as f32
}

/// Every hit of a stream (all references) with stream time in `[from_ts_ms, to_ts_ms]`, in
/// stream time order (then reference, then reference time, so a replay is deterministic).
///
/// # Errors
/// Any database error.
pub async fn stream_hits<'e>(
    db: impl Executor<'e, Database = Any>,
    stream_id: &str,
    from_ts_ms: i64,
    to_ts_ms: i64,
) -> sqlx::Result<Vec<ReferenceHit>> {
    let rows = sqlx::query(
        "SELECT reference_id, stream_ts_ms, reference_ts_ms, distance, weight_micros, tier \
         FROM stream_hits WHERE stream_id = $1 AND stream_ts_ms BETWEEN $2 AND $3 \
         ORDER BY stream_ts_ms, reference_id, reference_ts_ms",
    )
    .bind(stream_id)
    .bind(from_ts_ms)
    .bind(to_ts_ms)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let distance: i64 = r.try_get(3)?;
            let weight: i64 = r.try_get(4)?;
            let tier: Option<String> = r.try_get(5)?;
            Ok(ReferenceHit {
                reference_id: r.try_get(0)?,
                hit: StoredHit {
                    stream_ts_ms: r.try_get(1)?,
                    reference_ts_ms: r.try_get(2)?,
                    distance: u32::try_from(distance).map_err(|_| decode_err("distance"))?,
                    weight: (weight as f64 / 1e6) as f32,
                    tier: tier.as_deref().and_then(HitTier::parse),
                },
            })
        })
        .collect()
}
