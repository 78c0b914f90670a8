//! The transactional outbox: events written with the decision that caused them, one delivery
//! per subscribed webhook, and every attempt made.

use sqlx::{Any, Row as _};

use super::{new_id, now_ms};
use crate::domain::Event;

/// Writes an event and one pending delivery per active webhook subscribed to its type. Run it
/// in the decision's transaction: the event exists if and only if the decision does.
///
/// # Errors
/// Any database error.
pub async fn enqueue(tx: &mut sqlx::AnyConnection, event: &Event) -> sqlx::Result<usize> {
    let body = serde_json::to_string(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let now = now_ms();
    sqlx::query(
        "INSERT INTO outbox_events (id, event_type, body, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&event.id)
    .bind(event.kind.as_str())
    .bind(&body)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let hooks = super::webhooks::list(&mut *tx).await?;
    let mut n = 0;
    for hook in hooks.iter().filter(|h| h.events.iter().any(|e| e == event.kind.as_str())) {
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, event_id, webhook_id, status, attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
        )
        .bind(new_id())
        .bind(&event.id)
        .bind(&hook.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        n += 1;
    }
    Ok(n)
}

/// A delivery due now, with what is needed to send it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    /// Delivery id.
    pub id: String,
    /// Event id.
    pub event_id: String,
    /// The exact JSON body.
    pub body: String,
    /// Target URL.
    pub url: String,
    /// Signing secret.
    pub secret: String,
    /// Attempts made so far.
    pub attempts: i64,
}

/// Pending deliveries whose time has come (oldest first, at most `limit`).
///
/// # Errors
/// Any database error.
pub async fn due(db: &sqlx::AnyPool, now: i64, limit: i64) -> sqlx::Result<Vec<DueDelivery>> {
    let rows = sqlx::query(
        "SELECT d.id, d.event_id, e.body, w.url, w.secret, d.attempts, d.next_attempt_at \
         FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event_id \
         JOIN webhooks w ON w.id = d.webhook_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= $1 AND w.deleted_at IS NULL \
         ORDER BY d.next_attempt_at, d.id LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DueDelivery {
                id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                body: r.try_get(2)?,
                url: r.try_get(3)?,
                secret: r.try_get(4)?,
                attempts: r.try_get(5)?,
            })
        })
        .collect()
}

/// Claims a due delivery for `lease_ms` by pushing its next attempt time forward, only if no
/// other process did first (compare-and-set on the attempt count). Returns whether this
/// process owns the attempt. If it dies mid-attempt, the lease expires and another retries.
///
/// # Errors
/// Any database error.
pub async fn claim(
    db: &sqlx::AnyPool,
    d: &DueDelivery,
    now: i64,
    lease_ms: i64,
) -> sqlx::Result<bool> {
    let done = sqlx::query(
        "UPDATE webhook_deliveries SET next_attempt_at = $1, attempts = attempts + 1 \
         WHERE id = $2 AND status = 'pending' AND attempts = $3 AND next_attempt_at <= $4",
    )
    .bind(now + lease_ms)
    .bind(&d.id)
    .bind(d.attempts)
    .bind(now)
    .execute(db)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// What an attempt did.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    /// Attempt number (1-based).
    pub attempt: i64,
    /// HTTP status, if a response came.
    pub status_code: Option<u16>,
    /// Error text when no 2xx.
    pub error: Option<&'a str>,
    /// How long it took.
    pub duration_ms: i64,
    /// Whether it was delivered.
    pub delivered: bool,
    /// When to retry otherwise.
    pub next_attempt_at: i64,
}

/// Records an attempt and its consequence on the delivery, in one transaction.
///
/// # Errors
/// Any database error.
pub async fn record_attempt(
    db: &sqlx::AnyPool,
    delivery_id: &str,
    a: &AttemptRecord<'_>,
) -> sqlx::Result<()> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (id, delivery_id, attempt, status_code, error, duration_ms, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new_id())
    .bind(delivery_id)
    .bind(a.attempt)
    .bind(a.status_code.map(i64::from))
    .bind(a.error)
    .bind(a.duration_ms)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if a.delivered {
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(delivery_id)
        .execute(&mut *tx)
        .await?;
    } else {
        sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = $1 WHERE id = $2")
            .bind(a.next_attempt_at)
            .bind(delivery_id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// A delivery's state, for the API and tests.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct DeliveryState {
    /// Delivery id.
    pub id: String,
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// pending or delivered.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// Last HTTP status seen.
    pub last_status_code: Option<i64>,
}

/// Deliveries of a webhook, newest first.
///
/// # Errors
/// Any database error.
pub async fn deliveries<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    webhook_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryState>> {
    let rows = sqlx::query(
        "SELECT d.id, d.event_id, e.event_type, d.status, d.attempts, \
         (SELECT a.status_code FROM webhook_attempts a WHERE a.delivery_id = d.id ORDER BY a.attempt DESC LIMIT 1) \
         FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event_id \
         WHERE d.webhook_id = $1 ORDER BY d.id DESC LIMIT $2",
    )
    .bind(webhook_id)
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeliveryState {
                id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                event_type: r.try_get(2)?,
                status: r.try_get(3)?,
                attempts: r.try_get(4)?,
                last_status_code: r.try_get(5)?,
            })
        })
        .collect()
}

/// A delivery as the console's webhook page shows it: where it goes, how far it got, what went
/// wrong last and when it is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLog {
    /// Delivery id.
    pub id: String,
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// The webhook's URL.
    pub url: String,
    /// pending or delivered.
    pub status: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: i64,
    /// When it was delivered.
    pub delivered_at: Option<i64>,
    /// The last attempt's HTTP status, if a response came.
    pub last_status_code: Option<i64>,
    /// The last attempt's error.
    pub last_error: Option<String>,
    /// When the delivery was created.
    pub created_at: i64,
}

/// The latest deliveries of every webhook (newest first), pending ones only with
/// `pending_only`.
///
/// # Errors
/// Any database error.
pub async fn delivery_log<'e>(
    db: impl sqlx::Executor<'e, Database = Any>,
    pending_only: bool,
    limit: i64,
) -> sqlx::Result<Vec<DeliveryLog>> {
    let rows = sqlx::query(
        "SELECT d.id, d.event_id, e.event_type, w.url, d.status, d.attempts, d.next_attempt_at, \
         d.delivered_at, \
         (SELECT a.status_code FROM webhook_attempts a WHERE a.delivery_id = d.id \
          ORDER BY a.attempt DESC LIMIT 1), \
         (SELECT a.error FROM webhook_attempts a WHERE a.delivery_id = d.id \
          ORDER BY a.attempt DESC LIMIT 1), \
         d.created_at \
         FROM webhook_deliveries d JOIN outbox_events e ON e.id = d.event_id \
         JOIN webhooks w ON w.id = d.webhook_id \
         WHERE ($1 = 0 OR d.status = 'pending') ORDER BY d.id DESC LIMIT $2",
    )
    .bind(i64::from(pending_only))
    .bind(limit)
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(DeliveryLog {
                id: r.try_get(0)?,
                event_id: r.try_get(1)?,
                event_type: r.try_get(2)?,
                url: r.try_get(3)?,
                status: r.try_get(4)?,
                attempts: r.try_get(5)?,
                next_attempt_at: r.try_get(6)?,
                delivered_at: r.try_get(7)?,
                last_status_code: r.try_get(8)?,
                last_error: r.try_get(9)?,
                created_at: r.try_get(10)?,
            })
        })
        .collect()
}
