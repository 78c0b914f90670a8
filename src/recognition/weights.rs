//! The prior weights of hits, shared by the reference library and the live index so that a
//! frame of a file reference and a frame of a live feed weigh the same.

use std::collections::HashMap;
use std::hash::Hash;

use fingerprints::Hit;
use fingerprints::features::{Verified, VerifyConfig};

use super::HitTier;

/// Hits within this many bits of a keyframe's closest hit count as equally plausible.
pub(crate) const AMBIGUITY_BITS: u32 = 4;

/// Verified frames per reference and keyframe that become hits. Neighbouring feature frames
/// of one shot often all verify; two give the matcher the keyframe's position without letting
/// one keyframe pile up votes.
pub const FEATURE_HITS_PER_REFERENCE: usize = 2;

/// A count as `u32`, saturating.
pub(crate) fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// 0.5 at PDQ quality 50 rising linearly to 1.0 at 70 and above: low-detail frames (dark,
/// flat) match more easily by chance, so they count less.
pub(crate) fn detail_weight(quality: u8) -> f32 {
    (0.5 + (f32::from(quality) - 50.0) / 40.0).clamp(0.5, 1.0)
}

/// The geometric tier's hits of one keyframe, from its verified frames as
/// `(reference, reference time, verification)`; the reference is whatever its caller keys
/// references by (the library's interned number, a live feed's id). Each reference keeps its
/// [`FEATURE_HITS_PER_REFERENCE`] strongest verified frames, each at [`Verified::distance`]
/// (at most 24, within PDQ's radius, so the matcher's distance threshold treats a verified
/// frame as a good match). A keyframe verifying frames of several references cannot tell them
/// apart: each weighs 1/N, as on the PDQ tier. The hits' own `reference` is left 0 for the
/// caller to fill; closest first, then by reference and time.
pub(crate) fn feature_hits<K: Copy + Ord + Hash>(
    mut verified: Vec<(K, i64, Verified)>,
    verify: &VerifyConfig,
) -> Vec<(K, Hit)> {
    verified
        .sort_by(|a, b| a.0.cmp(&b.0).then(b.2.weight.total_cmp(&a.2.weight)).then(a.1.cmp(&b.1)));
    let mut per_reference: HashMap<K, usize> = HashMap::new();
    verified.retain(|(reference, _, _)| {
        let n = per_reference.entry(*reference).or_insert(0);
        *n += 1;
        *n <= FEATURE_HITS_PER_REFERENCE
    });
    let weight = 1.0 / per_reference.len().max(1) as f32;
    let mut hits: Vec<(K, Hit)> = verified
        .into_iter()
        .map(|(reference, reference_ts_ms, v)| {
            let hit = Hit { reference: 0, reference_ts_ms, distance: v.distance(verify), weight };
            (reference, hit)
        })
        .collect();
    hits.sort_unstable_by(|(a, x), (b, y)| {
        (x.distance, a, x.reference_ts_ms).cmp(&(y.distance, b, y.reference_ts_ms))
    });
    hits
}

/// Both tiers' hits of one keyframe as one list, each with the tier that produced it: where
/// the PDQ tier and the geometric tier hit the same reference at the same time, the closer hit
/// stands for both (PDQ on a tie); closest first, then by reference and time.
pub(crate) fn merge_tiers<K: Clone + Ord + Hash>(
    pdq: Vec<(K, Hit)>,
    features: Vec<(K, Hit)>,
) -> Vec<(K, Hit, HitTier)> {
    let mut best: HashMap<(K, i64), (Hit, HitTier)> = HashMap::new();
    let tiered = pdq
        .into_iter()
        .map(|(k, h)| (k, h, HitTier::Pdq))
        .chain(features.into_iter().map(|(k, h)| (k, h, HitTier::Features)));
    for (reference, h, tier) in tiered {
        let slot = best.entry((reference, h.reference_ts_ms)).or_insert((h, tier));
        if h.distance < slot.0.distance {
            *slot = (h, tier);
        }
    }
    let mut hits: Vec<(K, Hit, HitTier)> =
        best.into_iter().map(|((k, _), (h, tier))| (k, h, tier)).collect();
    hits.sort_unstable_by(|(a, x, _), (b, y, _)| {
        (x.distance, a, x.reference_ts_ms).cmp(&(y.distance, b, y.reference_ts_ms))
    });
    hits
}
