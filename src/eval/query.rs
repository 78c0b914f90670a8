//! One query through the recogniser: its keyframes decoded and looked up once, in `ts_ms`
//! order, by the worker's own function ([`look_up_luma`], with the geometric tier's schedule),
//! and fed to one [`StreamRecognizer`] per choice of tiers, each stopping at its first decision.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde::Serialize;

use super::{Query, QueryKind};
use crate::recognition::{
    KeyframeCost, KeyframeHashes, Library, RecognitionConfig, StreamActivity, StreamRecognizer,
    TierHits, Tiers, decode_keyframe_timed, look_up_luma, query_features,
};

/// What one choice of tiers decided for a query.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TierOutcome {
    /// The reference the stream was flagged for, if it was.
    pub flagged_as: Option<String>,
    /// Stream time (s) of the keyframe at which the decision was made.
    pub ttd_s: Option<f64>,
    /// Keyframes with at least one hit on the expected reference (positives) or on any
    /// reference (negatives).
    pub keyframes_hit: usize,
}

/// What happened to one query.
#[derive(Debug, Clone, Serialize)]
pub struct QueryOutcome {
    /// The query's name.
    pub query: String,
    /// Positive or negative.
    pub kind: QueryKind,
    /// The transformation.
    pub transform: String,
    /// The reference it should match (positives).
    pub expected: Option<String>,
    /// The reference the stream was flagged for, if it was (under the configured tiers).
    pub flagged_as: Option<String>,
    /// Stream time (s) of the keyframe at which the decision was made.
    pub ttd_s: Option<f64>,
    /// Keyframes in the query.
    pub keyframes: usize,
    /// Keyframes with at least one hit on the expected reference (positives) or on any
    /// reference (negatives).
    pub keyframes_hit: usize,
    /// Whether it is a hard negative.
    pub hard_negative: bool,
    /// The outcome under each choice of tiers (`both`, `pdq`, `features`), from the same
    /// lookups.
    pub by_tier: BTreeMap<String, TierOutcome>,
    /// Time per step over the query's keyframes.
    pub cost: KeyframeCost,
}

impl QueryOutcome {
    /// A positive flagged for its reference.
    pub fn detected(&self) -> bool {
        self.kind == QueryKind::Positive
            && self.flagged_as.is_some()
            && self.flagged_as == self.expected
    }

    /// A negative flagged, or a positive flagged for another reference.
    pub fn false_flag(&self) -> bool {
        self.flagged_as.is_some() && !self.detected()
    }

    /// This outcome as if only `tiers` had run.
    pub fn under(&self, tiers: Tiers) -> QueryOutcome {
        let t = self.by_tier.get(tiers.as_str()).cloned().unwrap_or_default();
        QueryOutcome {
            flagged_as: t.flagged_as,
            ttd_s: t.ttd_s,
            keyframes_hit: t.keyframes_hit,
            ..self.clone()
        }
    }
}

/// Every choice of tiers, in table order.
pub const ALL_TIERS: [Tiers; 3] = [Tiers::Both, Tiers::Pdq, Tiers::Features];

/// Runs one query through fresh [`StreamRecognizer`]s, one per choice of tiers, fed from the
/// same lookups, each stopping at its first decision; the configured tiers' decision is the
/// outcome's headline.
///
/// # Errors
/// A keyframe file that cannot be read. Undecodable keyframes are skipped, as the worker
/// dead-letters them.
pub fn run_query(
    library: &Library,
    cfg: &RecognitionConfig,
    query: &Query,
) -> anyhow::Result<QueryOutcome> {
    let expected = query.reference.as_deref();
    let mut runs: Vec<(Tiers, StreamRecognizer, TierOutcome)> = ALL_TIERS
        .iter()
        .map(|&t| {
            (
                t,
                StreamRecognizer::new(RecognitionConfig { tiers: t, ..cfg.clone() }),
                TierOutcome::default(),
            )
        })
        .collect();
    // One lookup per keyframe, as the worker's (both tiers, the geometric one on the
    // schedule's keyframes of this stream); each choice of tiers selects its hits from it. The
    // geometric tier alone is judged on every keyframe: on the keyframes the schedule skipped,
    // its features are looked up outside the timed cost.
    let both = RecognitionConfig { tiers: Tiers::Both, ..cfg.clone() };
    let mut cost = KeyframeCost::default();
    let mut activity = StreamActivity::default();
    for (ts_ms, path) in &query.keyframes {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let Some(luma) = decode_keyframe_timed(&bytes, &mut cost) else { continue };
        let found = look_up_luma(|| library, &luma, &both, None, *ts_ms, activity, &mut cost);
        let scheduled = library.keyframe_hits(&found.hits, Tiers::Both);
        activity.record(*ts_ms, found.looked_up_features(), !scheduled.is_empty());
        // The keyframes the schedule skipped get their features here, for the geometric tier
        // judged alone; the PDQ views are not hashed again.
        let features_alone = TierHits {
            pdq: Vec::new(),
            features: if found.looked_up_features() {
                found.hits.features.clone()
            } else {
                let features = Some(query_features(&luma));
                library.lookup_features(&KeyframeHashes { features, ..found.hashes }, None)
            },
        };
        for (tiers, recognizer, outcome) in &mut runs {
            let hits = match tiers {
                Tiers::Both => scheduled.clone(),
                Tiers::Pdq => library.keyframe_hits(&found.hits, Tiers::Pdq),
                Tiers::Features => library.keyframe_hits(&features_alone, Tiers::Features),
            };
            recognizer.observe(*ts_ms, &hits);
            let hit = match expected {
                Some(r) => hits.iter().any(|h| h.reference_id == r),
                None => !hits.is_empty(),
            };
            outcome.keyframes_hit += usize::from(hit);
            if outcome.flagged_as.is_none()
                && let Some(m) = recognizer.decision()
            {
                outcome.flagged_as = Some(m.reference_id);
                outcome.ttd_s = Some(*ts_ms as f64 / 1000.0);
            }
        }
    }
    let by_tier: BTreeMap<String, TierOutcome> =
        runs.into_iter().map(|(t, _, o)| (t.as_str().to_owned(), o)).collect();
    let outcome = QueryOutcome {
        query: query.name.clone(),
        kind: query.kind,
        transform: query.transform.clone(),
        expected: query.reference.clone(),
        flagged_as: None,
        ttd_s: None,
        keyframes: query.keyframes.len(),
        keyframes_hit: 0,
        hard_negative: query.is_hard_negative(),
        by_tier,
        cost,
    };
    Ok(outcome.under(cfg.tiers))
}
