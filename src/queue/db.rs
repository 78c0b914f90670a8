//! The keyframe queue in the database (table `keyframe_queue`): the queue of every deployment
//! without RabbitMQ, SQLite by default and PostgreSQL without `--amqp-url`.
//!
//! Why in the database: a 202 on keyframe ingest promises the keyframe will be handled whatever
//! happens to the process next (DESIGN.md). An in-process queue loses what it holds on
//! `kill -9`; a row committed before the 202 does not. The database is already there, so the
//! embedded deployment stays one binary and one file.
//!
//! - **Publish** returns once the message's INSERT is committed. Concurrent publishers of one
//!   process share their commit (group commit): the first to get the publish lock inserts
//!   everything queued up behind it in one multi-row INSERT, so a burst of HTTP ingests is a
//!   few writes, not one per keyframe fighting the workers for SQLite's one writer lock (which
//!   starved the workers under overload). A message is accepted while fewer than `capacity`
//!   are queued (ready or claimed); a full queue makes the publisher wait up to
//!   `publish_timeout`, then [`QueueError::Full`].
//! - **Claim**: one `UPDATE … WHERE id = (SELECT the oldest ready row) RETURNING …`, which marks
//!   the row with a token of this delivery and a lease. SQLite runs the statement under its one
//!   writer lock, so two consumers never get the same row. PostgreSQL skips rows another claim
//!   has locked (`FOR UPDATE SKIP LOCKED`) and the outer `WHERE` repeats the readiness test,
//!   which PostgreSQL re-evaluates on the newest row version after waiting on a lock, so the row
//!   is not claimed twice even when the subquery picked it concurrently.
//! - **Wake-up**: a publish wakes a consumer of this process at once (a [`Notify`]); every
//!   consumer also polls (`poll_interval`), which finds rows whose lease ran out and rows
//!   published by another process on the same database.
//! - **Lease**: renewed every third of `lease` while the delivery is unsettled, so a slow
//!   handler keeps its row; when the process dies, the renewal stops with it and the row is
//!   ready again after at most `lease`. Only the rows being handled at that moment (one per
//!   consumer) wait for their lease; everything else queued is claimed as soon as the next
//!   process starts. Leases are not cleared at startup: that would be right only if this were
//!   the database's only consumer, which it cannot know (a second `serve` or `worker` on the
//!   same PostgreSQL, or on the same SQLite file), and it would save at most one lease of delay
//!   after a crash.
//! - **Settle**: ack deletes the row, requeue clears the claim (the next claim is marked
//!   redelivered), dead-letter moves the row to `keyframe_dead_letters` with the reason, in one
//!   transaction. A delivery dropped unsettled (its task died) is released at once, counted as
//!   abandoned; a message abandoned [`MAX_ABANDONED`] times (it kills whoever handles it) is
//!   dead-lettered instead of being handed out again. Every settlement names the claim token, so
//!   a worker whose lease ran out cannot settle the row another worker now holds.
//!
//! SQLite has one writer, so every write here is one short statement in its own transaction
//! (dead-lettering, rare, is the exception). Lease times are this process's clock; processes
//! sharing a PostgreSQL server need clocks within a small fraction of `lease` of each other
//! (NTP does far better).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use futures::future::BoxFuture;
use sqlx::Row as _;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use super::message::{self, CONTENT_TYPE_STREAM_END, MESSAGE_VERSION, MessageLimits, RawFields};
use super::{Delivery, DeliveryStream, KeyframeQueue, QueueError, QueueMessage, Settle};
use crate::store::{DbKind, Store, now_ms};

/// Claims that may end unsettled before a message is dead-lettered: a keyframe that crashes the
/// process (or stalls it past its lease) every time must not crash it forever.
pub const MAX_ABANDONED: i64 = 5;

/// Dead letters kept; older ones are deleted as new ones arrive.
const DEAD_LETTERS_KEPT: i64 = 10_000;

/// Tuning of a [`DbQueue`].
#[derive(Debug, Clone)]
pub struct DbQueueConfig {
    /// Most messages queued at once (ready or being handled): a slow worker pushes back on its
    /// producers instead of growing the database. On PostgreSQL, concurrent publishers may
    /// overshoot it by their number (each checks the count it sees).
    pub capacity: i64,
    /// How long a publisher waits for room in a full queue before [`QueueError::Full`].
    pub publish_timeout: Duration,
    /// How long a claim lasts without renewal: after a crash, the messages that were being
    /// handled come back after at most this long.
    pub lease: Duration,
    /// How often an idle consumer looks for rows it was not woken for (expired leases, rows
    /// published by other processes).
    pub poll_interval: Duration,
}

impl Default for DbQueueConfig {
    fn default() -> Self {
        DbQueueConfig {
            // A few seconds of a busy platform while workers catch up, as the in-process queue
            // held before; at 10-400 kB a keyframe, at most a few hundred MB on disk.
            capacity: 1024,
            publish_timeout: Duration::from_secs(5),
            // Handling takes milliseconds and the lease is renewed; 10 s only bounds how long
            // a crashed worker's keyframe waits (as the live feed lease does).
            lease: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// A message refused for good, as kept in `keyframe_dead_letters`.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message, or why it could not be read back.
    pub message: Result<QueueMessage, message::MessageError>,
    /// Why it was refused.
    pub reason: String,
    /// How many times it was delivered.
    pub deliveries: i64,
    /// When it was dead-lettered (ms since the Unix epoch).
    pub created_at: i64,
}

struct Inner {
    store: Store,
    cfg: DbQueueConfig,
    /// Woken by a publish of this process: a consumer claims without waiting for its poll.
    ready: Notify,
    /// Woken by a settlement of this process: a publisher waiting for room tries again.
    space: Notify,
    closed: AtomicBool,
    /// Messages waiting for the next group commit.
    pending: std::sync::Mutex<Vec<Pending>>,
    /// Held while a group commit runs: one publish INSERT at a time per process.
    flush: tokio::sync::Mutex<()>,
}

/// A publication waiting for a group commit: the message and where its outcome goes
/// (`Ok(false)`: no room).
struct Pending {
    message: QueueMessage,
    done: tokio::sync::oneshot::Sender<Result<bool, QueueError>>,
}

/// Most messages in one group commit (9 parameters each).
const MAX_BATCH: usize = 64;
/// Most body bytes in one group commit (at least one message goes in whatever its size).
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// The database-backed keyframe queue. Cheap to clone; clones share the queue.
#[derive(Clone)]
pub struct DbQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DbQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbQueue")
            .field("database", &self.inner.store.kind())
            .field("config", &self.inner.cfg)
            .finish()
    }
}

fn db_error(e: &sqlx::Error) -> QueueError {
    QueueError::Database(e.to_string())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

const PUBLISH_COLUMNS: &str = "INSERT INTO keyframe_queue (stream_id, content_type, ts_ms, \
     account_id, captured_at_ms, viewers, version, body, created_at) VALUES ";

const CLAIM_COLUMNS: &str = "id, stream_id, content_type, ts_ms, account_id, captured_at_ms, \
     viewers, version, body, deliveries, abandoned";

/// The claim: `$1` token, `$2` lease end, `$3` now. See the module docs for why the readiness
/// test appears twice.
fn claim_sql(kind: DbKind) -> String {
    let lock = match kind {
        DbKind::Sqlite => "",
        DbKind::Postgres => " FOR UPDATE SKIP LOCKED",
    };
    format!(
        "UPDATE keyframe_queue SET claim = $1, lease_until = $2, deliveries = deliveries + 1, \
           abandoned = abandoned + CASE WHEN claim IS NULL THEN 0 ELSE 1 END \
         WHERE id = (SELECT id FROM keyframe_queue \
                     WHERE lease_until IS NULL OR lease_until < $3 ORDER BY id LIMIT 1{lock}) \
           AND (lease_until IS NULL OR lease_until < $3) \
         RETURNING {CLAIM_COLUMNS}"
    )
}

impl DbQueue {
    /// A queue in `store`'s database (migrated: table `keyframe_queue`).
    pub fn new(store: Store, cfg: DbQueueConfig) -> Self {
        DbQueue {
            inner: Arc::new(Inner {
                store,
                cfg,
                ready: Notify::new(),
                space: Notify::new(),
                closed: AtomicBool::new(false),
                pending: std::sync::Mutex::new(Vec::new()),
                flush: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Stops this process's side of the queue: consumers end, publishers get
    /// [`QueueError::Closed`]. Queued rows stay for the next process.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.ready.notify_waiters();
        self.inner.space.notify_waiters();
    }

    /// Messages queued, ready or being handled.
    ///
    /// # Errors
    /// The database failed.
    pub async fn len(&self) -> Result<i64, QueueError> {
        let row = sqlx::query("SELECT COUNT(*) FROM keyframe_queue")
            .fetch_one(self.inner.store.pool())
            .await
            .map_err(|e| db_error(&e))?;
        row.try_get(0).map_err(|e| db_error(&e))
    }

    /// Whether nothing is queued.
    ///
    /// # Errors
    /// The database failed.
    pub async fn is_empty(&self) -> Result<bool, QueueError> {
        Ok(self.len().await? == 0)
    }

    /// The newest dead letters, newest first, at most `limit`.
    ///
    /// # Errors
    /// The database failed.
    pub async fn dead_letters(&self, limit: i64) -> Result<Vec<DeadLetter>, QueueError> {
        let rows = sqlx::query(
            "SELECT id, stream_id, content_type, ts_ms, account_id, captured_at_ms, viewers, \
               version, body, reason, deliveries, created_at \
             FROM keyframe_dead_letters ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.inner.store.pool())
        .await
        .map_err(|e| db_error(&e))?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    message: message_of(r)?,
                    reason: r.try_get(9)?,
                    deliveries: r.try_get(10)?,
                    created_at: r.try_get(11)?,
                })
            })
            .collect::<sqlx::Result<_>>()
            .map_err(|e| db_error(&e))
    }

    /// Publishes once: `Ok(false)` when there is no room. Joins the next group commit, and
    /// runs it when nobody else does.
    async fn try_publish(&self, message: &QueueMessage) -> Result<bool, QueueError> {
        let (done, mut outcome) = tokio::sync::oneshot::channel();
        lock(&self.inner.pending).push(Pending { message: message.clone(), done });
        let _turn = self.inner.flush.lock().await;
        loop {
            // The commit that ran while this publisher waited for its turn may have taken it.
            match outcome.try_recv() {
                Ok(result) => return result,
                Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                    return Err(QueueError::Database("the group commit was abandoned".into()));
                }
                Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            }
            let batch = take_batch(&self.inner);
            // On a task of its own: a publisher that goes away (a client hanging up) must not
            // cancel the commit the others in the batch are waiting for.
            let inner = Arc::clone(&self.inner);
            if let Err(e) = tokio::spawn(async move { group_commit(&inner, batch).await }).await {
                return Err(QueueError::Database(format!("the group commit failed: {e}")));
            }
        }
    }
}

/// The oldest pending publications, within [`MAX_BATCH`] and [`MAX_BATCH_BYTES`].
fn take_batch(inner: &Inner) -> Vec<Pending> {
    let mut pending = lock(&inner.pending);
    let mut bytes = 0;
    let mut n = 0;
    for p in pending.iter() {
        let size = match &p.message {
            QueueMessage::Keyframe(k) => k.body.len(),
            QueueMessage::StreamEnd(_) => 0,
        };
        if n == MAX_BATCH || (n > 0 && bytes + size > MAX_BATCH_BYTES) {
            break;
        }
        bytes += size;
        n += 1;
    }
    pending.drain(..n).collect()
}

/// Inserts as many of `batch` as there is room for in one statement and tells each publisher.
/// The room is counted first: only this process's publications are serialised (by the publish
/// lock), so publishers of other processes on the same database may overshoot the capacity by
/// one batch each.
async fn group_commit(inner: &Inner, batch: Vec<Pending>) {
    if batch.is_empty() {
        return;
    }
    let result = async {
        let queued: i64 = sqlx::query("SELECT COUNT(*) FROM keyframe_queue")
            .fetch_one(inner.store.pool())
            .await?
            .try_get(0)?;
        let room = usize::try_from(inner.cfg.capacity.saturating_sub(queued)).unwrap_or(0);
        let accepted = room.min(batch.len());
        if accepted > 0 {
            insert(inner, batch[..accepted].iter().map(|p| &p.message)).await?;
        }
        Ok::<_, sqlx::Error>(accepted)
    }
    .await;
    match result {
        Ok(accepted) => {
            for (i, p) in batch.into_iter().enumerate() {
                if i < accepted {
                    inner.ready.notify_one();
                }
                let _ = p.done.send(Ok(i < accepted));
            }
        }
        Err(e) => {
            for p in batch {
                let _ = p.done.send(Err(db_error(&e)));
            }
        }
    }
}

/// One multi-row INSERT of `messages`.
async fn insert<'m>(
    inner: &Inner,
    messages: impl Iterator<Item = &'m QueueMessage> + Clone,
) -> Result<(), sqlx::Error> {
    let mut sql = String::from(PUBLISH_COLUMNS);
    for (i, _) in messages.clone().enumerate() {
        let b = i * 9;
        if i > 0 {
            sql.push_str(", ");
        }
        let params: Vec<String> = (1..=9).map(|k| format!("${}", b + k)).collect();
        sql.push_str(&format!("({})", params.join(", ")));
    }
    let now = now_ms();
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for message in messages {
        let (ts_ms, account_id, captured_at_ms, viewers, content_type, body) = match message {
            QueueMessage::Keyframe(k) => (
                Some(k.ts_ms),
                k.account_id.as_deref(),
                k.captured_at_ms,
                k.viewers,
                k.content_type.as_str(),
                &k.body[..],
            ),
            QueueMessage::StreamEnd(_) => {
                (None, None, None, None, CONTENT_TYPE_STREAM_END, &[][..])
            }
        };
        query = query
            .bind(message.stream_id())
            .bind(content_type)
            .bind(ts_ms)
            .bind(account_id)
            .bind(captured_at_ms)
            .bind(viewers)
            .bind(i64::from(MESSAGE_VERSION))
            .bind(body)
            .bind(now);
    }
    query.execute(inner.store.pool()).await?;
    Ok(())
}

// A poisoned lock only means a thread panicked while holding it; the pending list is valid
// after any completed push or drain.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads a message back from a queue or dead-letter row (columns as [`CLAIM_COLUMNS`]'s first
/// nine). It was validated when published; parsing again reads rows written by other versions
/// safely (an unknown layout version becomes a dead letter).
fn message_of(r: &sqlx::any::AnyRow) -> sqlx::Result<Result<QueueMessage, message::MessageError>> {
    let int = |i: usize| -> sqlx::Result<Option<String>> {
        Ok(r.try_get::<Option<i64>, _>(i)?.map(|v| v.to_string()))
    };
    let fields = RawFields {
        stream_id: Some(r.try_get(1)?),
        content_type: Some(r.try_get(2)?),
        ts_ms: int(3)?,
        account_id: r.try_get(4)?,
        captured_at_ms: int(5)?,
        viewers: int(6)?,
        version: int(7)?,
    };
    let body: Vec<u8> = r.try_get(8)?;
    // No size limit here: the publisher applied the configured one.
    let limits = MessageLimits { max_body_bytes: usize::MAX };
    Ok(message::parse(fields, Bytes::from(body), &limits))
}

impl KeyframeQueue for DbQueue {
    fn publish<'a>(&'a self, message: &'a QueueMessage) -> BoxFuture<'a, Result<(), QueueError>> {
        async move {
            let deadline = tokio::time::Instant::now() + self.inner.cfg.publish_timeout;
            loop {
                if self.inner.closed.load(Ordering::SeqCst) {
                    return Err(QueueError::Closed);
                }
                let space = self.inner.space.notified();
                tokio::pin!(space);
                space.as_mut().enable();
                if self.try_publish(message).await? {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(QueueError::Full(self.inner.cfg.capacity));
                }
                // Room appears when a consumer of this process settles (the notify) or one of
                // another process does (only a poll can tell).
                let poll = Duration::from_millis(50);
                tokio::select! {
                    () = space => {}
                    () = tokio::time::sleep(poll) => {}
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
        }
        .boxed()
    }

    fn consume(&self) -> BoxFuture<'_, Result<Box<dyn DeliveryStream>, QueueError>> {
        let stream: Box<dyn DeliveryStream> = Box::new(DbConsumer {
            inner: Arc::clone(&self.inner),
            claim_sql: claim_sql(self.inner.store.kind()),
            backoff: super::backoff::Backoff::new(
                Duration::from_millis(100),
                Duration::from_secs(5),
            ),
        });
        futures::future::ready(Ok(stream)).boxed()
    }

    fn kind(&self) -> &'static str {
        "database"
    }
}

struct DbConsumer {
    inner: Arc<Inner>,
    claim_sql: String,
    backoff: super::backoff::Backoff,
}

/// A claimed row.
struct Claimed {
    id: i64,
    message: Result<QueueMessage, message::MessageError>,
    deliveries: i64,
    abandoned: i64,
}

impl DbConsumer {
    async fn claim(&self, token: &str) -> Result<Option<Claimed>, sqlx::Error> {
        let now = now_ms();
        let row = sqlx::query(sqlx::AssertSqlSafe(self.claim_sql.as_str()))
            .bind(token)
            .bind(now.saturating_add(ms(self.inner.cfg.lease)))
            .bind(now)
            .fetch_optional(self.inner.store.pool())
            .await?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(Claimed {
            id: r.try_get(0)?,
            message: message_of(&r)?,
            deliveries: r.try_get(9)?,
            abandoned: r.try_get(10)?,
        }))
    }
}

impl DeliveryStream for DbConsumer {
    fn next(&mut self) -> BoxFuture<'_, Option<Delivery>> {
        async move {
            loop {
                if self.inner.closed.load(Ordering::SeqCst) {
                    return None;
                }
                // Register for the wake-up before looking, so a publish between the look and
                // the wait is not missed.
                let published = self.inner.ready.notified();
                tokio::pin!(published);
                published.as_mut().enable();
                let token = uuid::Uuid::new_v4().simple().to_string();
                match self.claim(&token).await {
                    Ok(Some(claimed)) => {
                        self.backoff.reset();
                        let settle = DbSettle::new(Arc::clone(&self.inner), claimed.id, token);
                        if claimed.abandoned >= MAX_ABANDONED {
                            let reason = format!(
                                "abandoned unsettled {} times: a worker died or stalled while \
                                 handling it each time",
                                claimed.abandoned
                            );
                            if let Err(e) = Box::new(settle).dead_letter(reason).await {
                                tracing::warn!(error = %e, "dead-lettering an abandoned message failed");
                            }
                            continue;
                        }
                        return Some(Delivery::new(
                            claimed.message,
                            claimed.deliveries > 1,
                            Box::new(settle),
                        ));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // Ridden out like a broker outage: the caller just keeps calling.
                        let wait = self.backoff.next_delay();
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "claiming a keyframe failed");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                }
                tokio::select! {
                    () = published => {}
                    () = tokio::time::sleep(self.inner.cfg.poll_interval) => {}
                }
            }
        }
        .boxed()
    }
}

/// One claim, settled exactly once; renews its lease until then.
struct DbSettle {
    inner: Arc<Inner>,
    id: i64,
    token: String,
    renewal: AbortHandle,
    settled: bool,
}

impl DbSettle {
    fn new(inner: Arc<Inner>, id: i64, token: String) -> Self {
        let renewal = tokio::spawn(renew(Arc::clone(&inner), id, token.clone())).abort_handle();
        DbSettle { inner, id, token, renewal, settled: false }
    }

    /// Stops the renewal and marks the claim settled (so `Drop` leaves it alone).
    fn finish(&mut self) {
        self.renewal.abort();
        self.settled = true;
    }

    /// Runs one settling statement against this claim.
    async fn run(&self, sql: &'static str) -> Result<(), QueueError> {
        sqlx::query(sql)
            .bind(self.id)
            .bind(self.token.as_str())
            .execute(self.inner.store.pool())
            .await
            .map_err(|e| db_error(&e))?;
        Ok(())
    }
}

/// Extends the claim's lease every third of it until the claim is settled (this task is then
/// aborted) or lost (the row is no longer ours).
async fn renew(inner: Arc<Inner>, id: i64, token: String) {
    let every = inner.cfg.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let renewed =
            sqlx::query("UPDATE keyframe_queue SET lease_until = $1 WHERE id = $2 AND claim = $3")
                .bind(now_ms().saturating_add(ms(inner.cfg.lease)))
                .bind(id)
                .bind(token.as_str())
                .execute(inner.store.pool())
                .await;
        match renewed {
            Ok(done) if done.rows_affected() == 0 => {
                tracing::warn!(
                    id,
                    "a keyframe's lease ran out while it was handled; it will be delivered again"
                );
                return;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(id, error = %e, "renewing a keyframe's lease failed"),
        }
    }
}

const ACK_SQL: &str = "DELETE FROM keyframe_queue WHERE id = $1 AND claim = $2";
const REQUEUE_SQL: &str =
    "UPDATE keyframe_queue SET claim = NULL, lease_until = NULL WHERE id = $1 AND claim = $2";
const RELEASE_SQL: &str = "UPDATE keyframe_queue SET claim = NULL, lease_until = NULL, \
     abandoned = abandoned + 1 WHERE id = $1 AND claim = $2";

impl Settle for DbSettle {
    fn ack(mut self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        self.finish();
        async move {
            self.run(ACK_SQL).await?;
            self.inner.space.notify_waiters();
            Ok(())
        }
        .boxed()
    }

    fn requeue(mut self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        self.finish();
        async move {
            self.run(REQUEUE_SQL).await?;
            self.inner.ready.notify_one();
            Ok(())
        }
        .boxed()
    }

    fn dead_letter(
        mut self: Box<Self>,
        reason: String,
    ) -> BoxFuture<'static, Result<(), QueueError>> {
        self.finish();
        async move {
            let pool = self.inner.store.pool();
            let moved = async {
                let mut tx = pool.begin().await?;
                let copied = sqlx::query(
                    "INSERT INTO keyframe_dead_letters (stream_id, content_type, ts_ms, \
                       account_id, captured_at_ms, viewers, version, body, reason, deliveries, \
                       enqueued_at, created_at) \
                     SELECT stream_id, content_type, ts_ms, account_id, captured_at_ms, viewers, \
                       version, body, $3, deliveries, created_at, $4 \
                     FROM keyframe_queue WHERE id = $1 AND claim = $2",
                )
                .bind(self.id)
                .bind(self.token.as_str())
                .bind(reason.as_str())
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
                if copied.rows_affected() == 0 {
                    // The lease ran out and another worker holds the row: it decides.
                    return Ok(false);
                }
                sqlx::query(ACK_SQL)
                    .bind(self.id)
                    .bind(self.token.as_str())
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "DELETE FROM keyframe_dead_letters \
                     WHERE id <= (SELECT MAX(id) FROM keyframe_dead_letters) - $1",
                )
                .bind(DEAD_LETTERS_KEPT)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok::<_, sqlx::Error>(true)
            }
            .await
            .map_err(|e| db_error(&e))?;
            if moved {
                tracing::warn!(id = self.id, %reason, "keyframe dead-lettered");
            }
            self.inner.space.notify_waiters();
            Ok(())
        }
        .boxed()
    }
}

impl Drop for DbSettle {
    // A delivery dropped unsettled (its task panicked or was cancelled) is released at once,
    // as RabbitMQ requeues a closed channel's unacked messages; if the runtime is gone (the
    // process is ending), its lease runs out instead.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        self.renewal.abort();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (inner, id, token) =
            (Arc::clone(&self.inner), self.id, std::mem::take(&mut self.token));
        runtime.spawn(async move {
            let released = sqlx::query(RELEASE_SQL)
                .bind(id)
                .bind(token.as_str())
                .execute(inner.store.pool())
                .await;
            match released {
                Ok(_) => inner.ready.notify_one(),
                Err(e) => {
                    tracing::warn!(id, error = %e, "releasing a dropped delivery failed; its lease will run out");
                }
            }
        });
    }
}
