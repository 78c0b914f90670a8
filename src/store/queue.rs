//! The review queue: open cases with what a reviewer needs to triage them at a glance (the
//! stream's account and reach, the reference's title and owner, how long it matched, the
//! deciding evidence pair), one page at a time.
//!
//! Disputed cases come first, then the rest, oldest first or by reach (viewers, most first).
//! Pages are keyset-paginated on the sort key (a [`QueueCursor`] names the last row seen), never
//! by OFFSET, so the thousandth page costs what the first does however many cases are open:
//! the sort runs over the open cases only (`cases_queue_idx`), and the per-row lookups (the
//! deciding pair and whether its still was kept) run on the page's rows only.

use sqlx::{Any, AssertSqlSafe, Executor, Row as _};

/// How the queue is ordered (disputed cases always come first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueOrder {
    /// Oldest case first: nothing waits forever.
    #[default]
    Oldest,
    /// Most viewers first: the widest re-streams first (streams without a count last).
    Reach,
}

impl QueueOrder {
    /// `oldest` or `reach`, as in the console's `?order=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Oldest => "oldest",
            Self::Reach => "reach",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "oldest" => Some(Self::Oldest),
            "reach" => Some(Self::Reach),
            _ => None,
        }
    }

    /// The sort key after the disputed-first rank: ascending, so reach sorts on minus the
    /// viewers (no count counts as -1, after every stream that has one).
    fn key_sql(self) -> &'static str {
        match self {
            Self::Oldest => "c.created_at",
            Self::Reach => "-COALESCE(s.viewers, -1)",
        }
    }
}

/// Which open cases to show. `None` switches a filter off.
#[derive(Debug, Clone, Default)]
pub struct QueueFilter<'a> {
    /// Only cases on this reference.
    pub reference_id: Option<&'a str>,
    /// Only this rights holder's cases (always set for a rights holder caller).
    pub rights_holder_id: Option<&'a str>,
    /// Only cases opened by this policy action (`flag` or `kill`).
    pub action: Option<&'a str>,
    /// Only cases opened at or after this time (ms since the Unix epoch).
    pub opened_from: Option<i64>,
    /// Only cases opened before this time (ms since the Unix epoch).
    pub opened_before: Option<i64>,
}

/// Where the previous page ended: the last row's sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueCursor {
    /// 0 for a disputed case, 1 otherwise.
    pub rank: i64,
    /// The order's key ([`QueueOrder::key_sql`]).
    pub key: i64,
    /// The case id (ties).
    pub id: String,
}

impl QueueCursor {
    /// The cursor as it travels in a URL (`?after=`): `RANK.KEY.ID`.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.rank, self.key, self.id)
    }

    /// Parses [`Self::encode`]; `None` for anything else.
    pub fn decode(text: &str) -> Option<Self> {
        let (rank, rest) = text.split_once('.')?;
        let (key, id) = rest.split_once('.')?;
        let rank: i64 = rank.parse().ok()?;
        if !(0..=1).contains(&rank) || id.is_empty() || id.len() > 100 {
            return None;
        }
        Some(Self { rank, key: key.parse().ok()?, id: id.to_owned() })
    }
}

/// One row of the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    /// The case.
    pub case_id: String,
    /// The stream.
    pub stream_id: String,
    /// The streamer.
    pub account_id: Option<String>,
    /// The stream's status (live, flagged, killed, ended).
    pub stream_status: String,
    /// The latest viewer count the platform reported.
    pub viewers: Option<i64>,
    /// The reference.
    pub reference_id: String,
    /// Its title (`None` once the reference is deleted).
    pub reference_title: Option<String>,
    /// The owner.
    pub rights_holder_id: Option<String>,
    /// The owner's name.
    pub rights_holder_name: Option<String>,
    /// The policy action that opened the case (flag or kill).
    pub action: String,
    /// When the case was opened (ms since the Unix epoch).
    pub created_at: i64,
    /// When the streamer disputed the decision, if they did.
    pub disputed_at: Option<i64>,
    /// Their reason.
    pub dispute_reason: Option<String>,
    /// Milliseconds of consistent evidence at the decision.
    pub matched_ms: Option<i64>,
    /// The deciding evidence pair: (stream time, reference time) of the last evidence row.
    pub deciding: Option<(i64, i64)>,
    /// Whether a still of the deciding stream keyframe was kept.
    pub deciding_still: bool,
    /// Whether the reference has a still near the deciding reference time.
    pub deciding_reference_still: bool,
    /// This row's position, for the next page's cursor.
    pub cursor: QueueCursor,
}

/// One page of open cases after `after` (disputed first, then by `order`), at most `limit`.
///
/// # Errors
/// Any database error.
pub async fn page<'e>(
    db: impl Executor<'e, Database = Any>,
    filter: &QueueFilter<'_>,
    order: QueueOrder,
    after: Option<&QueueCursor>,
    limit: i64,
) -> sqlx::Result<Vec<QueueItem>> {
    let key = order.key_sql();
    // The SQL is assembled from constant fragments only; every value is a bind.
    let after_sql =
        if after.is_some() { "AND (queue_rank, sort_key, id) > ($8, $9, $10)" } else { "" };
    let sql = format!(
        "SELECT q.*, \
           (SELECT e.stream_ts_ms FROM case_evidence e WHERE e.case_id = q.id \
             ORDER BY e.seq DESC LIMIT 1) AS deciding_stream_ts, \
           (SELECT e.reference_ts_ms FROM case_evidence e WHERE e.case_id = q.id \
             ORDER BY e.seq DESC LIMIT 1) AS deciding_reference_ts, \
           CAST(CASE WHEN EXISTS (SELECT 1 FROM stream_stills st \
             WHERE st.stream_id = q.stream_id AND st.ts_ms = \
               (SELECT e.stream_ts_ms FROM case_evidence e WHERE e.case_id = q.id \
                 ORDER BY e.seq DESC LIMIT 1)) THEN 1 ELSE 0 END AS BIGINT) AS deciding_still, \
           CAST(CASE WHEN EXISTS (SELECT 1 FROM reference_stills rs \
             WHERE rs.reference_id = q.reference_id AND rs.ts_ms BETWEEN \
               (SELECT e.reference_ts_ms FROM case_evidence e WHERE e.case_id = q.id \
                 ORDER BY e.seq DESC LIMIT 1) - $7 AND \
               (SELECT e.reference_ts_ms FROM case_evidence e WHERE e.case_id = q.id \
                 ORDER BY e.seq DESC LIMIT 1) + $7) \
             THEN 1 ELSE 0 END AS BIGINT) AS deciding_reference_still \
         FROM (SELECT * FROM (\
             SELECT c.id, c.stream_id, s.account_id, s.status AS stream_status, s.viewers, \
               c.reference_id, r.title, c.rights_holder_id, h.name AS holder_name, c.action, \
               c.created_at, c.disputed_at, c.dispute_reason, m.matched_ms, \
               CAST(CASE WHEN c.disputed_at IS NULL THEN 1 ELSE 0 END AS BIGINT) AS queue_rank, \
               {key} AS sort_key \
             FROM cases c \
             JOIN streams s ON s.id = c.stream_id \
             LEFT JOIN library_references r ON r.id = c.reference_id \
             LEFT JOIN rights_holders h ON h.id = c.rights_holder_id \
             LEFT JOIN stream_matches m ON m.id = c.match_id \
             WHERE c.status = 'open' \
               AND ($1 IS NULL OR c.reference_id = $1) \
               AND ($2 IS NULL OR c.rights_holder_id = $2) \
               AND ($3 IS NULL OR c.action = $3) \
               AND ($4 IS NULL OR c.created_at >= $4) \
               AND ($5 IS NULL OR c.created_at < $5)) ranked \
           WHERE 1 = 1 {after_sql} \
           ORDER BY queue_rank, sort_key, id LIMIT $6) q \
         ORDER BY queue_rank, sort_key, id"
    );
    let mut query = sqlx::query(AssertSqlSafe(sql))
        .bind(filter.reference_id)
        .bind(filter.rights_holder_id)
        .bind(filter.action)
        .bind(filter.opened_from)
        .bind(filter.opened_before)
        .bind(limit);
    query = query.bind(super::stills::REFERENCE_STILL_TOLERANCE_MS);
    if let Some(after) = after {
        query = query.bind(after.rank).bind(after.key).bind(after.id.as_str());
    }
    let rows = query.fetch_all(db).await?;
    rows.iter()
        .map(|r| {
            let id: String = r.try_get(0)?;
            let rank: i64 = r.try_get(14)?;
            let still: i64 = r.try_get(18)?;
            let reference_still: i64 = r.try_get(19)?;
            let stream_ts: Option<i64> = r.try_get(16)?;
            let reference_ts: Option<i64> = r.try_get(17)?;
            Ok(QueueItem {
                cursor: QueueCursor { rank, key: r.try_get(15)?, id: id.clone() },
                case_id: id,
                stream_id: r.try_get(1)?,
                account_id: r.try_get(2)?,
                stream_status: r.try_get(3)?,
                viewers: r.try_get(4)?,
                reference_id: r.try_get(5)?,
                reference_title: r.try_get(6)?,
                rights_holder_id: r.try_get(7)?,
                rights_holder_name: r.try_get(8)?,
                action: r.try_get(9)?,
                created_at: r.try_get(10)?,
                disputed_at: r.try_get(11)?,
                dispute_reason: r.try_get(12)?,
                matched_ms: r.try_get(13)?,
                deciding: stream_ts.zip(reference_ts),
                deciding_still: still == 1,
                deciding_reference_still: reference_still == 1,
            })
        })
        .collect()
}

/// How many open cases match the filter.
///
/// # Errors
/// Any database error.
pub async fn count<'e>(
    db: impl Executor<'e, Database = Any>,
    filter: &QueueFilter<'_>,
) -> sqlx::Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM cases c WHERE c.status = 'open' \
           AND ($1 IS NULL OR c.reference_id = $1) \
           AND ($2 IS NULL OR c.rights_holder_id = $2) \
           AND ($3 IS NULL OR c.action = $3) \
           AND ($4 IS NULL OR c.created_at >= $4) \
           AND ($5 IS NULL OR c.created_at < $5)",
    )
    .bind(filter.reference_id)
    .bind(filter.rights_holder_id)
    .bind(filter.action)
    .bind(filter.opened_from)
    .bind(filter.opened_before)
    .fetch_one(db)
    .await?;
    row.try_get(0)
}
