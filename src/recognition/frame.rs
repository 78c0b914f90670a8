//! One frame type and one codec for every source: [`ReferenceFrame`] (a PDQ hash of a frame or
//! of one of its crops, at a time) and [`FeatureFrame`] (the local features of a sampled frame,
//! the geometric tier), and the byte forms they are stored, sent and cached in.
//!
//! A frame's time is the source's own timeline: milliseconds from the start of a file
//! reference, or the air time (Unix ms) of a live feed's frame as the ingest and the live fanout
//! carry it; the library turns air times into event times when it looks them up.
//!
//! The PDQ form, [`FRAME_BYTES`] per frame (time i64 LE, 32 hash bytes, quality, crop variant),
//! is what the database's frame chunks hold, what the live fanout sends and what `offside eval`
//! caches: the same bytes everywhere, written and read only here.

use fingerprints::features::{Descriptor, Keypoint, LocalFeatures};
use fingerprints::{CropVariant, Hash256};

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

/// The local features of one sampled reference frame (the geometric tier).
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureFrame {
    /// Time of the frame in the reference, in ms.
    pub ts_ms: i64,
    /// Its features, extracted with [`ReferenceHashOptions::features`].
    pub features: LocalFeatures,
}

/// Bytes of one encoded [`ReferenceFrame`]: time (i64 LE), the 32 hash bytes, quality, crop
/// variant ([`CropVariant::to_u8`]).
pub const FRAME_BYTES: usize = 8 + 32 + 1 + 1;

/// Why encoded frames could not be read back: the bytes are not a whole number of
/// [`FRAME_BYTES`]-byte records.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("encoded frames of {0} bytes are not a whole number of {FRAME_BYTES}-byte records")]
pub struct TornFrames(pub usize);

/// Packs frames, [`FRAME_BYTES`] each, in order.
pub fn encode_frames(frames: &[ReferenceFrame]) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.len() * FRAME_BYTES);
    for f in frames {
        out.extend_from_slice(&f.ts_ms.to_le_bytes());
        out.extend_from_slice(&f.hash.to_bytes());
        out.push(f.quality);
        out.push(f.variant.to_u8());
    }
    out
}

/// Reads what [`encode_frames`] wrote, appending to `out`. A record naming a crop variant this
/// version does not know (written by a newer one) is skipped; the count of skipped records is
/// returned, for callers that would rather refuse the whole input.
///
/// # Errors
/// [`TornFrames`] when the bytes are not whole records (nothing is appended then).
pub fn decode_frames(bytes: &[u8], out: &mut Vec<ReferenceFrame>) -> Result<usize, TornFrames> {
    if !bytes.len().is_multiple_of(FRAME_BYTES) {
        return Err(TornFrames(bytes.len()));
    }
    let mut unknown = 0;
    out.reserve(bytes.len() / FRAME_BYTES);
    for r in bytes.chunks_exact(FRAME_BYTES) {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&r[..8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&r[8..40]);
        let Some(variant) = CropVariant::from_u8(r[41]) else {
            unknown += 1;
            continue;
        };
        out.push(ReferenceFrame {
            ts_ms: i64::from_le_bytes(ts),
            hash: Hash256::from_bytes(hash),
            quality: r[40],
            variant,
        });
    }
    Ok(unknown)
}

/// Bytes of one stored feature: x and y in quarter pixels (u16 each), pyramid level, corner
/// strength (u32), descriptor (32 bytes).
const FEATURE_BYTES: usize = 2 + 2 + 1 + 4 + 32;
/// Bytes of a stored feature frame's header: time (i64), working width and height (u16 each),
/// feature count (u16).
const FEATURE_FRAME_HEADER: usize = 8 + 2 + 2 + 2;

/// Why stored feature frames could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("stored feature frames are corrupt at byte {0}")]
pub struct CorruptFeatures(pub usize);

/// Packs feature frames for storage (the database, the eval cache): per frame a 14-byte
/// header and 41 bytes per feature, little-endian. Positions keep a quarter pixel, far below
/// the verifier's 6-pixel inlier threshold.
pub fn encode_feature_frames(frames: &[FeatureFrame]) -> Vec<u8> {
    let total: usize =
        frames.iter().map(|f| FEATURE_FRAME_HEADER + f.features.len() * FEATURE_BYTES).sum();
    let mut out = Vec::with_capacity(total);
    let u16_of = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // clamped to u16's range
    let quarter = |v: f32| (v * 4.0).round().clamp(0.0, f32::from(u16::MAX)) as u16;
    for f in frames {
        // At most u16::MAX features per frame are stored; extraction budgets are in hundreds.
        let n = f.features.len().min(usize::from(u16::MAX));
        out.extend_from_slice(&f.ts_ms.to_le_bytes());
        out.extend_from_slice(&u16_of(f.features.width()).to_le_bytes());
        out.extend_from_slice(&u16_of(f.features.height()).to_le_bytes());
        out.extend_from_slice(&u16_of(u32::try_from(n).unwrap_or(u32::MAX)).to_le_bytes());
        for (k, d) in f.features.keypoints().iter().zip(f.features.descriptors()).take(n) {
            out.extend_from_slice(&quarter(k.x).to_le_bytes());
            out.extend_from_slice(&quarter(k.y).to_le_bytes());
            out.push(k.level);
            out.extend_from_slice(&k.response.to_le_bytes());
            for w in d.0 {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
    }
    out
}

/// Reads what [`encode_feature_frames`] wrote, appending to `out`.
///
/// # Errors
/// [`CorruptFeatures`] when the bytes end mid-frame.
pub fn decode_feature_frames(
    bytes: &[u8],
    out: &mut Vec<FeatureFrame>,
) -> Result<(), CorruptFeatures> {
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Result<&[u8], CorruptFeatures> {
        let s = bytes.get(*at..*at + n).ok_or(CorruptFeatures(*at))?;
        *at += n;
        Ok(s)
    };
    let u16_at = |s: &[u8], i: usize| u16::from_le_bytes([s[i], s[i + 1]]);
    while at < bytes.len() {
        let h = take(&mut at, FEATURE_FRAME_HEADER)?;
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&h[..8]);
        let (width, height, n) = (u16_at(h, 8), u16_at(h, 10), usize::from(u16_at(h, 12)));
        let body = take(&mut at, n * FEATURE_BYTES)?;
        let mut keypoints = Vec::with_capacity(n);
        let mut descriptors = Vec::with_capacity(n);
        for r in body.chunks_exact(FEATURE_BYTES) {
            keypoints.push(Keypoint {
                x: f32::from(u16_at(r, 0)) / 4.0,
                y: f32::from(u16_at(r, 2)) / 4.0,
                level: r[4],
                response: u32::from_le_bytes([r[5], r[6], r[7], r[8]]),
            });
            let mut words = [0u64; 4];
            for (w, b) in words.iter_mut().zip(r[9..].chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                *w = u64::from_le_bytes(a);
            }
            descriptors.push(Descriptor(words));
        }
        out.push(FeatureFrame {
            ts_ms: i64::from_le_bytes(ts),
            features: LocalFeatures::from_parts(
                u32::from(width),
                u32::from(height),
                keypoints,
                descriptors,
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_torn_bytes_are_refused() {
        let mut hash = Hash256::default();
        hash.set_bit(7);
        let frames = vec![
            ReferenceFrame { ts_ms: 1234, hash, quality: 88, variant: CropVariant::Square },
            ReferenceFrame {
                ts_ms: -5,
                hash: Hash256::ZERO,
                quality: 50,
                variant: CropVariant::Full,
            },
        ];
        let bytes = encode_frames(&frames);
        assert_eq!(bytes.len(), 2 * FRAME_BYTES);
        let mut back = Vec::new();
        assert_eq!(decode_frames(&bytes, &mut back), Ok(0));
        assert_eq!(back, frames);
        let mut torn = Vec::new();
        assert_eq!(decode_frames(&bytes[..FRAME_BYTES + 3], &mut torn), Err(TornFrames(45)));
        assert!(torn.is_empty());
    }

    #[test]
    fn a_frame_of_an_unknown_crop_variant_is_skipped_and_counted() {
        let frame = ReferenceFrame {
            ts_ms: 40,
            hash: Hash256::ZERO,
            quality: 90,
            variant: CropVariant::Full,
        };
        let mut bytes = encode_frames(&[frame, frame]);
        bytes[FRAME_BYTES - 1] = 0xff;
        let mut back = Vec::new();
        assert_eq!(decode_frames(&bytes, &mut back), Ok(1));
        assert_eq!(back, [frame]);
    }

    #[test]
    fn feature_frames_survive_storage_to_a_quarter_pixel() {
        let features = LocalFeatures::from_parts(
            480,
            270,
            vec![
                Keypoint { x: 12.25, y: 200.5, level: 0, response: 77 },
                Keypoint { x: 479.0, y: 0.0, level: 4, response: 1 << 20 },
            ],
            vec![Descriptor([1, 2, 3, u64::MAX]), Descriptor([u64::MAX, 0, 5, 6])],
        );
        let frames = vec![
            FeatureFrame { ts_ms: 1000, features },
            FeatureFrame { ts_ms: 2000, features: LocalFeatures::default() },
        ];
        let bytes = encode_feature_frames(&frames);
        let mut back = Vec::new();
        decode_feature_frames(&bytes, &mut back).unwrap();
        assert_eq!(back, frames);
        let mut torn = Vec::new();
        assert!(decode_feature_frames(&bytes[..bytes.len() - 1], &mut torn).is_err());
    }
}
