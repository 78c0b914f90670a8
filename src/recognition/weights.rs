//! The prior weights of hits and the merge of the two tiers, one rule for every source of the
//! [`super::Library`] (file references and live feeds).

use std::collections::HashMap;

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
/// `(reference, reference time, verification)`. Each reference keeps its
/// [`FEATURE_HITS_PER_REFERENCE`] strongest verified frames, each at [`Verified::distance`]
/// (at most 24, within PDQ's radius, so the matcher's distance threshold treats a verified
/// frame as a good match). A keyframe verifying frames of several references cannot tell them
/// apart: each weighs 1/N, as on the PDQ tier. Closest first, then by reference and time.
pub(crate) fn feature_hits(
    mut verified: Vec<(u64, i64, Verified)>,
    verify: &VerifyConfig,
) -> Vec<Hit> {
    verified
        .sort_by(|a, b| a.0.cmp(&b.0).then(b.2.weight.total_cmp(&a.2.weight)).then(a.1.cmp(&b.1)));
    let mut per_reference: HashMap<u64, usize> = HashMap::new();
    verified.retain(|(reference, _, _)| {
        let n = per_reference.entry(*reference).or_insert(0);
        *n += 1;
        *n <= FEATURE_HITS_PER_REFERENCE
    });
    let weight = 1.0 / per_reference.len().max(1) as f32;
    let mut hits: Vec<Hit> = verified
        .into_iter()
        .map(|(reference, reference_ts_ms, v)| Hit {
            reference,
            reference_ts_ms,
            distance: v.distance(verify),
            weight,
        })
        .collect();
    hits.sort_unstable_by_key(|h| (h.distance, h.reference, h.reference_ts_ms));
    hits
}

/// Both tiers' hits of one keyframe as one list, each with the tier that produced it: where
/// the PDQ tier and the geometric tier hit the same reference at the same time, the closer hit
/// stands for both (PDQ on a tie); closest first, then by reference and time.
pub(crate) fn merge_tiers(pdq: &[Hit], features: &[Hit]) -> Vec<(Hit, HitTier)> {
    let mut best: HashMap<(u64, i64), (Hit, HitTier)> = HashMap::new();
    let tiered = pdq
        .iter()
        .map(|h| (*h, HitTier::Pdq))
        .chain(features.iter().map(|h| (*h, HitTier::Features)));
    for (h, tier) in tiered {
        let slot = best.entry((h.reference, h.reference_ts_ms)).or_insert((h, tier));
        if h.distance < slot.0.distance {
            *slot = (h, tier);
        }
    }
    let mut hits: Vec<(Hit, HitTier)> = best.into_values().collect();
    hits.sort_unstable_by_key(|(h, _)| (h.distance, h.reference, h.reference_ts_ms));
    hits
}
