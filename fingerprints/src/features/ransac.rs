//! A small RANSAC for 2-D similarity transforms (scale, rotation, translation).
//!
//! Written here rather than taken from a crate: rust-cv's `arrsac`/`sample-consensus` are
//! unmaintained since 2021 and generic over nalgebra models, while a similarity needs only a
//! two-point closed form. What this adds to textbook RANSAC is what the verifier needs:
//! hypotheses outside a plausible scale/rotation range are discarded before they are scored (so
//! an implausible fit can never hide a plausible one), inliers are weighted (specific features
//! count more than ones seen everywhere), sampling is seeded (same input, same answer) and the
//! winner is refined by least squares on its inliers. It is tested against planted transforms
//! with outliers.

/// `x' = a*x - b*y + tx`, `y' = b*x + a*y + ty`: a uniform scale `sqrt(a² + b²)`, a rotation
/// `atan2(b, a)` and a translation. Maps query coordinates to reference coordinates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Similarity {
    /// `scale * cos(angle)`.
    pub a: f32,
    /// `scale * sin(angle)`.
    pub b: f32,
    /// Horizontal translation.
    pub tx: f32,
    /// Vertical translation.
    pub ty: f32,
}

impl Similarity {
    /// Applies the transform to a point.
    #[inline]
    pub fn apply(&self, x: f32, y: f32) -> (f32, f32) {
        (self.a * x - self.b * y + self.tx, self.b * x + self.a * y + self.ty)
    }

    /// The scale factor (reference size / query size).
    pub fn scale(&self) -> f32 {
        self.a.hypot(self.b)
    }

    /// The rotation in radians, in `(-π, π]`.
    pub fn rotation(&self) -> f32 {
        self.b.atan2(self.a)
    }

    /// Least-squares similarity mapping `src[i]` onto `dst[i]` (weighted). `None` when the
    /// source points coincide.
    fn least_squares(pts: &[Pair], weights: &[f32]) -> Option<Similarity> {
        let wsum: f32 = weights.iter().sum();
        if wsum <= 0.0 {
            return None;
        }
        let (mut qx, mut qy, mut rx, mut ry) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for (p, &w) in pts.iter().zip(weights) {
            qx += w * p.q.0;
            qy += w * p.q.1;
            rx += w * p.r.0;
            ry += w * p.r.1;
        }
        let (qx, qy, rx, ry) = (qx / wsum, qy / wsum, rx / wsum, ry / wsum);
        let (mut num_a, mut num_b, mut den) = (0.0f32, 0.0f32, 0.0f32);
        for (p, &w) in pts.iter().zip(weights) {
            let (ux, uy) = (p.q.0 - qx, p.q.1 - qy);
            let (vx, vy) = (p.r.0 - rx, p.r.1 - ry);
            num_a += w * (ux * vx + uy * vy);
            num_b += w * (ux * vy - uy * vx);
            den += w * (ux * ux + uy * uy);
        }
        if den < 1e-3 {
            return None;
        }
        let (a, b) = (num_a / den, num_b / den);
        Some(Similarity { a, b, tx: rx - (a * qx - b * qy), ty: ry - (b * qx + a * qy) })
    }
}

/// One putative match: a query point, a reference point and the weight of its evidence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pair {
    /// Point in the query frame.
    pub q: (f32, f32),
    /// Point in the reference frame.
    pub r: (f32, f32),
    /// Weight in `(0, 1]` (1 = a specific, trustworthy match).
    pub w: f32,
}

/// The limits of a RANSAC run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RansacParams {
    /// A pair is an inlier when the transformed query point lands within this many pixels of
    /// its reference point.
    pub threshold: f32,
    /// Upper bound on sampled hypotheses.
    pub max_iterations: u32,
    /// Smallest acceptable scale (reference / query).
    pub min_scale: f32,
    /// Largest acceptable scale.
    pub max_scale: f32,
    /// Largest acceptable absolute rotation, radians.
    pub max_rotation: f32,
}

/// The outcome of a RANSAC fit.
#[derive(Clone, Debug, PartialEq)]
pub struct RansacFit {
    /// The refined transform (query to reference).
    pub transform: Similarity,
    /// Indices of the inlier pairs.
    pub inliers: Vec<usize>,
    /// Sum of the inliers' weights.
    pub weight: f32,
}

fn plausible(s: &Similarity, p: &RansacParams) -> bool {
    let scale = s.scale();
    scale.is_finite()
        && scale >= p.min_scale
        && scale <= p.max_scale
        && s.rotation().abs() <= p.max_rotation
}

fn score(s: &Similarity, pairs: &[Pair], t2: f32, inliers: &mut Vec<usize>) -> f32 {
    inliers.clear();
    let mut w = 0.0;
    for (i, p) in pairs.iter().enumerate() {
        let (x, y) = s.apply(p.q.0, p.q.1);
        let (dx, dy) = (x - p.r.0, y - p.r.1);
        if dx * dx + dy * dy <= t2 {
            inliers.push(i);
            w += p.w;
        }
    }
    w
}

/// Fits a similarity to `pairs` by RANSAC over two-point samples, keeping only hypotheses within
/// `params`' scale and rotation limits, then refines the best by weighted least squares on its
/// inliers (and re-collects them). Deterministic. `None` when fewer than two pairs are given or
/// no plausible hypothesis has at least two inliers.
pub fn fit_similarity_ransac(pairs: &[Pair], params: &RansacParams) -> Option<RansacFit> {
    let n = pairs.len();
    if n < 2 {
        return None;
    }
    let t2 = params.threshold * params.threshold;
    let mut rng: u64 = 0x2545_F491_4F6C_DD1D ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move |m: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % m as u64) as usize
    };
    let mut best: Option<(f32, Similarity, Vec<usize>)> = None;
    let mut scratch = Vec::with_capacity(n);
    let mut iterations = params.max_iterations.max(1);
    // Small sets are enumerated exhaustively instead of sampled.
    let exhaustive = n * (n - 1) / 2 <= iterations as usize;
    let mut pairs_iter = (0..n).flat_map(|i| (i + 1..n).map(move |j| (i, j)));
    let mut it = 0u32;
    while it < iterations {
        it += 1;
        let (i, j) = if exhaustive {
            match pairs_iter.next() {
                Some(p) => p,
                None => break,
            }
        } else {
            let i = next(n);
            let j = next(n);
            if i == j {
                continue;
            }
            (i, j)
        };
        let (p, q) = (&pairs[i], &pairs[j]);
        let (dx, dy) = (p.q.0 - q.q.0, p.q.1 - q.q.1);
        // Points closer than a few pixels give an ill-conditioned scale and angle.
        if dx * dx + dy * dy < 16.0 {
            continue;
        }
        let Some(s) = Similarity::least_squares(&[*p, *q], &[1.0, 1.0]) else { continue };
        if !plausible(&s, params) {
            continue;
        }
        let w = score(&s, pairs, t2, &mut scratch);
        if scratch.len() >= 2 && best.as_ref().is_none_or(|b| w > b.0) {
            let ratio = scratch.len() as f64 / n as f64;
            best = Some((w, s, scratch.clone()));
            if !exhaustive {
                // Standard adaptive stopping for 99 % confidence of an all-inlier sample.
                let needed = ((1.0 - 0.99f64).ln() / (1.0 - ratio * ratio).max(1e-9).ln()).ceil();
                if needed.is_finite() && needed >= 0.0 {
                    iterations = iterations.min((needed as u32).max(it + 1).max(32));
                }
            }
        }
    }
    let (mut weight, mut transform, mut inliers) = best?;
    // Two rounds of refinement: the least-squares fit may pull in a few more inliers.
    for _ in 0..2 {
        let subset: Vec<Pair> = inliers.iter().map(|&i| pairs[i]).collect();
        let ws: Vec<f32> = subset.iter().map(|p| p.w.max(1e-3)).collect();
        let Some(refined) = Similarity::least_squares(&subset, &ws) else { break };
        if !plausible(&refined, params) {
            break;
        }
        let mut again = Vec::with_capacity(n);
        let w = score(&refined, pairs, t2, &mut again);
        if again.len() < inliers.len() {
            break;
        }
        (weight, transform, inliers) = (w, refined, again);
    }
    Some(RansacFit { transform, inliers, weight })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params() -> RansacParams {
        RansacParams {
            threshold: 3.0,
            max_iterations: 300,
            min_scale: 0.3,
            max_scale: 3.0,
            max_rotation: 0.3,
        }
    }

    proptest! {
        #[test]
        fn ransac_recovers_a_planted_similarity_among_outliers(
            scale in 0.5f32..2.0, angle in -0.2f32..0.2, tx in -100f32..100.0, ty in -100f32..100.0,
            seed in any::<u64>(), n_in in 12usize..60, n_out in 0usize..60,
        ) {
            let truth = Similarity { a: scale * angle.cos(), b: scale * angle.sin(), tx, ty };
            let mut s = seed | 1;
            let mut rnd = move || { s ^= s << 13; s ^= s >> 7; s ^= s << 17; (s % 10_000) as f32 / 10_000.0 };
            let mut pairs = Vec::new();
            for _ in 0..n_in {
                let (x, y) = (rnd() * 480.0, rnd() * 270.0);
                let (rx, ry) = truth.apply(x, y);
                pairs.push(Pair { q: (x, y), r: (rx + rnd() - 0.5, ry + rnd() - 0.5), w: 1.0 });
            }
            for _ in 0..n_out {
                pairs.push(Pair { q: (rnd() * 480.0, rnd() * 270.0), r: (rnd() * 480.0, rnd() * 270.0), w: 1.0 });
            }
            let fit = fit_similarity_ransac(&pairs, &params()).expect("a fit");
            prop_assert!(fit.inliers.len() >= n_in, "found {} of {} inliers", fit.inliers.len(), n_in);
            prop_assert!((fit.transform.scale() - scale).abs() < 0.02 * scale);
            prop_assert!((fit.transform.rotation() - angle).abs() < 0.02);
            let (cx, cy) = fit.transform.apply(240.0, 135.0);
            let (ex, ey) = truth.apply(240.0, 135.0);
            prop_assert!((cx - ex).hypot(cy - ey) < 1.5);
        }
    }

    #[test]
    fn an_implausible_transform_is_never_returned() {
        // Every pair agrees on a 5x zoom: outside the scale limits, so no fit at all.
        let truth = Similarity { a: 5.0, b: 0.0, tx: 0.0, ty: 0.0 };
        let pairs: Vec<Pair> = (0..30)
            .map(|i| {
                let (x, y) = ((i * 13 % 97) as f32, (i * 29 % 61) as f32);
                Pair { q: (x, y), r: truth.apply(x, y), w: 1.0 }
            })
            .collect();
        assert!(fit_similarity_ransac(&pairs, &params()).is_none());
    }

    #[test]
    fn fewer_than_two_pairs_give_no_fit() {
        assert!(fit_similarity_ransac(&[], &params()).is_none());
        assert!(
            fit_similarity_ransac(&[Pair { q: (1.0, 2.0), r: (3.0, 4.0), w: 1.0 }], &params())
                .is_none()
        );
    }
}
