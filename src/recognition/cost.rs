//! A keyframe through the tiers, step by step with a clock around each step: the worker's lookup
//! ([`look_up_luma`]), so `offside eval` tells the tiers' costs apart while running the very
//! function the worker runs.

use std::ops::Deref;
use std::time::Instant;

use serde::Serialize;

use fingerprints::Luma;

use super::{Hit, KeyframeHashes, Library, LiveQuery, RecognitionConfig, StreamActivity, TierHits};

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
    /// Keyframes the geometric tier looked at ([`super::FeatureSchedule`]).
    pub features_keyframes: usize,
    /// Local feature extraction.
    pub features_extract_ms: f64,
    /// Feature index lookup and geometric verification.
    pub features_lookup_ms: f64,
    /// The stream's temporal matcher: taking the keyframe's hits in and deciding.
    pub decide_ms: f64,
}

impl KeyframeCost {
    /// Adds another tally to this one.
    pub fn add(&mut self, o: &KeyframeCost) {
        self.keyframes += o.keyframes;
        self.decode_ms += o.decode_ms;
        self.pdq_hash_ms += o.pdq_hash_ms;
        self.pdq_lookup_ms += o.pdq_lookup_ms;
        self.features_keyframes += o.features_keyframes;
        self.features_extract_ms += o.features_extract_ms;
        self.features_lookup_ms += o.features_lookup_ms;
        self.decide_ms += o.decide_ms;
    }

    /// This tally split in two: decoding, the PDQ tier and the decision (with the keyframe
    /// count), and the geometric tier (with its count of keyframes looked at).
    pub fn split(&self) -> (KeyframeCost, KeyframeCost) {
        let geometric = KeyframeCost {
            features_keyframes: self.features_keyframes,
            features_extract_ms: self.features_extract_ms,
            features_lookup_ms: self.features_lookup_ms,
            ..KeyframeCost::default()
        };
        let pdq_tier = KeyframeCost {
            features_keyframes: 0,
            features_extract_ms: 0.0,
            features_lookup_ms: 0.0,
            ..*self
        };
        (pdq_tier, geometric)
    }

    /// Every step's time together.
    pub fn total_ms(&self) -> f64 {
        self.decode_ms
            + self.pdq_hash_ms
            + self.pdq_lookup_ms
            + self.features_extract_ms
            + self.features_lookup_ms
            + self.decide_ms
    }

    /// The same times per keyframe.
    pub fn per_keyframe(&self) -> KeyframeCost {
        let n = self.keyframes.max(1) as f64;
        KeyframeCost {
            keyframes: self.keyframes,
            decode_ms: self.decode_ms / n,
            pdq_hash_ms: self.pdq_hash_ms / n,
            pdq_lookup_ms: self.pdq_lookup_ms / n,
            features_keyframes: self.features_keyframes,
            features_extract_ms: self.features_extract_ms / n,
            features_lookup_ms: self.features_lookup_ms / n,
            decide_ms: self.decide_ms / n,
        }
    }
}

/// Milliseconds since `t`.
pub(crate) fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Decodes a keyframe, timed into `cost` (which counts the keyframe); `None`, with nothing
/// counted, for bytes that do not decode.
pub fn decode_keyframe_timed(bytes: &[u8], cost: &mut KeyframeCost) -> Option<Luma> {
    let t = Instant::now();
    let luma = super::decode_keyframe(bytes).ok()?;
    cost.decode_ms += ms_since(t);
    cost.keyframes += 1;
    Some(luma)
}

/// A keyframe looked up by [`look_up_luma`].
#[derive(Debug, Clone)]
pub struct KeyframeLookup {
    /// What was looked up: the PDQ views, and the local features when the geometric tier
    /// looked at the keyframe.
    pub hashes: KeyframeHashes,
    /// Each tier's hits (the geometric tier's empty when it did not look).
    pub hits: TierHits,
}

impl KeyframeLookup {
    /// Whether the geometric tier looked at the keyframe.
    pub fn looked_up_features(&self) -> bool {
        self.hashes.features.is_some()
    }
}

/// A decoded keyframe through the tiers `config` asks for, step by step with a clock around
/// each (into `cost`): the PDQ views hashed and looked up, then, when the geometric tier runs
/// and [`FeatureSchedule::wants_features`](super::FeatureSchedule::wants_features) says so for
/// this keyframe of `stream`, its local features extracted and looked up. What the worker runs
/// on every keyframe, and `offside eval` on every query keyframe.
///
/// `library` is asked for the library for each lookup and the answer dropped after it: the
/// worker passes a read lock of its shared library, so the hashing in between (most of the
/// time) holds no lock, and live feeds add their frames meanwhile.
pub fn look_up_luma<L: Deref<Target = Library>>(
    library: impl Fn() -> L,
    luma: &Luma,
    config: &RecognitionConfig,
    live: Option<LiveQuery>,
    stream_ts_ms: i64,
    stream: StreamActivity,
    cost: &mut KeyframeCost,
) -> KeyframeLookup {
    let mut hits = TierHits::default();
    let t = Instant::now();
    let mut hashes = super::hash_luma_pdq(luma);
    cost.pdq_hash_ms += ms_since(t);
    if config.tiers.pdq() {
        let t = Instant::now();
        hits.pdq = library().lookup_pdq(&hashes, config.radius, config.max_hits_per_keyframe, live);
        cost.pdq_lookup_ms += ms_since(t);
    }
    // The schedule picks among the keyframes only when the PDQ tier runs too: alone, the
    // geometric tier is the only look a keyframe gets.
    let features = config.tiers.features()
        && (!config.tiers.pdq()
            || config.schedule.wants_features(stream_ts_ms, !hits.pdq.is_empty(), stream));
    if features {
        hits.features = look_up_features_timed(library, luma, &mut hashes, live, cost);
    }
    KeyframeLookup { hashes, hits }
}

/// The geometric tier's step of [`look_up_luma`]: the keyframe's local features extracted
/// (into `hashes`) and looked up, each timed into `cost`, which counts the keyframe as one the
/// geometric tier looked at.
pub fn look_up_features_timed<L: Deref<Target = Library>>(
    library: impl Fn() -> L,
    luma: &Luma,
    hashes: &mut KeyframeHashes,
    live: Option<LiveQuery>,
    cost: &mut KeyframeCost,
) -> Vec<Hit> {
    let t = Instant::now();
    hashes.features = Some(super::keyframe::query_features(luma, hashes.band));
    cost.features_extract_ms += ms_since(t);
    let t = Instant::now();
    let hits = library().lookup_features(hashes, live);
    cost.features_lookup_ms += ms_since(t);
    cost.features_keyframes += 1;
    hits
}
