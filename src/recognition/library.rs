//! [`Library`]: every reference frame in one Hamming index (the PDQ tier) and every sampled
//! reference frame's local features in one feature index (the geometric tier), with the
//! metadata a hit needs. Both tiers turn a keyframe into ordinary [`Hit`]s, so one temporal
//! matcher and one decision rule cover both.

use std::collections::HashMap;

use fingerprints::features::{FeatureIndex, Verified, VerifyConfig};
use fingerprints::{CropVariant, HammingIndex, Hit, broadness_weight};

use super::weights::{AMBIGUITY_BITS, count_u32, detail_weight, feature_hits, merge_tiers};
use super::{FeatureFrame, HitTier, KeyframeHashes, ReferenceFrame, Tiers};

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

#[derive(Debug, Clone)]
struct ReferenceEntry {
    number: u64,
    frame_ids: Vec<u32>,
    feature_ids: Vec<u32>,
}

/// A keyframe's hits, tier by tier.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TierHits {
    /// Hits of the PDQ tier (Hamming index).
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
            Tiers::Both => {
                let keyed = |hits: &[Hit]| hits.iter().map(|h| (h.reference, *h)).collect();
                merge_tiers(keyed(&self.pdq), keyed(&self.features))
                    .into_iter()
                    .map(|(_, h, tier)| (h, tier))
                    .collect()
            }
        }
    }
}

/// Sizes of a [`Library`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LibraryStats {
    /// References held.
    pub references: usize,
    /// Frames indexed (all variants).
    pub frames: usize,
    /// Heap bytes of the Hamming index.
    pub index_bytes: usize,
    /// Feature frames indexed (the geometric tier).
    pub feature_frames: usize,
    /// Heap bytes of the feature index.
    pub feature_bytes: usize,
}

/// The in-memory index of all references.
///
/// References are keyed by the service's id strings; the matcher works with numbers, so each
/// id is interned to a `u64` ([`Hit::reference`]) that stays stable while the reference is
/// held. Not internally synchronised: share it behind an `RwLock` (lookups take `&self`).
#[derive(Debug, Default)]
pub struct Library {
    index: HammingIndex,
    frames: Vec<Option<FrameMeta>>,
    free_ids: Vec<u32>,
    features: FeatureIndex,
    feature_frames: Vec<Option<FeatureMeta>>,
    free_feature_ids: Vec<u32>,
    verify: VerifyConfig,
    references: HashMap<String, ReferenceEntry>,
    names: HashMap<u64, String>,
    next_number: u64,
}

impl Library {
    /// An empty library.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty library whose geometric tier verifies with `verify`.
    pub fn with_verify_config(verify: VerifyConfig) -> Self {
        Self { verify, ..Self::default() }
    }

    /// The geometric tier's acceptance thresholds.
    pub fn verify_config(&self) -> &VerifyConfig {
        &self.verify
    }

    /// Adds (or replaces) the PDQ frames and feature frames of reference `id`.
    ///
    /// # Errors
    /// When an index would exceed `u32::MAX` frames.
    pub fn insert_reference(
        &mut self,
        id: &str,
        frames: &[ReferenceFrame],
        features: &[FeatureFrame],
    ) -> anyhow::Result<()> {
        self.remove_reference(id);
        self.next_number += 1;
        let number = self.next_number;
        // The feature index groups frames by a u32; numbers only repeat after 2^32 insertions,
        // by which time the earlier holder of the number is long gone.
        #[allow(clippy::cast_possible_truncation)]
        let group = number as u32;
        let mut frame_ids = Vec::with_capacity(frames.len());
        let mut feature_ids = Vec::with_capacity(features.len());
        for f in features {
            let fid = next_id(&mut self.free_feature_ids, &mut self.feature_frames)?;
            self.feature_frames[fid as usize] =
                Some(FeatureMeta { reference: number, ts_ms: f.ts_ms });
            self.features.insert(fid, group, f.ts_ms, &f.features);
            feature_ids.push(fid);
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
            frame_ids.push(fid);
        }
        self.names.insert(number, id.to_owned());
        self.references.insert(id.to_owned(), ReferenceEntry { number, frame_ids, feature_ids });
        Ok(())
    }

    /// Removes reference `id`; returns whether it was held.
    pub fn remove_reference(&mut self, id: &str) -> bool {
        let Some(entry) = self.references.remove(id) else { return false };
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
        self.names.remove(&entry.number);
        true
    }

    /// Whether reference `id` is held.
    pub fn contains(&self, id: &str) -> bool {
        self.references.contains_key(id)
    }

    /// The id string of an interned reference number ([`Hit::reference`]).
    pub fn reference_id(&self, number: u64) -> Option<&str> {
        self.names.get(&number).map(String::as_str)
    }

    /// The interned number of reference `id`.
    pub fn reference_number(&self, id: &str) -> Option<u64> {
        self.references.get(id).map(|e| e.number)
    }

    /// Sizes, for logs and metrics.
    pub fn stats(&self) -> LibraryStats {
        LibraryStats {
            references: self.references.len(),
            frames: self.index.len(),
            index_bytes: self.index.memory_bytes(),
            feature_frames: self.features.frames(),
            feature_bytes: self.features.memory_bytes(),
        }
    }

    /// Both tiers' hits of a keyframe together ([`TierHits::select`] with [`Tiers::Both`]):
    /// what the service feeds the matcher.
    pub fn lookup(&self, keyframe: &KeyframeHashes, radius: u32, max_hits: usize) -> Vec<Hit> {
        self.lookup_tiers(keyframe, radius, max_hits, Tiers::Both).select(Tiers::Both)
    }

    /// The hits of each tier in `tiers` (the other tier's list stays empty, and is not
    /// computed): [`Library::lookup_pdq`] and [`Library::lookup_features`].
    pub fn lookup_tiers(
        &self,
        keyframe: &KeyframeHashes,
        radius: u32,
        max_hits: usize,
        tiers: Tiers,
    ) -> TierHits {
        TierHits {
            pdq: if tiers == Tiers::Features {
                Vec::new()
            } else {
                self.lookup_pdq(keyframe, radius, max_hits)
            },
            features: if tiers == Tiers::Pdq { Vec::new() } else { self.lookup_features(keyframe) },
        }
    }

    /// The geometric tier: the keyframe's local features (and their mirror) against every
    /// indexed feature frame, verified by a RANSAC similarity fit. Each reference contributes
    /// its [`FEATURE_HITS_PER_REFERENCE`](super::FEATURE_HITS_PER_REFERENCE) strongest
    /// verified frames, at [`Verified::distance`] (at most 24, within PDQ's radius, so the
    /// matcher's distance threshold treats a verified frame as a good match). A keyframe
    /// verifying frames of several references cannot tell them apart: each weighs 1/N, as on
    /// the PDQ tier (the live feeds' geometric tier applies the same rule). A keyframe without
    /// features (known only by its hash) has no hits here.
    pub fn lookup_features(&self, keyframe: &KeyframeHashes) -> Vec<Hit> {
        let Some(features) = &keyframe.features else { return Vec::new() };
        if features.is_empty() || self.features.is_empty() {
            return Vec::new();
        }
        let verified: Vec<(u64, i64, Verified)> = self
            .features
            .query(features, &self.verify)
            .into_iter()
            .filter_map(|v| {
                let meta = self.feature_frames.get(v.frame as usize).copied()??;
                Some((meta.reference, meta.ts_ms, v))
            })
            .collect();
        feature_hits(verified, &self.verify)
            .into_iter()
            .map(|(reference, hit)| Hit { reference, ..hit })
            .collect()
    }

    /// The PDQ tier: looks up every hash of a keyframe within `radius` bits and returns one [`Hit`] per
    /// matched (reference, reference time), at its smallest distance over query views and
    /// crop variants, closest first, at most `max_hits`.
    ///
    /// Weights down-rate frames that match too broadly, from what this very lookup found: a
    /// keyframe matching frames of several references cannot tell them apart (each gets 1/N),
    /// and one matching hundreds of frames about equally well (black, a slate, a logo) says
    /// little about any of them ([`broadness_weight`] over the hits within a few bits of the
    /// closest). Reference frames of low detail (PDQ quality near the 50
    /// floor, whose hash bits are partly noise) weigh up to half less.
    pub fn lookup_pdq(&self, keyframe: &KeyframeHashes, radius: u32, max_hits: usize) -> Vec<Hit> {
        let mut best: HashMap<(u64, i64), (u32, u8)> = HashMap::new();
        for q in &keyframe.hashes {
            for m in self.index.search(&q.hash, radius) {
                let Some(Some(meta)) = self.frames.get(m.id as usize) else { continue };
                let slot = best.entry((meta.reference, meta.ts_ms)).or_insert((u32::MAX, 0));
                if m.distance < slot.0 {
                    *slot = (m.distance, meta.quality);
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
        hits.sort_unstable_by_key(|h| (h.distance, h.reference, h.reference_ts_ms));
        hits.truncate(max_hits);
        hits
    }

    /// The crop variant and time of an indexed frame, for diagnostics.
    pub fn frames_of(&self, id: &str) -> Vec<(i64, CropVariant)> {
        self.references.get(id).map_or_else(Vec::new, |e| {
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

    fn query(hash: Hash256) -> KeyframeHashes {
        KeyframeHashes {
            hashes: vec![QueryHash { hash, view: QueryView::Full, quality: 100 }],
            features: None,
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
        let hits = lib.lookup(&query(h(&[1, 2])), 10, 100);
        assert_eq!(hits.len(), 1);
        assert_eq!(lib.reference_id(hits[0].reference), Some("a"));
        assert_eq!((hits[0].reference_ts_ms, hits[0].distance, hits[0].weight), (0, 1, 1.0));
    }

    #[test]
    fn a_frame_shared_by_two_references_weighs_half() {
        let mut lib = Library::new();
        lib.insert_reference("a", &[rf(0, h(&[1]))], &[]).unwrap();
        lib.insert_reference("b", &[rf(5000, h(&[2]))], &[]).unwrap();
        let hits = lib.lookup(&query(h(&[])), 4, 100);
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
        let hits = lib.lookup(&query(h(&[])), 4, 100);
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
        assert!(lib.lookup(&query(h(&[1])), 1, 100).is_empty());
    }
}
