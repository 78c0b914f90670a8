//! The webhook delivery loop: reads due deliveries from the outbox, signs and POSTs them,
//! records every attempt, and retries with exponential backoff and jitter until a 2xx.
//!
//! Everything it needs is in the database, so it survives restarts: a delivery interrupted
//! mid-attempt keeps its claim lease and is retried when the lease runs out. Several processes
//! may run the loop; a claim is a compare-and-set on the attempt count, so one attempt is made
//! by one process. Delivery is at-least-once (a receiver that answers 2xx after we time out
//! gets the event again); receivers deduplicate by the event id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::webhook::WebhookClient;
use crate::queue::backoff;
use crate::store::outbox::{self, AttemptRecord};
use crate::store::{Store, now_ms};

/// Settings of the delivery loop.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// How often to look for due deliveries when not woken (decisions made by other processes).
    pub poll_interval: Duration,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// How long a claimed attempt may take before another process may retry it.
    pub lease: Duration,
    /// Deliveries sent concurrently per batch.
    pub batch: i64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            poll_interval: Duration::from_millis(200),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            lease: Duration::from_secs(60),
            batch: 32,
        }
    }
}

/// Runs one pass: sends every due delivery once. Returns how many were attempted.
///
/// # Errors
/// A database error.
pub async fn run_once(
    store: &Store,
    client: &WebhookClient,
    cfg: &DeliveryConfig,
) -> sqlx::Result<usize> {
    let now = now_ms();
    let due = outbox::due(store.pool(), now, cfg.batch).await?;
    let mut sends = Vec::new();
    for d in due {
        let lease = i64::try_from(cfg.lease.as_millis()).unwrap_or(i64::MAX);
        if !outbox::claim(store.pool(), &d, now, lease).await? {
            continue;
        }
        let client = client.clone();
        let store = store.clone();
        let cfg = cfg.clone();
        sends.push(tokio::spawn(async move {
            let started = Instant::now();
            let outcome = client.deliver(&d.url, d.secret.as_bytes(), d.body.as_bytes(), now_ms() / 1000).await;
            let attempt = d.attempts + 1;
            let delay = backoff::delay(u32::try_from(d.attempts).unwrap_or(u32::MAX), cfg.retry_base, cfg.retry_max);
            let error = match &outcome {
                super::webhook::AttemptOutcome::Delivered(_) => None,
                super::webhook::AttemptOutcome::Rejected(s) => Some(format!("HTTP {s}")),
                super::webhook::AttemptOutcome::Failed(e) => Some(e.clone()),
            };
            let record = AttemptRecord {
                attempt,
                status_code: outcome.status(),
                error: error.as_deref(),
                duration_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
                delivered: outcome.is_delivered(),
                next_attempt_at: now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
            };
            metrics::counter!("offside_webhook_attempts_total", "delivered" => if outcome.is_delivered() { "true" } else { "false" })
                .increment(1);
            record_outcome(outcome.is_delivered(), &d.body);
            if let Some(e) = &error {
                tracing::warn!(delivery_id = %d.id, event_id = %d.event_id, attempt, error = %e, retry_in_ms = delay.as_millis() as u64, "webhook delivery failed");
            }
            if let Err(e) = outbox::record_attempt(store.pool(), &d.id, &record).await {
                // The lease expires and the attempt is repeated: at-least-once.
                tracing::warn!(error = %e, delivery_id = %d.id, "recording a webhook attempt failed");
            }
        }));
    }
    let n = sends.len();
    for s in sends {
        let _ = s.await;
    }
    Ok(n)
}

/// Counts an attempt in `offside_webhook_deliveries_total{outcome}` and, once delivered, the
/// time from the event's decision to its delivery. There is no `given_up` outcome: the contract
/// retries until a 2xx, so a receiver that stays down shows as failed attempts and a growing
/// `offside_webhook_oldest_pending_age_seconds`.
fn record_outcome(delivered: bool, body: &str) {
    let outcome = if delivered { "delivered" } else { "failed_attempt" };
    metrics::counter!("offside_webhook_deliveries_total", "outcome" => outcome).increment(1);
    if delivered && let Some(created_ms) = event_created_ms(body) {
        let age_ms = now_ms().saturating_sub(created_ms).max(0);
        metrics::histogram!("offside_webhook_delivery_seconds").record(age_ms as f64 / 1000.0);
    }
}

/// When the event in a webhook body was created (Unix ms): its `created_at_ms`, else its RFC
/// 3339 `created_at` (events written before `created_at_ms` existed).
fn event_created_ms(body: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Times {
        created_at_ms: Option<i64>,
        created_at: Option<String>,
    }
    let t: Times = serde_json::from_str(body).ok()?;
    t.created_at_ms.or_else(|| {
        let at = time::OffsetDateTime::parse(
            t.created_at.as_deref()?,
            &time::format_description::well_known::Rfc3339,
        )
        .ok()?;
        i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
    })
}

/// Delivers until `cancel` fires; `wake` makes it look at once (a decision in this process).
pub async fn run(
    store: Store,
    client: WebhookClient,
    cfg: DeliveryConfig,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    loop {
        match run_once(&store, &client, &cfg).await {
            // A full batch may mean more are due: look again at once.
            Ok(n) if n as i64 >= cfg.batch => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "webhook delivery pass failed; retrying"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(cfg.poll_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_body_gives_its_creation_time_in_either_form() {
        assert_eq!(
            event_created_ms(r#"{"created_at_ms": 1700000000123}"#),
            Some(1_700_000_000_123)
        );
        assert_eq!(
            event_created_ms(r#"{"created_at": "2023-11-14T22:13:20.123Z"}"#),
            Some(1_700_000_000_123)
        );
        assert_eq!(event_created_ms("not json"), None);
    }
}
