//! What must hold of every value Offside's parsers accept, shared by the fuzz targets.
//!
//! A fuzz target feeds untrusted bytes to one parser; the parser must never panic, and what it
//! accepts must satisfy the checks here: the invariants its documentation states, and the
//! round trips the service relies on (a keyframe accepted over HTTP is published to RabbitMQ
//! and decoded again by a worker; a policy is stored as JSON and read back).

use amq_protocol::frame::WriteContext;
use amq_protocol::protocol::BasicProperties;
use amq_protocol::protocol::basic::{gen_properties, parse_properties};
use offside::queue::amqp;
use offside::queue::message::{MAX_ID_LEN, MessageLimits, Payload, QueueMessage, parse_pdq_body};

/// The limits the fuzzed parsers run with: the service's default, and one small enough that
/// fuzzed bodies cross it (the default, 8 MiB, is far above libFuzzer's input sizes).
pub const LIMITS: [MessageLimits; 2] =
    [MessageLimits { max_body_bytes: 8 * 1024 * 1024 }, MessageLimits { max_body_bytes: 96 }];

/// The properties' AMQP wire form (the content header's property list, as a broker sends it).
pub fn properties_to_wire(properties: &BasicProperties) -> Vec<u8> {
    gen_properties(properties)(WriteContext::from(Vec::new()))
        .expect("properties of an accepted message serialise")
        .write
}

/// Splits fuzzed bytes into AMQP properties (parsed by the wire parser lapin uses) and the
/// body that follows them; `None` when the bytes do not start with a property list.
pub fn wire_to_properties(bytes: &[u8]) -> Option<(BasicProperties, &[u8])> {
    let (rest, properties) = parse_properties(bytes).ok()?;
    Some((properties, rest))
}

/// Checks an accepted queue message: its documented invariants, and that its AMQP form (the
/// properties through their wire bytes, and the body) decodes to the same message.
pub fn check_queue_message(message: &QueueMessage, limits: &MessageLimits) {
    check_id(message.stream_id());
    if let QueueMessage::Keyframe(k) = message {
        assert!(k.ts_ms >= 0, "negative ts_ms accepted: {}", k.ts_ms);
        assert!(k.viewers.is_none_or(|v| v >= 0), "negative viewers accepted");
        if let Some(account) = &k.account_id {
            check_id(account);
        }
        assert!(!k.body.is_empty(), "empty body accepted");
        assert!(k.body.len() <= limits.max_body_bytes, "body above the limit accepted");
        assert_eq!(k.content_type, k.content_type.trim().to_ascii_lowercase());
        let payload = k.payload().expect("an accepted keyframe has a payload");
        if let Payload::Pdq { hash, quality } = payload {
            check_pdq_round_trip(hash, quality);
        }
    }
    let (properties, body) = amqp::encode(message);
    let decoded = amqp::decode(&properties, body.clone(), limits);
    assert_eq!(decoded.as_ref(), Ok(message), "the AMQP form does not decode to the message");
    let wire = properties_to_wire(&properties);
    let (parsed, rest) = wire_to_properties(&wire).expect("own properties parse");
    assert!(rest.is_empty(), "the property list has {} trailing bytes", rest.len());
    assert_eq!(amqp::decode(&parsed, body, limits).as_ref(), Ok(message));
}

/// A PDQ hash and quality written as a `application/vnd.offside.pdq` body parse back to the
/// same payload, with and without spaces around the comma.
pub fn check_pdq_round_trip(hash: fingerprints::Hash256, quality: u8) {
    assert!(quality <= 100, "quality {quality} above 100 accepted");
    let expected = Ok(Payload::Pdq { hash, quality });
    assert_eq!(parse_pdq_body(format!("{hash},{quality}").as_bytes()), expected);
    assert_eq!(parse_pdq_body(format!(" {hash} , {quality}\n").as_bytes()), expected);
    if quality == 100 {
        assert_eq!(parse_pdq_body(hash.to_hex().as_bytes()), expected);
    }
}

fn check_id(id: &str) {
    assert!(!id.is_empty(), "empty id accepted");
    assert!(id.len() <= MAX_ID_LEN, "id of {} bytes accepted", id.len());
    assert!(!id.chars().any(|c| c.is_control() || c == '/'), "id {id:?} accepted");
}
