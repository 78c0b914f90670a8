//! What a keyframe costs, step by step: [`hash_keyframe`](super::hash_keyframe) and
//! [`Library::lookup`] run one step at a time with a clock around each, so `offside eval` can
//! tell the tiers' costs apart while running the very functions the worker runs.

use std::time::Instant;

use serde::Serialize;

use super::{KeyframeHashes, Library, LiveQuery, RecognitionConfig, TierHits, Tiers};

/// Time spent per step on keyframes (ms, summed; one thread).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct KeyframeCost {
    /// Keyframes timed.
    pub keyframes: usize,
    /// JPEG decoding to luma (shared by both tiers).
    pub decode_ms: f64,
    /// PDQ hashes (full, mirror, content rectangle).
    pub pdq_hash_ms: f64,
    /// PDQ index lookup.
    pub pdq_lookup_ms: f64,
    /// Local feature extraction.
    pub features_extract_ms: f64,
    /// Feature index lookup and geometric verification.
    pub features_lookup_ms: f64,
}

impl KeyframeCost {
    /// Adds another tally to this one.
    pub fn add(&mut self, o: &KeyframeCost) {
        self.keyframes += o.keyframes;
        self.decode_ms += o.decode_ms;
        self.pdq_hash_ms += o.pdq_hash_ms;
        self.pdq_lookup_ms += o.pdq_lookup_ms;
        self.features_extract_ms += o.features_extract_ms;
        self.features_lookup_ms += o.features_lookup_ms;
    }

    /// The same times per keyframe.
    pub fn per_keyframe(&self) -> KeyframeCost {
        let n = self.keyframes.max(1) as f64;
        KeyframeCost {
            keyframes: self.keyframes,
            decode_ms: self.decode_ms / n,
            pdq_hash_ms: self.pdq_hash_ms / n,
            pdq_lookup_ms: self.pdq_lookup_ms / n,
            features_extract_ms: self.features_extract_ms / n,
            features_lookup_ms: self.features_lookup_ms / n,
        }
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// [`hash_keyframe`](super::hash_keyframe), timed step by step into `cost` (which counts the
/// keyframe); `None`, with nothing counted, for bytes that do not decode.
pub fn hash_keyframe_timed(bytes: &[u8], cost: &mut KeyframeCost) -> Option<KeyframeHashes> {
    let t = Instant::now();
    let luma = super::keyframe::decode_keyframe(bytes).ok()?;
    cost.decode_ms += ms_since(t);
    let t = Instant::now();
    let mut hashes = super::hash_luma_pdq(&luma);
    cost.pdq_hash_ms += ms_since(t);
    let t = Instant::now();
    hashes.features = Some(super::keyframe::query_features(&luma));
    cost.features_extract_ms += ms_since(t);
    cost.keyframes += 1;
    Some(hashes)
}

/// [`Library::lookup`], timed tier by tier into `cost`.
pub fn lookup_timed(
    library: &Library,
    keyframe: &KeyframeHashes,
    config: &RecognitionConfig,
    live: Option<LiveQuery>,
    cost: &mut KeyframeCost,
) -> TierHits {
    let mut hits = TierHits::default();
    if config.tiers != Tiers::Features {
        let t = Instant::now();
        hits.pdq = library.lookup_pdq(keyframe, config.radius, config.max_hits_per_keyframe, live);
        cost.pdq_lookup_ms += ms_since(t);
    }
    if config.tiers != Tiers::Pdq {
        let t = Instant::now();
        hits.features = library.lookup_features(keyframe, live);
        cost.features_lookup_ms += ms_since(t);
    }
    hits
}
