//! The RabbitMQ queue (lapin).
//!
//! Topology (all names carry the configured prefix, empty in production, unique per test):
//! - `offside.keyframes`: durable topic exchange, routing key = stream id (the contract);
//! - `offside.keyframes.work`: durable queue bound with `#`, shared by every worker (any worker
//!   takes any keyframe; see the module docs of [`crate::queue`] for why);
//! - `offside.keyframes.dlx`: durable fanout dead-letter exchange, and its queue
//!   `offside.keyframes.dead`.
//!
//! Dead-lettering: a permanently unusable message is republished to the DLX with its original
//! headers plus `x-offside-error: <reason>` (waiting for the publisher confirm), then acked.
//! `basic.nack(requeue=false)` alone would route it through the queue's dead-letter arguments
//! but with only `x-death` reason `rejected`, and the contract asks for the reason. If the
//! republish fails, the fallback is exactly that nack, so the message still never loops. The
//! crash window between the confirm and the ack can leave a duplicate in the dead-letter queue,
//! which is harmless.
//!
//! Reconnection: consumers and the publisher own their connection and rebuild it (connection,
//! channels, topology, prefetch, consumer) with jittered exponential backoff whenever it drops.
//! Unacked deliveries of a dropped connection are redelivered by the broker; the worker's
//! decisions are idempotent, so nothing is lost and nothing acts twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;

use super::backoff::Backoff;
use super::message::{self, CONTENT_TYPE_STREAM_END, MESSAGE_VERSION, MessageLimits, RawFields};
use super::{Delivery, DeliveryStream, KeyframeQueue, QueueError, QueueMessage, Settle};

/// Header carrying the dead-letter reason.
pub const ERROR_HEADER: &str = "x-offside-error";
/// Header carrying the message layout version.
pub const VERSION_HEADER: &str = "x-offside-version";

/// Settings of the AMQP queue.
#[derive(Clone)]
pub struct AmqpConfig {
    /// Broker URL, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// Prefix of every exchange and queue name ("" in production; unique per test).
    pub prefix: String,
    /// Unacked deliveries per consumer (basic.qos). Bounds a worker's memory and lets other
    /// workers take the rest.
    pub prefetch: u16,
    /// How long a publication may wait for the broker (reconnecting) before it fails.
    pub publish_timeout: Duration,
    /// Limits applied when parsing received messages.
    pub limits: MessageLimits,
}

impl std::fmt::Debug for AmqpConfig {
    // The URL may carry a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("prefetch", &self.prefetch)
            .field("publish_timeout", &self.publish_timeout)
            .finish()
    }
}

fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("REDACTED"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

impl AmqpConfig {
    /// Defaults for a URL: no prefix, prefetch 32, 10 s publish timeout.
    pub fn new(url: impl Into<String>) -> Self {
        AmqpConfig {
            url: url.into(),
            prefix: String::new(),
            prefetch: 32,
            publish_timeout: Duration::from_secs(10),
            limits: MessageLimits::default(),
        }
    }

    /// The keyframe exchange's name.
    pub fn exchange(&self) -> String {
        format!("{}offside.keyframes", self.prefix)
    }
    /// The work queue's name.
    pub fn work_queue(&self) -> String {
        format!("{}offside.keyframes.work", self.prefix)
    }
    /// The dead-letter exchange's name.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}offside.keyframes.dlx", self.prefix)
    }
    /// The dead-letter queue's name.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}offside.keyframes.dead", self.prefix)
    }
}

/// The RabbitMQ implementation of [`KeyframeQueue`].
pub struct AmqpQueue {
    cfg: Arc<AmqpConfig>,
    publisher: Mutex<Option<Link>>,
}

impl std::fmt::Debug for AmqpQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpQueue").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// A connection and a channel with publisher confirms on; the topology is declared on it.
struct Link {
    connection: Connection,
    channel: Channel,
}

impl Link {
    async fn open(cfg: &AmqpConfig, name: &str) -> Result<Link, QueueError> {
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let connection = Connection::connect(&cfg.url, props).await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        declare_topology(&channel, cfg).await?;
        Ok(Link { connection, channel })
    }

    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }

    fn close(self) {
        // Closing politely lets the broker requeue at once instead of after a heartbeat timeout.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = self.connection.close(200, "closing".into()).await;
            });
        }
    }
}

/// Declares the exchanges, queues and bindings; idempotent.
///
/// # Errors
/// The broker refused a declaration (e.g. an existing queue with other arguments).
pub async fn declare_topology(channel: &Channel, cfg: &AmqpConfig) -> Result<(), QueueError> {
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    channel
        .exchange_declare(
            cfg.exchange().into(),
            ExchangeKind::Topic,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            cfg.dead_letter_exchange().into(),
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    let qdurable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(cfg.dead_letter_queue().into(), qdurable, FieldTable::default()).await?;
    channel
        .queue_bind(
            cfg.dead_letter_queue().into(),
            cfg.dead_letter_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(cfg.dead_letter_exchange().into()),
    );
    channel.queue_declare(cfg.work_queue().into(), qdurable, args).await?;
    channel
        .queue_bind(
            cfg.work_queue().into(),
            cfg.exchange().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

impl AmqpQueue {
    /// A queue on the broker at `cfg.url`. Connects lazily: creating it never fails, so a
    /// service starts even while the broker is still coming up.
    pub fn new(cfg: AmqpConfig) -> Self {
        AmqpQueue { cfg: Arc::new(cfg), publisher: Mutex::new(None) }
    }

    /// Connects once and declares the topology, to fail fast at startup on a wrong URL.
    ///
    /// # Errors
    /// The broker cannot be reached or refuses the topology.
    pub async fn ensure_topology(&self) -> Result<(), QueueError> {
        self.publisher_channel().await.map(|_| ())
    }

    /// The configuration.
    pub fn config(&self) -> &AmqpConfig {
        &self.cfg
    }

    async fn publisher_channel(&self) -> Result<Channel, QueueError> {
        let mut guard = self.publisher.lock().await;
        if let Some(link) = guard.as_ref()
            && link.usable()
        {
            return Ok(link.channel.clone());
        }
        if let Some(old) = guard.take() {
            old.close();
        }
        let link = Link::open(&self.cfg, "offside-publisher").await?;
        let channel = link.channel.clone();
        *guard = Some(link);
        Ok(channel)
    }

    async fn drop_publisher(&self) {
        if let Some(old) = self.publisher.lock().await.take() {
            old.close();
        }
    }

    async fn try_publish(&self, message: &QueueMessage) -> Result<(), QueueError> {
        let channel = self.publisher_channel().await?;
        let (properties, body) = encode(message);
        let confirm = channel
            .basic_publish(
                self.cfg.exchange().into(),
                message.stream_id().into(),
                BasicPublishOptions::default(),
                &body,
                properties,
            )
            .await?
            .await?;
        if confirm.is_nack() {
            return Err(QueueError::Refused);
        }
        Ok(())
    }
}

/// The wire form of a message: persistent, with the contract's headers.
pub fn encode(message: &QueueMessage) -> (BasicProperties, Bytes) {
    let mut headers = FieldTable::default();
    headers.insert(VERSION_HEADER.into(), AMQPValue::LongUInt(MESSAGE_VERSION));
    headers.insert("stream_id".into(), AMQPValue::LongString(message.stream_id().into()));
    let (content_type, body) = match message {
        QueueMessage::Keyframe(k) => {
            headers.insert("ts_ms".into(), AMQPValue::LongLongInt(k.ts_ms));
            if let Some(a) = &k.account_id {
                headers.insert("account_id".into(), AMQPValue::LongString(a.as_str().into()));
            }
            if let Some(c) = k.captured_at_ms {
                headers.insert("captured_at_ms".into(), AMQPValue::LongLongInt(c));
            }
            if let Some(v) = k.viewers {
                headers.insert("viewers".into(), AMQPValue::LongLongInt(v));
            }
            (k.content_type.clone(), k.body.clone())
        }
        QueueMessage::StreamEnd(_) => (CONTENT_TYPE_STREAM_END.to_owned(), Bytes::new()),
    };
    let properties = BasicProperties::default()
        .with_content_type(content_type.as_str().into())
        .with_delivery_mode(2)
        .with_headers(headers);
    (properties, body)
}

/// Parses a received AMQP message (headers, content type, body) into a typed message.
///
/// # Errors
/// The [`message::MessageError`] that becomes the dead-letter reason.
pub fn decode(
    properties: &BasicProperties,
    body: Bytes,
    limits: &MessageLimits,
) -> Result<QueueMessage, message::MessageError> {
    let empty = BTreeMap::new();
    let headers = properties.headers().as_ref().map(|h| h.inner()).unwrap_or(&empty);
    let get = |name: &str| headers.get(name).map(header_text);
    let fields = RawFields {
        stream_id: get("stream_id"),
        ts_ms: get("ts_ms"),
        account_id: get("account_id"),
        captured_at_ms: get("captured_at_ms"),
        viewers: get("viewers"),
        version: get(VERSION_HEADER),
        content_type: properties.content_type().as_ref().map(|c| c.as_str().to_owned()),
    };
    message::parse(fields, body, limits)
}

/// Renders a header value as text: platforms send integers as AMQP integers or as strings.
fn header_text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        AMQPValue::ShortShortInt(i) => i.to_string(),
        AMQPValue::ShortShortUInt(i) => i.to_string(),
        AMQPValue::ShortInt(i) => i.to_string(),
        AMQPValue::ShortUInt(i) => i.to_string(),
        AMQPValue::LongInt(i) => i.to_string(),
        AMQPValue::LongUInt(i) => i.to_string(),
        AMQPValue::LongLongInt(i) => i.to_string(),
        AMQPValue::Timestamp(t) => t.to_string(),
        other => format!("{other:?}"),
    }
}

impl KeyframeQueue for AmqpQueue {
    fn publish<'a>(&'a self, message: &'a QueueMessage) -> BoxFuture<'a, Result<(), QueueError>> {
        async move {
            let deadline = tokio::time::Instant::now() + self.cfg.publish_timeout;
            let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
            loop {
                match self.try_publish(message).await {
                    Ok(()) => return Ok(()),
                    Err(QueueError::Refused) => return Err(QueueError::Refused),
                    Err(e) => {
                        tracing::warn!(error = %e, "publish failed; reconnecting");
                        self.drop_publisher().await;
                        let wait = backoff.next_delay();
                        if tokio::time::Instant::now() + wait >= deadline {
                            return Err(QueueError::Timeout(self.cfg.publish_timeout));
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        .boxed()
    }

    fn consume(&self) -> BoxFuture<'_, Result<Box<dyn DeliveryStream>, QueueError>> {
        async move {
            let mut consumer = AmqpConsumer { cfg: self.cfg.clone(), state: None, backoff: None };
            // Connect now so a wrong URL is reported at startup; later drops reconnect.
            consumer.connect().await?;
            let stream: Box<dyn DeliveryStream> = Box::new(consumer);
            Ok(stream)
        }
        .boxed()
    }

    fn kind(&self) -> &'static str {
        "amqp"
    }
}

struct ConsumerState {
    link: Link,
    consume_channel: Channel,
    consumer: lapin::Consumer,
}

struct AmqpConsumer {
    cfg: Arc<AmqpConfig>,
    state: Option<ConsumerState>,
    backoff: Option<Backoff>,
}

impl AmqpConsumer {
    async fn connect(&mut self) -> Result<(), QueueError> {
        // The link's channel (with confirms) republishes dead letters; a second channel consumes
        // so its prefetch applies to deliveries only.
        let link = Link::open(&self.cfg, "offside-worker").await?;
        let consume_channel = link.connection.create_channel().await?;
        consume_channel.basic_qos(self.cfg.prefetch, BasicQosOptions::default()).await?;
        let consumer = consume_channel
            .basic_consume(
                self.cfg.work_queue().into(),
                ShortString::from(format!("offside-{}", uuid::Uuid::new_v4())),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        self.state = Some(ConsumerState { link, consume_channel, consumer });
        Ok(())
    }
}

impl Drop for AmqpConsumer {
    // A consumer that goes away (a worker stopping) closes its connection, so the broker
    // requeues its unacked deliveries at once rather than after a heartbeat timeout.
    fn drop(&mut self) {
        if let Some(old) = self.state.take() {
            old.link.close();
        }
    }
}

impl DeliveryStream for AmqpConsumer {
    fn next(&mut self) -> BoxFuture<'_, Option<Delivery>> {
        async move {
            loop {
                if self.state.is_none() {
                    if let Err(e) = self.connect().await {
                        let wait = self
                            .backoff
                            .get_or_insert_with(|| {
                                Backoff::new(Duration::from_millis(100), Duration::from_secs(5))
                            })
                            .next_delay();
                        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "broker unavailable");
                        metrics::counter!("offside_queue_reconnects_total").increment(1);
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    if self.backoff.take().is_some() {
                        tracing::info!("reconnected to the broker");
                    }
                }
                let Some(state) = self.state.as_mut() else { continue };
                match state.consumer.next().await {
                    Some(Ok(d)) => {
                        let data = Bytes::from(d.data);
                        let message = decode(&d.properties, data.clone(), &self.cfg.limits);
                        let settle = AmqpSettle {
                            acker: d.acker,
                            dead_letter_channel: state.link.channel.clone(),
                            dead_letter_exchange: self.cfg.dead_letter_exchange(),
                            routing_key: d.routing_key.as_str().to_owned(),
                            properties: d.properties,
                            body: data,
                        };
                        return Some(Delivery::new(message, d.redelivered, Box::new(settle)));
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer lost its connection");
                    }
                    None => {
                        tracing::warn!("consumer cancelled by the broker");
                    }
                }
                if let Some(old) = self.state.take() {
                    drop(old.consume_channel);
                    old.link.close();
                }
            }
        }
        .boxed()
    }
}

struct AmqpSettle {
    acker: lapin::Acker,
    dead_letter_channel: Channel,
    dead_letter_exchange: String,
    routing_key: String,
    properties: BasicProperties,
    body: Bytes,
}

impl Settle for AmqpSettle {
    fn ack(self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        async move {
            self.acker.ack(BasicAckOptions::default()).await?;
            Ok(())
        }
        .boxed()
    }

    fn requeue(self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        async move {
            self.acker.nack(BasicNackOptions { requeue: true, multiple: false }).await?;
            Ok(())
        }
        .boxed()
    }

    fn dead_letter(self: Box<Self>, reason: String) -> BoxFuture<'static, Result<(), QueueError>> {
        async move {
            let mut headers = self.properties.headers().clone().unwrap_or_default();
            headers.insert(ERROR_HEADER.into(), AMQPValue::LongString(LongString::from(reason.as_str())));
            let properties = self.properties.clone().with_headers(headers);
            let body = self.body.clone();
            let republished = async {
                let confirm = self
                    .dead_letter_channel
                    .basic_publish(
                        self.dead_letter_exchange.as_str().into(),
                        self.routing_key.as_str().into(),
                        BasicPublishOptions::default(),
                        &body,
                        properties,
                    )
                    .await?
                    .await?;
                Ok::<bool, lapin::Error>(confirm.is_ack())
            }
            .await;
            match republished {
                Ok(true) => {
                    self.acker.ack(BasicAckOptions::default()).await?;
                }
                other => {
                    tracing::warn!(?other, %reason, "dead-letter republish failed; rejecting instead");
                    self.acker.nack(BasicNackOptions { requeue: false, multiple: false }).await?;
                }
            }
            Ok(())
        }
        .boxed()
    }
}
