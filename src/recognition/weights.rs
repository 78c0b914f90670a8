//! The prior weights of hits, shared by the reference library and the live index so that a
//! frame of a file reference and a frame of a live feed weigh the same.

/// Hits within this many bits of a keyframe's closest hit count as equally plausible.
pub(crate) const AMBIGUITY_BITS: u32 = 4;

/// A count as `u32`, saturating.
pub(crate) fn count_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// 0.5 at PDQ quality 50 rising linearly to 1.0 at 70 and above: low-detail frames (dark,
/// flat) match more easily by chance, so they count less.
pub(crate) fn detail_weight(quality: u8) -> f32 {
    (0.5 + (f32::from(quality) - 50.0) / 40.0).clamp(0.5, 1.0)
}
