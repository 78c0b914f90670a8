//! The evidence timeline of a case, drawn server-side as SVG from the same evidence rows the
//! API returns: stream time on x, reference time on y, one mark per hit coloured by tier, the
//! fitted offset line `reference = stream + offset_ms`, and the deciding keyframe. Consistent
//! evidence lies on the line; a look-alike scatters.
//!
//! This module only computes coordinates (as text, rounded to 0.1 px); the template draws them,
//! with classes for colours (the policy forbids inline styles).

use crate::store::cases::{EvidenceRow, HitTier};

/// The chart's size in SVG units.
pub const WIDTH: f64 = 640.0;
/// The chart's height.
pub const HEIGHT: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 44.0;

/// One evidence hit.
pub struct Mark {
    /// Centre x.
    pub cx: String,
    /// Centre y.
    pub cy: String,
    /// CSS classes: `hit tier-pdq|tier-features|tier-unknown` and `deciding`.
    pub class: String,
    /// Tooltip text.
    pub label: String,
}

/// An axis tick.
pub struct Tick {
    /// Position along its axis.
    pub at: String,
    /// Its label.
    pub label: String,
}

/// A chart ready to draw.
pub struct Chart {
    /// `0 0 WIDTH HEIGHT`.
    pub view_box: String,
    /// The plot area: x, y, width, height.
    pub plot: [String; 4],
    /// The hits.
    pub marks: Vec<Mark>,
    /// The fitted line's ends (x1, y1, x2, y2), when an offset is known.
    pub line: Option<[String; 4]>,
    /// The deciding keyframe's x, when it is in range.
    pub deciding_x: Option<String>,
    /// Ticks along x (stream time).
    pub x_ticks: Vec<Tick>,
    /// Ticks along y (reference time).
    pub y_ticks: Vec<Tick>,
    /// The offset shown in the legend.
    pub offset_label: String,
    /// Plot bottom (y of the x axis), for tick marks.
    pub axis_y: String,
    /// Plot left (x of the y axis).
    pub axis_x: String,
    /// Where the x axis's title goes.
    pub x_title: [String; 2],
    /// Where the y axis's title goes.
    pub y_title: [String; 2],
}

fn num(v: f64) -> String {
    format!("{v:.1}")
}

/// Seconds as a compact clock: `75.5` → `1:15.5`.
fn clock(ms: i64) -> String {
    let negative = ms < 0;
    let ms = ms.unsigned_abs();
    let (minutes, rest) = (ms / 60_000, ms % 60_000);
    let seconds = rest as f64 / 1000.0;
    let sign = if negative { "-" } else { "" };
    if minutes == 0 {
        format!("{sign}{seconds:.1}s")
    } else {
        format!("{sign}{minutes}:{seconds:04.1}")
    }
}

/// A linear map from a value range to a pixel range.
struct Scale {
    lo: f64,
    hi: f64,
    step: f64,
    from: f64,
    to: f64,
}

/// The smallest round step (1, 2 or 5 times a power of ten, at least half a second) of at
/// least `raw` ms: ticks a reader can add up (0, 5, 10 s rather than -1.0, 0.5, 2.0 s).
fn nice_step(raw: i64) -> i64 {
    let mut unit = 100;
    loop {
        for m in [1, 2, 5] {
            let step = m * unit;
            if step >= raw.max(500) {
                return step;
            }
        }
        unit *= 10;
    }
}

impl Scale {
    fn new(values: impl Iterator<Item = i64>, from: f64, to: f64) -> Self {
        let (mut lo, mut hi) = (i64::MAX, i64::MIN);
        for v in values {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if lo > hi {
            (lo, hi) = (0, 1000);
        }
        // About four round steps over the data, the axis starting and ending on a tick.
        let step = nice_step((hi - lo).max(2000) / 4);
        let first = lo.div_euclid(step) * step;
        let last = (hi.div_euclid(step) + 1) * step;
        #[allow(clippy::cast_precision_loss)] // millisecond times fit an f64 exactly
        Self { lo: first as f64, hi: last as f64, step: step as f64, from, to }
    }

    fn at(&self, v: f64) -> f64 {
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }

    fn contains(&self, v: f64) -> bool {
        (self.lo..=self.hi).contains(&v)
    }

    /// A tick at every step of the axis, ends included.
    fn ticks(&self) -> Vec<Tick> {
        let mut ticks = Vec::new();
        let mut v = self.lo;
        while v <= self.hi + self.step / 2.0 {
            #[allow(clippy::cast_possible_truncation)] // display only
            ticks.push(Tick { at: num(self.at(v)), label: clock(v.round() as i64) });
            v += self.step;
        }
        ticks
    }
}

/// The median of `reference - stream` over the rows: the offset when no decision recorded one.
fn median_offset(rows: &[EvidenceRow]) -> Option<i64> {
    let mut offsets: Vec<i64> = rows.iter().map(|r| r.reference_ts_ms - r.stream_ts_ms).collect();
    offsets.sort_unstable();
    offsets.get(offsets.len() / 2).copied()
}

impl Chart {
    /// The chart of `rows`, with the decision's offset (else the median offset) and the
    /// deciding keyframe's stream time.
    pub fn new(rows: &[EvidenceRow], offset_ms: Option<i64>, deciding_ts_ms: Option<i64>) -> Self {
        let (x0, x1) = (LEFT, WIDTH - RIGHT);
        let (y0, y1) = (TOP, HEIGHT - BOTTOM);
        let xs = Scale::new(rows.iter().map(|r| r.stream_ts_ms).chain(deciding_ts_ms), x0, x1);
        // y grows downwards in SVG: the scale maps low reference times to the bottom.
        let ys = Scale::new(rows.iter().map(|r| r.reference_ts_ms), y1, y0);
        let marks = rows
            .iter()
            .map(|r| {
                let tier = match r.tier {
                    Some(HitTier::Pdq) => "tier-pdq",
                    Some(HitTier::Features) => "tier-features",
                    None => "tier-unknown",
                };
                let deciding = deciding_ts_ms == Some(r.stream_ts_ms);
                #[allow(clippy::cast_precision_loss)]
                Mark {
                    cx: num(xs.at(r.stream_ts_ms as f64)),
                    cy: num(ys.at(r.reference_ts_ms as f64)),
                    class: format!("hit {tier}{}", if deciding { " deciding" } else { "" }),
                    label: format!(
                        "stream {} → reference {}, {}, distance {}{}",
                        clock(r.stream_ts_ms),
                        clock(r.reference_ts_ms),
                        r.tier.map_or("tier unknown", HitTier::as_str),
                        r.distance,
                        if deciding { " (deciding keyframe)" } else { "" }
                    ),
                }
            })
            .collect();
        let offset = offset_ms.or_else(|| median_offset(rows));
        #[allow(clippy::cast_precision_loss)]
        let line = offset.map(|offset| {
            let offset = offset as f64;
            [num(x0), num(ys.at(xs.lo + offset)), num(x1), num(ys.at(xs.hi + offset))]
        });
        #[allow(clippy::cast_precision_loss)]
        let deciding_x =
            deciding_ts_ms.map(|t| t as f64).filter(|t| xs.contains(*t)).map(|t| num(xs.at(t)));
        Self {
            view_box: format!("0 0 {WIDTH} {HEIGHT}"),
            plot: [num(x0), num(y0), num(x1 - x0), num(y1 - y0)],
            marks,
            line,
            deciding_x,
            x_ticks: xs.ticks(),
            y_ticks: ys.ticks(),
            offset_label: offset.map_or_else(
                || "no offset".to_owned(),
                |o| {
                    format!(
                        "reference = stream {} {}",
                        if o < 0 { "−" } else { "+" },
                        clock(o.abs())
                    )
                },
            ),
            axis_y: num(y1),
            axis_x: num(x0),
            x_title: [num((x0 + x1) / 2.0), num(HEIGHT - 6.0)],
            y_title: [num(14.0), num((y0 + y1) / 2.0)],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(stream: i64, reference: i64, tier: Option<HitTier>) -> EvidenceRow {
        EvidenceRow { stream_ts_ms: stream, reference_ts_ms: reference, distance: 10, tier }
    }

    #[test]
    fn hits_on_the_offset_line_are_drawn_on_it() {
        let rows =
            [row(0, 30_000, Some(HitTier::Pdq)), row(10_000, 40_000, Some(HitTier::Features))];
        let chart = Chart::new(&rows, Some(30_000), Some(10_000));
        let [lx1, ly1, lx2, ly2] =
            chart.line.as_ref().expect("line").clone().map(|v| v.parse::<f64>().unwrap());
        for mark in &chart.marks {
            let (x, y) = (mark.cx.parse::<f64>().unwrap(), mark.cy.parse::<f64>().unwrap());
            let on_line = ly1 + (x - lx1) / (lx2 - lx1) * (ly2 - ly1);
            assert!((on_line - y).abs() < 0.5, "{x},{y} vs {on_line}");
        }
        assert_eq!(chart.marks[0].class, "hit tier-pdq");
        assert_eq!(chart.marks[1].class, "hit tier-features deciding");
        assert!(chart.deciding_x.is_some());
    }

    #[test]
    fn a_case_without_evidence_still_draws_axes() {
        let chart = Chart::new(&[], None, None);
        assert!(chart.marks.is_empty());
        assert!(chart.line.is_none());
        assert!(chart.x_ticks.len() >= 3);
    }

    #[test]
    fn axes_tick_at_round_seconds_from_zero() {
        let rows: Vec<EvidenceRow> =
            (0..5).map(|i| row(i * 2000, 10_000 + i * 2000, Some(HitTier::Pdq))).collect();
        let chart = Chart::new(&rows, Some(10_000), Some(8000));
        let labels: Vec<&str> = chart.x_ticks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["0.0s", "2.0s", "4.0s", "6.0s", "8.0s", "10.0s"]);
        assert_eq!(nice_step(2_400), 5000);
        assert_eq!(nice_step(100), 500);
        assert_eq!(nice_step(60_000), 100_000);
    }

    #[test]
    fn clock_labels_read_as_minutes_and_seconds() {
        assert_eq!(clock(75_500), "1:15.5");
        assert_eq!(clock(2_000), "2.0s");
        assert_eq!(clock(-2_000), "-2.0s");
    }
}
