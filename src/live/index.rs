//! [`LiveLibrary`]: every live feed's recent frames, matched by wall-clock alignment.
//!
//! Each feed has its own [`LiveIndex`] (its own retention). A keyframe captured at `t` can only
//! show what a feed aired shortly before, so a lookup searches each feed's frames aired in
//! `[t - max_delay - tolerance, t + tolerance]`: re-streams trailing the feed by 0 to
//! `max_delay` match, while the same picture aired an hour ago (a replay, a slate) does not.
//!
//! A hit's `reference_ts_ms` is the frame's air time minus the feed's origin (time zero of the
//! event), the same timeline the archived reference gets. A re-stream trailing the feed by a
//! delay `d` therefore produces hits at a constant offset (`reference_ts - stream_ts`), which is
//! exactly what the per-stream temporal matcher accumulates; when the stream's own clock counts
//! from the event's time zero, the offset is `-d`.

use std::collections::HashMap;

use fingerprints::{CropVariant, Hash256, Hit, LiveIndex, broadness_weight};

use crate::recognition::KeyframeHashes;
use crate::recognition::weights::{AMBIGUITY_BITS, count_u32, detail_weight};

/// One hashed frame of a live feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveFrame {
    /// When the frame aired (was decoded by the ingest), Unix ms.
    pub time_ms: i64,
    /// PDQ hash of the frame or of one of its crops.
    pub hash: Hash256,
    /// PDQ quality, 0–100.
    pub quality: u8,
    /// Which part of the frame was hashed.
    pub variant: CropVariant,
}

/// How live lookups are aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveWindow {
    /// The longest delay between a feed and a re-stream that still matches (ms).
    pub max_delay_ms: i64,
    /// Slack on both ends of the window for clock differences between the platform that
    /// stamps `captured_at_ms` and the ingesting process (ms).
    pub tolerance_ms: i64,
}

impl Default for LiveWindow {
    /// Delays up to two minutes, two seconds of clock slack.
    fn default() -> Self {
        Self { max_delay_ms: 120_000, tolerance_ms: 2_000 }
    }
}

struct Feed {
    origin_ms: i64,
    index: LiveIndex,
}

/// The live frames of every feed this process knows. Not internally synchronised: share it as
/// [`SharedLiveLibrary`].
#[derive(Default)]
pub struct LiveLibrary {
    feeds: HashMap<String, Feed>,
}

impl std::fmt::Debug for LiveLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveLibrary")
            .field("feeds", &self.feeds.len())
            .field("frames", &self.len())
            .finish()
    }
}

/// The live library shared by the ingest (writer) and the workers (readers) of a process.
pub type SharedLiveLibrary = std::sync::Arc<std::sync::RwLock<LiveLibrary>>;

/// The id a frame is stored under in its feed's [`LiveIndex`]: quality and crop variant are
/// all a hit needs besides the time, so they are the id (`quality << 8 | variant`).
fn frame_id(quality: u8, variant: CropVariant) -> u32 {
    (u32::from(quality) << 8) | u32::from(variant.to_u8())
}

fn id_quality(id: u32) -> u8 {
    u8::try_from(id >> 8).unwrap_or(u8::MAX)
}

impl LiveLibrary {
    /// An empty library.
    pub fn new() -> Self {
        Self::default()
    }

    /// Frames held over all feeds.
    pub fn len(&self) -> usize {
        self.feeds.values().map(|f| f.index.len()).sum()
    }

    /// Whether no frame is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether feed `id` is known.
    pub fn contains(&self, id: &str) -> bool {
        self.feeds.contains_key(id)
    }

    /// The ids of the feeds known.
    pub fn feed_ids(&self) -> Vec<String> {
        self.feeds.keys().cloned().collect()
    }

    /// Adds frames of feed `id`, registering the feed (with its origin and retention) on first
    /// sight. Frames may come from any process: the feed's settings travel with them.
    pub fn insert(&mut self, id: &str, origin_ms: i64, retention_ms: i64, frames: &[LiveFrame]) {
        let feed = self
            .feeds
            .entry(id.to_owned())
            .or_insert_with(|| Feed { origin_ms, index: LiveIndex::new(retention_ms) });
        feed.origin_ms = origin_ms;
        for f in frames {
            feed.index.insert(frame_id(f.quality, f.variant), f.hash, f.time_ms);
        }
    }

    /// Forgets feed `id` (deleted); returns whether it was known.
    pub fn remove(&mut self, id: &str) -> bool {
        self.feeds.remove(id).is_some()
    }

    /// Drops frames older than each feed's retention at `now_ms`.
    pub fn expire(&mut self, now_ms: i64) {
        for feed in self.feeds.values_mut() {
            feed.index.expire(now_ms);
        }
    }

    /// The hits of a keyframe captured at `at_ms` (Unix ms): one per (feed, air time) at its
    /// smallest distance over the keyframe's hashes, weighted like library hits (broad matches
    /// and low-detail frames weigh less), closest first, at most `max_hits`.
    pub fn lookup(
        &self,
        keyframe: &KeyframeHashes,
        at_ms: i64,
        window: LiveWindow,
        radius: u32,
        max_hits: usize,
    ) -> Vec<(String, Hit)> {
        let from = at_ms.saturating_sub(window.max_delay_ms + window.tolerance_ms);
        let to = at_ms.saturating_add(window.tolerance_ms);
        let mut best: HashMap<(&str, i64), (u32, u8)> = HashMap::new();
        for (id, feed) in &self.feeds {
            for q in &keyframe.hashes {
                for m in feed.index.search(&q.hash, radius, from, to) {
                    let slot = best.entry((id.as_str(), m.time_ms)).or_insert((u32::MAX, 0));
                    if m.distance < slot.0 {
                        *slot = (m.distance, id_quality(m.id));
                    }
                }
            }
        }
        if best.is_empty() {
            return Vec::new();
        }
        let mut feeds: Vec<&str> = best.keys().map(|(id, _)| *id).collect();
        feeds.sort_unstable();
        feeds.dedup();
        // Same rule as the reference library: frames about as close as the best one are those
        // this keyframe cannot tell apart (a static shot aired for many seconds).
        let closest = best.values().map(|(d, _)| *d).min().unwrap_or(0);
        let ambiguous = best.values().filter(|(d, _)| *d <= closest + AMBIGUITY_BITS).count();
        let broad = broadness_weight(count_u32(feeds.len()), count_u32(ambiguous));
        let mut hits: Vec<(String, Hit)> = best
            .into_iter()
            .map(|((id, time_ms), (distance, quality))| {
                let origin = self.feeds.get(id).map_or(0, |f| f.origin_ms);
                let hit = Hit {
                    reference: 0,
                    reference_ts_ms: time_ms - origin,
                    distance,
                    weight: broad * detail_weight(quality),
                };
                (id.to_owned(), hit)
            })
            .collect();
        hits.sort_unstable_by(|(a, x), (b, y)| {
            (x.distance, a, x.reference_ts_ms).cmp(&(y.distance, b, y.reference_ts_ms))
        });
        hits.truncate(max_hits);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(bits: &[usize]) -> Hash256 {
        let mut x = Hash256::default();
        for &b in bits {
            x.set_bit(b);
        }
        x
    }

    fn frame(time_ms: i64, hash: Hash256) -> LiveFrame {
        LiveFrame { time_ms, hash, quality: 90, variant: CropVariant::Full }
    }

    fn query(hash: Hash256) -> KeyframeHashes {
        KeyframeHashes::from_hash(hash, 100)
    }

    #[test]
    fn a_keyframe_matches_what_the_feed_aired_up_to_two_minutes_before_its_capture() {
        let mut live = LiveLibrary::new();
        let origin = 1_000_000;
        let scene = h(&[1, 2, 3]);
        live.insert("feed", origin, 7_200_000, &[frame(origin + 30_000, scene)]);
        let window = LiveWindow::default();
        // Ten seconds later: a hit, on the event timeline.
        let hits = live.lookup(&query(scene), origin + 40_000, window, 8, 100);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].0, "feed");
        assert_eq!(hits[0].1.reference_ts_ms, 30_000);
        // Two minutes plus the slack later: still; three minutes later: no longer.
        assert_eq!(live.lookup(&query(scene), origin + 151_000, window, 8, 100).len(), 1);
        assert!(live.lookup(&query(scene), origin + 210_000, window, 8, 100).is_empty());
        // Before it aired (beyond the clock slack): nothing to match yet.
        assert!(live.lookup(&query(scene), origin + 20_000, window, 8, 100).is_empty());
    }

    #[test]
    fn frames_expire_after_the_feed_retention_and_deleted_feeds_stop_matching() {
        let mut live = LiveLibrary::new();
        let scene = h(&[7]);
        live.insert("short", 0, 60_000, &[frame(10_000, scene)]);
        live.insert("long", 0, 3_600_000, &[frame(10_000, scene)]);
        live.expire(100_000);
        let window = LiveWindow { max_delay_ms: 1_000_000, tolerance_ms: 0 };
        let hits = live.lookup(&query(scene), 100_000, window, 0, 100);
        assert_eq!(hits.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), vec!["long"]);
        assert!(live.remove("long"));
        assert!(live.lookup(&query(scene), 100_000, window, 0, 100).is_empty());
    }

    #[test]
    fn a_static_shot_aired_for_many_seconds_weighs_less_than_a_unique_frame() {
        let mut live = LiveLibrary::new();
        let still = h(&[5, 6]);
        let frames: Vec<LiveFrame> = (0..200).map(|i| frame(i * 100, still)).collect();
        live.insert("feed", 0, 3_600_000, &frames);
        live.insert("other", 0, 3_600_000, &[frame(1_000, h(&(100..140).collect::<Vec<_>>()))]);
        let hits = live.lookup(&query(still), 22_000, LiveWindow::default(), 4, 1000);
        assert_eq!(hits.len(), 200);
        assert!(hits.iter().all(|(_, hit)| hit.weight < 0.5), "{hits:?}");
        let unique = live.lookup(
            &query(h(&(100..140).collect::<Vec<_>>())),
            22_000,
            LiveWindow::default(),
            4,
            100,
        );
        assert_eq!(unique.len(), 1);
        assert!((unique[0].1.weight - 1.0).abs() < 1e-6);
    }
}
