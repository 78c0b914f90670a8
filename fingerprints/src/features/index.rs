//! The reference-side feature index (LSH over binary descriptors) and the query-side verifier.
//!
//! # Layout, and why
//! Every reference feature is one 40-byte slab entry (descriptor, frame id, packed position).
//! `tables` hash tables each key it by 16 sampled descriptor bits; a bucket item is 8 bytes:
//! the slab slot and a 32-bit *check* code (32 further sampled bits), packed as described in
//! the `store` module (exactly sized buckets plus a small append log; about 76 bytes of RAM
//! per feature with four tables). A lookup scans the query's buckets sequentially and
//! estimates each candidate's distance from the check code alone (8x the check distance
//! estimates the full Hamming distance), so the slab, spread over hundreds of megabytes for
//! hours of reference, is only touched for the few candidates that pass: random slab reads,
//! not popcounts, are what costs time at this scale. A query feature also probes the buckets
//! its *unstable* key bits lead to (tests whose two samples were nearly equal, the first a
//! re-encode flips; [`VerifyConfig::max_probes`]): most of an exhaustive search's recall for
//! no extra memory.
//!
//! # Precision rules
//! - **Stop features**: a query feature whose matches span more than
//!   [`VerifyConfig::stop_groups`] references (a logo, a slate, a generic texture) does not vote.
//! - **Burstiness**: within one reference, a feature matching many frames is static (a studio
//!   backdrop, a channel logo, the wall behind a webcam) and says nothing about *which moment*
//!   this is. "Matching" a frame means within [`VerifyConfig::ambiguity`] bits of the
//!   feature's closest match, not merely within the loose [`VerifyConfig::max_distance`]. Its
//!   weight is `min(1, burst / frames matched)` (see [`VerifyConfig::burst`]), times the share
//!   of the reference's frames it does not match (zero for a feature in every frame), both in
//!   the votes and in the RANSAC inlier weight, and verification demands enough weighted
//!   inliers.
//! - **Geometry**: a similarity within scale and rotation limits, enough inliers, a minimum
//!   inlier ratio and inliers spread over the frame (grid coverage), in the query or in the
//!   reference (a portrait crop covers a third of the reference but all of the query; a
//!   pillarboxed picture the reverse). The coverage asked for shrinks for verifications far
//!   above the weight threshold: a title card on black keeps all its corners in two cells.
//! - **One moment**: a verified frame must fit clearly better than every candidate of its
//!   reference at another moment ([`VerifyConfig::min_distinct_ratio`]). A static shot, a
//!   held still or the same room filmed in another take fits several moments about alike and
//!   says nothing about which one this is. (Frames carry their time for this;
//!   [`FeatureIndex::query_between`] looks at the frames of a time window only.) What is
//!   left to chance (a look-alike fitting one moment better than the others) is the temporal
//!   matcher's to reject: such keyframes do not follow the reference's timeline.

use super::ransac::{Pair, RansacParams, Similarity, fit_similarity_ransac, refine_perspective};
use super::store::{Entry, Item, Slab, Table};
use super::{Descriptor, Keypoint, LocalFeatures};
use crate::{Error, ErrorKind};
// The maps of a lookup are keyed by the index's own frame and group ids, not by anything a
// client chooses, so a flooding-resistant hash buys nothing; SipHash was a quarter of a lookup.
use rustc_hash::{FxHashMap, FxHashSet};

const MAGIC: &[u8; 4] = b"OFFI";
/// Version 2 added each frame's time; version 3 keeps keypoint positions to a quarter pixel.
const VERSION: u8 = 3;

/// Shape of the LSH tables. Part of the snapshot: an index only loads with its own shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexConfig {
    /// Number of hash tables (1–16). Default 4: a true match at Hamming distance 32 shares
    /// a 16-bit key in at least one table with probability about 0.65, at distance 20 about 0.9.
    pub tables: u8,
    /// Key length in bits (8–20): `2^key_bits` buckets per table. Default 16, which keeps
    /// buckets to a few dozen entries for ten hours of reference.
    pub key_bits: u8,
    /// Seed of the bit sampling.
    pub seed: u64,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self { tables: 4, key_bits: 16, seed: 0x0FF5_1DE0 }
    }
}

/// Thresholds of the query side. The defaults were chosen on the development clips (real
/// transformed re-streams and the hard negative; see the module docs and the tests).
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyConfig {
    /// A candidate matches when its estimated Hamming distance is at most this (of 256).
    /// Default 64.
    pub max_distance: u32,
    /// Reference frames verified per query (and per orientation), best voted first. Default 6.
    pub candidates: usize,
    /// A frame needs at least this much (weighted) vote to be verified at all. Default 6.
    pub min_votes: f32,
    /// A query feature matching frames of more than this many references is a stop feature
    /// and does not vote. Default 8.
    pub stop_groups: usize,
    /// A feature matching up to this many frames of one reference counts fully; beyond, its
    /// weight is `burst / frames`. Default 4 (neighbouring frames of a shot at 2 frames/s).
    pub burst: f32,
    /// RANSAC inlier threshold, in working-resolution pixels of the reference. Default 6
    /// (1.25 % of 480): tolerates keystone and blur, still tight for chance alignments.
    pub ransac_threshold: f32,
    /// RANSAC iterations at most. Default 200.
    pub ransac_iterations: u32,
    /// At least this many inliers. Default 12.
    pub min_inliers: usize,
    /// At least this much summed inlier weight (after the specificity rules). Default 8.
    /// Measured with `offside eval` on the development set: with
    /// [`VerifyConfig::ambiguity`] and the ratio test across time
    /// ([`VerifyConfig::min_distinct_ratio`]) no negative and no hard negative is flagged at
    /// 5, 6 or 8, and recall does not change between them; 8 keeps a margin. (Before those
    /// two rules it took 13 to keep the same man in the same room in another take from
    /// verifying, and plain re-encodes verified at a weight of 2-5.)
    pub min_inlier_weight: f32,
    /// At least this fraction of the frame's matches must be inliers. Default 0.25.
    pub min_inlier_ratio: f32,
    /// Inliers must occupy at least this fraction of a 4x4 grid, of the query or of the
    /// reference frame. Default 0.25. A chance alignment gathers a few inliers in one part of
    /// the frame; a verification weighing more than [`VerifyConfig::dense_weight`] may cover
    /// proportionally less, down to two cells, because some true pictures keep all their
    /// corners in a small area: a title card or a caption on black, a close-up against a
    /// blurred background.
    pub min_coverage: f32,
    /// See [`VerifyConfig::min_coverage`]: the inlier weight above which the coverage asked
    /// for shrinks as `min_coverage * dense_weight / weight`, never below two cells of the
    /// 4x4 grid. Default 24 (three times [`VerifyConfig::min_inlier_weight`]). Measured on the
    /// Sintel title card ("The Blender Foundation presents" on black, 2 cells): it verifies
    /// against its own seconds at weights 40-62, while chance fits stay under 7.
    pub dense_weight: f32,
    /// Scale limits (reference size / query size). Default 0.33–3.
    pub min_scale: f32,
    /// See [`VerifyConfig::min_scale`].
    pub max_scale: f32,
    /// Largest rotation, degrees. Default 10 (re-streams rotate by a couple of degrees).
    pub max_rotation_deg: f32,
    /// How far from a similarity the verifier's perspective model may go (see
    /// [`super::RansacParams::max_perspective`]): a screen filmed up to about 15 degrees off
    /// axis shows its far side 20 % shorter than its near side, and 1.6 lets
    /// [`super::refine_perspective`] fit it. Default 1.6; 1 fits similarities only. Measured
    /// with `offside eval --max-perspective` on both sets at every library size
    /// (docs/EVALUATION.md, "Filmed screens in perspective"): filmed screens and camcorder
    /// copies are found sooner and more often, and no look-alike is flagged at any size. It
    /// shipped off until the feature index's answers stopped depending on the order its
    /// frames came in (stop 31): before that, the copy of a static webcam it lost on the
    /// development set was found only thanks to that order.
    pub max_perspective: f32,
    /// Also try the mirrored query. Default true.
    pub mirrored: bool,
    /// A bucket holding more than this many times the mean bucket size (and more than
    /// [`VerifyConfig::min_bucket_cap`]) is skipped: its key is one that generic corners share
    /// (the descriptor bits are far from independent), so it costs time and carries no
    /// identity. The other tables still find a true match. Default 8.
    pub max_bucket_ratio: f32,
    /// See [`VerifyConfig::max_bucket_ratio`]. Default 32.
    pub min_bucket_cap: usize,
    /// A query feature votes for the frames it matches within this many bits of its closest
    /// match (and within [`VerifyConfig::max_distance`]), and its specificity counts those
    /// frames only. Default 8. A corner of a static wall matches every frame of a shot about
    /// equally well and counts as static; a corner of a moving hand matches its own moment
    /// far better than the seconds around it and counts as specific, although at the loose
    /// [`VerifyConfig::max_distance`] it also "matches" them (a fixed radius made almost every
    /// feature of a real scene look static, and verified frames of plain re-encodes at a
    /// weight of 2-5). A quarter of the distance between a true pair (median about 27 bits
    /// after re-encoding) is well above descriptor noise between neighbouring frames.
    pub ambiguity: u32,
    /// Frames of one reference at least this far apart in time (ms, the times given to
    /// [`FeatureIndex::insert`]) are different moments for [`VerifyConfig::min_distinct_ratio`].
    /// Default 1500: a frame sampled a second away is the same moment seen again.
    pub distinct_ms: i64,
    /// A frame verifies only when its summed inlier weight is at least this many times that of
    /// every candidate of the same reference at another moment (a ratio test across time).
    /// Default 1.2. In a static shot (a webcam, a pianist, a studio) many moments fit a
    /// keyframe about equally well, and the same room filmed in another take fits some
    /// moment of the reference by chance; what identifies *this* moment is that it fits
    /// clearly better than the others. Candidates that fail the other thresholds still count
    /// as competitors, with the weight their fit reached.
    pub min_distinct_ratio: f32,
    /// Besides its own bucket, each query feature probes at most this many buckets per table:
    /// its key with one unstable bit flipped ([`super::FeatureConfig::unstable_margin`]). A
    /// re-encoded, blurred or filmed copy flips exactly those bits first; probing them finds
    /// true matches that a 16-bit key misses, without the memory of more tables. Default 4.
    pub max_probes: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            max_distance: 64,
            candidates: 6,
            min_votes: 6.0,
            stop_groups: 8,
            burst: 4.0,
            ransac_threshold: 6.0,
            ransac_iterations: 200,
            min_inliers: 12,
            min_inlier_weight: 8.0,
            min_inlier_ratio: 0.25,
            min_coverage: 0.25,
            dense_weight: 24.0,
            min_scale: 0.33,
            max_scale: 3.0,
            max_rotation_deg: 10.0,
            max_perspective: 1.6,
            mirrored: true,
            max_bucket_ratio: 8.0,
            min_bucket_cap: 32,
            ambiguity: 8,
            distinct_ms: 1_500,
            min_distinct_ratio: 1.2,
            max_probes: 4,
        }
    }
}

/// A reference frame that passed geometric verification against a query.
#[derive(Clone, Debug, PartialEq)]
pub struct Verified {
    /// The frame id given to [`FeatureIndex::insert`].
    pub frame: u32,
    /// The frame's group (reference number) given to [`FeatureIndex::insert`].
    pub group: u32,
    /// True when the mirrored query verified.
    pub mirrored: bool,
    /// Number of RANSAC inliers.
    pub inliers: u32,
    /// Number of putative matches with the frame.
    pub matches: u32,
    /// Summed inlier weight after stop-feature and burstiness rules.
    pub weight: f32,
    /// Fraction of the 4x4 grid occupied by inliers (the larger of query and reference).
    pub coverage: f32,
    /// Query (working-resolution, mirrored if `mirrored`) to reference coordinates.
    pub transform: Similarity,
    /// The summed inlier weight of the best-fitting other moment of the same reference
    /// ([`VerifyConfig::distinct_ms`] or more away, verified or not, either orientation); 0
    /// when no other moment fitted. `weight` is at least
    /// [`VerifyConfig::min_distinct_ratio`] times it.
    pub rival_weight: f32,
}

impl Verified {
    /// A "smaller is closer" value on PDQ's Hamming scale, so a verified frame can feed the
    /// temporal matcher as a `Hit` with the same `max_distance`: 24 at the acceptance threshold
    /// ([`VerifyConfig::min_inlier_weight`]), falling as `24 * min / weight` for stronger
    /// verifications (never above 24, so every verified frame is within PDQ's radius of 31).
    pub fn distance(&self, cfg: &VerifyConfig) -> u32 {
        let min = cfg.min_inlier_weight.max(1.0);
        let d = 24.0 * min / self.weight.max(min);
        d.round().clamp(0.0, 24.0) as u32
    }
}

/// A candidate frame whose RANSAC fit succeeded, verified or not.
struct Fitted {
    group: u32,
    time_ms: i64,
    weight: f32,
}

/// A keypoint's position to a quarter pixel (13 bits each, up to 2047.75) and its level.
/// Callers that store features keep them to a quarter pixel as well, so a frame indexed
/// from storage (after a restart, from a cache) is indexed exactly as it was when extracted.
fn pack(k: &Keypoint) -> u32 {
    let q = |v: f32| ((v * 4.0).round().clamp(0.0, 8191.0)) as u32;
    q(k.x) | (q(k.y) << 13) | (u32::from(k.level.min(15)) << 26)
}

fn unpack(p: u32) -> (f32, f32, u8) {
    ((p & 0x1FFF) as f32 / 4.0, ((p >> 13) & 0x1FFF) as f32 / 4.0, ((p >> 26) & 0xF) as u8)
}

#[derive(Clone, Debug)]
struct FrameInfo {
    group: u32,
    time_ms: i64,
    width: u16,
    height: u16,
    slots: Vec<u32>,
}

/// A query feature's vote for a reference frame: the frame's feature it matched (slab slot and
/// packed position), their distance and the vote's weight.
struct Vote {
    frame: u32,
    query: u32,
    slot: u32,
    pos: u32,
    dist: u32,
    weight: f32,
}

/// Bit positions of one table's key.
#[derive(Clone, Debug)]
struct Projection {
    bits: Vec<u8>,
}

impl Projection {
    #[inline]
    fn key(&self, d: &[u64; 4]) -> usize {
        let mut k = 0usize;
        for (i, &b) in self.bits.iter().enumerate() {
            k |= (((d[usize::from(b >> 6)] >> (b & 63)) & 1) as usize) << i;
        }
        k
    }

    #[inline]
    fn check(&self, d: &[u64; 4]) -> u32 {
        let mut k = 0u32;
        for (i, &b) in self.bits.iter().enumerate() {
            k |= (((d[usize::from(b >> 6)] >> (b & 63)) & 1) as u32) << i;
        }
        k
    }
}

/// An LSH index of reference-frame features with geometric verification of queries.
///
/// Frames are added and removed one at a time ([`FeatureIndex::insert`],
/// [`FeatureIndex::remove`]); nothing is ever rebuilt. [`FeatureIndex::to_bytes`] /
/// [`FeatureIndex::from_bytes`] snapshot it (36 bytes per feature plus 24 per frame).
#[derive(Clone, Debug)]
pub struct FeatureIndex {
    cfg: IndexConfig,
    keys: Vec<Projection>,
    check: Projection,
    entries: Slab,
    tables: Vec<Table>,
    frames: FxHashMap<u32, FrameInfo>,
    /// Frames per group, for the static-feature rule.
    group_sizes: FxHashMap<u32, u32>,
}

impl Default for FeatureIndex {
    fn default() -> Self {
        Self::new(IndexConfig::default())
    }
}

impl FeatureIndex {
    /// An empty index. Out-of-range `tables` and `key_bits` are clamped to 1–16 and 8–20.
    pub fn new(cfg: IndexConfig) -> Self {
        let cfg = IndexConfig {
            tables: cfg.tables.clamp(1, 16),
            key_bits: cfg.key_bits.clamp(8, 20),
            seed: cfg.seed,
        };
        let mut s = cfg.seed | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        // Shuffle the 256 bit positions; keys take disjoint runs of it while it lasts (4 x 16
        // bits), and the check code takes the 64 positions after them, disjoint from every key.
        let mut order: Vec<u8> = (0..=255u8).collect();
        for i in (1..order.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let kb = usize::from(cfg.key_bits);
        let check = Projection { bits: order[192..224].to_vec() };
        let keys = (0..usize::from(cfg.tables))
            .map(|t| {
                let start = (t * kb) % (192 - kb);
                Projection { bits: order[start..start + kb].to_vec() }
            })
            .collect();
        let tables = (0..cfg.tables).map(|_| Table::new(cfg.key_bits)).collect();
        Self {
            cfg,
            keys,
            check,
            entries: Slab::default(),
            tables,
            frames: FxHashMap::default(),
            group_sizes: FxHashMap::default(),
        }
    }

    /// The table shape.
    pub fn config(&self) -> &IndexConfig {
        &self.cfg
    }

    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the index holds no feature.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held (capacity-based; what the index costs in RAM).
    pub fn memory_bytes(&self) -> usize {
        let tables: usize = self.tables.iter().map(Table::memory_bytes).sum();
        let frames: usize = self
            .frames
            .values()
            .map(|f| f.slots.capacity() * 4 + std::mem::size_of::<FrameInfo>() + 8)
            .sum();
        let groups = self.group_sizes.capacity() * 9;
        self.entries.memory_bytes() + tables + frames + groups
    }

    /// Adds (or replaces) frame `frame` of reference `group`, shown at `time_ms` of that
    /// reference, with its features. Features of one frame beyond 65,535 are ignored.
    /// Keypoint positions are kept to a quarter pixel, up to 2047.75 (working resolutions are
    /// a few hundred pixels).
    pub fn insert(&mut self, frame: u32, group: u32, time_ms: i64, features: &LocalFeatures) {
        self.insert_inner(frame, group, time_ms, features, true);
    }

    fn insert_inner(
        &mut self,
        frame: u32,
        group: u32,
        time_ms: i64,
        features: &LocalFeatures,
        merge: bool,
    ) {
        self.remove(frame);
        let n = features.len().min(usize::from(u16::MAX));
        let mut slots = Vec::with_capacity(n);
        for (k, d) in features.keypoints().iter().zip(features.descriptors()).take(n) {
            let slot = self.entries.add(Entry { desc: d.0, frame, pos: pack(k) });
            let check = self.check.check(&d.0);
            for (table, proj) in self.tables.iter_mut().zip(&self.keys) {
                table.push(proj.key(&d.0), Item { slot, check }, merge);
            }
            slots.push(slot);
        }
        let width = features.width().min(u32::from(u16::MAX)) as u16;
        let height = features.height().min(u32::from(u16::MAX)) as u16;
        self.frames.insert(frame, FrameInfo { group, time_ms, width, height, slots });
        *self.group_sizes.entry(group).or_insert(0) += 1;
    }

    /// Folds every table's log of recent insertions into its base and drops removed items.
    /// Queries answer the same before and after; after, each bucket probed costs one random
    /// read fewer. Insertions merge on their own as the log grows; call this after a bulk
    /// change.
    pub fn compact(&mut self) {
        for t in &mut self.tables {
            t.merge();
        }
    }

    /// Removes a frame; false if it was not there.
    pub fn remove(&mut self, frame: u32) -> bool {
        let Some(info) = self.frames.remove(&frame) else { return false };
        if let Some(n) = self.group_sizes.get_mut(&info.group) {
            *n -= 1;
            if *n == 0 {
                self.group_sizes.remove(&info.group);
            }
        }
        for slot in info.slots {
            let desc = self.entries.get(slot).desc;
            for (table, proj) in self.tables.iter_mut().zip(&self.keys) {
                table.remove(proj.key(&desc), slot, true);
            }
            self.entries.release(slot);
        }
        true
    }

    /// The group (reference number) of a frame.
    pub fn group_of(&self, frame: u32) -> Option<u32> {
        self.frames.get(&frame).map(|f| f.group)
    }

    /// Verified reference frames for a query keyframe's features, strongest first (by summed
    /// inlier weight). With [`VerifyConfig::mirrored`], the mirrored query is tried as well.
    ///
    /// A frame that passes the geometric thresholds must also stand out from the reference's
    /// other moments ([`VerifyConfig::min_distinct_ratio`]): every candidate whose RANSAC fit
    /// succeeded, verified or not, in either orientation, competes with the frames of its
    /// reference that are [`VerifyConfig::distinct_ms`] or more away from it.
    pub fn query(&self, features: &LocalFeatures, cfg: &VerifyConfig) -> Vec<Verified> {
        self.query_between(features, cfg, i64::MIN, i64::MAX)
    }

    /// [`FeatureIndex::query`] over the frames whose time is within `from_ms..=to_ms` only:
    /// frames outside it neither take votes nor verification places nor compete in the ratio
    /// test, as if they were not in the index (a live feed's frames aired outside the window
    /// a keyframe can show).
    pub fn query_between(
        &self,
        features: &LocalFeatures,
        cfg: &VerifyConfig,
        from_ms: i64,
        to_ms: i64,
    ) -> Vec<Verified> {
        let times = (from_ms > i64::MIN || to_ms < i64::MAX).then_some(from_ms..=to_ms);
        let mut out = Vec::new();
        let mut fitted = Vec::new();
        self.query_one(features, cfg, times.as_ref(), false, &mut out, &mut fitted);
        if cfg.mirrored {
            let mirrored = features.mirrored();
            self.query_one(&mirrored, cfg, times.as_ref(), true, &mut out, &mut fitted);
        }
        out.retain_mut(|v| {
            let Some(time) = self.frames.get(&v.frame).map(|f| f.time_ms) else { return false };
            v.rival_weight = fitted
                .iter()
                .filter(|c| {
                    c.group == v.group && c.time_ms.abs_diff(time) >= cfg.distinct_ms.unsigned_abs()
                })
                .map(|c| c.weight)
                .fold(0.0, f32::max);
            v.weight >= cfg.min_distinct_ratio * v.rival_weight
        });
        // A frame verified both ways keeps its stronger orientation.
        out.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.frame.cmp(&b.frame)));
        let mut seen = FxHashSet::default();
        out.retain(|v| seen.insert(v.frame));
        out
    }

    /// Candidates of one orientation: the verified ones go to `out`, every one whose fit
    /// succeeded to `fitted` (the competitors of the ratio test across time).
    fn query_one(
        &self,
        features: &LocalFeatures,
        cfg: &VerifyConfig,
        times: Option<&std::ops::RangeInclusive<i64>>,
        mirrored: bool,
        out: &mut Vec<Verified>,
        fitted: &mut Vec<Fitted>,
    ) {
        // The check code samples an eighth of the descriptor's bits.
        let check_max = cfg.max_distance.div_ceil(8);
        // Every vote, in query order. Only the few best-voted frames' votes are read back, so
        // one flat list beats a map of lists.
        let mut voted: Vec<Vote> = Vec::new();
        let mut votes: FxHashMap<u32, f32> = FxHashMap::default();
        let mut cands: Vec<u32> = Vec::new();
        let mut buckets: Vec<(&Table, usize)> = Vec::new();
        // Per query feature: (frame, distance, position, slot) of its candidates, then each
        // one's place in `groups`.
        let mut near: Vec<(u32, u32, u32, u32)> = Vec::new();
        let mut near_groups: Vec<Option<usize>> = Vec::new();
        // Per query feature: (group, frames matched, frames in the group).
        let mut groups: Vec<(u32, u32, u32)> = Vec::new();
        for (qi, d) in features.descriptors().iter().enumerate() {
            cands.clear();
            let qc = self.check.check(&d.0);
            let unstable = features.unstable_bits().get(qi).map_or([0; 4], |u| u.0);
            // Every table's buckets to scan are found first, then scanned: the reads of bucket
            // bounds and items are independent, so the processor overlaps their cache misses.
            buckets.clear();
            for (table, proj) in self.tables.iter().zip(&self.keys) {
                let key = proj.key(&d.0);
                let cap = (table.mean_len() * cfg.max_bucket_ratio).max(cfg.min_bucket_cap as f32);
                // The query's own bucket, then the buckets its unstable key bits lead to.
                let flips = proj.key(&unstable);
                let probes = std::iter::once(key).chain(
                    (0..proj.bits.len())
                        .filter(|j| flips >> j & 1 == 1)
                        .take(cfg.max_probes)
                        .map(|j| key ^ (1 << j)),
                );
                for key in probes {
                    if table.len(key) as f32 <= cap {
                        buckets.push((table, key));
                    }
                }
            }
            for &(table, key) in &buckets {
                table.for_each(key, |it| {
                    if (it.check ^ qc).count_ones() <= check_max {
                        cands.push(it.slot);
                    }
                });
            }
            if cands.is_empty() {
                continue;
            }
            cands.sort_unstable();
            cands.dedup();
            near.clear();
            for &slot in &cands {
                let e = self.entries.get(slot);
                let dist = Descriptor(e.desc).distance(d);
                let in_time = || {
                    times.is_none_or(|t| {
                        self.frames.get(&e.frame).is_some_and(|f| t.contains(&f.time_ms))
                    })
                };
                if dist <= cfg.max_distance && in_time() {
                    near.push((e.frame, dist, e.pos, slot));
                }
            }
            if near.is_empty() {
                continue;
            }
            // Each frame's closest feature (among equals, the first by position: slots depend
            // on the order frames came in, positions do not).
            near.sort_unstable();
            near.dedup_by_key(|n| n.0);
            let closest = near.iter().map(|n| n.1).min().unwrap_or(0);
            let within = closest.saturating_add(cfg.ambiguity);
            near.retain(|n| n.1 <= within);
            near_groups.clear();
            groups.clear();
            for n in &near {
                let Some(group) = self.frames.get(&n.0).map(|f| f.group) else {
                    near_groups.push(None);
                    continue;
                };
                let place = match groups.iter().position(|g| g.0 == group) {
                    Some(place) => place,
                    None => {
                        let size = self.group_sizes.get(&group).copied().unwrap_or(1);
                        groups.push((group, 0, size));
                        groups.len() - 1
                    }
                };
                groups[place].1 += 1;
                near_groups.push(Some(place));
            }
            if groups.len() > cfg.stop_groups {
                continue;
            }
            for (&(frame, dist, pos, slot), &place) in near.iter().zip(&near_groups) {
                let Some((_, n, size)) = place.map(|p| groups[p]) else { continue };
                let weight = specificity(n as f32, size as f32, cfg.burst);
                *votes.entry(frame).or_insert(0.0) += weight;
                voted.push(Vote { frame, query: qi as u32, slot, pos, dist, weight });
            }
        }
        let mut ranked: Vec<(u32, f32)> =
            votes.into_iter().filter(|&(_, v)| v >= cfg.min_votes).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked.truncate(cfg.candidates);

        let params = RansacParams {
            threshold: cfg.ransac_threshold,
            max_iterations: cfg.ransac_iterations,
            min_scale: cfg.min_scale,
            max_scale: cfg.max_scale,
            max_rotation: cfg.max_rotation_deg.to_radians(),
            max_perspective: cfg.max_perspective,
        };
        for (frame, _) in ranked {
            let Some(info) = self.frames.get(&frame) else { continue };
            let mut matches: Vec<&Vote> = voted.iter().filter(|v| v.frame == frame).collect();
            // One match per reference feature (its closest query feature): several query
            // corners on one reference corner would otherwise count as several inliers.
            matches.sort_unstable_by_key(|m| (m.slot, m.dist, m.query));
            matches.dedup_by_key(|m| m.slot);
            if matches.len() < cfg.min_inliers {
                continue;
            }
            // RANSAC samples in the pairs' order: by query feature and reference position, not
            // by slot, so the fit does not depend on the order frames were inserted in.
            matches.sort_unstable_by_key(|m| (m.query, m.pos));
            let pairs: Vec<Pair> = matches
                .iter()
                .map(|m| {
                    let k = &features.keypoints()[m.query as usize];
                    let (rx, ry, _) = unpack(m.pos);
                    Pair { q: (k.x, k.y), r: (rx, ry), w: m.weight }
                })
                .collect();
            let Some(fit) = fit_similarity_ransac(&pairs, &params) else { continue };
            let fit = refine_perspective(&pairs, &fit, &params).unwrap_or(fit);
            fitted.push(Fitted { group: info.group, time_ms: info.time_ms, weight: fit.weight });
            let inliers = fit.inliers.len();
            if inliers < cfg.min_inliers
                || fit.weight < cfg.min_inlier_weight
                || (inliers as f32) < cfg.min_inlier_ratio * pairs.len() as f32
            {
                continue;
            }
            let coverage = coverage(
                fit.inliers.iter().map(|&i| pairs[i].q),
                features.width() as f32,
                features.height() as f32,
            )
            .max(coverage(
                fit.inliers.iter().map(|&i| pairs[i].r),
                f32::from(info.width),
                f32::from(info.height),
            ));
            if coverage < required_coverage(fit.weight, cfg) {
                continue;
            }
            out.push(Verified {
                frame,
                group: info.group,
                mirrored,
                inliers: inliers as u32,
                matches: pairs.len() as u32,
                weight: fit.weight,
                coverage,
                transform: fit.transform,
                rival_weight: 0.0,
            });
        }
    }

    /// Serialises the index: header, then per frame its id, group, size and features.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.frames.len() * 24 + self.len() * 36);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.cfg.tables);
        out.push(self.cfg.key_bits);
        out.push(0);
        out.extend_from_slice(&self.cfg.seed.to_le_bytes());
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        let mut ids: Vec<&u32> = self.frames.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let f = &self.frames[id];
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&f.group.to_le_bytes());
            out.extend_from_slice(&f.time_ms.to_le_bytes());
            out.extend_from_slice(&f.width.to_le_bytes());
            out.extend_from_slice(&f.height.to_le_bytes());
            out.extend_from_slice(&(f.slots.len() as u32).to_le_bytes());
            for &s in &f.slots {
                let e = self.entries.get(s);
                out.extend_from_slice(&e.pos.to_le_bytes());
                for w in e.desc {
                    out.extend_from_slice(&w.to_le_bytes());
                }
            }
        }
        out
    }

    /// Restores an index from [`FeatureIndex::to_bytes`] output.
    ///
    /// # Errors
    /// [`ErrorKind::Corrupt`] when the bytes are not a snapshot of this format and version:
    /// wrong magic, out-of-range shape, truncated or trailing data, duplicate frames.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let corrupt =
            |m: &str| Error::new(ErrorKind::Corrupt, format!("feature index snapshot: {m}"));
        let mut r = Reader { b: bytes };
        if r.take(4).ok_or_else(|| corrupt("truncated header"))? != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let head = r.take(4).ok_or_else(|| corrupt("truncated header"))?;
        if head[0] != VERSION {
            return Err(corrupt("unknown version"));
        }
        let (tables, key_bits) = (head[1], head[2]);
        if !(1..=16).contains(&tables) || !(8..=20).contains(&key_bits) {
            return Err(corrupt("table shape out of range"));
        }
        let seed = r.u64().ok_or_else(|| corrupt("truncated header"))?;
        let n_frames = r.u32().ok_or_else(|| corrupt("truncated header"))?;
        let mut index = FeatureIndex::new(IndexConfig { tables, key_bits, seed });
        for _ in 0..n_frames {
            let id = r.u32().ok_or_else(|| corrupt("truncated frame"))?;
            let group = r.u32().ok_or_else(|| corrupt("truncated frame"))?;
            let time_ms = r.i64().ok_or_else(|| corrupt("truncated frame"))?;
            let width = r.u16().ok_or_else(|| corrupt("truncated frame"))?;
            let height = r.u16().ok_or_else(|| corrupt("truncated frame"))?;
            let n = r.u32().ok_or_else(|| corrupt("truncated frame"))? as usize;
            if n > usize::from(u16::MAX) || n.checked_mul(36).is_none_or(|len| len > r.b.len()) {
                return Err(corrupt("feature count exceeds the data"));
            }
            // A zero width or height is not refused: `insert` takes a frame without features
            // (`LocalFeatures::default()` is 0x0) and `to_bytes` writes it so.
            if index.frames.contains_key(&id) {
                return Err(corrupt("duplicate frame"));
            }
            let mut kps = Vec::with_capacity(n);
            let mut descs = Vec::with_capacity(n);
            for _ in 0..n {
                let pos = r.u32().ok_or_else(|| corrupt("truncated feature"))?;
                if pos >> 30 != 0 {
                    return Err(corrupt("bad keypoint position"));
                }
                let mut d = [0u64; 4];
                for w in &mut d {
                    *w = r.u64().ok_or_else(|| corrupt("truncated feature"))?;
                }
                let (x, y, level) = unpack(pos);
                kps.push(Keypoint { x, y, level, response: 0 });
                descs.push(Descriptor(d));
            }
            index.insert_inner(
                id,
                group,
                time_ms,
                &LocalFeatures::from_parts(u32::from(width), u32::from(height), kps, descs),
                false,
            );
        }
        if !r.b.is_empty() {
            return Err(corrupt("trailing bytes"));
        }
        // Bulk loaded into the logs: one merge per table.
        index.compact();
        Ok(index)
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        self.u64().map(|v| v as i64)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8).map(|s| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]))
    }
}

/// Weight of a feature that matched `n` of the `size` frames of one reference: full up to
/// `burst` frames (neighbours of one shot), then `burst / n`, and in any case scaled by the
/// share of the reference's frames it does *not* match, so a feature present in every frame (a
/// backdrop, a logo, a static wall) weighs nothing even in a short reference.
fn specificity(n: f32, size: f32, burst: f32) -> f32 {
    let bursty = (burst / n.max(1.0)).min(1.0);
    let static_share = if size >= 3.0 { ((n - 1.0) / (size - 1.0)).clamp(0.0, 1.0) } else { 0.0 };
    bursty * (1.0 - static_share)
}

/// The grid coverage a verification of `weight` must reach ([`VerifyConfig::min_coverage`]).
fn required_coverage(weight: f32, cfg: &VerifyConfig) -> f32 {
    const TWO_CELLS: f32 = 2.0 / 16.0;
    let dense = if weight > cfg.dense_weight && cfg.dense_weight > 0.0 {
        cfg.min_coverage * cfg.dense_weight / weight
    } else {
        cfg.min_coverage
    };
    dense.max(TWO_CELLS.min(cfg.min_coverage))
}

/// Fraction of a 4x4 grid over a `w x h` frame that contains at least one of `pts`.
fn coverage(pts: impl Iterator<Item = (f32, f32)>, w: f32, h: f32) -> f32 {
    let mut cells = 0u16;
    for (x, y) in pts {
        let cx = ((x / w.max(1.0)) * 4.0).clamp(0.0, 3.0) as u16;
        let cy = ((y / h.max(1.0)) * 4.0).clamp(0.0, 3.0) as u16;
        cells |= 1 << (cy * 4 + cx);
    }
    f32::from(cells.count_ones() as u16) / 16.0
}
