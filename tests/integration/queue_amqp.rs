//! The AMQP queue against the machine's RabbitMQ, each test under its own name prefix.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use offside::queue::amqp::{AmqpConfig, AmqpQueue, ERROR_HEADER};
use offside::queue::{KeyframeMessage, KeyframeQueue, QueueMessage};

const URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn config() -> AmqpConfig {
    let mut cfg = AmqpConfig::new(URL);
    cfg.prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    cfg.prefetch = 4;
    cfg
}

fn keyframe(stream: &str, ts_ms: i64) -> QueueMessage {
    QueueMessage::Keyframe(KeyframeMessage {
        stream_id: stream.into(),
        ts_ms,
        account_id: Some("acct".into()),
        captured_at_ms: Some(1_700_000_000_000 + ts_ms),
        viewers: Some(1_000 + ts_ms),
        content_type: "image/jpeg".into(),
        body: Bytes::from_static(b"\xff\xd8\xff\xe0 not really a jpeg"),
    })
}

async fn cleanup(cfg: &AmqpConfig) {
    if let Ok(conn) = Connection::connect(URL, ConnectionProperties::default()).await {
        if let Ok(ch) = conn.create_channel().await {
            for q in [cfg.work_queue(), cfg.dead_letter_queue()] {
                let _ = ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
            }
            for x in [cfg.exchange(), cfg.dead_letter_exchange()] {
                let _ = ch.exchange_delete(x.as_str().into(), Default::default()).await;
            }
        }
        let _ = conn.close(200, "bye".into()).await;
    }
}

async fn next_within(
    stream: &mut Box<dyn offside::queue::DeliveryStream>,
) -> offside::queue::Delivery {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("a delivery within 10 s")
        .expect("the queue is open")
}

#[tokio::test]
async fn a_published_keyframe_is_consumed_with_every_header_intact() {
    let cfg = config();
    let queue = AmqpQueue::new(cfg.clone());
    let mut consumer = queue.consume().await.unwrap();
    queue.publish(&keyframe("stream-1", 2000)).await.unwrap();
    let delivery = next_within(&mut consumer).await;
    assert_eq!(delivery.message.as_ref().unwrap(), &keyframe("stream-1", 2000));
    assert!(!delivery.redelivered);
    delivery.ack().await.unwrap();
    cleanup(&cfg).await;
}

#[tokio::test]
async fn a_message_without_ts_ms_lands_in_the_dead_letter_queue_with_its_reason() {
    let cfg = config();
    let queue = AmqpQueue::new(cfg.clone());
    let mut consumer = queue.consume().await.unwrap();

    // Published like a careless platform would: no ts_ms header.
    let conn = Connection::connect(URL, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert("stream_id".into(), AMQPValue::LongString("s-poison".into()));
    ch.basic_publish(
        cfg.exchange().as_str().into(),
        "s-poison".into(),
        BasicPublishOptions::default(),
        b"jpeg bytes",
        BasicProperties::default().with_content_type("image/jpeg".into()).with_headers(headers),
    )
    .await
    .unwrap();

    let delivery = next_within(&mut consumer).await;
    let reason = delivery.message.as_ref().unwrap_err().to_string();
    assert_eq!(reason, "missing header ts_ms");
    delivery.dead_letter(reason).await.unwrap();

    let mut dead = ch
        .basic_consume(
            cfg.dead_letter_queue().as_str().into(),
            "inspector".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let d =
        tokio::time::timeout(Duration::from_secs(10), dead.next()).await.unwrap().unwrap().unwrap();
    let headers = d.properties.headers().clone().unwrap();
    let error = headers.inner().get(ERROR_HEADER).expect("the reason header");
    assert_eq!(error, &AMQPValue::LongString("missing header ts_ms".into()));
    assert_eq!(d.data, b"jpeg bytes");
    d.ack(BasicAckOptions::default()).await.unwrap();
    let _ = conn.close(200, "bye".into()).await;
    cleanup(&cfg).await;
}

#[tokio::test]
async fn an_unacked_keyframe_is_redelivered_after_its_consumer_dies() {
    let cfg = config();
    let queue = AmqpQueue::new(cfg.clone());
    let mut first = queue.consume().await.unwrap();
    queue.publish(&keyframe("stream-2", 4000)).await.unwrap();
    let taken = next_within(&mut first).await;
    assert!(!taken.redelivered);
    // The worker dies holding the delivery: its connection goes away without an ack.
    drop(taken);
    drop(first);

    let mut second = queue.consume().await.unwrap();
    let again = next_within(&mut second).await;
    assert!(again.redelivered);
    assert_eq!(again.message.as_ref().unwrap(), &keyframe("stream-2", 4000));
    again.ack().await.unwrap();
    cleanup(&cfg).await;
}

#[tokio::test]
async fn a_requeued_keyframe_comes_back_to_a_consumer() {
    let cfg = config();
    let queue = AmqpQueue::new(cfg.clone());
    let mut consumer = queue.consume().await.unwrap();
    queue.publish(&keyframe("stream-3", 0)).await.unwrap();
    next_within(&mut consumer).await.requeue().await.unwrap();
    let again = next_within(&mut consumer).await;
    assert!(again.redelivered);
    again.ack().await.unwrap();
    cleanup(&cfg).await;
}
