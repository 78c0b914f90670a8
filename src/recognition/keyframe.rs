//! Query side: the hashes of one keyframe.

use fingerprints::features::{FeatureConfig, LocalFeatures};
use fingerprints::{DecodeLimits, Hash256, Luma, content_rect, decode_luma, pdq_dihedral};

/// Which view of the keyframe a query hash was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueryView {
    /// The whole frame.
    Full,
    /// The whole frame mirrored left to right (pirates flip pictures to dodge matching).
    FullMirror,
    /// The picture inside letterbox/pillarbox bars (black or blurred fill).
    Content,
    /// The content rectangle, mirrored.
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
    /// The hashes: full frame and mirror always, content rectangle and its mirror when bars
    /// were found.
    pub hashes: Vec<QueryHash>,
    /// The content rectangle `(x, y, width, height)` in the decoded picture, when bars were
    /// found.
    pub content: Option<(u32, u32, u32, u32)>,
    /// Local features of the whole frame ([`FeatureConfig::query`]) for the geometric tier;
    /// `None` for a keyframe known only by its hash. The mirrored query is derived from them
    /// at lookup time.
    pub features: Option<LocalFeatures>,
}

impl KeyframeHashes {
    /// A keyframe known only by its hash (the `application/vnd.offside.pdq` message form):
    /// no mirror, no content rectangle.
    pub fn from_hash(hash: Hash256, quality: u8) -> Self {
        Self {
            quality,
            hashes: vec![QueryHash { hash, view: QueryView::Full }],
            content: None,
            features: None,
        }
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

/// Hashes a decoded keyframe: the whole frame and its mirror (one DCT gives both), when
/// [`content_rect`] finds bars, the picture inside them and its mirror, and the frame's local
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
    let mut content = None;
    if let Some(rect) = content_rect(luma)
        && let Some(inner) = rect.crop(luma)
    {
        let (d, _) = pdq_dihedral(&inner);
        hashes.push(QueryHash { hash: d.original, view: QueryView::Content });
        hashes.push(QueryHash { hash: d.mirror(), view: QueryView::ContentMirror });
        content = Some((rect.x, rect.y, rect.width, rect.height));
    }
    KeyframeHashes { quality, hashes, content, features: None }
}
