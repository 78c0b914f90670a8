//! Reference side: dense hashing of a reference video into frames to index.

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::Context as _;
use fingerprints::features::{FeatureConfig, LocalFeatures};
use fingerprints::{
    CropVariant, DecodeLimits, Hash256, Luma, centre_crop, decode_luma, inner_pictures, pdq,
};

use super::{FeatureFrame, ReferenceFrame};
use crate::media::{
    LumaOptions, REFERENCE_STILL_LONG_SIDE, Still, decode_luma_frames, probe, still_of_image,
};

/// Version of what [`hash_reference_file`] computes; bumped whenever the same file and options
/// would give different frames, so stored or cached reference hashes can be recognised as stale.
pub const REFERENCE_HASHING_VERSION: u32 = 5;

/// Everything indexed for one reference: PDQ frames and sampled feature frames.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferenceHashes {
    /// PDQ frames (all variants), in time order.
    pub frames: Vec<ReferenceFrame>,
    /// Feature frames, in time order (empty when the geometric tier is off).
    pub features: Vec<FeatureFrame>,
    /// Colour stills, one per [`LumaOptions::still_interval_ms`] of the reference, in time
    /// order (empty when that is `None`): what a reviewer is shown of a matched moment.
    pub stills: Vec<Still>,
}

/// How to hash a reference.
#[derive(Debug, Clone)]
pub struct ReferenceHashOptions {
    /// Decoding: frame-rate cap (default 30 fps, i.e. every frame of ordinary video) and the
    /// working size (default long side 512).
    pub decode: LumaOptions,
    /// Frames whose PDQ quality is below this are skipped (default 50, PDQ's own threshold:
    /// flat or nearly flat pictures whose hash bits are noise).
    pub min_quality: u8,
    /// A frame is dropped when its hash is within this many bits of the last kept frame of
    /// the same variant (default 8). Consecutive frames of a still or slow shot hash within a
    /// few bits; keeping them all would multiply index size and broad hits without adding
    /// anything a query could match better. Eight bits is a quarter of the match radius, so a
    /// query that matches a dropped frame within r matches the kept one within r + 8 at worst,
    /// and in practice within a bit or two of what it would have scored.
    pub dedup_distance: u32,
    /// A frame is kept regardless of [`Self::dedup_distance`] when the last kept frame of its
    /// variant is at least this old (ms; default 500). Pruning alone would represent a static
    /// shot (a presenter, a pianist, a slide) by its first frame only, and every keyframe
    /// streamed during that shot would then match the same reference time: the temporal
    /// matcher would see neither progress nor a consistent offset. Two kept frames per second
    /// keep the time error below the matcher's offset tolerance.
    pub max_pruned_gap_ms: i64,
    /// The crops indexed besides the full frame (default: 9:16, 1:1 and 4:3).
    pub variants: Vec<CropVariant>,
    /// One frame per this many ms gets local features for the geometric tier (default 1000;
    /// `None` turns the tier off). One per second is what the feature index was tuned on
    /// (its burstiness rule counts neighbouring frames of a shot; see
    /// `fingerprints::features::VerifyConfig::burst`) and keeps the index near 7.5 KB per
    /// reference second; keyframes arrive every 2 s or so, and a verified frame within half a
    /// second of the keyframe's true position is well inside the matcher's offset tolerance.
    pub feature_interval_ms: Option<i64>,
    /// Feature extraction settings of reference frames (default
    /// [`FeatureConfig::reference`]).
    pub features: FeatureConfig,
}

impl Default for ReferenceHashOptions {
    fn default() -> Self {
        Self {
            decode: LumaOptions { skip_loop_filter: true, ..LumaOptions::default() },
            min_quality: 50,
            dedup_distance: 8,
            max_pruned_gap_ms: 500,
            variants: vec![CropVariant::Portrait9x16, CropVariant::Square, CropVariant::Classic4x3],
            feature_interval_ms: Some(1000),
            features: FeatureConfig::reference(),
        }
    }
}

/// Progress of [`hash_reference_file`], reported about once per second of video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashProgress {
    /// Stream time reached, in ms.
    pub ts_ms: i64,
    /// The reference's duration, when the container announces it.
    pub duration_ms: Option<i64>,
    /// Frames decoded so far (after the frame-rate cap).
    pub frames_decoded: u64,
    /// Reference frames kept so far (all variants).
    pub frames_kept: u64,
}

/// Hashes a still frame as the reference side does, without pruning: the full frame, the
/// picture inside its bars when it has letterbox or pillarbox bars, and each of `variants`'
/// centre crops; those below `min_quality` are left out.
pub fn reference_frames_of(
    luma: &Luma,
    ts_ms: i64,
    variants: &[CropVariant],
    min_quality: u8,
) -> Vec<ReferenceFrame> {
    slotted_frames(luma, ts_ms, variants, min_quality).into_iter().map(|(_, f)| f).collect()
}

/// Pruning slot of the first inner-picture hash, the next one after it (the crop variants use
/// their codes 0-3).
const INNER_SLOT: usize = 4;

/// [`reference_frames_of`] with each frame's pruning slot.
///
/// The content rectangle of a reference that carries its own bars (a film letterboxed in a
/// 16:9 broadcast, a 4:3 archive pillarboxed) is what a pirate's letterbox or portrait canvas
/// shows, and the query side strips bars before hashing; so it is indexed too. It is stored as
/// [`CropVariant::Full`] (the whole picture the broadcaster shows) and pruned on its own.
fn slotted_frames(
    luma: &Luma,
    ts_ms: i64,
    variants: &[CropVariant],
    min_quality: u8,
) -> Vec<(usize, ReferenceFrame)> {
    let mut out = Vec::with_capacity(2 + variants.len());
    let mut push = |slot: usize, img: &Luma, variant: CropVariant| {
        let h = pdq(img);
        if h.quality >= min_quality {
            out.push((slot, ReferenceFrame { ts_ms, hash: h.hash, quality: h.quality, variant }));
        }
    };
    push(0, luma, CropVariant::Full);
    for (i, inner) in inner_pictures(luma).iter().filter_map(|r| r.crop(luma)).enumerate() {
        push(INNER_SLOT + i, &inner, CropVariant::Full);
    }
    for &variant in variants {
        if variant == CropVariant::Full {
            continue;
        }
        if let Some(crop) = centre_crop(luma, variant) {
            push(usize::from(variant.to_u8()), &crop, variant);
        }
    }
    out
}

/// Hashes an image uploaded as a reference (one frame at time 0), with its local features
/// when the geometric tier is on.
///
/// # Errors
/// The image cannot be decoded, or it is too flat to carry a usable hash.
pub fn hash_reference_image(
    bytes: &[u8],
    opts: &ReferenceHashOptions,
) -> anyhow::Result<ReferenceHashes> {
    let limits = DecodeLimits { min_long_side: u32::MAX, ..DecodeLimits::default() };
    let luma = decode_luma(bytes, &limits).context("cannot decode the reference image")?;
    let frames = reference_frames_of(&luma, 0, &opts.variants, opts.min_quality);
    anyhow::ensure!(
        !frames.is_empty(),
        "the reference image has too little detail to recognise (PDQ quality below {})",
        opts.min_quality
    );
    let features = opts
        .feature_interval_ms
        .map(|_| LocalFeatures::extract(&luma, &opts.features))
        .filter(|f| !f.is_empty())
        .map(|features| FeatureFrame { ts_ms: 0, features })
        .into_iter()
        .collect();
    let stills = match opts.decode.still_interval_ms {
        Some(_) => vec![Still {
            ts_ms: 0,
            jpeg: still_of_image(bytes, REFERENCE_STILL_LONG_SIDE)
                .context("cannot make a still of the reference image")?,
        }],
        None => Vec::new(),
    };
    Ok(ReferenceHashes { frames, features, stills })
}

/// Decodes a reference video densely and hashes it: for every frame (up to the frame-rate cap)
/// the full-frame PDQ plus the centre crops, low-quality frames skipped, near-duplicates of
/// the previous kept frame of the same variant dropped. Frames come out in time order. In the
/// same decoding pass, one frame per [`ReferenceHashOptions::feature_interval_ms`] gets its
/// local features extracted (frames without any, flat or black, are left out).
///
/// # Errors
/// The file cannot be opened or decoded (the error says how far decoding got), or no frame
/// has enough detail to be hashed.
pub fn hash_reference_file(
    path: &Path,
    opts: &ReferenceHashOptions,
    mut progress: impl FnMut(&HashProgress),
) -> anyhow::Result<ReferenceHashes> {
    let input = path.to_str().with_context(|| format!("{} is not a UTF-8 path", path.display()))?;
    let duration_ms = probe(input).ok().and_then(|info| info.duration_ms);
    let mut pruner = FramePruner::new(opts.dedup_distance, opts.max_pruned_gap_ms);
    let mut frames = Vec::new();
    let mut features = Vec::new();
    let mut stills = Vec::new();
    let mut sampler = opts.feature_interval_ms.map(FeatureSampler::new);
    let mut decoded = 0u64;
    let mut next_report = 0i64;
    decode_luma_frames(input, &opts.decode, |frame| {
        decoded += 1;
        if let Some(jpeg) = frame.still {
            stills.push(Still { ts_ms: frame.ts_ms, jpeg });
        }
        frames.extend(pruner.frames(&frame.luma, frame.ts_ms, &opts.variants, opts.min_quality));
        if sampler.as_mut().is_some_and(|s| s.sample(frame.ts_ms)) {
            let f = LocalFeatures::extract(&frame.luma, &opts.features);
            if !f.is_empty() {
                features.push(FeatureFrame { ts_ms: frame.ts_ms, features: f });
            }
        }
        if frame.ts_ms >= next_report {
            next_report = frame.ts_ms + 1000;
            progress(&HashProgress {
                ts_ms: frame.ts_ms,
                duration_ms,
                frames_decoded: decoded,
                frames_kept: frames.len() as u64,
            });
        }
        ControlFlow::Continue(())
    })
    // No path in these messages: they become the reference's `error`, shown to the rights
    // holder (the job logs the path for the operator).
    .context("cannot hash the reference video")?;
    anyhow::ensure!(
        !frames.is_empty(),
        "no frame of the video has enough detail to recognise (PDQ quality below {} throughout)",
        opts.min_quality
    );
    Ok(ReferenceHashes { frames, features, stills })
}

/// Which frames get local features, as reference hashing and live ingest pick them: the first
/// frame at or after each whole multiple of the interval (stream time). The grid stays anchored
/// on whole intervals whatever the frame rate, so a frame a little late does not shift every
/// later sample. Time going back by more than an interval (a live sender restarting its clock)
/// restarts the grid there; a file's frames come out in time order and never do.
#[derive(Debug, Clone)]
pub struct FeatureSampler {
    interval_ms: i64,
    next_ms: i64,
}

impl FeatureSampler {
    /// One frame per `interval_ms` (at least 1), from stream time 0.
    pub fn new(interval_ms: i64) -> Self {
        Self { interval_ms: interval_ms.max(1), next_ms: 0 }
    }

    /// Whether the frame at `ts_ms` is sampled (then the next one is due at the next multiple).
    pub fn sample(&mut self, ts_ms: i64) -> bool {
        if ts_ms < self.next_ms && ts_ms >= self.next_ms - self.interval_ms {
            return false;
        }
        self.next_ms = (ts_ms.div_euclid(self.interval_ms) + 1) * self.interval_ms;
        true
    }
}

/// Near-duplicate pruning of a stream of frames, as reference hashing and live ingest apply
/// it: remembers the last kept hash and time of each slot (crop variant, or inner picture) and
/// drops a hash within `distance` bits of it unless that one is `max_gap_ms` old (see
/// [`ReferenceHashOptions::dedup_distance`] and [`ReferenceHashOptions::max_pruned_gap_ms`]).
#[derive(Debug)]
pub struct FramePruner {
    distance: u32,
    max_gap_ms: i64,
    last: [Option<(i64, Hash256)>; INNER_SLOT + 2],
}

impl FramePruner {
    /// A pruner with no history.
    pub fn new(distance: u32, max_gap_ms: i64) -> Self {
        Self { distance, max_gap_ms, last: [None; INNER_SLOT + 2] }
    }

    /// Hashes a frame as [`reference_frames_of`] does and keeps the hashes that do not repeat
    /// the last kept one of their slot.
    pub fn frames(
        &mut self,
        luma: &Luma,
        ts_ms: i64,
        variants: &[CropVariant],
        min_quality: u8,
    ) -> Vec<ReferenceFrame> {
        slotted_frames(luma, ts_ms, variants, min_quality)
            .into_iter()
            .filter(|(slot, f)| self.keep(*slot, f.ts_ms, &f.hash))
            .map(|(_, f)| f)
            .collect()
    }

    fn keep(&mut self, slot: usize, ts_ms: i64, hash: &Hash256) -> bool {
        let Some(last) = self.last.get_mut(slot) else { return true };
        if let Some((prev_ts, prev)) = *last
            && prev.distance(hash) <= self.distance
            && ts_ms - prev_ts < self.max_gap_ms
        {
            return false;
        }
        *last = Some((ts_ms, *hash));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_with_bits(n: usize) -> Hash256 {
        let mut h = Hash256::default();
        for i in 0..n {
            h.set_bit(i);
        }
        h
    }

    #[test]
    fn near_duplicates_of_the_same_variant_are_pruned() {
        let mut p = FramePruner::new(8, 500);
        assert!(p.keep(0, 0, &hash_with_bits(0)));
        assert!(!p.keep(0, 40, &hash_with_bits(8)));
        // Another variant has its own history.
        assert!(p.keep(2, 40, &hash_with_bits(8)));
        assert!(p.keep(INNER_SLOT, 40, &hash_with_bits(8)));
        assert!(p.keep(0, 80, &hash_with_bits(9)));
        // Compared with the last kept frame, not the last seen one.
        assert!(!p.keep(0, 120, &hash_with_bits(12)));
    }

    #[test]
    fn features_are_sampled_on_a_grid_of_whole_intervals_that_restarts_when_time_goes_back() {
        let mut s = FeatureSampler::new(1000);
        let at_25fps: Vec<i64> = (0..75).map(|i| i * 40 + 20).filter(|&ts| s.sample(ts)).collect();
        assert_eq!(at_25fps, [20, 1020, 2020]);
        // A late frame does not shift the grid.
        assert!(s.sample(3_300));
        assert!(!s.sample(3_900));
        assert!(s.sample(4_000));
        // The sender restarts its clock: sampled at once, then on the new grid.
        assert!(s.sample(100));
        assert!(!s.sample(900));
        assert!(s.sample(1_000));
    }

    #[test]
    fn a_static_shot_still_keeps_two_frames_per_second() {
        let mut p = FramePruner::new(8, 500);
        let kept: Vec<i64> =
            (0..50).map(|i| i * 40).filter(|&ts| p.keep(0, ts, &Hash256::ZERO)).collect();
        assert_eq!(kept, [0, 520, 1040, 1560]);
    }
}
