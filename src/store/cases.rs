//! Review cases and their evidence.

use sqlx::{Any, Executor, Row as _};

use super::now_ms;
pub use crate::recognition::HitTier;

/// A case's review status.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum CaseStatus {
    /// Waiting for trust & safety.
    Open,
    /// Confirmed as piracy (the stream is killed).
    Confirmed,
    /// Dismissed (the reference is suppressed on that stream).
    Dismissed,
}

impl CaseStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Open => "open",
            CaseStatus::Confirmed => "confirmed",
            CaseStatus::Dismissed => "dismissed",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [CaseStatus::Open, CaseStatus::Confirmed, CaseStatus::Dismissed]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// One piece of evidence: a stream keyframe and the reference frame it matched.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct EvidenceRow {
    /// Stream time.
    pub stream_ts_ms: i64,
    /// Reference time.
    pub reference_ts_ms: i64,
    /// Hamming distance (for the geometric tier, its verification's equivalent).
    pub distance: u32,
    /// The tier that produced the hit (`None` for evidence stored before tiers were recorded).
    pub tier: Option<HitTier>,
}

/// A case as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Case {
    /// Its id.
    pub id: String,
    /// The stream.
    pub stream_id: String,
    /// The reference matched.
    pub reference_id: String,
    /// The reference's owner.
    pub rights_holder_id: Option<String>,
    /// The policy action that opened it (flag or kill).
    pub action: String,
    /// Review status.
    pub status: CaseStatus,
    /// The reviewer's note.
    pub note: Option<String>,
    /// Who decided (API key id, or `policy`).
    pub decided_by: Option<String>,
    /// When it was decided.
    pub decided_at: Option<i64>,
    /// When it was opened.
    pub created_at: i64,
    /// When the platform reported that the streamer disputes the decision (the case is then
    /// open again, at the head of the queue).
    pub disputed_at: Option<i64>,
    /// The streamer's reason, as relayed.
    pub dispute_reason: Option<String>,
    /// The evidence, in stream time order.
    pub evidence: Vec<EvidenceRow>,
}

/// What opens a case.
#[derive(Debug, Clone)]
pub struct NewCase<'a> {
    /// Id to use.
    pub id: &'a str,
    /// The stream.
    pub stream_id: &'a str,
    /// The reference.
    pub reference_id: &'a str,
    /// The reference's owner.
    pub rights_holder_id: Option<&'a str>,
    /// The match row that decided.
    pub match_id: &'a str,
    /// flag or kill.
    pub action: &'a str,
    /// Initial status (open for flag; confirmed by the policy for kill).
    pub status: CaseStatus,
    /// Evidence rows.
    pub evidence: &'a [EvidenceRow],
}

/// Opens a case with its evidence. Run it inside the decision's transaction.
///
/// # Errors
/// Any database error (a unique violation if the pair already has a case).
pub async fn insert(tx: &mut sqlx::AnyConnection, new: &NewCase<'_>) -> sqlx::Result<()> {
    let now = now_ms();
    let decided = (new.status != CaseStatus::Open).then_some(now);
    sqlx::query(
        "INSERT INTO cases (id, stream_id, reference_id, rights_holder_id, match_id, action, status, \
         decided_by, decided_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)",
    )
    .bind(new.id)
    .bind(new.stream_id)
    .bind(new.reference_id)
    .bind(new.rights_holder_id)
    .bind(new.match_id)
    .bind(new.action)
    .bind(new.status.as_str())
    .bind(decided.map(|_| "policy"))
    .bind(decided)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for (seq, e) in new.evidence.iter().enumerate() {
        sqlx::query(
            "INSERT INTO case_evidence (case_id, seq, stream_ts_ms, reference_ts_ms, distance, \
             tier) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new.id)
        .bind(seq as i64)
        .bind(e.stream_ts_ms)
        .bind(e.reference_ts_ms)
        .bind(i64::from(e.distance))
        .bind(e.tier.map(HitTier::as_str))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

const CASE_COLUMNS: &str = "id, stream_id, reference_id, rights_holder_id, action, status, note, \
                            decided_by, decided_at, created_at, disputed_at, dispute_reason";

fn case_from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<Case> {
    let status: String = row.try_get(5)?;
    Ok(Case {
        id: row.try_get(0)?,
        stream_id: row.try_get(1)?,
        reference_id: row.try_get(2)?,
        rights_holder_id: row.try_get(3)?,
        action: row.try_get(4)?,
        status: CaseStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode("unexpected case status".into()))?,
        note: row.try_get(6)?,
        decided_by: row.try_get(7)?,
        decided_at: row.try_get(8)?,
        created_at: row.try_get(9)?,
        disputed_at: row.try_get(10)?,
        dispute_reason: row.try_get(11)?,
        evidence: Vec::new(),
    })
}

async fn load_evidence(db: &sqlx::AnyPool, case: &mut Case) -> sqlx::Result<()> {
    let rows = sqlx::query(
        "SELECT stream_ts_ms, reference_ts_ms, distance, tier FROM case_evidence \
         WHERE case_id = $1 ORDER BY seq",
    )
    .bind(&case.id)
    .fetch_all(db)
    .await?;
    case.evidence = rows
        .iter()
        .map(|r| {
            let d: i64 = r.try_get(2)?;
            let tier: Option<String> = r.try_get(3)?;
            Ok(EvidenceRow {
                stream_ts_ms: r.try_get(0)?,
                reference_ts_ms: r.try_get(1)?,
                distance: u32::try_from(d).unwrap_or(u32::MAX),
                tier: tier.as_deref().and_then(HitTier::parse),
            })
        })
        .collect::<sqlx::Result<_>>()?;
    Ok(())
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub struct CaseFilter<'a> {
    /// Only this status.
    pub status: Option<CaseStatus>,
    /// Only this stream.
    pub stream_id: Option<&'a str>,
    /// Only this reference.
    pub reference_id: Option<&'a str>,
    /// Only this rights holder's cases (set for rights-holder callers).
    pub rights_holder_id: Option<&'a str>,
}

/// Lists cases (newest first, at most `limit`) with their evidence.
///
/// # Errors
/// Any database error.
pub async fn list(
    db: &sqlx::AnyPool,
    filter: &CaseFilter<'_>,
    limit: i64,
) -> sqlx::Result<Vec<Case>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CASE_COLUMNS} FROM cases WHERE ($1 IS NULL OR status = $1) \
         AND ($2 IS NULL OR stream_id = $2) AND ($3 IS NULL OR reference_id = $3) \
         AND ($4 IS NULL OR rights_holder_id = $4) ORDER BY id DESC LIMIT $5"
    )))
    .bind(filter.status.map(CaseStatus::as_str))
    .bind(filter.stream_id)
    .bind(filter.reference_id)
    .bind(filter.rights_holder_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    let mut cases = rows.iter().map(case_from_row).collect::<sqlx::Result<Vec<_>>>()?;
    for c in &mut cases {
        load_evidence(db, c).await?;
    }
    Ok(cases)
}

/// One case with its evidence.
///
/// # Errors
/// Any database error.
pub async fn get(db: &sqlx::AnyPool, id: &str) -> sqlx::Result<Option<Case>> {
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {CASE_COLUMNS} FROM cases WHERE id = $1")))
            .bind(id)
            .fetch_optional(db)
            .await?;
    let Some(row) = row else { return Ok(None) };
    let mut case = case_from_row(&row)?;
    load_evidence(db, &mut case).await?;
    Ok(Some(case))
}

/// Decides a case whose status is one of `from` (one or two statuses). Returns false when its
/// status is none of them (already decided).
///
/// # Errors
/// Any database error.
pub async fn decide<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    from: &[CaseStatus],
    status: CaseStatus,
    note: Option<&str>,
    decided_by: &str,
) -> sqlx::Result<bool> {
    let now = now_ms();
    let first = from.first().map_or("", |s| s.as_str());
    let second = from.get(1).map_or(first, |s| s.as_str());
    let done = sqlx::query(
        "UPDATE cases SET status = $1, note = $2, decided_by = $3, decided_at = $4, updated_at = $4 \
         WHERE id = $5 AND status IN ($6, $7)",
    )
    .bind(status.as_str())
    .bind(note)
    .bind(decided_by)
    .bind(now)
    .bind(id)
    .bind(first)
    .bind(second)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Opens the stream's latest open or confirmed case again as disputed (at the head of the
/// review queue); returns its id, or `None` when the stream has no such case.
///
/// # Errors
/// Any database error.
pub async fn reopen_for_dispute(
    conn: &mut sqlx::AnyConnection,
    stream_id: &str,
    reason: &str,
) -> sqlx::Result<Option<String>> {
    // One statement, so that on SQLite the transaction starts by writing (a deferred
    // transaction that reads first cannot always upgrade to a writer).
    let row = sqlx::query(
        "UPDATE cases SET status = 'open', disputed_at = $1, dispute_reason = $2, updated_at = $1 \
         WHERE id = (SELECT id FROM cases WHERE stream_id = $3 AND status IN ('open', 'confirmed') \
                     ORDER BY created_at DESC, id DESC LIMIT 1) RETURNING id",
    )
    .bind(now_ms())
    .bind(reason)
    .bind(stream_id)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|r| r.try_get(0)).transpose()
}

/// Open cases of a stream other than `except` (a dismissed flag only clears the stream when
/// no other case holds it).
///
/// # Errors
/// Any database error.
pub async fn count_open_for_stream<'e>(
    db: impl Executor<'e, Database = Any>,
    stream_id: &str,
    except: &str,
) -> sqlx::Result<i64> {
    let row = sqlx::query(
        "SELECT COUNT(*) FROM cases WHERE stream_id = $1 AND status = 'open' AND id <> $2",
    )
    .bind(stream_id)
    .bind(except)
    .fetch_one(db)
    .await?;
    row.try_get(0)
}
