//! Stored feature frames (a reference's `features` column, the live fan-out's feature
//! records) through `recognition::decode_feature_frames`, then into a feature index and
//! queried, as the library does with what it loads.
#![no_main]

use fingerprints::features::{FeatureIndex, IndexConfig, VerifyConfig};
use libfuzzer_sys::fuzz_target;
use offside::recognition::{CorruptFeatures, decode_feature_frames, encode_feature_frames};

fuzz_target!(|data: &[u8]| {
    let mut frames = Vec::new();
    match decode_feature_frames(data, &mut frames) {
        // The format has no slack: what decodes encodes to the same bytes.
        Ok(()) => assert_eq!(encode_feature_frames(&frames), data, "decode then encode differs"),
        // The frames before the corrupt one were kept: they are a prefix of the input, and the
        // error points between their end and the input's (at its end when a header is whole
        // and its features are missing).
        Err(CorruptFeatures(at)) => {
            let prefix = encode_feature_frames(&frames);
            assert!(data.starts_with(&prefix), "the frames decoded before the error differ");
            assert!((prefix.len()..=data.len()).contains(&at), "error at {at} of {}", data.len());
        }
    }
    for f in &frames {
        assert_eq!(f.features.keypoints().len(), f.features.descriptors().len());
    }
    // The smallest index shape keeps an execution cheap; the code paths are the same.
    let mut index = FeatureIndex::new(IndexConfig { tables: 2, key_bits: 8, seed: 7 });
    for (id, f) in (0u32..).zip(&frames) {
        index.insert(id, id % 3, f.ts_ms, &f.features);
    }
    let cfg = VerifyConfig::default();
    for f in frames.iter().take(4) {
        for v in index.query(&f.features, &cfg) {
            assert!(
                v.inliers <= v.matches && v.weight.is_finite() && (0.0..=1.0).contains(&v.coverage)
            );
        }
    }
    // An index built from them snapshots and loads back.
    let snapshot = index.to_bytes();
    let back = FeatureIndex::from_bytes(&snapshot).expect("an index's own snapshot loads");
    assert_eq!(back.to_bytes(), snapshot);
});
