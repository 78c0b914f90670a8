//! When a keyframe runs the geometric tier: the schedule by need.
//!
//! The geometric tier (local features, their index, a RANSAC fit) costs about four times the
//! PDQ tier, and nearly every keyframe a platform sends belongs to a stream that matches
//! nothing. So the PDQ tier looks at every keyframe, and the geometric tier at:
//! - every keyframe whose own PDQ lookup hit, and every keyframe of a stream that has shown a
//!   hit (either tier) within [`FeatureSchedule::evidence_window_ms`] of stream time: once
//!   there is evidence, the stream gets the full look;
//! - every keyframe of a stream's opening, its first [`FeatureSchedule::evidence_window_ms`]:
//!   a stream that goes live on a re-broadcast is found as fast as with every keyframe looked
//!   at, and the opening is a few seconds of a stream that lasts for many minutes;
//! - otherwise, one keyframe at least every [`FeatureSchedule::quiet_interval_ms`] of stream
//!   time: a re-stream only the geometric tier sees (a filmed screen, a face-cam layout, a side
//!   window) that begins on a stream already live is found at most one interval late, and from
//!   its first hit on, every keyframe is looked at.
//!
//! The worker and `offside eval` both ask [`FeatureSchedule::wants_features`], so the
//! evaluation's figures are the schedule's. The evaluation runs every query twice more as if it
//! had begun on a stream already live and quiet: that prices a platform's streams, minutes past
//! their opening, and reports pirates that begin mid-stream apart. [`FeatureSchedule::BY_NEED`]
//! ships; `offside eval --quiet-interval-ms 0` measures every keyframe looked at.

/// The schedule's two parameters (part of [`super::RecognitionConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FeatureSchedule {
    /// After a hit at stream time `t`, every keyframe up to `t` + this looks up features.
    pub evidence_window_ms: i64,
    /// On a stream without recent evidence, at most this much stream time between two
    /// geometric lookups; 0 looks up every keyframe.
    pub quiet_interval_ms: i64,
}

/// What a keyframe's stream is known to have done, for [`FeatureSchedule::wants_features`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamActivity {
    /// Stream time of the stream's first keyframe, when the stream is known to have begun
    /// there: its opening gets the full look. `None` for a stream whose start is unknown.
    pub opened_ms: Option<i64>,
    /// Stream time of the stream's latest keyframe with a hit (either tier), if any.
    pub last_hit_ms: Option<i64>,
    /// Stream time of the latest keyframe whose features were looked up, if any.
    pub last_features_ms: Option<i64>,
}

impl StreamActivity {
    /// A stream that begins with the keyframe at `stream_ts_ms`.
    pub fn opening_at(stream_ts_ms: i64) -> Self {
        StreamActivity { opened_ms: Some(stream_ts_ms), ..StreamActivity::default() }
    }

    /// Records a looked-up keyframe: whether it looked up features, and whether it hit.
    pub fn record(&mut self, stream_ts_ms: i64, looked_up_features: bool, hit: bool) {
        let later = |t: Option<i64>| Some(t.map_or(stream_ts_ms, |t| t.max(stream_ts_ms)));
        if looked_up_features {
            self.last_features_ms = later(self.last_features_ms);
        }
        if hit {
            self.last_hit_ms = later(self.last_hit_ms);
        }
    }
}

/// Encoders place keyframes a little early or late: a keyframe this close to the interval's end
/// counts as due, so a stream keyed every 2 s is looked at every `interval / 2 s` keyframes,
/// not one more.
const JITTER_MS: i64 = 500;

impl FeatureSchedule {
    /// The geometric tier on every keyframe.
    pub const EVERY_KEYFRAME: FeatureSchedule =
        FeatureSchedule { evidence_window_ms: 0, quiet_interval_ms: 0 };

    /// The schedule by need as measured (docs/EVALUATION.md): one keyframe in two of a quiet
    /// stream keyed every 2 s (one in three lost two development-set overlays), and ten seconds
    /// of full look after a hit and at a stream's opening (four lost one).
    pub const BY_NEED: FeatureSchedule =
        FeatureSchedule { evidence_window_ms: 10_000, quiet_interval_ms: 4_000 };

    /// Whether the keyframe at `stream_ts_ms` looks up local features, given whether its own
    /// PDQ lookup hit and what its stream has done.
    pub fn wants_features(&self, stream_ts_ms: i64, pdq_hit: bool, stream: StreamActivity) -> bool {
        if pdq_hit || self.quiet_interval_ms <= 0 {
            return true;
        }
        let recent =
            |t: Option<i64>| t.is_some_and(|t| stream_ts_ms - t <= self.evidence_window_ms);
        let due = stream
            .last_features_ms
            .is_none_or(|t| stream_ts_ms - t + JITTER_MS >= self.quiet_interval_ms);
        recent(stream.last_hit_ms) || recent(stream.opened_ms) || due
    }
}

impl Default for FeatureSchedule {
    /// [`FeatureSchedule::BY_NEED`]. Measured with `offside eval` (docs/EVALUATION.md, "The
    /// geometric tier's schedule by need"): past a stream's opening it cuts the CPU of a
    /// keyframe matching nothing by about a fifth, with every detection of both evaluation
    /// sets kept from a stream's start and no false flag.
    fn default() -> Self {
        FeatureSchedule::BY_NEED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which of a stream's keyframes, one every `every_ms`, look up features, with hits at the
    /// given keyframe numbers (PDQ hits when `pdq`, else geometric ones), on a stream that has
    /// done `stream` before its keyframe 0 (`StreamActivity::default()`: its start unknown).
    fn looked_up(
        mut stream: StreamActivity,
        schedule: FeatureSchedule,
        every_ms: i64,
        n: i64,
        hits: &[i64],
        pdq: bool,
    ) -> Vec<i64> {
        let mut out = Vec::new();
        for k in 0..n {
            let ts = k * every_ms;
            let hit = hits.contains(&k);
            let wants = schedule.wants_features(ts, pdq && hit, stream);
            if wants {
                out.push(k);
            }
            // A geometric hit is only seen on a keyframe that looked.
            stream.record(ts, wants, hit && (pdq || wants));
        }
        out
    }

    const SCHEDULE: FeatureSchedule =
        FeatureSchedule { evidence_window_ms: 10_000, quiet_interval_ms: 6_000 };

    #[test]
    fn a_quiet_stream_is_looked_at_first_and_then_once_per_interval() {
        assert_eq!(
            looked_up(StreamActivity::default(), SCHEDULE, 2_000, 10, &[], false),
            [0, 3, 6, 9]
        );
        // Keyframes placed a little early still count as due.
        let early = looked_up(StreamActivity::default(), SCHEDULE, 1_980, 10, &[], false);
        assert_eq!(early, [0, 3, 6, 9]);
        // Sparse keyframes: every one is due.
        assert_eq!(
            looked_up(StreamActivity::default(), SCHEDULE, 7_000, 4, &[], false),
            [0, 1, 2, 3]
        );
    }

    #[test]
    fn a_hit_on_either_tier_opens_the_full_look_for_the_evidence_window() {
        // A geometric hit on keyframe 3 (looked at on schedule): keyframes 4-8 are all looked
        // at (up to 10 s after it), then the quiet schedule resumes from the last look.
        assert_eq!(
            looked_up(StreamActivity::default(), SCHEDULE, 2_000, 14, &[3], false),
            [0, 3, 4, 5, 6, 7, 8, 11]
        );
        // A PDQ hit is seen on every keyframe: it is looked at at once.
        assert_eq!(
            looked_up(StreamActivity::default(), SCHEDULE, 2_000, 14, &[1], true),
            [0, 1, 2, 3, 4, 5, 6, 9, 12]
        );
        // A pirate hitting on every keyframe keeps the full look.
        let all: Vec<i64> = (0..12).collect();
        assert_eq!(looked_up(StreamActivity::default(), SCHEDULE, 2_000, 12, &all, false), all);
    }

    #[test]
    fn a_streams_opening_gets_the_full_look_then_the_quiet_schedule_resumes() {
        let opening = StreamActivity::opening_at(0);
        // Up to 10 s (keyframes 0-5) every keyframe, then one every 6 s from the last look.
        assert_eq!(looked_up(opening, SCHEDULE, 2_000, 12, &[], false), [0, 1, 2, 3, 4, 5, 8, 11]);
        // A hit in the opening extends the full look to 10 s after the hit.
        let hit_at_8_s = looked_up(opening, SCHEDULE, 2_000, 14, &[4], false);
        assert_eq!(hit_at_8_s, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12]);
        // A stream joined long after its opening is on the quiet schedule.
        let old = StreamActivity::opening_at(-60_000);
        assert_eq!(looked_up(old, SCHEDULE, 2_000, 7, &[], false), [0, 3, 6]);
    }

    #[test]
    fn every_keyframe_is_the_schedule_with_no_interval() {
        let all: Vec<i64> = (0..6).collect();
        assert_eq!(
            looked_up(
                StreamActivity::default(),
                FeatureSchedule::EVERY_KEYFRAME,
                2_000,
                6,
                &[],
                false
            ),
            all
        );
    }

    #[test]
    fn a_keyframe_arriving_late_is_not_due_again() {
        let mut stream = StreamActivity::default();
        stream.record(10_000, true, false);
        stream.record(4_000, true, false);
        assert_eq!(stream.last_features_ms, Some(10_000));
        assert!(!SCHEDULE.wants_features(8_000, false, stream));
    }
}
