//! One query through the recogniser: its keyframes decoded and looked up once, in `ts_ms`
//! order, by the worker's own function ([`look_up_luma`], with the geometric tier's schedule),
//! and fed to one [`StreamRecognizer`] per choice of tiers, each stopping at its first decision.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context as _;
use serde::Serialize;

use super::{Query, QueryKind};
use crate::recognition::{
    KeyframeCost, KeyframeHit, Library, RecognitionConfig, StreamActivity, StreamRecognizer,
    TierHits, Tiers, decode_keyframe_timed, look_up_features_timed, look_up_luma, ms_since,
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
    /// The same had the query begun on a stream already live and quiet, summed over both beats
    /// of [`QueryOutcome::joined_mid_stream`] (each keyframe counted once per beat): what a
    /// platform's streams, minutes past their opening, cost.
    pub cost_mid_stream: KeyframeCost,
    /// Both tiers' outcome had the query begun on a stream already live and quiet, on the two
    /// beats of the geometric tier's quiet schedule: its first keyframe due for a look, then
    /// not ([`JOINED_PHASES`]).
    pub joined_mid_stream: Vec<TierOutcome>,
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
        self.with(self.by_tier.get(tiers.as_str()).cloned().unwrap_or_default())
    }

    /// This outcome for each beat of [`QueryOutcome::joined_mid_stream`].
    pub fn joined(&self) -> impl Iterator<Item = QueryOutcome> + '_ {
        self.joined_mid_stream.iter().map(|t| self.with(t.clone()))
    }

    fn with(&self, t: TierOutcome) -> QueryOutcome {
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

/// The beats a query joining a quiet stream mid-stream is run on: the stream's last geometric
/// look this many quiet intervals before the query's first keyframe (a whole one: that keyframe
/// is due; half of one: with keyframes every half interval, the next one is).
pub const JOINED_PHASES: [f64; 2] = [1.0, 0.5];

/// One decision rule fed one stream's keyframes, stopping at its first decision.
struct Run {
    recognizer: StreamRecognizer,
    outcome: TierOutcome,
}

impl Run {
    fn new(cfg: RecognitionConfig) -> Self {
        Run { recognizer: StreamRecognizer::new(cfg), outcome: TierOutcome::default() }
    }

    /// Feeds one keyframe's hits; `expected` is the positive's reference. Returns the time the
    /// recognizer took to take them in and decide (ms), the worker's decision step.
    fn observe(&mut self, ts_ms: i64, hits: &[KeyframeHit], expected: Option<&str>) -> f64 {
        let started = Instant::now();
        self.recognizer.observe(ts_ms, hits);
        let decision = self.recognizer.decision();
        let decide_ms = ms_since(started);
        let hit = match expected {
            Some(r) => hits.iter().any(|h| h.reference_id == r),
            None => !hits.is_empty(),
        };
        self.outcome.keyframes_hit += usize::from(hit);
        if self.outcome.flagged_as.is_none()
            && let Some(m) = decision
        {
            self.outcome.flagged_as = Some(m.reference_id);
            self.outcome.ttd_s = Some(ts_ms as f64 / 1000.0);
        }
        decide_ms
    }
}

/// Runs one query through fresh [`StreamRecognizer`]s, one per choice of tiers, fed from the
/// same lookups, each stopping at its first decision; the configured tiers' decision is the
/// outcome's headline. The query is a stream from its first keyframe on (its opening gets the
/// schedule's full look); it is also run as if it had begun on a stream already live, from the
/// same lookups.
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
    let mut runs: Vec<(Tiers, Run)> = ALL_TIERS
        .iter()
        .map(|&t| (t, Run::new(RecognitionConfig { tiers: t, ..cfg.clone() })))
        .collect();
    // One lookup per keyframe, as the worker's (both tiers, the geometric one on the
    // schedule's keyframes of this stream); each choice of tiers selects its hits from it. The
    // geometric tier alone is judged on every keyframe: on the keyframes the schedule skipped,
    // its features are looked up apart, timed for the stream joined mid-stream only.
    let both = RecognitionConfig { tiers: Tiers::Both, ..cfg.clone() };
    let schedule = both.schedule;
    let (mut cost, mut cost_mid_stream) = (KeyframeCost::default(), KeyframeCost::default());
    let first_ts_ms = query.keyframes.first().map_or(0, |(ts, _)| *ts);
    let mut activity = StreamActivity::opening_at(first_ts_ms);
    let mut joined: Vec<(StreamActivity, Run)> = JOINED_PHASES
        .iter()
        .map(|&beats| {
            let last_look = first_ts_ms - (beats * schedule.quiet_interval_ms as f64) as i64;
            let quiet = StreamActivity { last_features_ms: Some(last_look), ..Default::default() };
            (quiet, Run::new(both.clone()))
        })
        .collect();
    for (ts_ms, path) in &query.keyframes {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut one = KeyframeCost::default();
        let Some(luma) = decode_keyframe_timed(&bytes, &mut one) else { continue };
        let found = look_up_luma(|| library, &luma, &both, None, *ts_ms, activity, &mut one);
        cost.add(&one);
        let scheduled = library.keyframe_hits(&found.hits, Tiers::Both);
        activity.record(*ts_ms, found.looked_up_features(), !scheduled.is_empty());
        // The keyframes the schedule skipped get their features here, timed apart, for the
        // geometric tier judged alone and for the stream joined mid-stream; the PDQ views are
        // not hashed again.
        let (pdq_tier, mut geometric) = one.split();
        let features = if found.looked_up_features() {
            found.hits.features.clone()
        } else {
            let mut hashes = found.hashes.clone();
            look_up_features_timed(|| library, &luma, &mut hashes, None, &mut geometric)
        };
        for (tiers, run) in &mut runs {
            let hits = match tiers {
                Tiers::Both => scheduled.clone(),
                Tiers::Pdq => library.keyframe_hits(&found.hits, Tiers::Pdq),
                Tiers::Features => {
                    let alone = TierHits { pdq: Vec::new(), features: features.clone() };
                    library.keyframe_hits(&alone, Tiers::Features)
                }
            };
            let decide_ms = run.observe(*ts_ms, &hits, expected);
            if *tiers == Tiers::Both {
                cost.decide_ms += decide_ms;
            }
        }
        let pdq_hit = !found.hits.pdq.is_empty();
        for (quiet, run) in &mut joined {
            let looks = schedule.wants_features(*ts_ms, pdq_hit, *quiet);
            let hits = TierHits {
                pdq: found.hits.pdq.clone(),
                features: if looks { features.clone() } else { Vec::new() },
            };
            let hits = library.keyframe_hits(&hits, Tiers::Both);
            quiet.record(*ts_ms, looks, !hits.is_empty());
            cost_mid_stream.decide_ms += run.observe(*ts_ms, &hits, expected);
            cost_mid_stream.add(&pdq_tier);
            if looks {
                cost_mid_stream.add(&geometric);
            }
        }
    }
    let by_tier: BTreeMap<String, TierOutcome> =
        runs.into_iter().map(|(t, r)| (t.as_str().to_owned(), r.outcome)).collect();
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
        cost_mid_stream,
        joined_mid_stream: joined.into_iter().map(|(_, r)| r.outcome).collect(),
    };
    Ok(outcome.under(cfg.tiers))
}
