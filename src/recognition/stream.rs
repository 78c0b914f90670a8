//! The decision rule: one stream's keyframes against the library, until a conclusive match.

use fingerprints::{Evidence, Hit, MatcherConfig, StreamMatcher};

use super::{KeyframeHashes, Library, TierHits};

/// Which recognition tiers feed the matcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Tiers {
    /// PDQ hashes only (near pixel-aligned copies, crops, bars, mirror).
    Pdq,
    /// Local features only (zoom, off-centre crop, overlay, window, filmed screen).
    Features,
    /// Both, into one matcher: what the service runs.
    #[default]
    Both,
}

impl Tiers {
    /// A stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tiers::Pdq => "pdq",
            Tiers::Features => "features",
            Tiers::Both => "both",
        }
    }
}

/// Which tier produced a hit: shown to reviewers beside each piece of evidence.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HitTier {
    /// The PDQ hash of a view of the keyframe was within the radius of a reference frame's.
    Pdq,
    /// The keyframe's local features fitted a reference frame's geometrically.
    Features,
}

impl HitTier {
    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            HitTier::Pdq => "pdq",
            HitTier::Features => "features",
        }
    }

    /// Parses [`HitTier::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        [HitTier::Pdq, HitTier::Features].into_iter().find(|t| t.as_str() == s)
    }
}

/// Every parameter of recognition, in one place so the evaluation and the service apply the
/// same rule. The defaults are the values measured with `offside eval` (docs/EVALUATION.md).
#[derive(Debug, Clone, PartialEq)]
pub struct RecognitionConfig {
    /// Hamming radius of index lookups (bits of 256).
    pub radius: u32,
    /// At most this many hits per keyframe go to the matcher, closest first. A keyframe with
    /// more is a broad frame whose hits carry little weight anyway.
    pub max_hits_per_keyframe: usize,
    /// The temporal matcher's thresholds, including the decision rule's.
    pub matcher: MatcherConfig,
    /// The tiers looked up (default both).
    pub tiers: Tiers,
}

impl Default for RecognitionConfig {
    /// Radius 31 (PDQ's customary match radius) and the matcher's defaults, which were
    /// measured on the development set (docs/EVALUATION.md). (The PDQ tier's quality floor,
    /// [`super::MIN_QUALITY`], is applied to each view when a keyframe is hashed.)
    fn default() -> Self {
        Self {
            radius: 31,
            max_hits_per_keyframe: 256,
            matcher: MatcherConfig::default(),
            tiers: Tiers::Both,
        }
    }
}

/// A decided match: the stream is this reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The reference's id in the library.
    pub reference_id: String,
    /// The evidence that decided it.
    pub evidence: Evidence,
}

/// One stream's recognition state: feed it keyframes in (roughly) stream order.
#[derive(Debug, Clone)]
pub struct StreamRecognizer {
    cfg: RecognitionConfig,
    matcher: StreamMatcher,
}

impl StreamRecognizer {
    /// A stream with no evidence yet.
    pub fn new(cfg: RecognitionConfig) -> Self {
        let matcher = StreamMatcher::new(cfg.matcher.clone());
        Self { cfg, matcher }
    }

    /// The configuration in use.
    pub fn config(&self) -> &RecognitionConfig {
        &self.cfg
    }

    /// Looks a keyframe up in `library` with the configured tiers and adds their hits to the
    /// stream's evidence; returns the hits (empty for a keyframe below the quality floor).
    pub fn observe(
        &mut self,
        library: &Library,
        stream_ts_ms: i64,
        keyframe: &KeyframeHashes,
    ) -> Vec<Hit> {
        let hits = self.lookup(library, keyframe).select(self.cfg.tiers);
        self.matcher.observe(stream_ts_ms, &hits);
        hits
    }

    /// The configured tiers' hits of a keyframe, tier by tier, without observing them. The
    /// PDQ tier looks up the keyframe's views of usable quality (none for a flat or black
    /// frame); the geometric tier its features, whatever its PDQ quality (a dark shot can
    /// hold plenty of corners).
    pub fn lookup(&self, library: &Library, keyframe: &KeyframeHashes) -> TierHits {
        library.lookup(keyframe, &self.cfg, None)
    }

    /// Adds hits from another source (local features, a live reference window) for the
    /// keyframe at `stream_ts_ms`.
    pub fn observe_hits(&mut self, stream_ts_ms: i64, hits: &[Hit]) {
        self.matcher.observe(stream_ts_ms, hits);
    }

    /// The decision under the configured rule: the best conclusive evidence whose reference
    /// is still in `library`.
    pub fn decision(&self, library: &Library) -> Option<Match> {
        self.decision_with(library, |_| None)
    }

    /// The decision with a per-reference `min_match_seconds` (a reference policy); `None` from
    /// `min_seconds` keeps the configured default.
    pub fn decision_with(
        &self,
        library: &Library,
        min_seconds: impl Fn(&str) -> Option<f64>,
    ) -> Option<Match> {
        let cfg = &self.cfg.matcher;
        self.matcher.evidence().into_iter().find_map(|evidence| {
            let id = library.reference_id(evidence.reference)?;
            let secs = min_seconds(id).unwrap_or(cfg.min_matched_seconds);
            evidence
                .is_conclusive_after(cfg, secs)
                .then(|| Match { reference_id: id.to_owned(), evidence })
        })
    }

    /// All current evidence, best first (for diagnostics and case files).
    pub fn evidence(&self) -> Vec<Evidence> {
        self.matcher.evidence()
    }
}
