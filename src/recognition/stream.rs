//! The decision rule: one stream's keyframe hits, until a conclusive match.

use fingerprints::{Evidence, Hit, MatcherConfig, StreamMatcher};

use super::FeatureSchedule;

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

    /// Whether the PDQ tier looks keyframes up.
    pub fn pdq(self) -> bool {
        self != Tiers::Features
    }

    /// Whether the geometric tier looks keyframes up (with both tiers, on the keyframes
    /// [`FeatureSchedule::wants_features`] picks).
    pub fn features(self) -> bool {
        self != Tiers::Pdq
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
    /// Which keyframes the geometric tier looks at when both tiers run.
    pub schedule: FeatureSchedule,
}

impl Default for RecognitionConfig {
    /// Radius 31 (PDQ's customary match radius), the matcher's defaults and the geometric
    /// tier's schedule, which were measured on the development set (docs/EVALUATION.md). (The
    /// PDQ tier's quality floor, [`super::MIN_QUALITY`], is applied to each view when a keyframe
    /// is hashed.)
    fn default() -> Self {
        Self {
            radius: 31,
            max_hits_per_keyframe: 256,
            matcher: MatcherConfig::default(),
            tiers: Tiers::Both,
            schedule: FeatureSchedule::default(),
        }
    }
}

/// One hit of a keyframe on a reference, by the reference's id: what [`Library::hits`] finds,
/// what the worker stores, and what a [`StreamRecognizer`] observes.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyframeHit {
    /// The reference's id.
    pub reference_id: String,
    /// Time of the matching frame in the reference (a live feed's: on the event timeline).
    pub reference_ts_ms: i64,
    /// Hamming distance (a verified feature frame's
    /// [`fingerprints::features::Verified::distance`]).
    pub distance: u32,
    /// Prior weight (frames that match too broadly weigh less).
    pub weight: f32,
    /// The tier that produced it (`None` for a hit stored before tiers were recorded).
    pub tier: Option<HitTier>,
}

/// A decided match: the stream is this reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Match {
    /// The reference's id.
    pub reference_id: String,
    /// The evidence that decided it.
    pub evidence: Evidence,
}

/// One stream's recognition state, the one decision rule of the worker and `offside eval`:
/// feed it each keyframe's hits in (roughly) stream order, read the candidates back.
///
/// References are known by their ids; the temporal matcher works with numbers, so each id is
/// numbered on first sight in this stream.
#[derive(Debug, Clone)]
pub struct StreamRecognizer {
    cfg: RecognitionConfig,
    matcher: StreamMatcher,
    /// Reference ids by the matcher's number (the index here).
    references: Vec<String>,
}

impl StreamRecognizer {
    /// A stream with no evidence yet.
    pub fn new(cfg: RecognitionConfig) -> Self {
        let matcher = StreamMatcher::new(cfg.matcher.clone());
        Self { cfg, matcher, references: Vec::new() }
    }

    /// The configuration in use.
    pub fn config(&self) -> &RecognitionConfig {
        &self.cfg
    }

    /// Adds one keyframe's hits (all references, both tiers) to the stream's evidence.
    pub fn observe(&mut self, stream_ts_ms: i64, hits: &[KeyframeHit]) {
        let frame: Vec<Hit> = hits
            .iter()
            .map(|h| {
                let reference = match self.references.iter().position(|r| *r == h.reference_id) {
                    Some(i) => i,
                    None => {
                        self.references.push(h.reference_id.clone());
                        self.references.len() - 1
                    }
                };
                Hit {
                    reference: reference as u64,
                    reference_ts_ms: h.reference_ts_ms,
                    distance: h.distance,
                    weight: h.weight,
                }
            })
            .collect();
        self.matcher.observe(stream_ts_ms, &frame);
    }

    /// Every candidate's evidence with its reference id, best first (for diagnostics and case
    /// files).
    pub fn evidence(&self) -> Vec<(String, Evidence)> {
        self.matcher
            .evidence()
            .into_iter()
            .filter_map(|e| {
                let id = usize::try_from(e.reference).ok().and_then(|i| self.references.get(i))?;
                Some((id.clone(), e))
            })
            .collect()
    }

    /// The candidates the rule may decide on, best first: evidence with the rule's keyframes
    /// and score. Which of them decides, and when, is up to each reference's
    /// `min_match_seconds` (a policy): [`StreamRecognizer::decision_with`], or the worker's
    /// policy check.
    pub fn candidates(&self) -> Vec<(String, Evidence)> {
        let cfg = &self.cfg.matcher;
        self.evidence().into_iter().filter(|(_, e)| e.is_conclusive_after(cfg, 0.0)).collect()
    }

    /// The decision under the configured rule: the best conclusive evidence.
    pub fn decision(&self) -> Option<Match> {
        self.decision_with(|_| None)
    }

    /// The decision with a per-reference `min_match_seconds` (a reference policy); `None` from
    /// `min_seconds` keeps the configured default.
    pub fn decision_with(&self, min_seconds: impl Fn(&str) -> Option<f64>) -> Option<Match> {
        let cfg = &self.cfg.matcher;
        self.candidates().into_iter().find_map(|(id, evidence)| {
            let secs = min_seconds(&id).unwrap_or(cfg.min_matched_seconds);
            evidence.is_conclusive_after(cfg, secs).then_some(Match { reference_id: id, evidence })
        })
    }
}
