//! A keyframe as the HTTP ingest receives it: its fields (query parameters and the content
//! type) and its body, through `queue::message::parse`.
//!
//! Input: `name: value` lines (`stream_id`, `ts_ms`, `account_id`, `captured_at_ms`,
//! `viewers`, `x-offside-version`, `content-type`; others are ignored, a repeated one wins),
//! an empty line, then the body. A text form rather than `arbitrary`'s, so the seeds in
//! `fuzz/corpus/keyframe_message` read like the requests they stand for.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use offside::queue::message::{RawFields, parse, parse_pdq_body};
use offside_fuzz::{LIMITS, check_pdq_round_trip, check_queue_message};

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut fields = RawFields::default();
    for line in head.split(|&b| b == b'\n') {
        let line = String::from_utf8_lossy(line);
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = Some(value.strip_prefix(' ').unwrap_or(value).to_owned());
        match name {
            "stream_id" => fields.stream_id = value,
            "ts_ms" => fields.ts_ms = value,
            "account_id" => fields.account_id = value,
            "captured_at_ms" => fields.captured_at_ms = value,
            "viewers" => fields.viewers = value,
            "x-offside-version" => fields.version = value,
            "content-type" => fields.content_type = value,
            _ => {}
        }
    }
    for limits in &LIMITS {
        if let Ok(message) = parse(fields.clone(), Bytes::copy_from_slice(body), limits) {
            check_queue_message(&message, limits);
        }
    }
    // The PDQ body parser on its own, whatever the content type said.
    if let Ok(offside::queue::message::Payload::Pdq { hash, quality }) = parse_pdq_body(body) {
        check_pdq_round_trip(hash, quality);
    }
});
