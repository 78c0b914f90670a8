//! The in-process queue of the embedded deployment: bounded, with the same settle semantics as
//! the AMQP queue (ack, requeue, dead-letter with a reason, redelivery of a delivery dropped
//! unsettled), so the worker loop cannot tell them apart.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use super::{Delivery, DeliveryStream, KeyframeQueue, QueueError, QueueMessage, Settle};

/// A message that was refused, with the reason.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The message.
    pub message: QueueMessage,
    /// Why it was refused.
    pub reason: String,
}

/// Largest number of dead letters kept in memory; older ones are dropped (they are also logged).
const MAX_DEAD_LETTERS: usize = 1000;

struct Entry {
    message: QueueMessage,
    redelivered: bool,
    // Held until the message is settled: capacity counts unsettled messages too, like prefetch.
    _permit: OwnedSemaphorePermit,
}

struct Inner {
    ready: Mutex<VecDeque<Entry>>,
    notify: Notify,
    capacity: Arc<Semaphore>,
    dead: Mutex<VecDeque<DeadLetter>>,
    publish_timeout: Duration,
}

/// A bounded in-process queue. Cheap to clone; clones share the queue.
#[derive(Clone)]
pub struct MemoryQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryQueue")
            .field("available", &self.inner.capacity.available_permits())
            .finish()
    }
}

impl MemoryQueue {
    /// A queue holding at most `capacity` unsettled messages; a publisher waits up to
    /// `publish_timeout` for room.
    pub fn new(capacity: usize, publish_timeout: Duration) -> Self {
        MemoryQueue {
            inner: Arc::new(Inner {
                ready: Mutex::new(VecDeque::new()),
                notify: Notify::new(),
                capacity: Arc::new(Semaphore::new(capacity.max(1))),
                dead: Mutex::new(VecDeque::new()),
                publish_timeout,
            }),
        }
    }

    /// The dead letters so far (newest last).
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        lock(&self.inner.dead).iter().cloned().collect()
    }

    /// Messages waiting to be delivered.
    pub fn ready_len(&self) -> usize {
        lock(&self.inner.ready).len()
    }

    /// Stops the queue: consumers get `None` once it is drained, publishers get `Closed`.
    pub fn close(&self) {
        self.inner.capacity.close();
        self.inner.notify.notify_waiters();
    }
}

// A poisoned lock only means another thread panicked while holding it; the queue's data is a
// plain deque that is valid after any completed push or pop, so carry on with it.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Inner {
    fn push(&self, entry: Entry, front: bool) {
        {
            let mut q = lock(&self.ready);
            if front { q.push_front(entry) } else { q.push_back(entry) }
        }
        self.notify.notify_one();
    }
}

impl KeyframeQueue for MemoryQueue {
    fn publish<'a>(&'a self, message: &'a QueueMessage) -> BoxFuture<'a, Result<(), QueueError>> {
        async move {
            let permit = tokio::time::timeout(
                self.inner.publish_timeout,
                self.inner.capacity.clone().acquire_owned(),
            )
            .await
            .map_err(|_| QueueError::Timeout(self.inner.publish_timeout))?
            .map_err(|_| QueueError::Closed)?;
            self.inner.push(
                Entry { message: message.clone(), redelivered: false, _permit: permit },
                false,
            );
            Ok(())
        }
        .boxed()
    }

    fn consume(&self) -> BoxFuture<'_, Result<Box<dyn DeliveryStream>, QueueError>> {
        let stream: Box<dyn DeliveryStream> =
            Box::new(MemoryConsumer { inner: self.inner.clone() });
        futures::future::ready(Ok(stream)).boxed()
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

struct MemoryConsumer {
    inner: Arc<Inner>,
}

impl DeliveryStream for MemoryConsumer {
    fn next(&mut self) -> BoxFuture<'_, Option<Delivery>> {
        async move {
            loop {
                let notified = self.inner.notify.notified();
                tokio::pin!(notified);
                // Register interest before looking, so a push between the look and the wait
                // is not missed.
                notified.as_mut().enable();
                if let Some(entry) = lock(&self.inner.ready).pop_front() {
                    // Wake another consumer in case more is waiting.
                    self.inner.notify.notify_one();
                    let message = Ok(entry.message.clone());
                    let redelivered = entry.redelivered;
                    let settle = MemorySettle { entry: Some(entry), inner: self.inner.clone() };
                    return Some(Delivery::new(message, redelivered, Box::new(settle)));
                }
                if self.inner.capacity.is_closed() {
                    return None;
                }
                notified.await;
            }
        }
        .boxed()
    }
}

struct MemorySettle {
    entry: Option<Entry>,
    inner: Arc<Inner>,
}

impl Settle for MemorySettle {
    fn ack(mut self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        self.entry.take();
        futures::future::ready(Ok(())).boxed()
    }

    fn requeue(mut self: Box<Self>) -> BoxFuture<'static, Result<(), QueueError>> {
        if let Some(mut e) = self.entry.take() {
            e.redelivered = true;
            self.inner.push(e, true);
        }
        futures::future::ready(Ok(())).boxed()
    }

    fn dead_letter(
        mut self: Box<Self>,
        reason: String,
    ) -> BoxFuture<'static, Result<(), QueueError>> {
        if let Some(e) = self.entry.take() {
            tracing::warn!(stream_id = e.message.stream_id(), %reason, "message dead-lettered");
            let mut dead = lock(&self.inner.dead);
            if dead.len() >= MAX_DEAD_LETTERS {
                dead.pop_front();
            }
            dead.push_back(DeadLetter { message: e.message, reason });
        }
        futures::future::ready(Ok(())).boxed()
    }
}

impl Drop for MemorySettle {
    // A delivery dropped unsettled (its task panicked or was cancelled) goes back to the head of
    // the queue, as RabbitMQ does when a consumer's channel closes with unacked messages.
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.redelivered = true;
            self.inner.push(e, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::StreamEndMessage;

    fn end(id: &str) -> QueueMessage {
        QueueMessage::StreamEnd(StreamEndMessage { stream_id: id.into() })
    }

    #[tokio::test]
    async fn published_messages_arrive_in_order_and_ack_frees_capacity() {
        let q = MemoryQueue::new(2, Duration::from_millis(50));
        q.publish(&end("a")).await.unwrap();
        q.publish(&end("b")).await.unwrap();
        assert!(matches!(q.publish(&end("c")).await, Err(QueueError::Timeout(_))));
        let mut c = q.consume().await.unwrap();
        let d = c.next().await.unwrap();
        assert_eq!(d.message.as_ref().unwrap().stream_id(), "a");
        d.ack().await.unwrap();
        q.publish(&end("c")).await.unwrap();
        assert_eq!(c.next().await.unwrap().message.unwrap().stream_id(), "b");
    }

    #[tokio::test]
    async fn a_delivery_dropped_unsettled_is_redelivered() {
        let q = MemoryQueue::new(4, Duration::from_millis(50));
        q.publish(&end("a")).await.unwrap();
        let mut c = q.consume().await.unwrap();
        let d = c.next().await.unwrap();
        assert!(!d.redelivered);
        drop(d);
        let again = c.next().await.unwrap();
        assert!(again.redelivered);
        assert_eq!(again.message.unwrap().stream_id(), "a");
    }

    #[tokio::test]
    async fn dead_lettered_messages_keep_their_reason_and_leave_the_queue() {
        let q = MemoryQueue::new(4, Duration::from_millis(50));
        q.publish(&end("a")).await.unwrap();
        let mut c = q.consume().await.unwrap();
        c.next().await.unwrap().dead_letter("corrupt jpeg").await.unwrap();
        let dead = q.dead_letters();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, "corrupt jpeg");
        assert_eq!(q.ready_len(), 0);
    }

    #[tokio::test]
    async fn closing_the_queue_ends_consumers_once_drained() {
        let q = MemoryQueue::new(4, Duration::from_millis(50));
        q.publish(&end("a")).await.unwrap();
        q.close();
        let mut c = q.consume().await.unwrap();
        c.next().await.unwrap().ack().await.unwrap();
        assert!(c.next().await.is_none());
        assert!(matches!(q.publish(&end("b")).await, Err(QueueError::Closed)));
    }
}
