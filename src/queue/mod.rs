//! The keyframe queue: one trait with a publish side and a consume side, and two
//! implementations behind it: [`db::DbQueue`], a table in the service's own database, for
//! every deployment without RabbitMQ (the embedded `offside serve` on SQLite, and PostgreSQL
//! without `--amqp-url`), and [`amqp::AmqpQueue`] (RabbitMQ through lapin) for scale-out.
//!
//! Both give the same delivery semantics, so the worker loop is written once:
//! - a publication returns once the message is durable (a committed row; a publisher confirm
//!   of a persistent message): an accepted keyframe survives the process being killed;
//! - a [`Delivery`] is settled exactly once: [`Delivery::ack`] after the handler's effects are
//!   committed, [`Delivery::requeue`] for a transient failure, [`Delivery::dead_letter`] with a
//!   reason for a permanent one (the `keyframe_dead_letters` table, or the dead-letter queue);
//! - a delivery left unsettled (a worker that died mid-message, or dropped it) comes back,
//!   marked redelivered: at once when dropped, after its lease or the broker's heartbeat when
//!   the process died;
//! - capacity is bounded (prefetch for AMQP, a number of queued rows in the database), so a
//!   slow worker pushes back on its producers: a publisher that finds no room in time gets
//!   [`QueueError::Full`] (HTTP ingest answers 503).
//!
//! There is no in-process queue any more: it lost what it held on `kill -9` (issue #15), and
//! the database queue serves the same embedded deployment and the tests.
//!
//! Routing choice: any worker may take any keyframe of any stream. Per-stream affinity through
//! RabbitMQ (single-active-consumer shard queues) puts every shard on the first consumer to
//! register, so three workers would not share load, and a failover would start a stream's
//! evidence from nothing anyway. Keyframes may also arrive out of order. So the matcher's
//! per-stream evidence is kept in the database (see `pipeline`), and a decision is made at most
//! once per (stream, reference) by a unique constraint, whichever worker gets there first.

pub mod amqp;
pub mod backoff;
pub mod db;
pub mod message;

use futures::future::BoxFuture;

pub use message::{
    KeyframeMessage, MessageError, MessageLimits, Payload, QueueMessage, RawFields,
    StreamEndMessage,
};

/// A failure of the queue itself (not of a message).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker could not be reached or refused the operation.
    #[error("message broker: {0}")]
    Broker(String),
    /// The broker did not confirm a publication (publisher confirm nack).
    #[error("the broker refused the message")]
    Refused,
    /// The queue did not accept the message in time (full or broker down).
    #[error("the queue did not accept the message within {0:?}")]
    Timeout(std::time::Duration),
    /// The queue has been closed.
    #[error("the queue is closed")]
    Closed,
    /// The queue held its capacity of messages for the whole publish timeout: the workers are
    /// behind.
    #[error("the queue is full ({0} messages waiting for the workers)")]
    Full(i64),
    /// The database behind the queue failed.
    #[error("queue database: {0}")]
    Database(String),
}

impl From<lapin::Error> for QueueError {
    fn from(e: lapin::Error) -> Self {
        QueueError::Broker(e.to_string())
    }
}

/// The keyframe queue, publish and consume sides. Object safe so the configuration can choose
/// the implementation at run time (`Arc<dyn KeyframeQueue>`).
pub trait KeyframeQueue: Send + Sync + 'static {
    /// Publishes a message; returns once the queue has durably accepted it (publisher confirm
    /// for AMQP).
    fn publish<'a>(&'a self, message: &'a QueueMessage) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Opens a consumer. Each consumer receives a share of the messages.
    fn consume(&self) -> BoxFuture<'_, Result<Box<dyn DeliveryStream>, QueueError>>;

    /// A short name for logs and metrics (`database`, `amqp`).
    fn kind(&self) -> &'static str;
}

/// The consume side: a stream of deliveries.
pub trait DeliveryStream: Send {
    /// The next delivery. `None` only once the queue is closed; broker outages are ridden out
    /// inside (reconnecting with backoff), so a caller just keeps calling.
    fn next(&mut self) -> BoxFuture<'_, Option<Delivery>>;
}

/// How a delivery is settled; one implementation per queue kind.
pub(crate) trait Settle: Send {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>>;
    fn requeue(self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>>;
    fn dead_letter(self: Box<Self>, reason: String) -> BoxFuture<'static, Result<(), QueueError>>;
}

/// One received message, to be settled exactly once.
pub struct Delivery {
    /// The parsed message, or why it cannot be used (then it belongs in the dead-letter queue).
    pub message: Result<QueueMessage, MessageError>,
    /// Whether the queue delivered it before (a previous consumer did not settle it).
    pub redelivered: bool,
    settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("redelivered", &self.redelivered)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    pub(crate) fn new(
        message: Result<QueueMessage, MessageError>,
        redelivered: bool,
        settle: Box<dyn Settle>,
    ) -> Self {
        Delivery { message, redelivered, settle }
    }

    /// Acknowledges: the message's effects are committed; it is gone from the queue.
    ///
    /// # Errors
    /// The broker connection dropped; the message will be redelivered (handlers are idempotent).
    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    /// Returns the message to the queue after a transient failure.
    ///
    /// # Errors
    /// The broker connection dropped; the message comes back anyway.
    pub async fn requeue(self) -> Result<(), QueueError> {
        self.settle.requeue().await
    }

    /// Moves the message to the dead-letter queue with the reason (header `x-offside-error`).
    ///
    /// # Errors
    /// The broker connection dropped; the message will be redelivered and refused again.
    pub async fn dead_letter(self, reason: impl Into<String>) -> Result<(), QueueError> {
        self.settle.dead_letter(reason.into()).await
    }
}

/// The queue the configuration asks for: RabbitMQ when an AMQP URL is set, else a table in
/// `store`'s database.
pub fn from_config(
    config: &crate::config::Config,
    store: &crate::store::Store,
) -> std::sync::Arc<dyn KeyframeQueue> {
    match &config.amqp_url {
        Some(url) => {
            let mut cfg = amqp::AmqpConfig::new(url.expose());
            cfg.prefix.clone_from(&config.amqp_prefix);
            std::sync::Arc::new(amqp::AmqpQueue::new(cfg))
        }
        None => std::sync::Arc::new(db::DbQueue::new(store.clone(), db::DbQueueConfig::default())),
    }
}
