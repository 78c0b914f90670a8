//! [`LiveIndex`]: a time-windowed Hamming index for live reference feeds.
//!
//! A rights holder's feed is hashed as it airs; a pirate re-stream trails it by a near-constant
//! delay, so a query only needs the frames of the last few minutes. Frames carry wall-clock
//! times in milliseconds and live in fixed-length time *segments*, each with its own
//! [`HammingIndex`]. Expiry drops whole segments (no per-frame work), and a search skips every
//! segment that cannot overlap the requested time window.

use std::collections::BTreeMap;

use crate::{HammingIndex, Hash256};

/// Segments are never shorter than this (keeps per-segment overhead low at short retentions).
const MIN_SEGMENT_MS: i64 = 1_000;
/// Segments are never longer than this (keeps expiry fine-grained at long retentions).
const MAX_SEGMENT_MS: i64 = 60_000;
/// Target number of segments in a retention window.
const SEGMENTS_PER_RETENTION: i64 = 16;

/// One result of [`LiveIndex::search`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LiveMatch {
    /// The id the frame was inserted under.
    pub id: u32,
    /// Hamming distance between the query and the frame's hash.
    pub distance: u32,
    /// The frame's wall-clock time in milliseconds.
    pub time_ms: i64,
}

/// Frames of one time segment. The segment's index is keyed by row (insertion order), so the
/// same caller id may appear at several times.
#[derive(Debug, Clone, Default)]
struct Segment {
    index: HammingIndex,
    ids: Vec<u32>,
    times: Vec<i64>,
    min_ms: i64,
    max_ms: i64,
}

/// A time-windowed index of live frames, with exact Hamming range search.
///
/// Invariants:
/// - a frame is searchable from its insertion until [`expire`](Self::expire) is called with a
///   `now_ms` more than `retention_ms` after the frame's time;
/// - [`search`](Self::search) returns exactly the frames whose time lies in the inclusive
///   window and whose hash is within the radius, sorted by distance, then time, then id;
/// - ids are the caller's: the same id may be inserted at several times (each is a frame).
#[derive(Debug, Clone)]
pub struct LiveIndex {
    retention_ms: i64,
    segment_ms: i64,
    /// Keyed by `time_ms.div_euclid(segment_ms)`.
    segments: BTreeMap<i64, Segment>,
    /// Frames older than this have been expired (exclusive lower bound on kept times).
    cutoff_ms: i64,
    len: usize,
}

impl LiveIndex {
    /// An empty index that keeps frames for `retention_ms` milliseconds (clamped to at least 1).
    pub fn new(retention_ms: i64) -> Self {
        let retention_ms = retention_ms.max(1);
        let segment_ms =
            (retention_ms / SEGMENTS_PER_RETENTION).clamp(MIN_SEGMENT_MS, MAX_SEGMENT_MS);
        Self { retention_ms, segment_ms, segments: BTreeMap::new(), cutoff_ms: i64::MIN, len: 0 }
    }

    /// The retention in milliseconds.
    pub fn retention_ms(&self) -> i64 {
        self.retention_ms
    }

    /// Number of frames held (expired ones excluded).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a frame. A frame older than the last expiry cutoff is ignored (it would be
    /// dropped at once anyway).
    pub fn insert(&mut self, id: u32, hash: Hash256, time_ms: i64) {
        if time_ms < self.cutoff_ms {
            return;
        }
        let key = time_ms.div_euclid(self.segment_ms);
        let seg = self.segments.entry(key).or_insert_with(|| Segment {
            min_ms: time_ms,
            max_ms: time_ms,
            ..Segment::default()
        });
        let row = seg.ids.len() as u32;
        seg.index.insert(row, hash);
        seg.ids.push(id);
        seg.times.push(time_ms);
        seg.min_ms = seg.min_ms.min(time_ms);
        seg.max_ms = seg.max_ms.max(time_ms);
        self.len += 1;
    }

    /// Drops every frame older than `now_ms - retention_ms`.
    ///
    /// Whole segments are released; in the one segment that straddles the cutoff, expired
    /// frames stay allocated until the segment goes but are never returned.
    pub fn expire(&mut self, now_ms: i64) {
        let cutoff = now_ms.saturating_sub(self.retention_ms);
        if cutoff <= self.cutoff_ms {
            return;
        }
        self.cutoff_ms = cutoff;
        let keep_from = cutoff.div_euclid(self.segment_ms);
        let kept = self.segments.split_off(&keep_from);
        self.segments = kept;
        // The straddling segment: recount what is still visible.
        self.len = self
            .segments
            .values()
            .map(|s| {
                if s.min_ms >= cutoff {
                    s.times.len()
                } else {
                    s.times.iter().filter(|&&t| t >= cutoff).count()
                }
            })
            .sum();
    }

    /// Every frame with `from_ms <= time_ms <= to_ms` whose hash is within `radius` of
    /// `query`, sorted by distance, then time, then id.
    pub fn search(&self, query: &Hash256, radius: u32, from_ms: i64, to_ms: i64) -> Vec<LiveMatch> {
        let from_ms = from_ms.max(self.cutoff_ms);
        if from_ms > to_ms {
            return Vec::new();
        }
        let mut out = Vec::new();
        let range = from_ms.div_euclid(self.segment_ms)..=to_ms.div_euclid(self.segment_ms);
        for seg in self.segments.range(range).map(|(_, s)| s) {
            if seg.max_ms < from_ms || seg.min_ms > to_ms {
                continue;
            }
            for m in seg.index.search(query, radius) {
                let row = m.id as usize;
                let time_ms = seg.times[row];
                if (from_ms..=to_ms).contains(&time_ms) {
                    out.push(LiveMatch { id: seg.ids[row], distance: m.distance, time_ms });
                }
            }
        }
        out.sort_unstable_by_key(|m| (m.distance, m.time_ms, m.id));
        out
    }

    /// Heap bytes held by the segments' indexes and frame metadata.
    pub fn memory_bytes(&self) -> usize {
        self.segments
            .values()
            .map(|s| s.index.memory_bytes() + s.ids.capacity() * 4 + s.times.capacity() * 8)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_outside_the_window_or_expired_are_not_returned() {
        let mut live = LiveIndex::new(10_000);
        let h = Hash256([1, 2, 3, 4]);
        for t in 0..30 {
            live.insert(t as u32, h, t * 1000);
        }
        let hits = live.search(&h, 0, 5_000, 7_000);
        assert_eq!(hits.iter().map(|m| m.time_ms).collect::<Vec<_>>(), vec![5_000, 6_000, 7_000]);
        live.expire(25_000);
        assert_eq!(live.len(), 15);
        let hits = live.search(&h, 0, i64::MIN, i64::MAX);
        assert_eq!(hits.first().map(|m| m.time_ms), Some(15_000));
        assert_eq!(hits.len(), 15);
    }
}
