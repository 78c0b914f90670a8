//! Image bytes as a keyframe body or a reference image upload brings them, through
//! `fingerprints::decode_luma` with the limits the service uses, and then through the hashing
//! the service does next (so a decoded picture of any shape, 1x1 or 16384x1, reaches PDQ, the
//! border detection and the feature extractor).
#![no_main]

use fingerprints::{DecodeLimits, decode_luma};
use libfuzzer_sys::fuzz_target;
use offside::recognition::{MIN_QUALITY, ReferenceHashOptions, hash_luma, reference_frames_of};

fuzz_target!(|data: &[u8]| {
    // A keyframe: the worker's limits (`recognition::hash_keyframe`), JPEGs reduced by 2, 4 or
    // 8 down to a 400-pixel long side.
    let keyframe = decode_luma(data, &DecodeLimits::default());
    // A reference image: the same limits, never reduced (`recognition::hash_reference_image`).
    let full =
        decode_luma(data, &DecodeLimits { min_long_side: u32::MAX, ..DecodeLimits::default() });
    match (&keyframe, &full) {
        (Ok(reduced), Ok(full)) => {
            // Reduction only averages blocks: the same picture at 1/1, 1/2, 1/4 or 1/8.
            let factor = full.width() / reduced.width();
            assert!([1, 2, 4, 8].contains(&factor), "reduced by {factor}");
            assert_eq!(
                (reduced.width(), reduced.height()),
                (full.width() / factor, full.height() / factor)
            );
            let hashes = hash_luma(reduced);
            for h in &hashes.hashes {
                assert!((MIN_QUALITY..=100).contains(&h.quality), "quality {}", h.quality);
            }
            let opts = ReferenceHashOptions::default();
            for frame in reference_frames_of(full, 0, &opts.variants, opts.min_quality) {
                assert!(frame.quality <= 100);
            }
        }
        (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind(), "{a} / {b}"),
        _ => panic!(
            "the reduced and the full-size decode disagree: {:?} / {:?}",
            keyframe.as_ref().err(),
            full.as_ref().err()
        ),
    }
});
