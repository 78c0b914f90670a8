//! The database keyframe queue (`queue::db`) on SQLite and PostgreSQL: each test runs on a
//! fresh database of both kinds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{Db, TestEnv, fresh};
use bytes::Bytes;
use offside::queue::db::{DbQueue, DbQueueConfig, MAX_ABANDONED};
use offside::queue::{
    Delivery, DeliveryStream, KeyframeMessage, KeyframeQueue, QueueError, QueueMessage,
    StreamEndMessage,
};
use offside::store::Store;

fn keyframe(stream: &str, ts_ms: i64) -> QueueMessage {
    QueueMessage::Keyframe(KeyframeMessage {
        stream_id: stream.into(),
        ts_ms,
        account_id: Some("acct".into()),
        captured_at_ms: Some(1_700_000_000_000 + ts_ms),
        viewers: Some(1_000 + ts_ms),
        content_type: "application/vnd.offside.pdq".into(),
        body: Bytes::from(format!("{:064x},{}", ts_ms, 90)),
    })
}

fn ts_of(delivery: &Delivery) -> i64 {
    match delivery.message.as_ref().expect("a usable message") {
        QueueMessage::Keyframe(k) => k.ts_ms,
        QueueMessage::StreamEnd(_) => -1,
    }
}

/// Quick settings for tests: a short publish timeout and poll.
fn quick() -> DbQueueConfig {
    DbQueueConfig {
        publish_timeout: Duration::from_millis(200),
        poll_interval: Duration::from_millis(50),
        ..DbQueueConfig::default()
    }
}

async fn next_within(stream: &mut Box<dyn DeliveryStream>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("a delivery within 20 s")
        .expect("the queue is open")
}

/// Claims whatever a fresh consumer of `store` can get within `wait`.
async fn try_next(queue: &DbQueue, wait: Duration) -> Option<Delivery> {
    let mut consumer = queue.consume().await.expect("consumer");
    tokio::time::timeout(wait, consumer.next()).await.ok().flatten()
}

async fn every_field_and_the_body_survive_the_table(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue = DbQueue::new(store, quick());
    let mut consumer = queue.consume().await.unwrap();
    let end = QueueMessage::StreamEnd(StreamEndMessage { stream_id: "s-1".into() });
    queue.publish(&keyframe("s-1", 2000)).await.unwrap();
    queue.publish(&end).await.unwrap();

    let first = next_within(&mut consumer).await;
    assert_eq!(first.message.as_ref().unwrap(), &keyframe("s-1", 2000));
    assert!(!first.redelivered);
    first.ack().await.unwrap();
    let second = next_within(&mut consumer).await;
    assert_eq!(second.message.as_ref().unwrap(), &end);
    second.ack().await.unwrap();
    assert!(queue.is_empty().await.unwrap());
}

async fn claim_never_hands_a_row_twice_under_concurrent_consumers(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue = DbQueue::new(store, quick());
    let total = 300;
    for ts in 0..total {
        queue.publish(&keyframe("s-race", ts)).await.unwrap();
    }
    // Eight consumers race for the rows; each holds what it claimed for a moment before the
    // ack, so claims overlap while others are still unsettled.
    let seen: Arc<Mutex<HashMap<i64, usize>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (queue, seen) = (queue.clone(), Arc::clone(&seen));
        tasks.spawn(async move {
            let mut consumer = queue.consume().await.unwrap();
            while let Ok(Some(d)) =
                tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
            {
                assert!(!d.redelivered, "nothing was left unsettled: {d:?}");
                *seen.lock().unwrap().entry(ts_of(&d)).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
                d.ack().await.unwrap();
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("consumer task");
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), total as usize, "every message delivered");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert!(queue.is_empty().await.unwrap());
}

async fn rows_come_out_oldest_first(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue = DbQueue::new(store, quick());
    for ts in [5, 1, 9] {
        queue.publish(&keyframe("s-order", ts)).await.unwrap();
    }
    let mut consumer = queue.consume().await.unwrap();
    let mut order = Vec::new();
    for _ in 0..3 {
        let d = next_within(&mut consumer).await;
        order.push(ts_of(&d));
        d.ack().await.unwrap();
    }
    assert_eq!(order, [5, 1, 9]);
}

/// A consumer of `env`'s database in a runtime of its own that claims one message and then
/// dies with its runtime, as a killed process would: nothing is settled, nothing released,
/// the lease is no longer renewed.
fn claim_and_die(env: &TestEnv, cfg: DbQueueConfig) -> i64 {
    let url = env.database_url.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let ts = runtime.block_on(async move {
            let store = Store::connect(&url).await.expect("connect");
            let queue = DbQueue::new(store, cfg);
            let mut consumer = queue.consume().await.unwrap();
            let delivery = next_within(&mut consumer).await;
            let ts = ts_of(&delivery);
            std::mem::forget(delivery);
            ts
        });
        runtime.shutdown_background();
        ts
    })
    .join()
    .expect("the dying consumer")
}

async fn a_message_whose_worker_died_comes_back_marked_redelivered_after_its_lease(db: Db) {
    let (env, store) = fresh(db).await;
    let cfg = DbQueueConfig { lease: Duration::from_millis(1500), ..quick() };
    let queue = DbQueue::new(store, cfg.clone());
    queue.publish(&keyframe("s-lease", 1)).await.unwrap();
    queue.publish(&keyframe("s-lease", 2)).await.unwrap();

    assert_eq!(claim_and_die(&env, cfg), 1);
    // The other message is ready at once; the dead worker's waits for its lease.
    let mut consumer = queue.consume().await.unwrap();
    let two = next_within(&mut consumer).await;
    assert_eq!((ts_of(&two), two.redelivered), (2, false));
    two.ack().await.unwrap();
    let one = next_within(&mut consumer).await;
    assert_eq!(ts_of(&one), 1);
    assert!(one.redelivered, "{one:?}");
    one.ack().await.unwrap();
    assert!(queue.is_empty().await.unwrap());
}

async fn a_slow_handler_keeps_its_message_past_the_lease(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue =
        DbQueue::new(store, DbQueueConfig { lease: Duration::from_millis(1500), ..quick() });
    queue.publish(&keyframe("s-slow", 1)).await.unwrap();
    let mut consumer = queue.consume().await.unwrap();
    let held = next_within(&mut consumer).await;
    // Three leases long, renewed meanwhile: nobody else gets the message.
    assert!(try_next(&queue, Duration::from_millis(4500)).await.is_none());
    held.ack().await.unwrap();
    assert!(queue.is_empty().await.unwrap());
}

async fn a_delivery_dropped_unsettled_comes_back_at_once_marked_redelivered(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue = DbQueue::new(store, DbQueueConfig { lease: Duration::from_secs(600), ..quick() });
    queue.publish(&keyframe("s-drop", 1)).await.unwrap();
    let mut consumer = queue.consume().await.unwrap();
    let first = next_within(&mut consumer).await;
    assert!(!first.redelivered);
    drop(first);
    // Well within the ten-minute lease.
    let again = next_within(&mut consumer).await;
    assert!(again.redelivered);
    assert_eq!(ts_of(&again), 1);
    again.ack().await.unwrap();
}

async fn a_requeued_message_comes_back_marked_redelivered(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue = DbQueue::new(store, quick());
    queue.publish(&keyframe("s-requeue", 1)).await.unwrap();
    let mut consumer = queue.consume().await.unwrap();
    next_within(&mut consumer).await.requeue().await.unwrap();
    let again = next_within(&mut consumer).await;
    assert!(again.redelivered);
    again.ack().await.unwrap();
    assert!(queue.is_empty().await.unwrap());
}

async fn dead_letters_keep_the_message_and_the_reason_and_leave_the_queue(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue = DbQueue::new(store, quick());
    queue.publish(&keyframe("s-dead", 7)).await.unwrap();
    let mut consumer = queue.consume().await.unwrap();
    next_within(&mut consumer).await.dead_letter("image: corrupt JPEG data").await.unwrap();

    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "image: corrupt JPEG data");
    assert_eq!(dead[0].message.as_ref().unwrap(), &keyframe("s-dead", 7));
    assert_eq!(dead[0].deliveries, 1);
    assert!(queue.is_empty().await.unwrap());
    assert!(try_next(&queue, Duration::from_millis(300)).await.is_none());
}

async fn a_message_that_keeps_killing_its_worker_is_dead_lettered(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue = DbQueue::new(store, quick());
    queue.publish(&keyframe("s-poison", 1)).await.unwrap();
    queue.publish(&keyframe("s-fine", 2)).await.unwrap();
    let mut consumer = queue.consume().await.unwrap();
    // The poison message is abandoned (its delivery dropped, as when the task dies) as often
    // as is tolerated; the fine one is handled whenever it comes (oldest first, so perhaps
    // only after the poison is out of the way).
    let mut abandoned = 0;
    while abandoned < MAX_ABANDONED {
        let d = next_within(&mut consumer).await;
        if ts_of(&d) == 1 {
            abandoned += 1;
            drop(d);
        } else {
            d.ack().await.unwrap();
        }
    }
    // Then it is not handed out again: a fresh consumer gets at most the fine one.
    while let Some(d) = try_next(&queue, Duration::from_millis(500)).await {
        assert_eq!(ts_of(&d), 2, "the poison message was handed out again");
        d.ack().await.unwrap();
    }
    let dead = queue.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].reason.starts_with("abandoned unsettled"), "{}", dead[0].reason);
    assert!(queue.is_empty().await.unwrap());
}

async fn a_full_queue_pushes_back_until_a_message_is_acked(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue = DbQueue::new(store.clone(), DbQueueConfig { capacity: 3, ..quick() });
    for ts in 0..3 {
        queue.publish(&keyframe("s-full", ts)).await.unwrap();
    }
    let refused = queue.publish(&keyframe("s-full", 3)).await;
    assert!(matches!(refused, Err(QueueError::Full(3))), "{refused:?}");
    assert_eq!(
        refused.unwrap_err().to_string(),
        "the queue is full (3 messages waiting for the workers)"
    );
    assert_eq!(queue.len().await.unwrap(), 3);

    // Being handled still counts; settled does not.
    let mut consumer = queue.consume().await.unwrap();
    let d = next_within(&mut consumer).await;
    assert!(matches!(queue.publish(&keyframe("s-full", 3)).await, Err(QueueError::Full(3))));
    // A publisher waiting for room (here, another process's, which only polls) gets in as
    // soon as the ack makes some.
    let patient = DbQueue::new(
        store,
        DbQueueConfig { capacity: 3, publish_timeout: Duration::from_secs(30), ..quick() },
    );
    let waiting = tokio::spawn(async move { patient.publish(&keyframe("s-full", 4)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "no room until the ack");
    d.ack().await.unwrap();
    waiting.await.unwrap().unwrap();
    assert_eq!(queue.len().await.unwrap(), 3);
}

async fn a_burst_of_concurrent_publishers_is_committed_whole_and_only_up_to_the_capacity(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue = DbQueue::new(store, DbQueueConfig { capacity: 50, ..quick() });
    // 80 publishers at once share group commits; 50 fit, 30 find no room and give up.
    let results = futures::future::join_all((0..80).map(|ts| {
        let queue = queue.clone();
        async move { queue.publish(&keyframe("s-burst", ts)).await }
    }))
    .await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let full = results.iter().filter(|r| matches!(r, Err(QueueError::Full(50)))).count();
    assert_eq!((accepted, full), (50, 30), "{results:?}");
    assert_eq!(queue.len().await.unwrap(), 50);
    let mut consumer = queue.consume().await.unwrap();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..50 {
        let d = next_within(&mut consumer).await;
        assert!(seen.insert(ts_of(&d)));
        d.ack().await.unwrap();
    }
    assert!(queue.is_empty().await.unwrap());
}

async fn a_publish_wakes_an_idle_consumer_without_waiting_for_its_poll(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue =
        DbQueue::new(store, DbQueueConfig { poll_interval: Duration::from_secs(3600), ..quick() });
    let mut consumer = queue.consume().await.unwrap();
    let waiting = tokio::spawn(async move { next_within(&mut consumer).await.ack().await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    queue.publish(&keyframe("s-wake", 1)).await.unwrap();
    waiting.await.unwrap().unwrap();
}

async fn a_message_published_by_another_process_is_found_by_polling(db: Db) {
    let (env, store) = fresh(db).await;
    let consumer_side = DbQueue::new(store, quick());
    let publisher_store = Store::connect(&env.database_url).await.unwrap();
    let publisher_side = DbQueue::new(publisher_store, quick());
    let mut consumer = consumer_side.consume().await.unwrap();
    publisher_side.publish(&keyframe("s-remote", 1)).await.unwrap();
    let d = next_within(&mut consumer).await;
    assert_eq!(ts_of(&d), 1);
    d.ack().await.unwrap();
}

async fn a_closed_queue_ends_its_consumers_and_refuses_publications(db: Db) {
    let (_env, store) = fresh(db).await;
    let queue = DbQueue::new(store, quick());
    let mut consumer = queue.consume().await.unwrap();
    queue.close();
    assert!(consumer.next().await.is_none());
    assert!(matches!(queue.publish(&keyframe("s-closed", 1)).await, Err(QueueError::Closed)));
}

on_both_databases!(
    every_field_and_the_body_survive_the_table,
    claim_never_hands_a_row_twice_under_concurrent_consumers,
    rows_come_out_oldest_first,
    a_message_whose_worker_died_comes_back_marked_redelivered_after_its_lease,
    a_slow_handler_keeps_its_message_past_the_lease,
    a_delivery_dropped_unsettled_comes_back_at_once_marked_redelivered,
    a_requeued_message_comes_back_marked_redelivered,
    dead_letters_keep_the_message_and_the_reason_and_leave_the_queue,
    a_message_that_keeps_killing_its_worker_is_dead_lettered,
    a_full_queue_pushes_back_until_a_message_is_acked,
    a_burst_of_concurrent_publishers_is_committed_whole_and_only_up_to_the_capacity,
    a_publish_wakes_an_idle_consumer_without_waiting_for_its_poll,
    a_message_published_by_another_process_is_found_by_polling,
    a_closed_queue_ends_its_consumers_and_refuses_publications,
);
