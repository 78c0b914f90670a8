//! Recognition: the service's glue over `fingerprints`, and the one decision rule.
//!
//! - [`hash_keyframe`]: query side, keyframe bytes to the hashes we look up ([`KeyframeHashes`]).
//! - [`ReferenceFrame`], [`FeatureFrame`]: the frames of every source (file references, live
//!   feeds) and their one byte form ([`encode_frames`], [`encode_feature_frames`]) for the
//!   database, the live fanout and the evaluation cache.
//! - [`hash_reference_file`]: reference side, a video file densely hashed into
//!   [`ReferenceFrame`]s (full frame plus centre crops, low-detail frames skipped,
//!   near-duplicates pruned) and, in the same pass, [`FeatureFrame`]s sampled once a second.
//! - [`Library`]: every reference's frames in one Hamming index (the PDQ tier) and its
//!   sampled frames' local features in one feature index (the geometric tier), and every live
//!   feed's recent frames as a time-windowed source of the same library ([`LiveQuery`]); one
//!   lookup turns a keyframe's hashes and features into weighted [`Hit`]s for the temporal
//!   matcher.
//! - [`StreamRecognizer`]: one stream's matcher plus [`RecognitionConfig`], the decision rule
//!   that both `offside eval` and the worker apply, so the evaluation measures what runs. The
//!   worker keeps one per stream (cached, or replayed from its stored [`KeyframeHit`]s); eval
//!   one per query. Both look a keyframe up with [`look_up_luma`], timed step by step
//!   ([`KeyframeCost`]), which asks the [`FeatureSchedule`] whether the geometric tier looks
//!   at it (every keyframe as shipped; by need, every keyframe of a stream with evidence and
//!   one in a few of a quiet stream, as measured).
//!
//! Everything here is synchronous and CPU-bound: call it from a blocking thread.

mod cost;
mod frame;
mod keyframe;
mod library;
mod reference;
mod schedule;
mod stream;
pub(crate) mod weights;

pub(crate) use cost::ms_since;
pub use cost::{
    KeyframeCost, KeyframeLookup, decode_keyframe_timed, look_up_features_timed, look_up_luma,
};
pub use frame::{
    CorruptFeatures, FRAME_BYTES, FeatureFrame, ReferenceFrame, TornFrames, decode_feature_frames,
    decode_frames, encode_feature_frames, encode_frames,
};
pub use keyframe::{
    KeyframeHashes, MIN_QUALITY, QueryHash, QueryView, decode_keyframe, hash_keyframe, hash_luma,
    hash_luma_pdq,
};
pub use library::{Library, LibraryStats, LiveQuery, LiveWindow, SharedLibrary, TierHits};
pub use reference::{
    FeatureSampler, FramePruner, HashProgress, REFERENCE_HASHING_VERSION, ReferenceHashOptions,
    ReferenceHashes, hash_reference_file, hash_reference_image, reference_frames_of,
};
pub use schedule::{FeatureSchedule, StreamActivity};
pub use stream::{HitTier, KeyframeHit, Match, RecognitionConfig, StreamRecognizer, Tiers};
pub use weights::FEATURE_HITS_PER_REFERENCE;

pub use fingerprints::{CropVariant, Evidence, Hit, MatcherConfig};
