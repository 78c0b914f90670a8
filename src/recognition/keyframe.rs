//! Query side: the hashes of one keyframe.

use fingerprints::features::{FeatureConfig, LocalFeatures};
use fingerprints::{
    DecodeLimits, Hash256, Luma, Rect, decode_luma, inner_pictures, layout_band, pdq_dihedral,
    picture_windows,
};

/// Which view of the keyframe a query hash was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryView {
    /// The whole frame.
    Full,
    /// The whole frame mirrored left to right (pirates flip pictures to dodge matching).
    FullMirror,
    /// A picture inside the frame: inside letterbox/pillarbox bars (black or blurred fill),
    /// with its dark margins trimmed ([`fingerprints::inner_pictures`]), or where a layout puts
    /// it (a band anywhere in a portrait frame: [`fingerprints::layout_band`]; a player beside
    /// a chat panel, a picture-in-picture: [`fingerprints::picture_windows`]).
    Content,
    /// That picture, mirrored.
    ContentMirror,
}

impl QueryView {
    /// A stable lowercase name for logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryView::Full => "full",
            QueryView::FullMirror => "full_mirror",
            QueryView::Content => "content",
            QueryView::ContentMirror => "content_mirror",
        }
    }
}

/// PDQ's own floor for a usable hash: below this quality (a flat or nearly flat picture) the
/// hash bits are mostly noise, and such pictures match one another. Views of a keyframe below
/// it are not looked up by the PDQ tier (the geometric tier judges a picture by its own
/// features and verification).
pub const MIN_QUALITY: u8 = 50;

/// One hash to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryHash {
    /// The PDQ hash.
    pub hash: Hash256,
    /// What it was computed from.
    pub view: QueryView,
    /// PDQ quality (0-100) of that view.
    pub quality: u8,
}

/// Everything looked up for one keyframe.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyframeHashes {
    /// The hashes of at least [`MIN_QUALITY`]: the full frame and its mirror, each inner
    /// picture and its mirror when the frame has bars or dark margins. A dark frame whose
    /// whole is too flat to hash can still have a usable picture inside its black margins.
    pub hashes: Vec<QueryHash>,
    /// Local features of the picture ([`query_features`]) for the geometric tier; `None` for a
    /// keyframe known only by its hash, or until the tier looks. The mirrored query is derived
    /// from them at lookup time.
    pub features: Option<LocalFeatures>,
    /// The band of a portrait layout ([`layout_band`]), found while hashing: where the
    /// geometric tier looks, when it looks. `None` for the whole frame.
    pub band: Option<Rect>,
}

impl KeyframeHashes {
    /// A keyframe known only by its hash (the `application/vnd.offside.pdq` message form):
    /// no mirror, no content rectangle; nothing to look up below [`MIN_QUALITY`].
    pub fn from_hash(hash: Hash256, quality: u8) -> Self {
        let hashes = if quality >= MIN_QUALITY {
            vec![QueryHash { hash, view: QueryView::Full, quality }]
        } else {
            Vec::new()
        };
        Self { hashes, features: None, band: None }
    }

    /// Whether the keyframe can be looked up at all: a PDQ view of usable quality, or local
    /// features. A black, flat or tiny frame has neither and carries no evidence.
    pub fn carries_evidence(&self) -> bool {
        !self.hashes.is_empty() || self.features.as_ref().is_some_and(|f| !f.is_empty())
    }
}

/// Decodes a keyframe (JPEG, PNG or WebP) and hashes it.
///
/// # Errors
/// The decoder's [`fingerprints::Error`]: corrupt or truncated data, an unsupported format, or
/// dimensions beyond [`DecodeLimits::default`].
pub fn hash_keyframe(bytes: &[u8]) -> Result<KeyframeHashes, fingerprints::Error> {
    Ok(hash_luma(&decode_keyframe(bytes)?))
}

/// Decodes a keyframe (JPEG, PNG or WebP) to its luma, within [`DecodeLimits::default`].
///
/// # Errors
/// As [`hash_keyframe`].
pub fn decode_keyframe(bytes: &[u8]) -> Result<Luma, fingerprints::Error> {
    decode_luma(bytes, &DecodeLimits::default())
}

/// The local features of the picture a keyframe shows ([`FeatureConfig::query`]): its `band`
/// ([`KeyframeHashes::band`]) when it has one, else the whole keyframe, bars
/// included (the verifier fits a similarity, so a picture inside bars or a window matches at
/// its own scale and position). A band is a third of a portrait frame's height: extracted on
/// its own it gets the tier's full resolution and feature budget, where the whole frame would
/// give it a third of the budget at a little over half the resolution, and the fill around it
/// has nothing to match.
pub(crate) fn query_features(luma: &Luma, band: Option<Rect>) -> LocalFeatures {
    let band = band.and_then(|rect| rect.crop(luma));
    LocalFeatures::extract(band.as_ref().unwrap_or(luma), &FeatureConfig::query())
}

/// Hashes a decoded keyframe: the whole frame and its mirror (one DCT gives both), each of
/// [`inner_pictures`] (inside bars, dark margins trimmed) and its mirror, and the frame's local
/// features.
pub fn hash_luma(luma: &Luma) -> KeyframeHashes {
    let mut hashes = hash_luma_pdq(luma);
    hashes.features = Some(query_features(luma, hashes.band));
    hashes
}

/// [`hash_luma`] without the local features: the PDQ tier's hashes only.
pub fn hash_luma_pdq(luma: &Luma) -> KeyframeHashes {
    let (full, full_quality) = pdq_dihedral(luma);
    let mut hashes = vec![
        QueryHash { hash: full.original, view: QueryView::Full, quality: full_quality },
        QueryHash { hash: full.mirror(), view: QueryView::FullMirror, quality: full_quality },
    ];
    let band = layout_band(luma);
    for inner in query_pictures(luma, band).iter().filter_map(|rect| rect.crop(luma)) {
        let (d, quality) = pdq_dihedral(&inner);
        hashes.push(QueryHash { hash: d.original, view: QueryView::Content, quality });
        hashes.push(QueryHash { hash: d.mirror(), view: QueryView::ContentMirror, quality });
    }
    hashes.retain(|h| h.quality >= MIN_QUALITY);
    KeyframeHashes { hashes, features: None, band }
}

/// The pictures inside a keyframe hashed on their own: [`inner_pictures`] (which the reference
/// side hashes too) and the places a re-streamer's layout puts a picture (a band across a
/// portrait frame, [`layout_band`]; a window, [`picture_windows`]), each left out when it is
/// one listed before it give or take 1 % of the frame on every edge. `band` is the frame's
/// [`layout_band`].
fn query_pictures(luma: &Luma, band: Option<Rect>) -> Vec<Rect> {
    let mut out = inner_pictures(luma);
    for window in band.into_iter().chain(picture_windows(luma)) {
        if !out.iter().any(|r| r.near(&window, luma.width(), luma.height())) {
            out.push(window);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A dim, gently textured picture in the middle of a black frame, as a night scene or a
    /// fade: `amplitude` sets the texture's contrast.
    fn dim_picture(amplitude: u32) -> Luma {
        let (w, h) = (640u32, 360u32);
        let px = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                if (240..400).contains(&x) && (120..240).contains(&y) {
                    let wave = ((x / 12 + y / 9) % 5 + (x * y / 97) % 3) * amplitude / 6;
                    (50 + wave) as u8
                } else {
                    0
                }
            })
            .collect();
        Luma::new(w, h, px).unwrap()
    }

    #[test]
    fn a_frame_too_flat_to_hash_whole_still_hashes_the_picture_inside_its_dark_margins() {
        let luma = dim_picture(48);
        let (_, full_quality) = pdq_dihedral(&luma);
        assert!(full_quality < MIN_QUALITY, "the whole frame is too flat: {full_quality}");
        let hashes = hash_luma_pdq(&luma);
        let best = hashes.hashes.iter().map(|h| h.quality).max();
        assert!(best >= Some(MIN_QUALITY), "{hashes:?}");
        let views: Vec<QueryView> = hashes.hashes.iter().map(|h| h.view).collect();
        assert_eq!(views, [QueryView::Content, QueryView::ContentMirror]);
        assert!(hashes.hashes.iter().all(|h| h.quality >= MIN_QUALITY));
    }

    #[test]
    fn a_picture_shown_in_a_window_beside_a_chat_panel_is_hashed_on_its_own() {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/fingerprints/tests/data/pdq/camera_640x360.png");
        let picture = decode_luma(&std::fs::read(path).unwrap(), &DecodeLimits::default()).unwrap();
        let (pw, ph) = (picture.width(), picture.height());
        // The layout: a dark desktop, the picture at 68 % in a window on the left, a chat panel
        // with lines of text on the right.
        let (w, h) = (640u32, 360u32);
        let (wx, wy, ww, wh) = (12u32, 70u32, 436u32, 245u32);
        let px = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                if (wx..wx + ww).contains(&x) && (wy..wy + wh).contains(&y) {
                    picture.row((y - wy) * ph / wh)[((x - wx) * pw / ww) as usize]
                } else if (462..628).contains(&x) && (wy..wy + wh).contains(&y) {
                    if (y - wy) % 24 < 8 && (x / 3) % 4 != 0 { 0xdd } else { 0x2f }
                } else {
                    0x22
                }
            })
            .collect();
        let layout = Luma::new(w, h, px).unwrap();
        let truth = pdq_dihedral(&picture).0.original;
        let hashes = hash_luma_pdq(&layout);
        let distance = |view: QueryView| {
            hashes.hashes.iter().filter(|h| h.view == view).map(|h| h.hash.distance(&truth)).min()
        };
        // The whole layout looks nothing like the picture; the window's own hash does.
        assert!(
            distance(QueryView::Full).is_none_or(|d| d > 31),
            "{:?}",
            distance(QueryView::Full)
        );
        assert!(distance(QueryView::Content).is_some_and(|d| d <= 16), "{hashes:?}");
    }

    /// A picture and a phone layout of it: the picture across a 360x640 frame with its top at
    /// 90 (centred at a third of the height), a smooth dim gradient above and below where a
    /// blurred fill would be.
    fn portrait_layout() -> (Luma, Luma) {
        let path =
            concat!(env!("CARGO_MANIFEST_DIR"), "/fingerprints/tests/data/pdq/camera_640x360.png");
        let picture = decode_luma(&std::fs::read(path).unwrap(), &DecodeLimits::default()).unwrap();
        let (pw, ph) = (picture.width(), picture.height());
        let (w, h, top, band) = (360u32, 640u32, 90u32, 202u32);
        let px = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                if (top..top + band).contains(&y) {
                    picture.row((y - top) * ph / band)[(x * pw / w) as usize]
                } else {
                    (30 + x / 24 + y / 40) as u8
                }
            })
            .collect();
        (picture, Luma::new(w, h, px).unwrap())
    }

    #[test]
    fn a_picture_laid_out_above_centre_in_a_portrait_frame_is_hashed_on_its_own() {
        let (picture, layout) = portrait_layout();
        let truth = pdq_dihedral(&picture).0.original;
        let hashes = hash_luma_pdq(&layout);
        let distance = |view: QueryView| {
            hashes.hashes.iter().filter(|h| h.view == view).map(|h| h.hash.distance(&truth)).min()
        };
        assert!(distance(QueryView::Full).is_none_or(|d| d > 31), "{hashes:?}");
        assert!(distance(QueryView::Content).is_some_and(|d| d <= 16), "{hashes:?}");
    }

    #[test]
    fn a_portrait_layouts_local_features_come_from_its_band_at_the_tiers_resolution() {
        use fingerprints::features::{FeatureIndex, IndexConfig, VerifyConfig};
        let (picture, layout) = portrait_layout();
        let band = hash_luma(&layout).features.unwrap();
        // The band on its own at the tier's 480 pixels, where the whole frame gives it 270.
        assert_eq!(band.width(), 480, "{}x{}", band.width(), band.height());
        let whole = LocalFeatures::extract(&layout, &FeatureConfig::query());
        assert_eq!(whole.width(), 270);
        // Against the picture as a reference frame, the band's features verify on more points.
        let mut index = FeatureIndex::new(IndexConfig::default());
        index.insert(1, 1, 0, &LocalFeatures::extract(&picture, &FeatureConfig::reference()));
        let cfg = VerifyConfig::default();
        let inliers =
            |f: &LocalFeatures| index.query(f, &cfg).iter().map(|v| v.inliers).max().unwrap_or(0);
        let (from_band, from_whole) = (inliers(&band), inliers(&whole));
        assert!(from_band > from_whole, "inliers: band {from_band}, whole frame {from_whole}");
    }

    #[test]
    fn a_flat_frame_has_no_hash_to_look_up() {
        let luma = dim_picture(6);
        let (_, full_quality) = pdq_dihedral(&luma);
        assert!(full_quality < MIN_QUALITY, "{full_quality}");
        let hashes = hash_luma_pdq(&luma);
        assert!(hashes.hashes.is_empty());
    }

    #[test]
    fn a_keyframe_carries_evidence_with_a_usable_view_or_local_features_and_not_without() {
        let black = Luma::new(640, 360, vec![0; 640 * 360]).unwrap();
        assert!(!hash_luma(&black).carries_evidence(), "black: nothing to look up");
        // A dim night shot: too flat for PDQ anywhere, but with corners to verify.
        let dim = dim_picture(20);
        let hashes = hash_luma(&dim);
        assert!(hashes.hashes.is_empty(), "{hashes:?}");
        assert!(hashes.features.as_ref().is_some_and(|f| !f.is_empty()));
        assert!(hashes.carries_evidence());
        // A precomputed hash is looked up only at a usable quality.
        let hash = pdq_dihedral(&dim_picture(48)).0.original;
        assert!(KeyframeHashes::from_hash(hash, MIN_QUALITY).carries_evidence());
        let flat = KeyframeHashes::from_hash(hash, MIN_QUALITY - 1);
        assert!(flat.hashes.is_empty() && !flat.carries_evidence());
    }
}
