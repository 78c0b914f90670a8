//! Reference side: dense hashing of a reference video into frames to index.

use std::ops::ControlFlow;
use std::path::Path;

use anyhow::Context as _;
use fingerprints::{CropVariant, DecodeLimits, Hash256, Luma, centre_crop, decode_luma, pdq};

use crate::media::{LumaOptions, decode_luma_frames, probe};

/// One indexed reference frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferenceFrame {
    /// Time of the frame in the reference, in ms.
    pub ts_ms: i64,
    /// PDQ hash of the frame (or of its crop).
    pub hash: Hash256,
    /// PDQ quality, 0-100.
    pub quality: u8,
    /// Which part of the frame was hashed.
    pub variant: CropVariant,
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
    /// The crops indexed besides the full frame (default: 9:16, 1:1 and 4:3).
    pub variants: Vec<CropVariant>,
}

impl Default for ReferenceHashOptions {
    fn default() -> Self {
        Self {
            decode: LumaOptions { skip_loop_filter: true, ..LumaOptions::default() },
            min_quality: 50,
            dedup_distance: 8,
            variants: vec![CropVariant::Portrait9x16, CropVariant::Square, CropVariant::Classic4x3],
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

/// Hashes a still frame as the reference side does, without pruning: the full frame and each
/// of `variants`' centre crops, those below `min_quality` left out.
pub fn reference_frames_of(
    luma: &Luma,
    ts_ms: i64,
    variants: &[CropVariant],
    min_quality: u8,
) -> Vec<ReferenceFrame> {
    let mut out = Vec::with_capacity(1 + variants.len());
    let full = pdq(luma);
    if full.quality >= min_quality {
        out.push(ReferenceFrame {
            ts_ms,
            hash: full.hash,
            quality: full.quality,
            variant: CropVariant::Full,
        });
    }
    for &variant in variants {
        if variant == CropVariant::Full {
            continue;
        }
        if let Some(crop) = centre_crop(luma, variant) {
            let h = pdq(&crop);
            if h.quality >= min_quality {
                out.push(ReferenceFrame { ts_ms, hash: h.hash, quality: h.quality, variant });
            }
        }
    }
    out
}

/// Hashes an image uploaded as a reference (one frame at time 0).
///
/// # Errors
/// The image cannot be decoded, or it is too flat to carry a usable hash.
pub fn hash_reference_image(
    bytes: &[u8],
    opts: &ReferenceHashOptions,
) -> anyhow::Result<Vec<ReferenceFrame>> {
    let limits = DecodeLimits { min_long_side: u32::MAX, ..DecodeLimits::default() };
    let luma = decode_luma(bytes, &limits).context("cannot decode the reference image")?;
    let frames = reference_frames_of(&luma, 0, &opts.variants, opts.min_quality);
    anyhow::ensure!(
        !frames.is_empty(),
        "the reference image has too little detail to recognise (PDQ quality below {})",
        opts.min_quality
    );
    Ok(frames)
}

/// Decodes a reference video densely and hashes it: for every frame (up to the frame-rate cap)
/// the full-frame PDQ plus the centre crops, low-quality frames skipped, near-duplicates of
/// the previous kept frame of the same variant dropped. Frames come out in time order.
///
/// # Errors
/// The file cannot be opened or decoded (the error says how far decoding got), or no frame
/// has enough detail to be hashed.
pub fn hash_reference_file(
    path: &Path,
    opts: &ReferenceHashOptions,
    mut progress: impl FnMut(&HashProgress),
) -> anyhow::Result<Vec<ReferenceFrame>> {
    let input = path.to_str().with_context(|| format!("{} is not a UTF-8 path", path.display()))?;
    let duration_ms = probe(input).ok().and_then(|info| info.duration_ms);
    let mut pruner = Pruner::new(opts.dedup_distance);
    let mut frames = Vec::new();
    let mut decoded = 0u64;
    let mut next_report = 0i64;
    decode_luma_frames(input, &opts.decode, |frame| {
        decoded += 1;
        for f in reference_frames_of(&frame.luma, frame.ts_ms, &opts.variants, opts.min_quality) {
            if pruner.keep(&f) {
                frames.push(f);
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
    .with_context(|| format!("cannot hash reference {}", path.display()))?;
    anyhow::ensure!(
        !frames.is_empty(),
        "{}: no frame has enough detail to recognise (PDQ quality below {} throughout)",
        path.display(),
        opts.min_quality
    );
    Ok(frames)
}

/// Near-duplicate pruning: remembers the last kept hash of each variant.
struct Pruner {
    distance: u32,
    last: [Option<Hash256>; 4],
}

impl Pruner {
    fn new(distance: u32) -> Self {
        Self { distance, last: [None; 4] }
    }

    fn keep(&mut self, frame: &ReferenceFrame) -> bool {
        let slot = &mut self.last[usize::from(frame.variant.to_u8()).min(3)];
        if slot.is_some_and(|prev| prev.distance(&frame.hash) <= self.distance) {
            return false;
        }
        *slot = Some(frame.hash);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ts_ms: i64, hash: Hash256, variant: CropVariant) -> ReferenceFrame {
        ReferenceFrame { ts_ms, hash, quality: 100, variant }
    }

    fn hash_with_bits(n: usize) -> Hash256 {
        let mut h = Hash256::default();
        for i in 0..n {
            h.set_bit(i);
        }
        h
    }

    #[test]
    fn near_duplicates_of_the_same_variant_are_pruned() {
        let mut p = Pruner::new(8);
        assert!(p.keep(&frame(0, hash_with_bits(0), CropVariant::Full)));
        assert!(!p.keep(&frame(40, hash_with_bits(8), CropVariant::Full)));
        // Another variant has its own history.
        assert!(p.keep(&frame(40, hash_with_bits(8), CropVariant::Square)));
        assert!(p.keep(&frame(80, hash_with_bits(9), CropVariant::Full)));
        // Compared with the last kept frame, not the last seen one.
        assert!(!p.keep(&frame(120, hash_with_bits(12), CropVariant::Full)));
    }
}
