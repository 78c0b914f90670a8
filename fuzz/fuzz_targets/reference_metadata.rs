//! The `metadata` part of a reference upload (and the JSON body of a hash-list reference):
//! JSON through `ReferenceMetadata`'s deserialisation and its validation,
//! `ReferenceMetadata::validate` (the part of `check_metadata` that needs no database).
//!
//! What is accepted must store: the policy goes to the database as JSON and is read back from
//! it, so a valid policy must serialise, deserialise to itself and still be valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offside::http::references::{LiveReferenceRequest, ReferenceMetadata};
use offside::domain::Policy;

fuzz_target!(|data: &[u8]| {
    // The multipart part: straight from the bytes.
    if let Ok(metadata) = serde_json::from_slice::<ReferenceMetadata>(data) {
        if let Ok(policy) = metadata.validate() {
            let title = metadata.title.trim();
            assert!((1..=300).contains(&title.chars().count()), "title {title:?}");
            let stored = serde_json::to_string(&policy).expect("a valid policy serialises");
            let read: Policy = serde_json::from_str(&stored)
                .unwrap_or_else(|err| panic!("stored policy {stored} does not read back: {err}"));
            assert_eq!(read, policy, "stored as {stored}");
            assert!(read.validate().is_ok(), "stored policy {stored} is no longer valid");
        }
    }
    // The JSON body of `POST /v1/references`: a value first, then one of two shapes.
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        if value.get("live_url").is_some() {
            let _ = serde_json::from_value::<LiveReferenceRequest>(value);
        } else if let Ok(metadata) = serde_json::from_value::<ReferenceMetadata>(value) {
            let _ = metadata.validate();
        }
    }
});
