//! The scores of a run: recall, time to detect and false flags per transformation and per
//! choice of tiers, the human-readable tables and the contract JSON.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{ALL_TIERS, QueryKind, QueryOutcome, ReferenceStats};
use crate::recognition::{FeatureSchedule, KeyframeCost, RecognitionConfig};

/// Per-transformation scores of the positives.
#[derive(Debug, Clone, Serialize)]
pub struct TransformScore {
    /// Positive queries.
    pub queries: usize,
    /// Detected (flagged for the right reference).
    pub detected: usize,
    /// Recall, detected / queries.
    pub recall: f64,
    /// Median time to detect over the detected queries, stream seconds.
    pub ttd_median_s: Option<f64>,
    /// 90th percentile time to detect.
    pub ttd_p90_s: Option<f64>,
    /// Keyframes with a hit on the right reference / all keyframes.
    pub keyframe_hit_rate: f64,
    /// Flagged for a wrong reference.
    pub wrong_reference: usize,
}

/// The scores of one choice of tiers.
#[derive(Debug, Clone, Serialize)]
pub struct TierReport {
    /// Scores per transformation (positives).
    pub per_transform: BTreeMap<String, TransformScore>,
    /// Negatives flagged plus positives attributed to a wrong reference.
    pub false_flags: usize,
    /// Negatives flagged (hard negatives included).
    pub negatives_flagged: usize,
    /// Hard negatives flagged.
    pub hard_negatives_flagged: usize,
    /// Keyframes of negatives with any hit / all keyframes of negatives.
    pub negative_keyframe_hit_rate: f64,
    /// All positives: recall.
    pub overall_recall: f64,
    /// All detected positives: median time to detect.
    pub overall_ttd_median_s: Option<f64>,
}

/// The whole evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Scores per transformation (positives), under the configured tiers.
    pub per_transform: BTreeMap<String, TransformScore>,
    /// Negatives flagged plus positives attributed to a wrong reference, hard negatives
    /// included.
    pub false_flags: usize,
    /// Negative queries.
    pub negatives: usize,
    /// Negatives flagged (hard negatives included).
    pub negatives_flagged: usize,
    /// Hard negative queries, and how many were flagged.
    pub hard_negatives: usize,
    /// Hard negatives flagged.
    pub hard_negatives_flagged: usize,
    /// Keyframes of negatives with any hit / all keyframes of negatives.
    pub negative_keyframe_hit_rate: f64,
    /// All positives: recall.
    pub overall_recall: f64,
    /// All detected positives: median time to detect.
    pub overall_ttd_median_s: Option<f64>,
    /// The tiers the fields above report (`both`, `pdq` or `features`).
    pub tiers: String,
    /// Which keyframes the geometric tier looked at (the `both` tiers' run).
    pub schedule: FeatureSchedule,
    /// The same scores under each choice of tiers.
    pub by_tier: BTreeMap<String, TierReport>,
    /// Both tiers' scores had every query begun on a stream already live and quiet, pooled over
    /// the quiet schedule's two beats ([`super::JOINED_PHASES`]): what the schedule costs a
    /// pirate that starts mid-stream. Counts are of runs (twice the queries); times from the
    /// query's first keyframe.
    pub joined_mid_stream: TierReport,
    /// Reference hashing figures.
    pub references: ReferenceStats,
    /// Keyframes decoded and looked up per second of one thread on the platform's mix
    /// (`1000 / platform_mix_ms_per_keyframe`).
    pub keyframes_per_second: f64,
    /// Time per keyframe of each step (ms, one thread), over every query keyframe.
    pub cost_ms_per_keyframe: KeyframeCost,
    /// The same over the negatives' keyframes: a stream that matches nothing.
    pub cost_ms_per_negative_keyframe: KeyframeCost,
    /// The same over the negatives' keyframes as if each had begun on a stream already live
    /// and quiet, on both beats of the quiet schedule ([`QueryOutcome::cost_mid_stream`]): a
    /// stream that matches nothing, minutes in. A platform's streams last far longer than
    /// their opening, so this prices its negatives, every negative keyframe of the set alike.
    pub cost_ms_per_negative_keyframe_mid_stream: KeyframeCost,
    /// The same over the positives' keyframes: a pirate stream.
    pub cost_ms_per_positive_keyframe: KeyframeCost,
    /// Mean CPU per keyframe (ms, one thread) on a platform's mix: [`PLATFORM_NEGATIVE_SHARE`]
    /// of the keyframes from streams that match nothing (minutes in:
    /// [`Report::cost_ms_per_negative_keyframe_mid_stream`]), the rest from pirates.
    pub platform_mix_ms_per_keyframe: f64,
    /// Every query's outcome.
    pub queries: Vec<QueryOutcome>,
}

/// Share of a platform's keyframes that come from streams matching nothing (issue #16's mix:
/// 98 % of streams, each keyed every 2 s like a pirate's).
pub const PLATFORM_NEGATIVE_SHARE: f64 = 0.98;

/// Scores outcomes of the default rule (both tiers, the schedule that ships).
pub fn report(outcomes: Vec<QueryOutcome>, references: ReferenceStats) -> Report {
    report_for(outcomes, references, &RecognitionConfig::default())
}

/// [`report`] of outcomes under `config`: the headline under its tiers, its schedule recorded.
pub fn report_for(
    outcomes: Vec<QueryOutcome>,
    references: ReferenceStats,
    config: &RecognitionConfig,
) -> Report {
    let tiers = config.tiers;
    let by_tier: BTreeMap<String, TierReport> = ALL_TIERS
        .iter()
        .map(|&t| {
            let under: Vec<QueryOutcome> = outcomes.iter().map(|o| o.under(t)).collect();
            (t.as_str().to_owned(), score(&under))
        })
        .collect();
    let headline = score(&outcomes);
    let negatives: Vec<&QueryOutcome> =
        outcomes.iter().filter(|o| o.kind == QueryKind::Negative).collect();
    let joined: Vec<QueryOutcome> = outcomes.iter().flat_map(QueryOutcome::joined).collect();
    let mut cost = KeyframeCost::default();
    let mut negative_cost = KeyframeCost::default();
    let mut negative_mid_stream = KeyframeCost::default();
    let mut positive_cost = KeyframeCost::default();
    for o in &outcomes {
        cost.add(&o.cost);
        match o.kind {
            QueryKind::Negative => {
                negative_cost.add(&o.cost);
                negative_mid_stream.add(&o.cost_mid_stream);
            }
            QueryKind::Positive => positive_cost.add(&o.cost),
        }
    }
    let (negative_cost, positive_cost, negative_mid_stream) = (
        negative_cost.per_keyframe(),
        positive_cost.per_keyframe(),
        negative_mid_stream.per_keyframe(),
    );
    let platform_mix_ms_per_keyframe = PLATFORM_NEGATIVE_SHARE * negative_mid_stream.total_ms()
        + (1.0 - PLATFORM_NEGATIVE_SHARE) * positive_cost.total_ms();
    Report {
        per_transform: headline.per_transform,
        false_flags: headline.false_flags,
        negatives: negatives.len(),
        negatives_flagged: headline.negatives_flagged,
        hard_negatives: negatives.iter().filter(|o| o.hard_negative).count(),
        hard_negatives_flagged: headline.hard_negatives_flagged,
        negative_keyframe_hit_rate: headline.negative_keyframe_hit_rate,
        overall_recall: headline.overall_recall,
        overall_ttd_median_s: headline.overall_ttd_median_s,
        tiers: tiers.as_str().to_owned(),
        schedule: config.schedule,
        by_tier,
        joined_mid_stream: score(&joined),
        references,
        keyframes_per_second: 1000.0 / platform_mix_ms_per_keyframe.max(1e-9),
        cost_ms_per_keyframe: cost.per_keyframe(),
        cost_ms_per_negative_keyframe: negative_cost,
        cost_ms_per_negative_keyframe_mid_stream: negative_mid_stream,
        cost_ms_per_positive_keyframe: positive_cost,
        platform_mix_ms_per_keyframe,
        queries: outcomes,
    }
}

fn score(outcomes: &[QueryOutcome]) -> TierReport {
    let mut groups: BTreeMap<String, Vec<&QueryOutcome>> = BTreeMap::new();
    for o in outcomes.iter().filter(|o| o.kind == QueryKind::Positive) {
        groups.entry(o.transform.clone()).or_default().push(o);
    }
    let per_transform = groups
        .into_iter()
        .map(|(t, qs)| {
            let detected: Vec<f64> =
                qs.iter().filter(|o| o.detected()).filter_map(|o| o.ttd_s).collect();
            let kf: usize = qs.iter().map(|o| o.keyframes).sum();
            let kf_hit: usize = qs.iter().map(|o| o.keyframes_hit).sum();
            let score = TransformScore {
                queries: qs.len(),
                detected: detected.len(),
                recall: ratio(detected.len(), qs.len()),
                ttd_median_s: percentile(&detected, 0.5),
                ttd_p90_s: percentile(&detected, 0.9),
                keyframe_hit_rate: ratio(kf_hit, kf),
                wrong_reference: qs.iter().filter(|o| o.false_flag()).count(),
            };
            (t, score)
        })
        .collect();
    let negatives: Vec<&QueryOutcome> =
        outcomes.iter().filter(|o| o.kind == QueryKind::Negative).collect();
    let positives: Vec<&QueryOutcome> =
        outcomes.iter().filter(|o| o.kind == QueryKind::Positive).collect();
    let all_ttd: Vec<f64> =
        positives.iter().filter(|o| o.detected()).filter_map(|o| o.ttd_s).collect();
    TierReport {
        per_transform,
        false_flags: outcomes.iter().filter(|o| o.false_flag()).count(),
        negatives_flagged: negatives.iter().filter(|o| o.flagged_as.is_some()).count(),
        hard_negatives_flagged: negatives
            .iter()
            .filter(|o| o.hard_negative && o.flagged_as.is_some())
            .count(),
        negative_keyframe_hit_rate: ratio(
            negatives.iter().map(|o| o.keyframes_hit).sum(),
            negatives.iter().map(|o| o.keyframes).sum(),
        ),
        overall_recall: ratio(all_ttd.len(), positives.len()),
        overall_ttd_median_s: percentile(&all_ttd, 0.5),
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Nearest-rank percentile.
fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

impl Report {
    /// The human-readable tables.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let secs = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        s.push_str("| transform | queries | detected | recall | TTD median (s) | TTD p90 (s) | keyframe hit rate | wrong ref |\n");
        s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (t, r) in &self.per_transform {
            s.push_str(&format!(
                "| {t} | {} | {} | {:.0} % | {} | {} | {:.0} % | {} |\n",
                r.queries,
                r.detected,
                r.recall * 100.0,
                secs(r.ttd_median_s),
                secs(r.ttd_p90_s),
                r.keyframe_hit_rate * 100.0,
                r.wrong_reference
            ));
        }
        s.push_str(&format!(
            "\nAll positives: recall {:.1} %, median TTD {} s.\n",
            self.overall_recall * 100.0,
            secs(self.overall_ttd_median_s)
        ));
        s.push_str(&format!(
            "False flags: {} (negatives flagged: {} of {}; hard negatives flagged: {} of {}; positives flagged for a wrong reference: {}).\n",
            self.false_flags,
            self.negatives_flagged - self.hard_negatives_flagged,
            self.negatives - self.hard_negatives,
            self.hard_negatives_flagged,
            self.hard_negatives,
            self.false_flags - self.negatives_flagged
        ));
        s.push_str(&format!(
            "Negative keyframes with any hit: {:.1} %.\n",
            self.negative_keyframe_hit_rate * 100.0
        ));
        s.push_str(&format!("(Decisions above: tiers = {}.)\n", self.tiers));
        s.push_str(&self.tier_table());
        let r = &self.references;
        s.push_str(&format!(
            "\nReferences: {} ({:.0} s of video, {} frames indexed, {} feature frames) hashed in {:.1} s wall ({} from cache); index RAM: PDQ {:.0} B, features {:.0} B per reference second.\n",
            r.references,
            r.video_seconds,
            r.frames,
            r.feature_frames,
            r.wall_seconds,
            r.cached,
            r.pdq_index_bytes as f64 / r.video_seconds.max(1e-9),
            r.feature_index_bytes as f64 / r.video_seconds.max(1e-9),
        ));
        for (what, c) in [
            ("negative keyframe", &self.cost_ms_per_negative_keyframe),
            (
                "negative keyframe joined mid-stream, on both beats",
                &self.cost_ms_per_negative_keyframe_mid_stream,
            ),
            ("positive keyframe", &self.cost_ms_per_positive_keyframe),
        ] {
            if c.keyframes == 0 {
                continue;
            }
            s.push_str(&format!(
                "Per {what} ({} keyframes; ms, one thread): {:.2} = decode {:.2}; PDQ tier {:.2} (hash {:.2} + lookup {:.2}); geometric tier {:.2} (features {:.2} + lookup and verification {:.2}) on {:.0} % of keyframes; decision {:.2}.\n",
                c.keyframes,
                c.total_ms(),
                c.decode_ms,
                c.pdq_hash_ms + c.pdq_lookup_ms,
                c.pdq_hash_ms,
                c.pdq_lookup_ms,
                c.features_extract_ms + c.features_lookup_ms,
                c.features_extract_ms,
                c.features_lookup_ms,
                100.0 * c.features_keyframes as f64 / c.keyframes.max(1) as f64,
                c.decide_ms,
            ));
        }
        let schedule = &self.schedule;
        if schedule.quiet_interval_ms > 0 {
            s.push_str(&format!(
                "Geometric tier by need: every keyframe up to {0} ms after a hit and in a stream's first {0} ms, else one per {1} ms.\n",
                schedule.evidence_window_ms, schedule.quiet_interval_ms
            ));
        }
        s.push_str(&format!(
            "Platform mix ({:.0} % negative keyframes, joined mid-stream): {:.2} ms per keyframe, {:.0} keyframes/s per thread.\n",
            100.0 * PLATFORM_NEGATIVE_SHARE,
            self.platform_mix_ms_per_keyframe,
            self.keyframes_per_second
        ));
        s
    }

    /// Recall and median time-to-detect per transformation under each choice of tiers, and
    /// under both tiers for a query joining a stream mid-stream, with their false flags.
    pub fn tier_table(&self) -> String {
        let mut columns: Vec<(&str, &TierReport)> = ALL_TIERS
            .iter()
            .filter_map(|t| self.by_tier.get(t.as_str()).map(|r| (t.as_str(), r)))
            .collect();
        columns.push(("joined mid-stream", &self.joined_mid_stream));
        let mut s = String::from("\n| transform |");
        for (label, _) in &columns {
            s.push_str(&format!(" {label} recall | {label} TTD median (s) |"));
        }
        s.push_str("\n|---|");
        s.push_str(&"---:|".repeat(2 * columns.len()));
        s.push('\n');
        let secs = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        for name in self.per_transform.keys() {
            s.push_str(&format!("| {name} |"));
            for (_, r) in &columns {
                match r.per_transform.get(name) {
                    Some(r) => s.push_str(&format!(
                        " {}/{} ({:.0} %) | {} |",
                        r.detected,
                        r.queries,
                        r.recall * 100.0,
                        secs(r.ttd_median_s)
                    )),
                    None => s.push_str(" - | - |"),
                }
            }
            s.push('\n');
        }
        s.push_str("| all positives |");
        for (_, r) in &columns {
            s.push_str(&format!(
                " {:.1} % | {} |",
                r.overall_recall * 100.0,
                secs(r.overall_ttd_median_s)
            ));
        }
        s.push_str("\n| false flags (negatives / hard / wrong ref) |");
        for (_, r) in &columns {
            s.push_str(&format!(
                " {} ({} / {} / {}) | |",
                r.false_flags,
                r.negatives_flagged - r.hard_negatives_flagged,
                r.hard_negatives_flagged,
                r.false_flags - r.negatives_flagged
            ));
        }
        s.push('\n');
        s
    }

    /// The contract JSON: `per_transform`, `false_flags`, `negatives`, plus the details
    /// (every query's outcome under `queries`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v = [4.0, 2.0, 8.0, 6.0];
        assert_eq!(percentile(&v, 0.5), Some(4.0));
        assert_eq!(percentile(&v, 0.9), Some(8.0));
        assert_eq!(percentile(&[], 0.5), None);
    }
}
