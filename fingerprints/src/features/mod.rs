//! Local binary features: the geometric tier that recognises zoomed, cropped, overlaid,
//! windowed and filmed re-streams, which PDQ cannot see.
//!
//! A frame becomes a set of keypoints with 256-bit binary descriptors ([`LocalFeatures`]).
//! Reference frames go into a [`FeatureIndex`]; a query keyframe votes for reference frames by
//! descriptor matches and every candidate is verified by a RANSAC similarity fit
//! ([`FeatureIndex::query`] returns [`Verified`] frames). Only a geometrically consistent,
//! well-spread, time-specific set of matches verifies, so a shared logo, the same room in
//! another take or a black slate does not.
//!
//! # Design, and why
//! - **Upright FAST-9 + BRIEF over a scale pyramid, not ORB's oriented variant.** Re-streams
//!   rotate the picture by at most a couple of degrees (a phone filming a screen: 1–2°, plus
//!   keystone); a mirror is handled explicitly. Upright BRIEF keeps its bits stable up to about
//!   10° of rotation, while steering the pattern by an intensity-centroid angle adds orientation
//!   noise to every descriptor and makes unrelated corners easier to confuse. Measured on the
//!   synthetic test scene (see `tests/features.rs`), a 2° rotation costs no verification.
//! - **Mirror for free.** The sampling pattern is made of 128 point pairs and their left-right
//!   mirrors, so the descriptor of the mirrored image at the mirrored keypoint is the same 256
//!   bits with halves swapped ([`LocalFeatures::mirrored`]): a mirrored keyframe is checked
//!   without extracting again.
//! - **A fixed working resolution** (long side [`FeatureConfig::max_side`], 480 by default):
//!   keypoint coordinates, the RANSAC threshold and the grid are in one frame of reference
//!   whatever the input size, and 480 px keeps extraction near 2 ms (see the `features` bench).
//! - **Spread over the frame**: each pyramid level keeps its strongest corners per grid cell
//!   first, so a face-cam, a banner or a textured corner cannot take every feature.
//! - **Hand-written rather than `imageproc`**: imageproc 0.27 has FAST and upright BRIEF, but its
//!   BRIEF allocates a vector per descriptor, draws random test pairs per call (the pattern must
//!   be fixed for an index that outlives the process), needs a copy into its own image type and
//!   brings nalgebra and rand_distr; none of it offers the mirror-symmetric pattern above. The
//!   code here is small and covered by tests.

mod detect;
mod image;
mod index;
mod ransac;
mod store;

pub use index::{FeatureIndex, IndexConfig, Verified, VerifyConfig};
pub use ransac::{
    Homography, Pair, RansacFit, RansacParams, Similarity, fit_similarity_ransac,
    refine_perspective,
};

use crate::Luma;
use image::Plane;

/// A 256-bit binary descriptor: bit `i` (of `words[i / 64]`, bit `i % 64`) is one intensity
/// comparison of two smoothed pixels near the keypoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Descriptor(pub [u64; 4]);

impl Descriptor {
    /// Hamming distance (0..=256) between two descriptors.
    #[inline]
    pub fn distance(&self, other: &Descriptor) -> u32 {
        self.0.iter().zip(other.0.iter()).map(|(a, b)| (a ^ b).count_ones()).sum()
    }

    /// The descriptor of the same keypoint in the left-right mirrored image (halves swapped).
    #[inline]
    pub fn mirrored(&self) -> Descriptor {
        Descriptor([self.0[2], self.0[3], self.0[0], self.0[1]])
    }
}

/// Where a feature was found: position in working-resolution pixels (the frame scaled so its
/// long side is [`FeatureConfig::max_side`]), the pyramid level and the corner strength.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Keypoint {
    /// Column, in working-resolution pixels (pixel centres at integers).
    pub x: f32,
    /// Row, in working-resolution pixels.
    pub y: f32,
    /// Pyramid level (0 = working resolution; level `l` is scaled down by `scale_factor^l`).
    pub level: u8,
    /// FAST corner strength (summed contrast beyond the threshold); larger is stronger.
    pub response: u32,
}

/// Parameters of feature extraction. Queries and references may use different budgets
/// ([`FeatureConfig::query`], [`FeatureConfig::reference`]) but must share `max_side`, `levels`
/// and `scale_factor` so their coordinates and scales agree.
#[derive(Clone, Debug, PartialEq)]
pub struct FeatureConfig {
    /// The frame is resized so its long side is this many pixels before detection. Default 480.
    pub max_side: u32,
    /// Number of pyramid levels. Default 5 (with factor 1.25, scales from 1 to 1/2.4, so a
    /// query zoomed or shrunk up to about 2.4x relative to the reference still finds its level).
    pub levels: u8,
    /// Size ratio between consecutive levels. Default 1.25.
    pub scale_factor: f32,
    /// FAST intensity threshold (0–255). Default 12: low enough for a dim, blurred filmed
    /// screen; flat areas and mild JPEG noise still give no corners.
    pub fast_threshold: u8,
    /// At most this many features per frame. Default 400 for queries, 96 for references.
    pub max_features: usize,
    /// Columns of the spreading grid. Default 8.
    pub grid_cols: usize,
    /// Rows of the spreading grid. Default 6.
    pub grid_rows: usize,
    /// A descriptor bit whose two smoothed samples differ by at most this many grey levels is
    /// *unstable*: a re-encode, blur or noise may flip it. The feature index probes the LSH
    /// buckets a query would reach with such a key bit flipped
    /// ([`VerifyConfig::max_probes`]). Default 2: measured on the development set, 4 found fewer
    /// true matches for the probes spent (it flags too many bits of flat patches).
    pub unstable_margin: u8,
}

impl FeatureConfig {
    /// Settings for query keyframes: a generous budget, so the part of the picture that is
    /// still visible (behind an overlay, inside a crop) keeps enough features.
    pub fn query() -> Self {
        Self {
            max_side: 480,
            levels: 5,
            scale_factor: 1.25,
            fast_threshold: 12,
            max_features: 400,
            grid_cols: 8,
            grid_rows: 6,
            unstable_margin: 2,
        }
    }

    /// Settings for reference frames: a small budget, which bounds the index to a few KB per
    /// reference second (see [`FeatureIndex::memory_bytes`]).
    pub fn reference() -> Self {
        Self { max_features: 96, ..Self::query() }
    }
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self::query()
    }
}

/// The local features of one frame: keypoints and their descriptors, index-aligned.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LocalFeatures {
    width: u32,
    height: u32,
    keypoints: Vec<Keypoint>,
    descriptors: Vec<Descriptor>,
    /// Per descriptor, its unstable bits ([`FeatureConfig::unstable_margin`]); empty when
    /// unknown (features built from stored parts).
    unstable: Vec<Descriptor>,
}

impl LocalFeatures {
    /// Detects and describes features of `img`.
    ///
    /// A flat or nearly flat image yields few or no features; an image too small for the
    /// descriptor patch at the working resolution yields none. Never fails.
    pub fn extract(img: &Luma, cfg: &FeatureConfig) -> LocalFeatures {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let long = w.max(h) as f32;
        let target = cfg.max_side.max(16) as f32;
        let w0 = ((w as f32 * target / long).round() as usize).max(1);
        let h0 = ((h as f32 * target / long).round() as usize).max(1);
        let src = Plane { width: w, height: h, pixels: img.pixels().to_vec() };
        let level0 = src.resize(w0, h0);

        let levels = usize::from(cfg.levels.max(1));
        let factor = if cfg.scale_factor.is_finite() && cfg.scale_factor > 1.01 {
            cfg.scale_factor
        } else {
            1.25
        };
        // ORB's allocation: each level gets a share proportional to its inverse scale.
        let weights: Vec<f32> = (0..levels).map(|l| factor.powi(-(l as i32))).collect();
        let total: f32 = weights.iter().sum();

        let mut out = LocalFeatures { width: w0 as u32, height: h0 as u32, ..Default::default() };
        let mut plane = level0;
        for (l, weight) in weights.iter().enumerate() {
            if l > 0 {
                let lw = (w0 as f32 / factor.powi(l as i32)).round() as usize;
                let lh = (h0 as f32 / factor.powi(l as i32)).round() as usize;
                if lw <= 2 * detect::BORDER + 4 || lh <= 2 * detect::BORDER + 4 {
                    break;
                }
                plane = plane.resize(lw, lh);
            }
            let budget = ((cfg.max_features as f32 * weight / total).round() as usize).max(1);
            let corners = detect::fast9(&plane, cfg.fast_threshold);
            let corners = detect::spread(
                corners,
                plane.width,
                plane.height,
                cfg.grid_cols.max(1),
                cfg.grid_rows.max(1),
                budget,
            );
            if corners.is_empty() {
                continue;
            }
            let smooth = plane.smooth();
            let pattern = detect::Pattern::new(smooth.width);
            let sx = w0 as f32 / plane.width as f32;
            let sy = h0 as f32 / plane.height as f32;
            for c in corners {
                out.keypoints.push(Keypoint {
                    x: (c.x as f32 + 0.5) * sx - 0.5,
                    y: (c.y as f32 + 0.5) * sy - 0.5,
                    level: l as u8,
                    response: c.score,
                });
                let (d, unstable) = pattern.describe(&smooth, c.x, c.y, cfg.unstable_margin);
                out.descriptors.push(Descriptor(d));
                out.unstable.push(Descriptor(unstable));
            }
        }
        out
    }

    /// Builds a feature set from parts, for tests, benchmarks and callers that stored features.
    /// Keypoints and descriptors are paired by position; the longer list is truncated.
    pub fn from_parts(
        width: u32,
        height: u32,
        mut keypoints: Vec<Keypoint>,
        mut descriptors: Vec<Descriptor>,
    ) -> LocalFeatures {
        let n = keypoints.len().min(descriptors.len());
        keypoints.truncate(n);
        descriptors.truncate(n);
        LocalFeatures { width, height, keypoints, descriptors, unstable: Vec::new() }
    }

    /// The features of the left-right mirrored frame, derived without re-extraction: mirrored
    /// x coordinates and descriptors with their halves swapped (see [`Descriptor::mirrored`]).
    pub fn mirrored(&self) -> LocalFeatures {
        let wm = self.width as f32 - 1.0;
        LocalFeatures {
            width: self.width,
            height: self.height,
            keypoints: self.keypoints.iter().map(|k| Keypoint { x: wm - k.x, ..*k }).collect(),
            descriptors: self.descriptors.iter().map(Descriptor::mirrored).collect(),
            unstable: self.unstable.iter().map(Descriptor::mirrored).collect(),
        }
    }

    /// Working-resolution width (the coordinate frame of the keypoints).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Working-resolution height.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.keypoints.len()
    }

    /// True when no feature was found (flat, black or tiny frames).
    pub fn is_empty(&self) -> bool {
        self.keypoints.is_empty()
    }

    /// The keypoints, aligned with [`LocalFeatures::descriptors`].
    pub fn keypoints(&self) -> &[Keypoint] {
        &self.keypoints
    }

    /// Per descriptor, the bits a small change of the picture may flip (see
    /// [`FeatureConfig::unstable_margin`]), aligned with [`LocalFeatures::descriptors`]; empty
    /// for features built with [`LocalFeatures::from_parts`].
    pub fn unstable_bits(&self) -> &[Descriptor] {
        &self.unstable
    }

    /// The descriptors, aligned with [`LocalFeatures::keypoints`].
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descriptors
    }
}
