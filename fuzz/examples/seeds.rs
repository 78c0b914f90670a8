//! Writes the seeds of the binary formats into `fuzz/corpus/` from real data: the AMQP form of
//! real messages (and of messages with the header types platforms send), the stored features
//! of two real keyframes of `tests/fixtures`, and a feature index snapshot built from them.
//! The text seeds (hash lines, metadata JSON, keyframe requests) and the images are written
//! by hand; see `fuzz/README.md`.
//!
//! Built with cargo-fuzz's flags, to reuse its instrumented build of the service; the command
//! is in `fuzz/README.md`. It overwrites only the files it writes.

// The coverage instrumentation of that build calls into libFuzzer, so link it.
use libfuzzer_sys as _;

use std::path::Path;

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, ByteArray, FieldArray, FieldTable, LongString};
use bytes::Bytes;
use fingerprints::features::{FeatureConfig, FeatureIndex, IndexConfig, LocalFeatures};
use fingerprints::{DecodeLimits, decode_luma};
use offside::queue::amqp::encode;
use offside::queue::message::{CONTENT_TYPE_PDQ, KeyframeMessage, QueueMessage, StreamEndMessage};
use offside::recognition::{FeatureFrame, encode_feature_frames};
use offside_fuzz::properties_to_wire;

const HEX: &str = "f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0";

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

fn amqp(name: &str, properties: &BasicProperties, body: &[u8]) {
    let mut bytes = properties_to_wire(properties);
    bytes.extend_from_slice(body);
    write("amqp_message", name, &bytes);
}

fn keyframe(content_type: &str, body: &[u8]) -> QueueMessage {
    QueueMessage::Keyframe(KeyframeMessage {
        stream_id: "live-42".into(),
        ts_ms: 2000,
        account_id: Some("acc-7".into()),
        captured_at_ms: Some(1_700_000_000_000),
        viewers: Some(1234),
        content_type: content_type.into(),
        body: Bytes::copy_from_slice(body),
    })
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures").join(path))
        .unwrap()
}

/// The `n` strongest features of a fixture keyframe, as reference hashing extracts them.
fn features(path: &str, n: usize) -> LocalFeatures {
    let luma = decode_luma(&fixture(path), &DecodeLimits::default()).unwrap();
    let all = LocalFeatures::extract(&luma, &FeatureConfig::reference());
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(all.keypoints()[i].response));
    order.truncate(n);
    LocalFeatures::from_parts(
        all.width(),
        all.height(),
        order.iter().map(|&i| all.keypoints()[i]).collect(),
        order.iter().map(|&i| all.descriptors()[i]).collect(),
    )
}

fn main() {
    // AMQP: what the service publishes, and what platforms send.
    let jpeg = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/keyframe_image/earth_64x36_420.jpg"),
    )
    .unwrap();
    for (name, message) in [
        ("jpeg_keyframe", keyframe("image/jpeg", &jpeg)),
        ("pdq_keyframe", keyframe(CONTENT_TYPE_PDQ, format!("{HEX},87").as_bytes())),
        ("stream_end", QueueMessage::StreamEnd(StreamEndMessage { stream_id: "s9".into() })),
    ] {
        let (properties, body) = encode(&message);
        amqp(name, &properties, &body);
    }
    // A platform's own publisher: integers as strings and as other AMQP integer types, a byte
    // array id, no version header, a content type with parameters.
    let mut headers = FieldTable::default();
    headers.insert("stream_id".into(), AMQPValue::ByteArray(ByteArray::from(&b"s\xffx"[..])));
    headers.insert("ts_ms".into(), AMQPValue::LongString(LongString::from(" 4000 ")));
    headers.insert("viewers".into(), AMQPValue::ShortUInt(7));
    headers.insert("captured_at_ms".into(), AMQPValue::Timestamp(1_700_000_000));
    headers.insert("account_id".into(), AMQPValue::ShortString("acc".into()));
    let properties = BasicProperties::default()
        .with_content_type("application/vnd.offside.pdq; charset=ascii".into())
        .with_headers(headers);
    amqp("platform_header_types", &properties, format!("{HEX}, 100").as_bytes());
    // Header values of the types nobody should send, and no content type.
    let mut headers = FieldTable::default();
    headers.insert(
        "stream_id".into(),
        AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::Boolean(true)])),
    );
    headers.insert("ts_ms".into(), AMQPValue::Double(2.5));
    headers.insert("x-offside-version".into(), AMQPValue::LongInt(2));
    amqp("odd_header_types", &BasicProperties::default().with_headers(headers), b"x");

    // Stored feature frames: two real keyframes of one clip, a frame without features.
    let a = features("eval-mini/earth__color__1/0.jpg", 12);
    let b = features("eval-mini/earth__color__1/2000.jpg", 12);
    let frames = vec![
        FeatureFrame { ts_ms: 0, features: a.clone() },
        FeatureFrame { ts_ms: 1000, features: LocalFeatures::default() },
        FeatureFrame { ts_ms: 2000, features: b.clone() },
    ];
    let stored = encode_feature_frames(&frames);
    write("feature_frames", "two_keyframes_and_an_empty_frame", &stored);
    write("feature_frames", "torn", &stored[..stored.len() - 7]);
    write("feature_frames", "one_keyframe", &encode_feature_frames(&frames[..1]));

    // Feature index snapshots: the default shape, and the smallest (cheap to load).
    let mut index = FeatureIndex::new(IndexConfig::default());
    index.insert(1, 1, 0, &a);
    index.insert(2, 1, 2000, &b);
    write("feature_snapshot", "default_shape_two_frames", &index.to_bytes());
    let mut small = FeatureIndex::new(IndexConfig { tables: 1, key_bits: 8, seed: 1 });
    small.insert(7, 3, 2000, &b);
    write("feature_snapshot", "small_shape_one_frame", &small.to_bytes());
    write("feature_snapshot", "empty", &FeatureIndex::new(IndexConfig::default()).to_bytes());
}
