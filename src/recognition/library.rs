//! [`Library`]: every source of reference frames in one place, looked up one way.
//!
//! A file reference's frames sit in one Hamming index (the PDQ tier) and its sampled frames'
//! local features in one feature index (the geometric tier). A live feed is a time-windowed
//! source of the same library: its recent frames, kept for the feed's retention in an index of
//! its own, are searched only over what it aired in the window a keyframe's capture time allows
//! ([`LiveQuery`]). Every source's matches become ordinary [`Hit`]s of the real reference
//! (its interned number), weighed by one rule and merged tier with tier by one rule, so one
//! temporal matcher and one decision rule cover files and live feeds alike.
//!
//! Live feeds: a keyframe captured at `t` can only show what a feed aired shortly before, so a
//! lookup searches each feed's frames aired in `[t - max_delay - tolerance, t + tolerance]`:
//! re-streams trailing the feed by 0 to `max_delay` match, while the same picture aired an hour
//! ago (a replay, a slate) does not. A live hit's `reference_ts_ms` is the frame's air time
//! minus the feed's origin (time zero of the event), the timeline the archived reference gets;
//! a re-stream trailing the feed by a delay `d` therefore produces hits at a constant offset,
//! which is exactly what the temporal matcher accumulates. Feature frames of a feed, a few KB
//! each, are kept only as long as a lookup can reach them ([`LiveWindow::reach_ms`]); PDQ
//! frames for the feed's retention.

use std::collections::{BTreeSet, HashMap};

use fingerprints::features::{FeatureIndex, Verified, VerifyConfig};
use fingerprints::{CropVariant, HammingIndex, Hit, LiveIndex, broadness_weight};

use super::weights::{
    AMBIGUITY_BITS, count_u32, detail_weight, feature_hits, merge_tiers, weigh_weak_pdq_moments,
};
use super::{
    FeatureFrame, HitTier, KeyframeHashes, KeyframeHit, RecognitionConfig, ReferenceFrame, Tiers,
};

/// What the index id of a frame stands for.
#[derive(Debug, Clone, Copy)]
struct FrameMeta {
    reference: u64,
    ts_ms: i64,
    quality: u8,
    variant: CropVariant,
}

/// What the id of a feature frame stands for.
#[derive(Debug, Clone, Copy)]
struct FeatureMeta {
    reference: u64,
    ts_ms: i64,
}

/// The indexed frames of a file reference.
#[derive(Debug, Clone)]
struct FileEntry {
    frame_ids: Vec<u32>,
    feature_ids: Vec<u32>,
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

/// The live part of a lookup: the keyframe's capture time (Unix ms) and the window of air
/// times around it that live feeds are searched in. A lookup without one searches file
/// references only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveQuery {
    /// When the keyframe was captured (Unix ms).
    pub at_ms: i64,
    /// The window of air times searched.
    pub window: LiveWindow,
}

impl LiveQuery {
    /// A keyframe captured at `at_ms`, searched with the default window.
    pub fn at(at_ms: i64) -> Self {
        Self { at_ms, window: LiveWindow::default() }
    }
}

/// A live feed's recent frames: PDQ frames in a time-windowed index (its retention), feature
/// frames with their air times.
struct LiveSource {
    origin_ms: i64,
    index: LiveIndex,
    /// The geometric tier: one frame per sampled second, all in one group.
    features: FeatureIndex,
    /// Air time of each feature frame, by its id in [`LiveSource::features`].
    feature_times: HashMap<u32, i64>,
    /// The same, ordered by air time, for expiry and the window.
    feature_order: BTreeSet<(i64, u32)>,
    next_feature_id: u32,
}

impl std::fmt::Debug for LiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSource")
            .field("origin_ms", &self.origin_ms)
            .field("frames", &self.index.len())
            .field("feature_frames", &self.feature_times.len())
            .finish()
    }
}

impl LiveSource {
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

/// The id a live frame is stored under in its feed's [`LiveIndex`]: quality and crop variant
/// are all a hit needs besides the time, so they are the id (`quality << 8 | variant`).
fn live_frame_id(quality: u8, variant: CropVariant) -> u32 {
    (u32::from(quality) << 8) | u32::from(variant.to_u8())
}

fn live_id_quality(id: u32) -> u8 {
    u8::try_from(id >> 8).unwrap_or(u8::MAX)
}

/// A keyframe's hits, tier by tier, on interned reference numbers ([`Library::reference_id`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierHits {
    /// Hits of the PDQ tier (Hamming indexes).
    pub pdq: Vec<Hit>,
    /// Hits of the geometric tier (verified feature frames).
    pub features: Vec<Hit>,
}

impl TierHits {
    /// The hits of `tiers`: both tiers' hits together, closest first; where both tiers hit the
    /// same reference frame time, the closer hit stands for both.
    pub fn select(&self, tiers: Tiers) -> Vec<Hit> {
        self.select_tiered(tiers).into_iter().map(|(h, _)| h).collect()
    }

    /// [`TierHits::select`] with the tier that produced each hit.
    pub fn select_tiered(&self, tiers: Tiers) -> Vec<(Hit, HitTier)> {
        let tagged = |hits: &[Hit], tier| hits.iter().map(|h| (*h, tier)).collect();
        match tiers {
            Tiers::Pdq => tagged(&self.pdq, HitTier::Pdq),
            Tiers::Features => tagged(&self.features, HitTier::Features),
            Tiers::Both => merge_tiers(&self.pdq, &self.features),
        }
    }
}

/// Sizes of a [`Library`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibraryStats {
    /// File references held.
    pub references: usize,
    /// Frames indexed (all variants) of file references.
    pub frames: usize,
    /// Heap bytes of the Hamming index.
    pub index_bytes: usize,
    /// Feature frames indexed (the geometric tier) of file references.
    pub feature_frames: usize,
    /// Heap bytes of the feature index.
    pub feature_bytes: usize,
}

/// The in-memory index of all references: file references and live feeds.
///
/// References are keyed by the service's id strings; the matcher works with numbers, so each
/// id is interned to a `u64` ([`Hit::reference`]) that stays stable while the reference is
/// held (as a file reference, a live feed or both: an archived feed is both while it airs).
/// Not internally synchronised: share it as a [`SharedLibrary`] (lookups take `&self`).
#[derive(Debug, Default)]
pub struct Library {
    index: HammingIndex,
    frames: Vec<Option<FrameMeta>>,
    free_ids: Vec<u32>,
    features: FeatureIndex,
    feature_frames: Vec<Option<FeatureMeta>>,
    free_feature_ids: Vec<u32>,
    verify: VerifyConfig,
    files: HashMap<u64, FileEntry>,
    live: HashMap<u64, LiveSource>,
    numbers: HashMap<String, u64>,
    names: HashMap<u64, String>,
    next_number: u64,
}

/// The library every part of a process shares: reference jobs, the index sync and the live
/// ingest write it, workers read it. Lookups take the read lock; writers hold the write lock
/// only while inserting.
pub type SharedLibrary = std::sync::Arc<std::sync::RwLock<Library>>;

impl Library {
    /// An empty library.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty library whose geometric tier verifies with `verify`.
    pub fn with_verify_config(verify: VerifyConfig) -> Self {
        Self { verify, ..Self::default() }
    }

    /// The number of reference `id`, interned on first sight.
    fn intern(&mut self, id: &str) -> u64 {
        if let Some(&n) = self.numbers.get(id) {
            return n;
        }
        self.next_number += 1;
        let n = self.next_number;
        self.numbers.insert(id.to_owned(), n);
        self.names.insert(n, id.to_owned());
        n
    }

    /// Forgets the number of a reference held neither as a file nor as a live feed.
    fn release(&mut self, number: u64) {
        if !self.files.contains_key(&number)
            && !self.live.contains_key(&number)
            && let Some(id) = self.names.remove(&number)
        {
            self.numbers.remove(&id);
        }
    }

    /// Adds (or replaces) the PDQ frames and feature frames of file reference `id`.
    ///
    /// # Errors
    /// When an index would exceed `u32::MAX` frames.
    pub fn insert_reference(
        &mut self,
        id: &str,
        frames: &[ReferenceFrame],
        features: &[FeatureFrame],
    ) -> anyhow::Result<()> {
        self.remove_file(id);
        let number = self.intern(id);
        // The feature index groups frames by a u32; numbers only repeat after 2^32 references,
        // by which time the earlier holder of the number is long gone.
        #[allow(clippy::cast_possible_truncation)]
        let group = number as u32;
        let mut entry = FileEntry {
            frame_ids: Vec::with_capacity(frames.len()),
            feature_ids: Vec::with_capacity(features.len()),
        };
        for f in features {
            let fid = next_id(&mut self.free_feature_ids, &mut self.feature_frames)?;
            self.feature_frames[fid as usize] =
                Some(FeatureMeta { reference: number, ts_ms: f.ts_ms });
            self.features.insert(fid, group, f.ts_ms, &f.features);
            entry.feature_ids.push(fid);
        }
        for f in frames {
            let fid = next_id(&mut self.free_ids, &mut self.frames)?;
            self.frames[fid as usize] = Some(FrameMeta {
                reference: number,
                ts_ms: f.ts_ms,
                quality: f.quality,
                variant: f.variant,
            });
            self.index.insert(fid, f.hash);
            entry.frame_ids.push(fid);
        }
        self.files.insert(number, entry);
        Ok(())
    }

    /// Removes the file frames of reference `id`, keeping its number when a live feed still
    /// holds it; returns whether they were held.
    fn remove_file(&mut self, id: &str) -> bool {
        let Some(&number) = self.numbers.get(id) else { return false };
        let Some(entry) = self.files.remove(&number) else { return false };
        for fid in entry.frame_ids {
            self.index.remove(fid);
            self.frames[fid as usize] = None;
            self.free_ids.push(fid);
        }
        for fid in entry.feature_ids {
            self.features.remove(fid);
            self.feature_frames[fid as usize] = None;
            self.free_feature_ids.push(fid);
        }
        true
    }

    /// Removes file reference `id` (its live feed, if any, stays); returns whether it was held.
    pub fn remove_reference(&mut self, id: &str) -> bool {
        let removed = self.remove_file(id);
        if let Some(&number) = self.numbers.get(id) {
            self.release(number);
        }
        removed
    }

    /// Compacts both file indexes after a bulk change (many references added or removed):
    /// the same answers, from their compact form. Insertions compact on their own as they
    /// accumulate.
    pub fn compact(&mut self) {
        self.index.compact();
        self.features.compact();
    }

    /// Whether file reference `id` is held.
    pub fn contains(&self, id: &str) -> bool {
        self.numbers.get(id).is_some_and(|n| self.files.contains_key(n))
    }

    /// The id string of an interned reference number ([`Hit::reference`]).
    pub fn reference_id(&self, number: u64) -> Option<&str> {
        self.names.get(&number).map(String::as_str)
    }

    /// The interned number of reference `id`.
    pub fn reference_number(&self, id: &str) -> Option<u64> {
        self.numbers.get(id).copied()
    }

    /// Sizes of the file references, for logs and metrics.
    pub fn stats(&self) -> LibraryStats {
        LibraryStats {
            references: self.files.len(),
            frames: self.index.len(),
            index_bytes: self.index.memory_bytes(),
            feature_frames: self.features.frames(),
            feature_bytes: self.features.memory_bytes(),
        }
    }

    /// Adds frames and feature frames of live feed `id`, each at its air time (Unix ms),
    /// registering the feed (with its origin and retention) on first sight. Frames may come
    /// from any process: the feed's settings travel with them.
    pub fn insert_live(
        &mut self,
        id: &str,
        origin_ms: i64,
        retention_ms: i64,
        frames: &[ReferenceFrame],
        features: &[FeatureFrame],
    ) {
        let number = self.intern(id);
        let feed =
            self.live.entry(number).or_insert_with(|| LiveSource::new(origin_ms, retention_ms));
        feed.origin_ms = origin_ms;
        for f in frames {
            feed.index.insert(live_frame_id(f.quality, f.variant), f.hash, f.ts_ms);
        }
        for f in features {
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

    /// Forgets live feed `id` (deleted or ended); returns whether it was known. Its file
    /// frames, if any, stay.
    pub fn remove_live(&mut self, id: &str) -> bool {
        let Some(&number) = self.numbers.get(id) else { return false };
        let removed = self.live.remove(&number).is_some();
        self.release(number);
        removed
    }

    /// Whether live feed `id` is known.
    pub fn contains_live(&self, id: &str) -> bool {
        self.numbers.get(id).is_some_and(|n| self.live.contains_key(n))
    }

    /// The ids of the live feeds known.
    pub fn live_ids(&self) -> Vec<String> {
        self.live.keys().filter_map(|n| self.names.get(n).cloned()).collect()
    }

    /// PDQ frames held over all live feeds.
    pub fn live_frames(&self) -> usize {
        self.live.values().map(|f| f.index.len()).sum()
    }

    /// Feature frames (the geometric tier) held over all live feeds.
    pub fn live_feature_frames(&self) -> usize {
        self.live.values().map(|f| f.feature_times.len()).sum()
    }

    /// Drops live frames older than each feed's retention at `now_ms`, and live feature frames
    /// that no lookup with `window` can reach any more ([`LiveWindow::reach_ms`]). PDQ frames
    /// cost 64 bytes each and stay for the retention; a feature frame costs a few KB (a 2-hour
    /// feed held about 54 MB of them in every process) and is only ever verified inside the
    /// window.
    pub fn expire_live(&mut self, now_ms: i64, window: LiveWindow) {
        for feed in self.live.values_mut() {
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

    /// The hits of the tiers `config` asks for (the other tier's list stays empty, and is not
    /// computed): [`Library::lookup_pdq`] and [`Library::lookup_features`], with live feeds
    /// searched when `live` is given. The PDQ tier looks up the keyframe's views of usable
    /// quality (none for a flat or black frame); the geometric tier its features, whatever its
    /// PDQ quality (a dark shot can hold plenty of corners).
    pub fn lookup(
        &self,
        keyframe: &KeyframeHashes,
        config: &RecognitionConfig,
        live: Option<LiveQuery>,
    ) -> TierHits {
        TierHits {
            pdq: if config.tiers.pdq() {
                self.lookup_pdq(keyframe, config.radius, config.max_hits_per_keyframe, live)
            } else {
                Vec::new()
            },
            features: if config.tiers.features() {
                self.lookup_features(keyframe, live)
            } else {
                Vec::new()
            },
        }
    }

    /// The hits of `tiers` in `hits` (both merged, or one tier's) by reference id: what a
    /// [`super::StreamRecognizer`] observes.
    pub fn keyframe_hits(&self, hits: &TierHits, tiers: Tiers) -> Vec<KeyframeHit> {
        hits.select_tiered(tiers)
            .into_iter()
            .filter_map(|(h, tier)| {
                Some(KeyframeHit {
                    reference_id: self.reference_id(h.reference)?.to_owned(),
                    reference_ts_ms: h.reference_ts_ms,
                    distance: h.distance,
                    weight: h.weight,
                    tier: Some(tier),
                })
            })
            .collect()
    }

    /// The configured tiers' hits of a keyframe by reference id ([`Library::lookup`] and
    /// [`Library::keyframe_hits`]): what the worker looks up and stores.
    pub fn hits(
        &self,
        keyframe: &KeyframeHashes,
        config: &RecognitionConfig,
        live: Option<LiveQuery>,
    ) -> Vec<KeyframeHit> {
        self.keyframe_hits(&self.lookup(keyframe, config, live), config.tiers)
    }

    /// The geometric tier: the keyframe's local features (and their mirror) against every
    /// file reference's feature frames and, with `live`, every feed's feature frames aired in
    /// the window, verified by a RANSAC similarity fit. Each reference contributes its
    /// [`FEATURE_HITS_PER_REFERENCE`](super::FEATURE_HITS_PER_REFERENCE) strongest verified
    /// frames, at [`Verified::distance`] (at most 24, within PDQ's radius, so the matcher's
    /// distance threshold treats a verified frame as a good match). A keyframe verifying frames
    /// of several references cannot tell them apart: each weighs 1/N, as on the PDQ tier. A
    /// keyframe without features (known only by its hash) has no hits here.
    pub fn lookup_features(&self, keyframe: &KeyframeHashes, live: Option<LiveQuery>) -> Vec<Hit> {
        let Some(features) = keyframe.features.as_ref().filter(|f| !f.is_empty()) else {
            return Vec::new();
        };
        let mut verified: Vec<(u64, i64, Verified)> = Vec::new();
        if !self.features.is_empty() {
            verified.extend(self.features.query(features, &self.verify).into_iter().filter_map(
                |v| {
                    let meta = self.feature_frames.get(v.frame as usize).copied()??;
                    Some((meta.reference, meta.ts_ms, v))
                },
            ));
        }
        if let Some(live) = live {
            let (from, to) = live.window.bounds(live.at_ms);
            for (&number, feed) in &self.live {
                if !feed.has_feature_frames_between(from, to) {
                    continue;
                }
                for v in feed.features.query_between(features, &self.verify, from, to) {
                    let Some(&aired) = feed.feature_times.get(&v.frame) else { continue };
                    verified.push((number, aired - feed.origin_ms, v));
                }
            }
        }
        feature_hits(verified, &self.verify)
    }

    /// The PDQ tier: looks up every hash of a keyframe within `radius` bits in the file
    /// references and, with `live`, in what every feed aired in the window, and returns one
    /// [`Hit`] per matched (reference, reference time), at its smallest distance over query
    /// views and crop variants, closest first, at most `max_hits`.
    ///
    /// Weights down-rate frames that match too broadly, from what this very lookup found: a
    /// keyframe matching frames of several references cannot tell them apart (each gets 1/N),
    /// and one matching hundreds of frames about equally well (black, a slate, a logo, a static
    /// shot aired for many seconds) says little about any of them ([`broadness_weight`] over
    /// the hits within a few bits of the closest). Reference frames of low detail (PDQ quality
    /// near the 50 floor, whose hash bits are partly noise) weigh up to half less.
    pub fn lookup_pdq(
        &self,
        keyframe: &KeyframeHashes,
        radius: u32,
        max_hits: usize,
        live: Option<LiveQuery>,
    ) -> Vec<Hit> {
        let mut best: HashMap<(u64, i64), (u32, u8)> = HashMap::new();
        let mut found = |key: (u64, i64), distance: u32, quality: u8| {
            let slot = best.entry(key).or_insert((u32::MAX, 0));
            if distance < slot.0 {
                *slot = (distance, quality);
            }
        };
        for q in &keyframe.hashes {
            for m in self.index.search(&q.hash, radius) {
                let Some(Some(meta)) = self.frames.get(m.id as usize) else { continue };
                found((meta.reference, meta.ts_ms), m.distance, meta.quality);
            }
        }
        if let Some(live) = live {
            let (from, to) = live.window.bounds(live.at_ms);
            for (&number, feed) in &self.live {
                for q in &keyframe.hashes {
                    for m in feed.index.search(&q.hash, radius, from, to) {
                        let key = (number, m.time_ms - feed.origin_ms);
                        found(key, m.distance, live_id_quality(m.id));
                    }
                }
            }
        }
        if best.is_empty() {
            return Vec::new();
        }
        let mut references: Vec<u64> = best.keys().map(|(r, _)| *r).collect();
        references.sort_unstable();
        references.dedup();
        // Frames about as close as the best one are the ones this keyframe cannot tell apart.
        // Frames much farther are the rest of a shot or scene, which the matcher's offset
        // voting sorts out; counting them would punish every static shot of a reference.
        let closest = best.values().map(|(d, _)| *d).min().unwrap_or(0);
        let ambiguous = best.values().filter(|(d, _)| *d <= closest + AMBIGUITY_BITS).count();
        let broad = broadness_weight(count_u32(references.len()), count_u32(ambiguous));
        let mut hits: Vec<Hit> = best
            .into_iter()
            .map(|((reference, reference_ts_ms), (distance, quality))| Hit {
                reference,
                reference_ts_ms,
                distance,
                weight: broad * detail_weight(quality),
            })
            .collect();
        weigh_weak_pdq_moments(&mut hits, self.verify.distinct_ms);
        hits.sort_unstable_by_key(|h| (h.distance, h.reference, h.reference_ts_ms));
        hits.truncate(max_hits);
        hits
    }

    /// The crop variant and time of an indexed frame of file reference `id`, for diagnostics.
    pub fn frames_of(&self, id: &str) -> Vec<(i64, CropVariant)> {
        self.numbers.get(id).and_then(|n| self.files.get(n)).map_or_else(Vec::new, |e| {
            e.frame_ids
                .iter()
                .filter_map(|fid| self.frames[*fid as usize].map(|m| (m.ts_ms, m.variant)))
                .collect()
        })
    }
}

/// Takes a free id or appends a slot.
fn next_id<T>(free: &mut Vec<u32>, slots: &mut Vec<Option<T>>) -> anyhow::Result<u32> {
    if let Some(id) = free.pop() {
        return Ok(id);
    }
    let id = u32::try_from(slots.len())
        .map_err(|_| anyhow::anyhow!("the library is full (2^32 frames)"))?;
    slots.push(None);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recognition::{QueryHash, QueryView};
    use fingerprints::Hash256;

    fn h(bits: &[usize]) -> Hash256 {
        let mut x = Hash256::default();
        for &b in bits {
            x.set_bit(b);
        }
        x
    }

    fn rf(ts_ms: i64, hash: Hash256) -> ReferenceFrame {
        ReferenceFrame { ts_ms, hash, quality: 100, variant: CropVariant::Full }
    }

    /// Both tiers' hits of a file lookup with `radius`.
    fn lookup(lib: &Library, keyframe: &KeyframeHashes, radius: u32) -> Vec<Hit> {
        let config = RecognitionConfig { radius, max_hits_per_keyframe: 100, ..Default::default() };
        lib.lookup(keyframe, &config, None).select(Tiers::Both)
    }

    fn query(hash: Hash256) -> KeyframeHashes {
        KeyframeHashes {
            hashes: vec![QueryHash { hash, view: QueryView::Full, quality: 100 }],
            features: None,
            band: None,
        }
    }

    #[test]
    fn a_specific_frame_hits_its_reference_at_full_weight() {
        let mut lib = Library::new();
        lib.insert_reference(
            "a",
            &[rf(0, h(&[1, 2, 3])), rf(40, h(&(100..200).collect::<Vec<_>>()))],
            &[],
        )
        .unwrap();
        let hits = lookup(&lib, &query(h(&[1, 2])), 10);
        assert_eq!(hits.len(), 1);
        assert_eq!(lib.reference_id(hits[0].reference), Some("a"));
        assert_eq!((hits[0].reference_ts_ms, hits[0].distance, hits[0].weight), (0, 1, 1.0));
    }

    #[test]
    fn a_frame_shared_by_two_references_weighs_half() {
        let mut lib = Library::new();
        lib.insert_reference("a", &[rf(0, h(&[1]))], &[]).unwrap();
        lib.insert_reference("b", &[rf(5000, h(&[2]))], &[]).unwrap();
        let hits = lookup(&lib, &query(h(&[])), 4);
        assert_eq!(hits.len(), 2);
        assert!(hits.iter().all(|x| x.weight == 0.5));
    }

    #[test]
    fn removing_a_reference_removes_its_hits_and_frees_its_frames() {
        let mut lib = Library::new();
        lib.insert_reference("a", &[rf(0, h(&[1]))], &[]).unwrap();
        lib.insert_reference("b", &[rf(0, h(&[2]))], &[]).unwrap();
        assert!(lib.remove_reference("a"));
        assert!(!lib.remove_reference("a"));
        let hits = lookup(&lib, &query(h(&[])), 4);
        assert_eq!(hits.len(), 1);
        assert_eq!(lib.reference_id(hits[0].reference), Some("b"));
        lib.insert_reference("c", &[rf(0, h(&[3]))], &[]).unwrap();
        assert_eq!(lib.stats().frames, 2);
        assert_eq!(lib.stats().references, 2);
    }

    #[test]
    fn reinserting_a_reference_replaces_its_frames() {
        let mut lib = Library::new();
        lib.insert_reference("a", &[rf(0, h(&[1])), rf(40, h(&[2]))], &[]).unwrap();
        lib.insert_reference("a", &[rf(80, h(&[200]))], &[]).unwrap();
        assert_eq!(lib.stats().frames, 1);
        assert!(lookup(&lib, &query(h(&[1])), 1).is_empty());
    }

    #[test]
    fn a_keyframe_matches_what_the_feed_aired_up_to_two_minutes_before_its_capture() {
        let mut live = Library::new();
        let origin = 1_000_000;
        let scene = h(&[1, 2, 3]);
        live.insert_live("feed", origin, 7_200_000, &[rf(origin + 30_000, scene)], &[]);
        let at = |at_ms| Some(LiveQuery::at(at_ms));
        // Ten seconds later: a hit, on the event timeline.
        let hits = live.lookup_pdq(&query(scene), 8, 100, at(origin + 40_000));
        assert_eq!(hits.len(), 1);
        assert_eq!(live.reference_id(hits[0].reference), Some("feed"));
        assert_eq!(hits[0].reference_ts_ms, 30_000);
        // Two minutes plus the slack later: still; three minutes later: no longer.
        assert_eq!(live.lookup_pdq(&query(scene), 8, 100, at(origin + 151_000)).len(), 1);
        assert!(live.lookup_pdq(&query(scene), 8, 100, at(origin + 210_000)).is_empty());
        // Before it aired (beyond the clock slack): nothing to match yet.
        assert!(live.lookup_pdq(&query(scene), 8, 100, at(origin + 20_000)).is_empty());
        // A lookup without a capture time searches file references only.
        assert!(live.lookup_pdq(&query(scene), 8, 100, None).is_empty());
    }

    #[test]
    fn frames_expire_after_the_feed_retention_and_deleted_feeds_stop_matching() {
        let mut live = Library::new();
        let scene = h(&[7]);
        live.insert_live("short", 0, 60_000, &[rf(10_000, scene)], &[]);
        live.insert_live("long", 0, 3_600_000, &[rf(10_000, scene)], &[]);
        let window = LiveWindow { max_delay_ms: 1_000_000, tolerance_ms: 0 };
        live.expire_live(100_000, window);
        let q = Some(LiveQuery { at_ms: 100_000, window });
        let hits = live.lookup_pdq(&query(scene), 0, 100, q);
        let ids: Vec<_> = hits.iter().filter_map(|h| live.reference_id(h.reference)).collect();
        assert_eq!(ids, vec!["long"]);
        assert!(live.remove_live("long"));
        assert!(live.lookup_pdq(&query(scene), 0, 100, q).is_empty());
    }

    #[test]
    fn a_static_shot_aired_for_many_seconds_weighs_less_than_a_unique_frame() {
        let mut live = Library::new();
        let still = h(&[5, 6]);
        let frames: Vec<ReferenceFrame> = (0..200).map(|i| rf(i * 100, still)).collect();
        live.insert_live("feed", 0, 3_600_000, &frames, &[]);
        let other = h(&(100..140).collect::<Vec<_>>());
        live.insert_live("other", 0, 3_600_000, &[rf(1_000, other)], &[]);
        let at = Some(LiveQuery::at(22_000));
        let hits = live.lookup_pdq(&query(still), 4, 1000, at);
        assert_eq!(hits.len(), 200);
        assert!(hits.iter().all(|hit| hit.weight < 0.5), "{hits:?}");
        let unique = live.lookup_pdq(&query(other), 4, 100, at);
        assert_eq!(unique.len(), 1);
        assert!((unique[0].weight - 1.0).abs() < 1e-6);
    }

    #[test]
    fn a_live_feed_and_a_file_reference_are_one_library_weighed_by_one_rule() {
        let mut lib = Library::new();
        let scene = h(&[1, 2, 3]);
        lib.insert_reference("file", &[rf(5_000, scene)], &[]).unwrap();
        lib.insert_live("feed", 1_000_000, 3_600_000, &[rf(1_010_000, scene)], &[]);
        // Without a capture time, the file alone, at full weight.
        let hits = lib.lookup_pdq(&query(scene), 4, 100, None);
        assert_eq!(hits.len(), 1);
        assert!((hits[0].weight - 1.0).abs() < 1e-6);
        // With one, both: the keyframe cannot tell them apart, each weighs half.
        let hits = lib.lookup_pdq(&query(scene), 4, 100, Some(LiveQuery::at(1_020_000)));
        let mut found: Vec<_> = hits
            .iter()
            .map(|h| (lib.reference_id(h.reference).unwrap(), h.reference_ts_ms, h.weight))
            .collect();
        found.sort_by(|a, b| a.0.cmp(b.0));
        assert_eq!(found, [("feed", 10_000, 0.5), ("file", 5_000, 0.5)]);
        // Removing the file keeps the feed and its number.
        let number = lib.reference_number("feed");
        assert!(lib.remove_reference("file"));
        assert!(lib.contains_live("feed") && !lib.contains("file"));
        assert_eq!(lib.reference_number("feed"), number);
        assert_eq!(lib.reference_number("file"), None);
    }
}
