//! A hash-list body (`POST /v1/references/{id}/hashes`, lines `TS_MS,HEX64[,QUALITY]`)
//! through the importer's streaming parser, `http::references::HashLines`.
//!
//! The body arrives in chunks cut wherever the network cut it, so the parser must give the same
//! answer however the bytes are split: whole, one byte at a time, and in chunks of a size
//! taken from the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offside::http::references::{HashLines, parse_hash_line};
use offside::recognition::ReferenceFrame;

fn import(body: &[u8], chunk: usize) -> Result<Vec<ReferenceFrame>, String> {
    let mut lines = HashLines::default();
    for piece in body.chunks(chunk) {
        lines.feed(piece)?;
    }
    lines.finish()
}

fuzz_target!(|data: &[u8]| {
    let whole = import(data, data.len().max(1));
    let chunk = 1 + data.iter().map(|&b| usize::from(b)).sum::<usize>() % 13;
    assert_eq!(import(data, chunk), whole, "chunks of {chunk} bytes");
    assert_eq!(import(data, 1), whole, "one byte at a time");
    match &whole {
        Ok(frames) => {
            assert!(!frames.is_empty(), "an import without frames succeeded");
            for f in frames {
                assert!(f.ts_ms >= 0 && f.quality <= 100, "{f:?}");
                // What was imported is what the line says: written back, it parses the same.
                let line = format!("{},{},{}", f.ts_ms, f.hash, f.quality);
                assert_eq!(parse_hash_line(&line).as_ref(), Ok(f), "{line}");
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});
