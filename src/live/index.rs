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
//!
//! Feeds have the geometric tier too, as file references do: the ingest samples one frame per
//! second for local features, each feed keeps them in its own [`FeatureIndex`] with their air
//! times, and a keyframe's features are verified against the frames aired in the same window
//! ([`LiveLibrary::lookup_features`]). Feature frames, a few KB each, are kept only as long as
//! a lookup can reach them ([`LiveWindow::reach_ms`]); PDQ frames for the feed's retention.

use std::collections::{BTreeSet, HashMap};

use fingerprints::features::{FeatureIndex, Verified, VerifyConfig};
use fingerprints::{CropVariant, Hit, LiveIndex, broadness_weight};

use crate::recognition::weights::{
    AMBIGUITY_BITS, count_u32, detail_weight, feature_hits, merge_tiers,
};
use crate::recognition::{
    FeatureFrame, HitTier, KeyframeHashes, RecognitionConfig, ReferenceFrame, Tiers,
};

/// What the ingest makes of one decoded frame of a feed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiveBatch {
    /// Its PDQ hashes that were kept (full frame, inner picture, crops; pruned, may be empty),
    /// each at the frame's air time (Unix ms).
    pub frames: Vec<ReferenceFrame>,
    /// Its local features, when the frame was sampled for the geometric tier: `ts_ms` is the
    /// air time (Unix ms), the time its PDQ hashes get.
    pub features: Option<FeatureFrame>,
    /// A still of the frame (its `ts_ms` the air time, Unix ms), one per second of the feed,
    /// for reviewers; stored by the ingesting process, not sent to other processes.
    pub still: Option<crate::media::Still>,
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
    /// The geometric tier: one frame per sampled second, all in one group.
    features: FeatureIndex,
    /// Air time of each feature frame, by its id in [`Feed::features`].
    feature_times: HashMap<u32, i64>,
    /// The same, ordered by air time, for expiry and the window.
    feature_order: BTreeSet<(i64, u32)>,
    next_feature_id: u32,
}

impl Feed {
    fn new(origin_ms: i64, retention_ms: i64) -> Self {
        Self {
            origin_ms,
            index: LiveIndex::new(retention_ms),
            features: FeatureIndex::default(),
            feature_times: HashMap::new(),
            feature_order: BTreeSet::new(),
            next_feature_id: 0,
        }
    }

    /// Whether a feature frame aired in `[from, to]`.
    fn has_feature_frames_between(&self, from: i64, to: i64) -> bool {
        self.feature_order.range((from, 0)..=(to, u32::MAX)).next().is_some()
    }
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

    /// Feature frames (the geometric tier) held over all feeds.
    pub fn feature_frames(&self) -> usize {
        self.feeds.values().map(|f| f.feature_times.len()).sum()
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
    pub fn insert(
        &mut self,
        id: &str,
        origin_ms: i64,
        retention_ms: i64,
        frames: &[ReferenceFrame],
    ) {
        let feed = self.feed(id, origin_ms, retention_ms);
        for f in frames {
            feed.index.insert(frame_id(f.quality, f.variant), f.hash, f.ts_ms);
        }
    }

    /// Adds feature frames of feed `id` (their `ts_ms` is the air time, Unix ms), registering
    /// the feed on first sight as [`LiveLibrary::insert`] does.
    pub fn insert_features(
        &mut self,
        id: &str,
        origin_ms: i64,
        retention_ms: i64,
        frames: &[FeatureFrame],
    ) {
        let feed = self.feed(id, origin_ms, retention_ms);
        for f in frames {
            if f.features.is_empty() {
                continue;
            }
            // Ids are only reused after 2^32 frames, 136 years of one frame per second; by
            // then the frame that held the id is long expired.
            let fid = feed.next_feature_id;
            feed.next_feature_id = fid.wrapping_add(1);
            feed.features.insert(fid, 0, f.ts_ms, &f.features);
            if let Some(old) = feed.feature_times.insert(fid, f.ts_ms) {
                feed.feature_order.remove(&(old, fid));
            }
            feed.feature_order.insert((f.ts_ms, fid));
        }
    }

    /// Every batch of one ingest item: [`LiveLibrary::insert`] and
    /// [`LiveLibrary::insert_features`].
    pub fn insert_batch(&mut self, id: &str, origin_ms: i64, retention_ms: i64, batch: &LiveBatch) {
        self.insert(id, origin_ms, retention_ms, &batch.frames);
        if let Some(features) = &batch.features {
            self.insert_features(id, origin_ms, retention_ms, std::slice::from_ref(features));
        }
    }

    fn feed(&mut self, id: &str, origin_ms: i64, retention_ms: i64) -> &mut Feed {
        let feed =
            self.feeds.entry(id.to_owned()).or_insert_with(|| Feed::new(origin_ms, retention_ms));
        feed.origin_ms = origin_ms;
        feed
    }

    /// Forgets feed `id` (deleted); returns whether it was known.
    pub fn remove(&mut self, id: &str) -> bool {
        self.feeds.remove(id).is_some()
    }

    /// Drops frames older than each feed's retention at `now_ms`, and feature frames that no
    /// lookup with `window` can reach any more ([`LiveWindow::reach_ms`]). PDQ frames cost 64
    /// bytes each and stay for the retention; a feature frame costs a few KB (a 2-hour feed
    /// held about 54 MB of them in every process) and is only ever verified inside the window.
    pub fn expire(&mut self, now_ms: i64, window: LiveWindow) {
        for feed in self.feeds.values_mut() {
            feed.index.expire(now_ms);
            // Kept: air time >= now - the shorter of the retention and the window's reach.
            let keep_ms = feed.index.retention_ms().min(window.reach_ms());
            let cutoff = now_ms.saturating_sub(keep_ms);
            let kept = feed.feature_order.split_off(&(cutoff, 0));
            for (_, fid) in std::mem::replace(&mut feed.feature_order, kept) {
                feed.features.remove(fid);
                feed.feature_times.remove(&fid);
            }
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
        let (from, to) = window.bounds(at_ms);
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

    /// The geometric tier's hits of a keyframe captured at `at_ms`: its local features (and
    /// their mirror) verified against each feed's feature frames aired in the same window as
    /// [`LiveLibrary::lookup`] searches, one hit per verified frame at the frame's event time,
    /// capped and weighted exactly like the reference library's feature hits
    /// ([`crate::recognition::Library::lookup_features`]). A keyframe without features has
    /// none.
    pub fn lookup_features(
        &self,
        keyframe: &KeyframeHashes,
        at_ms: i64,
        window: LiveWindow,
        verify: &VerifyConfig,
    ) -> Vec<(String, Hit)> {
        let Some(features) = keyframe.features.as_ref().filter(|f| !f.is_empty()) else {
            return Vec::new();
        };
        let (from, to) = window.bounds(at_ms);
        let mut verified: Vec<(&str, i64, Verified)> = Vec::new();
        for (id, feed) in &self.feeds {
            if !feed.has_feature_frames_between(from, to) {
                continue;
            }
            for v in feed.features.query_between(features, verify, from, to) {
                let Some(&aired) = feed.feature_times.get(&v.frame) else { continue };
                verified.push((id.as_str(), aired - feed.origin_ms, v));
            }
        }
        feature_hits(verified, verify).into_iter().map(|(id, hit)| (id.to_owned(), hit)).collect()
    }

    /// The hits of the configured tiers for a keyframe captured at `at_ms`, with the
    /// configured radius and hit cap: [`LiveLibrary::lookup`] and
    /// [`LiveLibrary::lookup_features`] together; where both tiers hit the same feed at the same
    /// time, the closer hit stands for both (as [`crate::recognition::TierHits::select`] does).
    pub fn lookup_tiers(
        &self,
        keyframe: &KeyframeHashes,
        at_ms: i64,
        window: LiveWindow,
        config: &RecognitionConfig,
        verify: &VerifyConfig,
    ) -> Vec<(String, Hit, HitTier)> {
        let pdq = if config.tiers == Tiers::Features {
            Vec::new()
        } else {
            self.lookup(keyframe, at_ms, window, config.radius, config.max_hits_per_keyframe)
        };
        let features = if config.tiers == Tiers::Pdq {
            Vec::new()
        } else {
            self.lookup_features(keyframe, at_ms, window, verify)
        };
        merge_tiers(pdq, features)
    }
}

impl LiveWindow {
    /// How long before now a lookup with this window may still need a frame: the window's
    /// whole span for a keyframe captured now, and as much again for keyframes that reach a
    /// worker late (a queue backlog; beyond that, live matching is moot anyway).
    pub fn reach_ms(self) -> i64 {
        2 * (self.max_delay_ms + 2 * self.tolerance_ms)
    }

    /// The air times `[at - max_delay - tolerance, at + tolerance]` a keyframe captured at
    /// `at_ms` may show.
    fn bounds(self, at_ms: i64) -> (i64, i64) {
        (
            at_ms.saturating_sub(self.max_delay_ms + self.tolerance_ms),
            at_ms.saturating_add(self.tolerance_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fingerprints::Hash256;

    pub(super) fn h(bits: &[usize]) -> Hash256 {
        let mut x = Hash256::default();
        for &b in bits {
            x.set_bit(b);
        }
        x
    }

    pub(super) fn frame(ts_ms: i64, hash: Hash256) -> ReferenceFrame {
        ReferenceFrame { ts_ms, hash, quality: 90, variant: CropVariant::Full }
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
        let window = LiveWindow { max_delay_ms: 1_000_000, tolerance_ms: 0 };
        live.expire(100_000, window);
        let hits = live.lookup(&query(scene), 100_000, window, 0, 100);
        assert_eq!(hits.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>(), vec!["long"]);
        assert!(live.remove("long"));
        assert!(live.lookup(&query(scene), 100_000, window, 0, 100).is_empty());
    }

    #[test]
    fn a_static_shot_aired_for_many_seconds_weighs_less_than_a_unique_frame() {
        let mut live = LiveLibrary::new();
        let still = h(&[5, 6]);
        let frames: Vec<ReferenceFrame> = (0..200).map(|i| frame(i * 100, still)).collect();
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

/// The geometric tier of live feeds, on `ref_earth.mp4` of the mini evaluation set: its 30 s
/// as a feed (features of one frame a second, as the ingest samples them) and, as the pirate's
/// keyframe, its frame at 12.5 s zoomed by 8 % and cropped back to the frame.
#[cfg(test)]
mod feature_tests {
    use std::ops::ControlFlow;
    use std::path::Path;
    use std::sync::OnceLock;

    use fingerprints::Luma;
    use fingerprints::features::{FeatureConfig, LocalFeatures};

    use super::tests::{frame, h};
    use super::*;
    use crate::live::fanout::{CONTENT_TYPE_V2, decode_body, encode_body};
    use crate::media::{LumaOptions, decode_luma_frames};
    use crate::recognition::{FEATURE_HITS_PER_REFERENCE, FeatureSampler, hash_luma};

    const ORIGIN: i64 = 1_700_000_000_000;
    const HOURS: i64 = 3_600_000;
    /// Clip position of the pirate's keyframe.
    const KEYFRAME_AT: i64 = 12_500;

    /// The clip's sampled feature frames (clip times) and the pirate's keyframe.
    fn clip() -> &'static (Vec<FeatureFrame>, KeyframeHashes) {
        static CLIP: OnceLock<(Vec<FeatureFrame>, KeyframeHashes)> = OnceLock::new();
        CLIP.get_or_init(|| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/eval-mini/refs/ref_earth.mp4");
            let mut sampler = FeatureSampler::new(1000);
            let mut frames = Vec::new();
            let mut keyframe = None;
            decode_luma_frames(path.to_str().unwrap(), &LumaOptions::default(), |frame| {
                if sampler.sample(frame.ts_ms) {
                    let features = LocalFeatures::extract(&frame.luma, &FeatureConfig::reference());
                    frames.push(FeatureFrame { ts_ms: frame.ts_ms, features });
                }
                if keyframe.is_none() && frame.ts_ms >= KEYFRAME_AT {
                    keyframe = Some(hash_luma(&zoomed(&frame.luma)));
                }
                ControlFlow::Continue(())
            })
            .unwrap();
            (frames, keyframe.unwrap())
        })
    }

    /// The centre 92 % of the picture: zoomed in by 8 % and cropped back to the frame.
    fn zoomed(luma: &Luma) -> Luma {
        let (w, h) = (luma.width() * 92 / 100, luma.height() * 92 / 100);
        luma.crop((luma.width() - w) / 2, (luma.height() - h) / 2, w, h).unwrap()
    }

    /// The clip's feature frames aired from `aired_from` (ms after the origin) on.
    fn aired(aired_from: i64) -> Vec<FeatureFrame> {
        clip()
            .0
            .iter()
            .map(|f| FeatureFrame { ts_ms: ORIGIN + aired_from + f.ts_ms, ..f.clone() })
            .collect()
    }

    /// The feature hits of the keyframe captured `at` ms after the origin.
    fn hits(live: &LiveLibrary, at: i64) -> Vec<(String, Hit)> {
        let window = LiveWindow::default();
        live.lookup_features(&clip().1, ORIGIN + at, window, &VerifyConfig::default())
    }

    /// Whether `hits` are on feed `feed` and place the keyframe at its position in the clip
    /// aired from `aired_from`, give or take a second.
    fn at_its_moment(hits: &[(String, Hit)], feed: &str, aired_from: i64) -> bool {
        let moment = aired_from + KEYFRAME_AT - 1000..=aired_from + KEYFRAME_AT + 1000;
        !hits.is_empty()
            && hits.iter().all(|(id, h)| id == feed && moment.contains(&h.reference_ts_ms))
    }

    #[test]
    fn a_keyframes_features_verify_only_feed_frames_aired_in_its_window() {
        let mut live = LiveLibrary::new();
        live.insert_features("feed", ORIGIN, 2 * HOURS, &aired(60_000));
        assert!(live.feature_frames() >= 29, "{}", live.feature_frames());
        // Captured ten seconds after its moment aired: verified, on the event timeline, at
        // most the per-reference cap, weighed as the only feed that verified.
        let captured = 60_000 + KEYFRAME_AT + 10_000;
        let found = hits(&live, captured);
        assert!(at_its_moment(&found, "feed", 60_000), "{found:?}");
        assert!(found.len() <= FEATURE_HITS_PER_REFERENCE, "{found:?}");
        assert!(found.iter().all(|(_, h)| h.distance <= 24 && (h.weight - 1.0).abs() < 1e-6));
        // Three minutes after it aired (beyond the two-minute delay and the slack): nothing.
        assert_eq!(hits(&live, captured + 180_000), []);
        // Before the clip aired: nothing to verify yet.
        assert_eq!(hits(&live, 50_000), []);
        // Through the tiers: both give the feature hits (the feed has no PDQ frames here), the
        // PDQ tier alone gives nothing.
        let lookup = |tiers| {
            let config = RecognitionConfig { tiers, ..RecognitionConfig::default() };
            let (window, verify) = (LiveWindow::default(), VerifyConfig::default());
            live.lookup_tiers(&clip().1, ORIGIN + captured, window, &config, &verify)
        };
        let tagged: Vec<_> =
            found.iter().map(|(id, h)| (id.clone(), *h, HitTier::Features)).collect();
        assert_eq!(lookup(Tiers::Both), tagged);
        assert_eq!(lookup(Tiers::Features), tagged);
        assert_eq!(lookup(Tiers::Pdq), []);
    }

    #[test]
    fn pictures_aired_before_the_window_neither_crowd_out_nor_outshine_the_ones_inside_it() {
        // The clip aired six times an hour earlier (a loop, replays) and once now. Only the
        // frames aired in the keyframe's window are looked at: the old airings take no
        // verification place and are no rival moment for the ratio test across time.
        let mut live = LiveLibrary::new();
        for round in 0..6 {
            live.insert_features("feed", ORIGIN, 2 * HOURS, &aired(round * 40_000));
        }
        live.insert_features("feed", ORIGIN, 2 * HOURS, &aired(HOURS));
        let verify = VerifyConfig::default();
        let captured = ORIGIN + HOURS + KEYFRAME_AT + 10_000;
        let found = live.lookup_features(&clip().1, captured, LiveWindow::default(), &verify);
        assert!(at_its_moment(&found, "feed", HOURS), "{found:?}");
        // Over the whole feed, seven airings of one picture are no one moment: none verifies.
        let feed = &live.feeds["feed"];
        assert_eq!(feed.features.query(clip().1.features.as_ref().unwrap(), &verify), []);
    }

    #[test]
    fn feature_frames_expire_with_the_feed_retention_and_leave_with_the_feed() {
        let mut live = LiveLibrary::new();
        let all = aired(0);
        live.insert_features("short", ORIGIN, 60_000, &all);
        live.insert_features("long", ORIGIN, 2 * HOURS, &all);
        let window = LiveWindow { max_delay_ms: HOURS, tolerance_ms: 0 };
        // A minute after the clip's 10th second aired: the short feed keeps what aired since.
        live.expire(ORIGIN + 70_000, window);
        let kept = all.iter().filter(|f| f.ts_ms >= ORIGIN + 10_000).count();
        assert_eq!(live.feature_frames(), kept + all.len());
        live.expire(ORIGIN + 100_000, window);
        assert_eq!(live.feature_frames(), all.len());
        let verify = VerifyConfig::default();
        let found = live.lookup_features(&clip().1, ORIGIN + 100_000, window, &verify);
        assert!(at_its_moment(&found, "long", 0), "{found:?}");
        assert!(live.remove("long"));
        assert_eq!(live.feature_frames(), 0);
        assert_eq!(live.lookup_features(&clip().1, ORIGIN + 100_000, window, &verify), []);
    }

    #[test]
    fn feature_frames_leave_once_no_lookup_can_reach_them_and_pdq_frames_stay_for_the_retention() {
        let mut live = LiveLibrary::new();
        let all = aired(0);
        let last = all.last().unwrap().ts_ms;
        let scene = h(&[7]);
        live.insert("feed", ORIGIN, 2 * HOURS, &[frame(last, scene)]);
        live.insert_features("feed", ORIGIN, 2 * HOURS, &all);
        let window = LiveWindow::default();
        let reach = window.reach_ms();
        assert!((120_000..=HOURS).contains(&reach), "{reach}");
        // A keyframe that reaches the worker late, captured two minutes after the clip aired,
        // still verifies as long as its frames are within reach.
        live.expire(last + reach, window);
        assert_eq!(live.feature_frames(), 1, "the last feature frame is just within reach");
        live.expire(last + reach + 1, window);
        assert_eq!(live.feature_frames(), 0);
        assert!(live.contains("feed"));
        // The PDQ frame stays for the feed's retention: an hour later it is still held.
        live.expire(last + HOURS, window);
        assert_eq!(live.len(), 1);
        live.expire(last + 2 * HOURS + 1, window);
        assert_eq!(live.len(), 0);
    }

    #[test]
    fn feature_frames_that_crossed_the_fanout_verify_as_the_ingested_ones_do() {
        let frames = aired(60_000);
        let mut local = LiveLibrary::new();
        local.insert_features("feed", ORIGIN, 2 * HOURS, &frames);
        let body = encode_body(&[], &frames);
        let (_, received) = decode_body(Some(CONTENT_TYPE_V2), &body).expect("a whole body");
        assert_eq!(received.len(), frames.len());
        let mut remote = LiveLibrary::new();
        remote.insert_features("feed", ORIGIN, 2 * HOURS, &received);
        let captured = 60_000 + KEYFRAME_AT + 10_000;
        let (here, there) = (hits(&local, captured), hits(&remote, captured));
        assert!(at_its_moment(&there, "feed", 60_000), "{there:?}");
        let times = |hits: &[(String, Hit)]| {
            hits.iter().map(|(_, h)| h.reference_ts_ms).collect::<Vec<_>>()
        };
        assert_eq!(times(&here), times(&there));
    }
}
