//! References and their frames.
//!
//! Frames are stored packed: one row of `reference_frame_chunks` holds up to
//! [`FRAMES_PER_CHUNK`] frames in the one frame form ([`crate::recognition::encode_frames`]:
//! timestamp, hash, quality, crop variant). A worker loads a library of millions of frames by reading a few
//! thousand rows instead of millions, and appending frames (hash import) never rewrites old ones.

use sqlx::any::AnyRow;
// Dynamic SQL here only splices the constant column list; values always go through binds.
use sqlx::{Any, AnyConnection, AssertSqlSafe, Executor, Row as _};

use super::now_ms;
use crate::domain::{Policy, ReferenceSource, ReferenceStatus};
use crate::recognition::{
    FeatureFrame, ReferenceFrame, decode_feature_frames, decode_frames, encode_feature_frames,
    encode_frames,
};

/// Frames per stored chunk.
pub const FRAMES_PER_CHUNK: usize = 4096;
/// A reference as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// Its id (UUID v7).
    pub id: String,
    /// The owner; `None` for references an admin registered without one.
    pub rights_holder_id: Option<String>,
    /// A human title.
    pub title: String,
    /// Where its frames come from.
    pub source: ReferenceSource,
    /// Where it is in its life.
    pub status: ReferenceStatus,
    /// How many frames it has stored.
    pub frames: i64,
    /// Job progress in thousandths, while processing.
    pub progress_permille: Option<i64>,
    /// Why its job failed.
    pub error: Option<String>,
    /// What to do on a match.
    pub policy: Policy,
    /// The uploaded file awaiting (or being) hashed.
    pub upload_path: Option<String>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Last change, milliseconds since the Unix epoch.
    pub updated_at: i64,
}

/// What [`insert`] needs.
#[derive(Debug, Clone)]
pub struct NewReference<'a> {
    /// The id, chosen by the caller so the upload file can be named after it.
    pub id: &'a str,
    /// The owner.
    pub rights_holder_id: Option<&'a str>,
    /// A human title.
    pub title: &'a str,
    /// Where its frames come from.
    pub source: ReferenceSource,
    /// The initial status.
    pub status: ReferenceStatus,
    /// What to do on a match.
    pub policy: &'a Policy,
    /// The uploaded file, if any.
    pub upload_path: Option<&'a str>,
}

const COLUMNS: &str = "id, rights_holder_id, title, source, status, frames, progress_permille, \
                       error, policy, upload_path, created_at, updated_at";

fn decode_err(err: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(err))
}

fn from_row(row: &AnyRow) -> sqlx::Result<Reference> {
    let source: String = row.try_get(3)?;
    let status: String = row.try_get(4)?;
    let policy: String = row.try_get(8)?;
    Ok(Reference {
        id: row.try_get(0)?,
        rights_holder_id: row.try_get(1)?,
        title: row.try_get(2)?,
        source: source.parse().map_err(decode_err)?,
        status: status.parse().map_err(decode_err)?,
        frames: row.try_get(5)?,
        progress_permille: row.try_get(6)?,
        error: row.try_get(7)?,
        policy: serde_json::from_str(&policy).map_err(decode_err)?,
        upload_path: row.try_get(9)?,
        created_at: row.try_get(10)?,
        updated_at: row.try_get(11)?,
    })
}

fn policy_json(policy: &Policy) -> sqlx::Result<String> {
    serde_json::to_string(policy).map_err(|err| sqlx::Error::Encode(Box::new(err)))
}

/// Inserts a reference and returns it as stored.
///
/// # Errors
/// Any database error.
pub async fn insert<'e>(
    db: impl Executor<'e, Database = Any>,
    new: &NewReference<'_>,
) -> sqlx::Result<Reference> {
    let now = now_ms();
    let sql = format!(
        "INSERT INTO library_references (id, rights_holder_id, title, source, status, frames, \
         policy, upload_path, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $8) RETURNING {COLUMNS}"
    );
    let row = sqlx::query(AssertSqlSafe(sql))
        .bind(new.id)
        .bind(new.rights_holder_id)
        .bind(new.title)
        .bind(new.source.as_str())
        .bind(new.status.as_str())
        .bind(policy_json(new.policy)?)
        .bind(new.upload_path)
        .bind(now)
        .fetch_one(db)
        .await?;
    from_row(&row)
}

/// Looks a reference up by id.
///
/// # Errors
/// Any database error.
pub async fn get<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Option<Reference>> {
    let sql = format!("SELECT {COLUMNS} FROM library_references WHERE id = $1");
    let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(db).await?;
    row.as_ref().map(from_row).transpose()
}

/// One page of references in id (creation) order: those after `after`, at most `limit`,
/// only `owner`'s when given.
///
/// # Errors
/// Any database error.
pub async fn list<'e>(
    db: impl Executor<'e, Database = Any>,
    owner: Option<&str>,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<Reference>> {
    // One query for every combination: NULL parameters switch the filters off.
    let sql = format!(
        "SELECT {COLUMNS} FROM library_references \
         WHERE ($1 IS NULL OR rights_holder_id = $1) AND ($2 IS NULL OR id > $2) \
         ORDER BY id LIMIT $3"
    );
    let rows =
        sqlx::query(AssertSqlSafe(sql)).bind(owner).bind(after).bind(limit).fetch_all(db).await?;
    rows.iter().map(from_row).collect()
}

/// Every reference still `processing` (jobs to resume after a restart).
///
/// # Errors
/// Any database error.
pub async fn list_processing<'e>(
    db: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Vec<Reference>> {
    let sql =
        format!("SELECT {COLUMNS} FROM library_references WHERE status = 'processing' ORDER BY id");
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(db).await?;
    rows.iter().map(from_row).collect()
}

/// `(id, frames)` of every matchable reference: what every worker's index should hold.
///
/// # Errors
/// Any database error.
pub async fn list_indexable<'e>(
    db: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Vec<(String, i64)>> {
    let rows =
        sqlx::query("SELECT id, frames FROM library_references WHERE status IN ('ready', 'live')")
            .fetch_all(db)
            .await?;
    rows.iter().map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).collect()
}

/// Replaces a reference's policy. Returns false when it does not exist.
///
/// # Errors
/// Any database error.
pub async fn update_policy<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    policy: &Policy,
) -> sqlx::Result<bool> {
    let done =
        sqlx::query("UPDATE library_references SET policy = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(policy_json(policy)?)
            .bind(now_ms())
            .execute(db)
            .await?;
    Ok(done.rows_affected() > 0)
}

/// Records a running job's progress (thousandths) and frame count.
///
/// # Errors
/// Any database error.
pub async fn update_progress<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    progress_permille: i64,
    frames: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE library_references SET progress_permille = $2, frames = $3, updated_at = $4 \
         WHERE id = $1 AND status = 'processing'",
    )
    .bind(id)
    .bind(progress_permille)
    .bind(frames)
    .bind(now_ms())
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a reference `ready`, clearing the job fields. Returns false when it no longer exists.
///
/// # Errors
/// Any database error.
pub async fn mark_ready<'e>(db: impl Executor<'e, Database = Any>, id: &str) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE library_references SET status = 'ready', progress_permille = NULL, error = NULL, \
         upload_path = NULL, updated_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(now_ms())
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Marks a reference `failed` with the reason. Returns false when it no longer exists.
///
/// # Errors
/// Any database error.
pub async fn mark_failed<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
    error: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE library_references SET status = 'failed', progress_permille = NULL, error = $2, \
         upload_path = NULL, updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(now_ms())
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes a reference and its frames. Returns false when it did not exist.
///
/// # Errors
/// Any database error.
pub async fn delete<'e>(db: impl Executor<'e, Database = Any>, id: &str) -> sqlx::Result<bool> {
    let done =
        sqlx::query("DELETE FROM library_references WHERE id = $1").bind(id).execute(db).await?;
    Ok(done.rows_affected() > 0)
}

/// Appends frames to a reference and bumps its frame count; returns the new count. Run it in a
/// transaction (pass `&mut *tx`) so the chunks and the count change together.
///
/// # Errors
/// Any database error (a foreign-key violation when the reference was deleted meanwhile).
pub async fn append_frames(
    conn: &mut AnyConnection,
    id: &str,
    frames: &[ReferenceFrame],
) -> sqlx::Result<i64> {
    write_chunks(conn, id, frames).await?;
    let now = now_ms();
    let added = i64::try_from(frames.len()).unwrap_or(i64::MAX);
    let row = sqlx::query(
        "UPDATE library_references SET frames = frames + $2, updated_at = $3 WHERE id = $1 RETURNING frames",
    )
    .bind(id)
    .bind(added)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(sqlx::Error::RowNotFound)?;
    row.try_get(0)
}

/// Writes frames as new chunks after the reference's last one, leaving its frame count alone.
async fn write_chunks(
    conn: &mut AnyConnection,
    id: &str,
    frames: &[ReferenceFrame],
) -> sqlx::Result<()> {
    let chunks = frames.chunks(FRAMES_PER_CHUNK).map(|c| (c.len(), encode_frames(c)));
    append_chunks(conn, "reference_frame_chunks", id, chunks).await
}

/// Appends encoded chunks `(frame count, bytes)` to one of the chunk tables (which share one
/// layout), numbered after the reference's last stored chunk. `table` is always one of this
/// module's constant names, never input, so the formatted SQL is safe.
async fn append_chunks(
    conn: &mut AnyConnection,
    table: &'static str,
    id: &str,
    chunks: impl Iterator<Item = (usize, Vec<u8>)>,
) -> sqlx::Result<()> {
    let next_seq: i64 = sqlx::query(AssertSqlSafe(format!(
        "SELECT COALESCE(MAX(seq) + 1, 0) FROM {table} WHERE reference_id = $1"
    )))
    .bind(id)
    .fetch_one(&mut *conn)
    .await?
    .try_get(0)?;
    let now = now_ms();
    let insert = format!(
        "INSERT INTO {table} (reference_id, seq, frame_count, data, created_at) \
         VALUES ($1, $2, $3, $4, $5)"
    );
    for (seq, (count, data)) in (next_seq..).zip(chunks) {
        sqlx::query(AssertSqlSafe(insert.clone()))
            .bind(id)
            .bind(seq)
            .bind(i64::try_from(count).unwrap_or(i64::MAX))
            .bind(data)
            .bind(now)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Appends frames of a live feed's archive. Unlike [`append_frames`] the reference's frame
/// count stays as it is: the index sync loads a reference when its count changes, and an
/// archive must not be matched as an ordinary reference before its event ends
/// ([`finish_archive`]); while the feed airs its frames are matched by wall-clock time instead.
///
/// # Errors
/// Any database error (a foreign-key violation when the reference was deleted meanwhile).
pub async fn append_archive_frames(
    conn: &mut AnyConnection,
    id: &str,
    frames: &[ReferenceFrame],
) -> sqlx::Result<()> {
    write_chunks(conn, id, frames).await
}

/// Turns a live reference with an archive into an ordinary `ready` reference: its frame count
/// becomes the number of archived frames, so every process's index sync loads them. Returns
/// false when the reference no longer exists or is not live.
///
/// # Errors
/// Any database error.
pub async fn finish_archive<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE library_references SET status = 'ready', progress_permille = NULL, \
         frames = (SELECT COALESCE(SUM(frame_count), 0) FROM reference_frame_chunks \
                   WHERE reference_id = $1), updated_at = $2 \
         WHERE id = $1 AND status = 'live'",
    )
    .bind(id)
    .bind(now_ms())
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Removes every stored frame of a reference, feature frames and stills included (before a job
/// re-runs), and zeroes its count.
///
/// # Errors
/// Any database error.
pub async fn clear_frames(conn: &mut AnyConnection, id: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM reference_frame_chunks WHERE reference_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM reference_feature_chunks WHERE reference_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM reference_stills WHERE reference_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE library_references SET frames = 0 WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Loads every stored frame of a reference, in the order they were appended.
///
/// # Errors
/// Any database error, or a chunk that is not a whole number of records.
pub async fn load_frames<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Vec<ReferenceFrame>> {
    let rows =
        sqlx::query("SELECT data FROM reference_frame_chunks WHERE reference_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(db)
            .await?;
    let mut frames = Vec::new();
    for row in rows {
        let data: Vec<u8> = row.try_get(0)?;
        // Frames of a crop variant this version does not know (a newer version wrote them)
        // are skipped: they cannot be indexed here.
        decode_frames(&data, &mut frames).map_err(decode_err)?;
    }
    Ok(frames)
}

/// Feature frames per stored chunk (about 4 KB each at the reference budget of 96 features).
pub const FEATURE_FRAMES_PER_CHUNK: usize = 256;

/// Appends feature frames (the geometric tier) to a reference, after its stored ones. The
/// reference's frame count (PDQ frames) is left alone: run it in the transaction that appends
/// the frames, so the index sync never loads one without the other.
///
/// # Errors
/// Any database error (a foreign-key violation when the reference was deleted meanwhile).
pub async fn append_features(
    conn: &mut AnyConnection,
    id: &str,
    frames: &[FeatureFrame],
) -> sqlx::Result<()> {
    let chunks =
        frames.chunks(FEATURE_FRAMES_PER_CHUNK).map(|c| (c.len(), encode_feature_frames(c)));
    append_chunks(conn, "reference_feature_chunks", id, chunks).await
}

/// Loads every stored feature frame of a reference, in the order they were appended.
///
/// # Errors
/// Any database error, or a chunk that does not decode.
pub async fn load_features<'e>(
    db: impl Executor<'e, Database = Any>,
    id: &str,
) -> sqlx::Result<Vec<FeatureFrame>> {
    let rows = sqlx::query(
        "SELECT data FROM reference_feature_chunks WHERE reference_id = $1 ORDER BY seq",
    )
    .bind(id)
    .fetch_all(db)
    .await?;
    let mut frames = Vec::new();
    for row in rows {
        let data: Vec<u8> = row.try_get(0)?;
        decode_feature_frames(&data, &mut frames).map_err(decode_err)?;
    }
    Ok(frames)
}
