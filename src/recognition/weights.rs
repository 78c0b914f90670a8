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

/// Inlier weight by which a verified frame must fit better than every other moment of its
/// reference to count fully in the temporal matcher (see [`moment_weight`]).
///
/// Measured on the stress set's hard negative (the same man in the same room in another take,
/// 313 verified frames) against its positives (505): the winning moment beats the next best
/// by a median of 3.3 inlier weight on the look-alike (5 % of its frames by 8 or more) and by
/// 10.3 on true copies (63 % by 8 or more).
pub const SPECIFIC_EXCESS: f32 = 8.0;

/// The least a verified frame counts in the temporal matcher however closely other moments of
/// its reference fit (see [`moment_weight`]): two such keyframes agreeing on an offset no
/// longer decide alone (they reach a score of 1, the rule asks for 1.5), a third does. Measured
/// against no floor (0): the same false flags removed, and fewer true copies of slow content
/// (a rotating globe, a static pianist) delayed.
pub const MOMENT_WEIGHT_FLOOR: f32 = 0.5;

/// The share of a verified frame's evidence that is about *this* moment of its reference, in
/// `[MOMENT_WEIGHT_FLOOR, 1]`: the inlier weight it gathers beyond the best-fitting other
/// moment ([`Verified::rival_weight`]) over [`SPECIFIC_EXCESS`]. The ratio test across time
/// ([`VerifyConfig::min_distinct_ratio`]) decides whether a frame verifies at all; this decides
/// how much it counts. The same room in another take fits some moment of the reference a little
/// better than the others by chance, and two such keyframes agreeing on an offset were enough
/// to flag it; a true copy fits its own moment by a wide margin, or has no rival at all.
///
/// [`VerifyConfig::min_distinct_ratio`]: fingerprints::features::VerifyConfig::min_distinct_ratio
pub(crate) fn moment_weight(v: &Verified) -> f32 {
    ((v.weight - v.rival_weight) / SPECIFIC_EXCESS).clamp(MOMENT_WEIGHT_FLOOR, 1.0)
}

/// A PDQ match at least this far (of the radius of 31) is weak: true copies of the sets'
/// references match at a median of 12-18 bits, the same room filmed in another take (the hard
/// negative) at 20-30. See [`weigh_weak_pdq_moments`].
pub const WEAK_PDQ_BITS: u32 = 20;

/// The PDQ tier's counterpart of [`moment_weight`]: where a keyframe's closest hits on a
/// reference (within [`AMBIGUITY_BITS`] of its closest) are weak ([`WEAK_PDQ_BITS`] or more)
/// and lie at different moments (`distinct_ms` or more apart), the keyframe looks like the
/// reference's scene but cannot say which moment it shows: its hits on that reference count
/// [`MOMENT_WEIGHT_FLOOR`] times their weight, so such a stream needs about twice as many
/// keyframes to be decided. Close matches count fully however many moments they fit, so a
/// copy of a static shot is decided as soon as before. Measured in stop 32 on both sets at every
/// library size (docs/EVALUATION.md): this removes the last false flags (the hard negative
/// joined mid-stream at 18 references, one PDQ chance hit at 28 bits on two moments joining
/// the geometric tier's), and decides 2-3 positives per set a keyframe later.
pub(crate) fn weigh_weak_pdq_moments(hits: &mut [Hit], distinct_ms: i64) {
    let mut references: Vec<u64> = hits.iter().map(|h| h.reference).collect();
    references.sort_unstable();
    references.dedup();
    for reference in references {
        let of_reference = || hits.iter().filter(move |h| h.reference == reference);
        let Some(closest) = of_reference().map(|h| h.distance).min() else { continue };
        if closest < WEAK_PDQ_BITS {
            continue;
        }
        let (first, last) = of_reference()
            .filter(|h| h.distance <= closest + AMBIGUITY_BITS)
            .fold((i64::MAX, i64::MIN), |(lo, hi), h| {
                (lo.min(h.reference_ts_ms), hi.max(h.reference_ts_ms))
            });
        if last.saturating_sub(first) >= distinct_ms {
            for h in hits.iter_mut().filter(|h| h.reference == reference) {
                h.weight *= MOMENT_WEIGHT_FLOOR;
            }
        }
    }
}

/// The geometric tier's hits of one keyframe, from its verified frames as
/// `(reference, reference time, verification)`. Each reference keeps its
/// [`FEATURE_HITS_PER_REFERENCE`] strongest verified frames, each at [`Verified::distance`]
/// (at most 24, within PDQ's radius, so the matcher's distance threshold treats a verified
/// frame as a good match) and weighing its [`moment_weight`]. A keyframe verifying frames of
/// several references cannot tell them apart: each weighs 1/N as well, as on the PDQ tier.
/// Closest first, then by reference and time.
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
            weight: weight * moment_weight(&v),
        })
        .collect();
    hits.sort_unstable_by_key(|h| (h.distance, h.reference, h.reference_ts_ms));
    hits
}

/// Both tiers' hits of one keyframe as one list, each with the tier that produced it: where
/// the PDQ tier and the geometric tier hit the same reference at the same time, the closer hit
/// stands for both (PDQ on a tie), at the larger of their weights (two tiers seeing one
/// moment is no weaker evidence than either); closest first, then by reference and time.
pub(crate) fn merge_tiers(pdq: &[Hit], features: &[Hit]) -> Vec<(Hit, HitTier)> {
    let mut best: HashMap<(u64, i64), (Hit, HitTier)> = HashMap::new();
    let tiered = pdq
        .iter()
        .map(|h| (*h, HitTier::Pdq))
        .chain(features.iter().map(|h| (*h, HitTier::Features)));
    for (h, tier) in tiered {
        let slot = best.entry((h.reference, h.reference_ts_ms)).or_insert((h, tier));
        let weight = slot.0.weight.max(h.weight);
        if h.distance < slot.0.distance {
            *slot = (h, tier);
        }
        slot.0.weight = weight;
    }
    let mut hits: Vec<(Hit, HitTier)> = best.into_values().collect();
    hits.sort_unstable_by_key(|(h, _)| (h.distance, h.reference, h.reference_ts_ms));
    hits
}

#[cfg(test)]
mod tests {
    use fingerprints::features::Similarity;
    use fingerprints::{MatcherConfig, StreamMatcher};

    use super::*;

    /// A verification of reference 1's frame at `ts_ms` with `weight`, whose best rival moment
    /// of the same reference fitted with `rival_weight`.
    fn verified(ts_ms: i64, weight: f32, rival_weight: f32) -> (u64, i64, Verified) {
        let v = Verified {
            frame: u32::try_from(ts_ms / 1000).unwrap(),
            group: 1,
            mirrored: false,
            inliers: 20,
            matches: 40,
            weight,
            coverage: 0.5,
            transform: Similarity { a: 1.0, b: 0.0, tx: 0.0, ty: 0.0 },
            rival_weight,
        };
        (1, ts_ms, v)
    }

    /// Whether a stream whose keyframes, 2 s apart, each verify the reference moment 2 s after
    /// the last (an exact offset), is flagged, and on which keyframe.
    fn flagged_after(verifications: &[(f32, f32)]) -> Option<usize> {
        let mut m = StreamMatcher::new(MatcherConfig::default());
        for (k, &(weight, rival)) in verifications.iter().enumerate() {
            let t = i64::try_from(k).unwrap() * 2_000;
            let hits =
                feature_hits(vec![verified(30_000 + t, weight, rival)], &VerifyConfig::default());
            m.observe(t, &hits);
            if m.conclusive().is_some() {
                return Some(k + 1);
            }
        }
        None
    }

    #[test]
    fn a_moment_that_barely_beats_the_others_counts_for_little_and_one_without_rival_fully() {
        let w = |weight, rival| moment_weight(&verified(0, weight, rival).2);
        assert_eq!(w(20.0, 0.0), 1.0, "no other moment fitted");
        assert_eq!(w(30.0, 12.0), 1.0, "a wide margin");
        assert!((w(20.0, 14.0) - 6.0 / SPECIFIC_EXCESS).abs() < 1e-6, "a fair margin");
        assert_eq!(w(12.0, 9.0), MOMENT_WEIGHT_FLOOR, "the look-alike's margin");
    }

    #[test]
    fn two_agreeing_keyframes_flag_a_true_copy_but_not_a_look_alike_that_barely_fits_its_moments() {
        // A copy fits its own moments clearly better than any other: flagged on the second
        // keyframe, as before.
        assert_eq!(flagged_after(&[(24.0, 8.0), (20.0, 0.0)]), Some(2));
        // The same room in another take: each keyframe fits some moment 1.3x better than the
        // next best (inlier weights 12 against 9). Two such keyframes agreeing on an offset by
        // chance flagged it; now they do not decide alone.
        assert_eq!(flagged_after(&[(12.0, 9.0), (12.0, 9.0)]), None);
        // A copy of slow content whose every moment fits alike is still found, a keyframe
        // later.
        assert!(flagged_after(&[(12.0, 9.0); 6]).is_some_and(|k| k > 2));
    }

    fn pdq(reference: u64, reference_ts_ms: i64, distance: u32) -> Hit {
        Hit { reference, reference_ts_ms, distance, weight: 1.0 }
    }

    #[test]
    fn a_weak_pdq_match_on_several_moments_counts_at_the_floor_and_a_close_or_single_one_fully() {
        let weighed = |mut hits: Vec<Hit>| {
            weigh_weak_pdq_moments(&mut hits, 1_500);
            hits.iter().map(|h| (h.reference, h.weight)).collect::<Vec<_>>()
        };
        // The same room in another take: 28 bits from two moments 3 s apart.
        let floor = MOMENT_WEIGHT_FLOOR;
        assert_eq!(weighed(vec![pdq(1, 26_280, 28), pdq(1, 29_240, 28)]), [(1, floor), (1, floor)]);
        // A copy of a static shot: as close to several moments, but close.
        assert_eq!(weighed(vec![pdq(1, 26_280, 12), pdq(1, 29_240, 13)]), [(1, 1.0), (1, 1.0)]);
        // Weak, but one moment (neighbouring frames), or the other moment much farther.
        assert_eq!(weighed(vec![pdq(1, 26_280, 28), pdq(1, 27_000, 28)]), [(1, 1.0), (1, 1.0)]);
        assert_eq!(weighed(vec![pdq(1, 26_280, 24), pdq(1, 29_240, 30)]), [(1, 1.0), (1, 1.0)]);
        // Each reference on its own.
        assert_eq!(
            weighed(vec![pdq(1, 0, 28), pdq(1, 5_000, 29), pdq(2, 0, 28)]),
            [(1, floor), (1, floor), (2, 1.0)]
        );
    }

    #[test]
    fn weak_pdq_keyframes_that_fit_several_moments_decide_later_than_close_ones() {
        let flagged_after = |keyframes: usize, distance: u32| {
            let mut m = StreamMatcher::new(MatcherConfig::default());
            (0..keyframes).find_map(|k| {
                let t = i64::try_from(k).unwrap() * 2_000;
                // Each keyframe fits the moment 2 s after the last, and another 3 s from it.
                let mut hits = vec![pdq(1, 30_000 + t, distance), pdq(1, 33_000 + t, distance)];
                weigh_weak_pdq_moments(&mut hits, 1_500);
                m.observe(t, &hits);
                m.conclusive().is_some().then_some(k + 1)
            })
        };
        // Measured: close matches on two moments decide on the third keyframe (their votes
        // are shared between the two offsets), weak ones on the sixth; without the floor, on
        // the third as well.
        assert_eq!(flagged_after(12, 12), Some(3), "close matches");
        assert!(flagged_after(12, 28).is_some_and(|k| k >= 5), "{:?}", flagged_after(12, 28));
    }

    #[test]
    fn where_both_tiers_see_one_moment_the_closer_hit_stands_for_both_at_the_larger_weight() {
        let pdq = [Hit { reference: 1, reference_ts_ms: 5_000, distance: 10, weight: 1.0 }];
        let features = [Hit { reference: 1, reference_ts_ms: 5_000, distance: 6, weight: 0.25 }];
        let merged = merge_tiers(&pdq, &features);
        assert_eq!(merged.len(), 1);
        let (hit, tier) = merged[0];
        assert_eq!((hit.distance, hit.weight, tier), (6, 1.0, HitTier::Features));
    }
}
