//! Query side: the hashes of one keyframe.

use fingerprints::features::{FeatureConfig, LocalFeatures};
use fingerprints::{DecodeLimits, Hash256, Luma, decode_luma, inner_pictures, pdq_dihedral};

/// Which view of the keyframe a query hash was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryView {
    /// The whole frame.
    Full,
    /// The whole frame mirrored left to right (pirates flip pictures to dodge matching).
    FullMirror,
    /// A picture inside the frame: inside letterbox/pillarbox bars (black or blurred fill), or
    /// with its dark margins trimmed ([`fingerprints::inner_pictures`]).
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

/// One hash to look up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryHash {
    /// The PDQ hash.
    pub hash: Hash256,
    /// What it was computed from.
    pub view: QueryView,
}

/// Everything looked up for one keyframe.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyframeHashes {
    /// PDQ quality of the whole frame (0-100); below 50 the frame carries no evidence.
    pub quality: u8,
    /// The hashes: full frame and mirror always, each inner picture and its mirror when the
    /// frame has bars or dark margins.
    pub hashes: Vec<QueryHash>,
    /// Local features of the whole frame ([`FeatureConfig::query`]) for the geometric tier;
    /// `None` for a keyframe known only by its hash. The mirrored query is derived from them
    /// at lookup time.
    pub features: Option<LocalFeatures>,
}

impl KeyframeHashes {
    /// A keyframe known only by its hash (the `application/vnd.offside.pdq` message form):
    /// no mirror, no content rectangle.
    pub fn from_hash(hash: Hash256, quality: u8) -> Self {
        Self { quality, hashes: vec![QueryHash { hash, view: QueryView::Full }], features: None }
    }

    /// The full-frame hash.
    pub fn full(&self) -> Option<Hash256> {
        self.hashes.iter().find(|h| h.view == QueryView::Full).map(|h| h.hash)
    }
}

/// Decodes a keyframe (JPEG, PNG or WebP) and hashes it.
///
/// # Errors
/// The decoder's [`fingerprints::Error`]: corrupt or truncated data, an unsupported format, or
/// dimensions beyond [`DecodeLimits::default`].
pub fn hash_keyframe(bytes: &[u8]) -> Result<KeyframeHashes, fingerprints::Error> {
    let luma = decode_luma(bytes, &DecodeLimits::default())?;
    Ok(hash_luma(&luma))
}

/// Hashes a decoded keyframe: the whole frame and its mirror (one DCT gives both), each of
/// [`inner_pictures`] (inside bars, dark margins trimmed) and its mirror, and the frame's local
/// features.
pub fn hash_luma(luma: &Luma) -> KeyframeHashes {
    let mut hashes = hash_luma_pdq(luma);
    // Features of the whole frame, bars included: the verifier fits a similarity, so a
    // picture inside bars or a window matches at its own scale and position.
    hashes.features = Some(LocalFeatures::extract(luma, &FeatureConfig::query()));
    hashes
}

/// [`hash_luma`] without the local features: the PDQ tier's hashes only.
pub fn hash_luma_pdq(luma: &Luma) -> KeyframeHashes {
    let (full, quality) = pdq_dihedral(luma);
    let mut hashes = vec![
        QueryHash { hash: full.original, view: QueryView::Full },
        QueryHash { hash: full.mirror(), view: QueryView::FullMirror },
    ];
    for inner in inner_pictures(luma).iter().filter_map(|rect| rect.crop(luma)) {
        let (d, _) = pdq_dihedral(&inner);
        hashes.push(QueryHash { hash: d.original, view: QueryView::Content });
        hashes.push(QueryHash { hash: d.mirror(), view: QueryView::ContentMirror });
    }
    KeyframeHashes { quality, hashes, features: None }
}
