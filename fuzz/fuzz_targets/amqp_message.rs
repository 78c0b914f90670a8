//! A message as a worker receives it from RabbitMQ: the content header's property list in its
//! wire form (parsed by the AMQP codec lapin uses, headers table included) followed by the
//! body, through `queue::amqp::decode`.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use offside::queue::amqp::decode;
use offside_fuzz::{LIMITS, check_queue_message, wire_to_properties};

fuzz_target!(|data: &[u8]| {
    let Some((properties, body)) = wire_to_properties(data) else { return };
    for limits in &LIMITS {
        if let Ok(message) = decode(&properties, Bytes::copy_from_slice(body), limits) {
            check_queue_message(&message, limits);
        }
    }
});
