//! Scale-out: live frames from the one ingesting process to the live index of every process.
//!
//! A small piece beside the keyframe queue, not part of it: keyframes are work (each goes to
//! one worker, acked after its effects commit), live frames are state every process needs a
//! copy of. So: a fanout exchange `<prefix>offside.live`; each process binds its own exclusive,
//! auto-delete, server-named queue and consumes it without acks. A process that starts (or
//! reconnects) sees frames from then on; the frames it missed are at most a few seconds of the
//! feed, and the temporal matcher needs many seconds of agreeing hits anyway.
//!
//! Publishing skips publisher confirms on purpose: a batch is a fifth of a second of one feed,
//! waiting for a confirm would add a broker round trip to the feed-to-matchable latency, and a
//! batch lost while the broker restarts only leaves a gap the evidence rides over. The sender
//! inserts its own frames into its own library directly; consumers skip batches with their own
//! instance id.
//!
//! Wire form: headers `reference_id`, `origin_ms`, `retention_ms`, `sender`; the body's form
//! is named by its content type:
//! - [`CONTENT_TYPE_V2`] (what is published): the number of PDQ records (u32 LE), the number of
//!   padding bytes at the end (u8, 0 or 1), the PDQ records, the feature frames as
//!   [`encode_feature_frames`] packs them (their times are air times), the padding. The one
//!   zero byte of padding is added when the body would otherwise be a whole number of
//!   [`FRAME_BYTES`], so a process still on the first form refuses it as torn instead of
//!   reading features as hashes.
//! - [`CONTENT_TYPE_V1`] (accepted from processes not yet upgraded): PDQ records only.
//!
//! A PDQ record is a [`ReferenceFrame`] at its air time (Unix ms) in the one frame form,
//! [`FRAME_BYTES`] bytes ([`encode_frames`]: time i64 LE, 32 hash bytes, quality, crop variant).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::queue::QueueError;
use crate::queue::backoff::Backoff;
use crate::recognition::{
    FRAME_BYTES, FeatureFrame, ReferenceFrame, SharedLibrary, decode_feature_frames, decode_frames,
    encode_feature_frames, encode_frames,
};

/// Content type of the first wire form: PDQ records only.
pub const CONTENT_TYPE_V1: &str = "application/vnd.offside.live-frames";
/// Content type of the second wire form: PDQ records and feature frames (the module docs).
pub const CONTENT_TYPE_V2: &str = "application/vnd.offside.live-frames.v2";

/// Bytes before the records in the second form: record count (u32) and padding length (u8).
const V2_HEADER_BYTES: usize = 4 + 1;

/// Frames of one feed, as published.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameBatch {
    /// The feed's reference id.
    pub reference_id: String,
    /// Time zero of the event.
    pub origin_ms: i64,
    /// The feed's retention.
    pub retention_ms: i64,
    /// The frames.
    pub frames: Vec<ReferenceFrame>,
    /// Feature frames (the geometric tier), each at its air time (Unix ms).
    pub features: Vec<FeatureFrame>,
}

/// The PDQ records of a body; `None` when they are torn or name a crop variant this version
/// does not know (a batch is all or nothing).
fn decode_records(body: &[u8]) -> Option<Vec<ReferenceFrame>> {
    let mut frames = Vec::new();
    match decode_frames(body, &mut frames) {
        Ok(0) => Some(frames),
        _ => None,
    }
}

/// Packs a batch's frames and feature frames in the second wire form ([`CONTENT_TYPE_V2`]).
pub fn encode_body(frames: &[ReferenceFrame], features: &[FeatureFrame]) -> Vec<u8> {
    let records = encode_frames(frames);
    let features = encode_feature_frames(features);
    let padding =
        u8::from((V2_HEADER_BYTES + records.len() + features.len()).is_multiple_of(FRAME_BYTES));
    let count = u32::try_from(frames.len()).unwrap_or(u32::MAX);
    let mut out =
        Vec::with_capacity(V2_HEADER_BYTES + records.len() + features.len() + usize::from(padding));
    out.extend_from_slice(&count.to_le_bytes());
    out.push(padding);
    out.extend_from_slice(&records);
    out.extend_from_slice(&features);
    out.resize(out.len() + usize::from(padding), 0);
    out
}

/// Unpacks a body of either wire form by its content type (none: the first form); `None`
/// when the body is torn (it ends inside a record or a feature frame, or its padding is not
/// what its length asks for) or the content type is unknown.
pub fn decode_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Option<(Vec<ReferenceFrame>, Vec<FeatureFrame>)> {
    match content_type {
        None | Some(CONTENT_TYPE_V1) => Some((decode_records(body)?, Vec::new())),
        Some(CONTENT_TYPE_V2) => {
            let count = u32::from_le_bytes(body.get(..4)?.try_into().ok()?);
            let padding = usize::from(*body.get(4)?);
            let unpadded = body.len().checked_sub(padding)?;
            if padding != usize::from(unpadded.is_multiple_of(FRAME_BYTES))
                || body[unpadded..].iter().any(|&b| b != 0)
            {
                return None;
            }
            let records_end = usize::try_from(count)
                .ok()?
                .checked_mul(FRAME_BYTES)?
                .checked_add(V2_HEADER_BYTES)?;
            let frames = decode_records(body.get(V2_HEADER_BYTES..records_end)?)?;
            let mut features = Vec::new();
            decode_feature_frames(body.get(records_end..unpadded)?, &mut features).ok()?;
            Some((frames, features))
        }
        Some(_) => None,
    }
}

/// The fanout of one process: publishes its own feeds' frames, consumes everyone's.
pub struct LiveFanout {
    url: String,
    exchange: String,
    instance: String,
    publisher: Mutex<Option<(Connection, Channel)>>,
}

impl std::fmt::Debug for LiveFanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveFanout")
            .field("exchange", &self.exchange)
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

fn header_str(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn header_i64(headers: &FieldTable, name: &str) -> Option<i64> {
    match headers.inner().get(name)? {
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        _ => None,
    }
}

impl LiveFanout {
    /// The fanout on the broker at `url`, exchange `<prefix>offside.live`; `instance`
    /// identifies this process (its own batches are not inserted twice). Connects lazily.
    pub fn new(url: impl Into<String>, prefix: &str, instance: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            exchange: format!("{prefix}offside.live"),
            instance: instance.into(),
            publisher: Mutex::new(None),
        }
    }

    /// The exchange name.
    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    async fn open(&self, name: &str) -> Result<(Connection, Channel), QueueError> {
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let connection = Connection::connect(&self.url, props).await?;
        let channel = connection.create_channel().await?;
        channel
            .exchange_declare(
                self.exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() },
                FieldTable::default(),
            )
            .await?;
        Ok((connection, channel))
    }

    /// Publishes a batch to every process. On a broken connection it reconnects once and
    /// retries; a second failure is returned (the caller logs it and carries on).
    ///
    /// # Errors
    /// The broker cannot be reached.
    pub async fn publish(&self, batch: &FrameBatch) -> Result<(), QueueError> {
        let mut headers = FieldTable::default();
        headers.insert(
            "reference_id".into(),
            AMQPValue::LongString(batch.reference_id.as_str().into()),
        );
        headers.insert("origin_ms".into(), AMQPValue::LongLongInt(batch.origin_ms));
        headers.insert("retention_ms".into(), AMQPValue::LongLongInt(batch.retention_ms));
        headers.insert("sender".into(), AMQPValue::LongString(self.instance.as_str().into()));
        let body = encode_body(&batch.frames, &batch.features);
        let properties = BasicProperties::default()
            .with_content_type(CONTENT_TYPE_V2.into())
            .with_headers(headers);
        let mut guard = self.publisher.lock().await;
        for attempt in 0..2 {
            let usable = guard
                .as_ref()
                .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
            if !usable {
                *guard = Some(self.open("offside-live-publisher").await?);
            }
            let Some((_, channel)) = guard.as_ref() else { continue };
            let sent = channel
                .basic_publish(
                    self.exchange.as_str().into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties.clone(),
                )
                .await;
            match sent {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 0 => {
                    tracing::debug!(error = %e, "live publish failed; reconnecting");
                    *guard = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(QueueError::Closed)
    }

    /// Consumes every process's batches into `library` until `cancel` fires, reconnecting
    /// with backoff whenever the broker goes away.
    pub async fn run_consumer(&self, library: SharedLibrary, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        loop {
            let consumed = tokio::select! {
                () = cancel.cancelled() => return,
                r = self.consume_once(&library, &cancel) => r,
            };
            if let Err(e) = consumed {
                tracing::warn!(error = %e, "live fanout consumer lost the broker; reconnecting");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn consume_once(
        &self,
        library: &SharedLibrary,
        cancel: &CancellationToken,
    ) -> Result<(), QueueError> {
        let (connection, channel) = self.open("offside-live-consumer").await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let queue_name: ShortString = queue.name().clone();
        channel
            .queue_bind(
                queue_name.clone(),
                self.exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut consumer = channel
            .basic_consume(
                queue_name,
                format!("offside-live-{}", self.instance).into(),
                BasicConsumeOptions { no_ack: true, ..BasicConsumeOptions::default() },
                FieldTable::default(),
            )
            .await?;
        tracing::debug!(exchange = %self.exchange, "live fanout consumer bound");
        loop {
            let delivery = tokio::select! {
                () = cancel.cancelled() => {
                    let _ = connection.close(200, "closing".into()).await;
                    return Ok(());
                }
                d = consumer.next() => d,
            };
            let delivery = match delivery {
                Some(Ok(d)) => d,
                Some(Err(e)) => return Err(e.into()),
                None => return Err(QueueError::Closed),
            };
            let Some(headers) = delivery.properties.headers().as_ref() else { continue };
            if header_str(headers, "sender").as_deref() == Some(self.instance.as_str()) {
                continue;
            }
            let (Some(id), Some(origin), Some(retention)) = (
                header_str(headers, "reference_id"),
                header_i64(headers, "origin_ms"),
                header_i64(headers, "retention_ms"),
            ) else {
                tracing::warn!("live fanout message without its headers; skipped");
                continue;
            };
            let content_type = delivery.properties.content_type().as_ref().map(|c| c.as_str());
            let Some((frames, features)) = decode_body(content_type, &Bytes::from(delivery.data))
            else {
                tracing::warn!(reference_id = %id, "malformed live frames; skipped");
                continue;
            };
            let mut library = library.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            library.insert_live(&id, origin, retention, &frames, &features);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fingerprints::features::{Descriptor, Keypoint, LocalFeatures};
    use fingerprints::{CropVariant, Hash256};

    fn frames() -> Vec<ReferenceFrame> {
        vec![
            ReferenceFrame {
                ts_ms: 1_700_000_000_123,
                hash: Hash256([1, 2, 3, u64::MAX]),
                quality: 77,
                variant: CropVariant::Square,
            },
            ReferenceFrame {
                ts_ms: -5,
                hash: Hash256::default(),
                quality: 50,
                variant: CropVariant::Full,
            },
        ]
    }

    /// A feature frame with `n` features, positions on a quarter pixel (kept exactly).
    fn feature_frame(ts_ms: i64, n: usize) -> FeatureFrame {
        let keypoints = (0..n)
            .map(|i| Keypoint { x: i as f32 + 0.25, y: 100.5, level: 1, response: 900 })
            .collect();
        let descriptors = (0..n).map(|i| Descriptor([i as u64, 7, 8, u64::MAX])).collect();
        FeatureFrame {
            ts_ms,
            features: LocalFeatures::from_parts(480, 270, keypoints, descriptors),
        }
    }

    #[test]
    fn frames_survive_the_wire_form_and_torn_bodies_are_refused() {
        let frames = frames();
        let body = encode_frames(&frames);
        assert_eq!(decode_records(&body), Some(frames.clone()));
        assert_eq!(decode_records(&body[..body.len() - 1]), None);
        // The first form still arrives from processes not yet upgraded.
        assert_eq!(decode_body(Some(CONTENT_TYPE_V1), &body), Some((frames, Vec::new())));
    }

    #[test]
    fn feature_frames_travel_with_the_hashes_and_torn_bodies_are_refused() {
        let frames = frames();
        let features =
            vec![feature_frame(1_700_000_000_123, 3), feature_frame(1_700_000_001_000, 96)];
        let body = encode_body(&frames, &features);
        let v2 = Some(CONTENT_TYPE_V2);
        assert_eq!(decode_body(v2, &body), Some((frames.clone(), features.clone())));
        // Cut anywhere (inside a feature frame, the records or the header): refused.
        for cut in [1, 40, 41 * 96, body.len() - V2_HEADER_BYTES - 1, body.len() - 1] {
            assert_eq!(decode_body(v2, &body[..body.len() - cut]), None, "cut {cut}");
        }
        assert_eq!(decode_body(Some("application/octet-stream"), &body), None);
        // Hashes alone and features alone.
        assert_eq!(decode_body(v2, &encode_body(&frames, &[])), Some((frames.clone(), vec![])));
        assert_eq!(decode_body(v2, &encode_body(&[], &features)), Some((vec![], features)));
    }

    #[test]
    fn a_reader_of_the_first_form_never_takes_a_second_form_body_for_hashes() {
        let mut padded = 0;
        for records in 0..3 {
            for n in 0..FRAME_BYTES {
                let frames: Vec<ReferenceFrame> =
                    frames().into_iter().cycle().take(records).collect();
                let features = [feature_frame(0, n)];
                let body = encode_body(&frames, &features);
                assert_eq!(decode_records(&body), None, "{records} records, {n} features");
                assert_eq!(
                    decode_body(Some(CONTENT_TYPE_V2), &body),
                    Some((frames, features.to_vec()))
                );
                padded += usize::from(body[4] == 1);
            }
        }
        assert!(padded > 0, "no body needed its padding byte");
    }
}
