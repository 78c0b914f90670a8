//! A small RANSAC for 2-D similarity transforms (scale, rotation, translation), and the
//! perspective refinement of its winner for pictures filmed off axis.
//!
//! Written here rather than taken from a crate: rust-cv's `arrsac`/`sample-consensus` are
//! unmaintained since 2021 and generic over nalgebra models, while a similarity needs only a
//! two-point closed form. What this adds to textbook RANSAC is what the verifier needs:
//! hypotheses outside a plausible scale/rotation range are discarded before they are scored (so
//! an implausible fit can never hide a plausible one), inliers are weighted (specific features
//! count more than ones seen everywhere), sampling is seeded (same input, same answer) and the
//! winner is refined by least squares on its inliers. It is tested against planted transforms
//! with outliers.
//!
//! A screen filmed from the side is a perspective view of the picture: its far edge is shorter,
//! so no similarity fits more than a band of it within the inlier threshold, and the inliers
//! of that band may be too few or cover too little to verify. [`refine_perspective`] grows the
//! similarity's fit into a [`Homography`] (the model a plane seen by a camera needs), within
//! limits on how far from a similarity it may go ([`RansacParams::max_perspective`]). The
//! homography is solved by the normalised direct linear transform with `nalgebra`'s symmetric
//! eigendecomposition.

use nalgebra::{Matrix3, SMatrix, SymmetricEigen};

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
    /// How far [`refine_perspective`] may depart from a similarity: over the area its pairs
    /// span, the largest local scale at most this many times the smallest, and at every point
    /// one axis scaled at most this many times the other. 1 turns the refinement off.
    pub max_perspective: f32,
}

/// The outcome of a RANSAC fit.
#[derive(Clone, Debug, PartialEq)]
pub struct RansacFit {
    /// The refined similarity (query to reference).
    pub transform: Similarity,
    /// The perspective model that gathered the inliers, when [`refine_perspective`] found one
    /// better than the similarity; `None` when the similarity gathered them.
    pub perspective: Option<Homography>,
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
    Some(RansacFit { transform, perspective: None, inliers, weight })
}

/// A plane-to-plane projective transform from query to reference coordinates:
/// `x' = (h0 x + h1 y + h2) / w`, `y' = (h3 x + h4 y + h5) / w` with `w = h6 x + h7 y + 1`
/// (row-major, `h8 = 1`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Homography(pub [f64; 9]);

/// The local behaviour of a transform at one point: its Jacobian's scale and shape.
struct Local {
    /// `sqrt(det J)`: the area scale's square root; not positive for a fold or mirror.
    scale: f64,
    /// Largest over smallest singular value of `J` (1 = no shear or stretch).
    anisotropy: f64,
    /// The rotation part of `J`, radians.
    rotation: f64,
}

impl From<Similarity> for Homography {
    fn from(s: Similarity) -> Self {
        let (a, b) = (f64::from(s.a), f64::from(s.b));
        Homography([a, -b, f64::from(s.tx), b, a, f64::from(s.ty), 0.0, 0.0, 1.0])
    }
}

impl Homography {
    /// Applies the transform to a point; `None` where the point maps to infinity or behind
    /// the camera (`w <= 0`).
    pub fn apply(&self, x: f32, y: f32) -> Option<(f32, f32)> {
        let h = &self.0;
        let (x, y) = (f64::from(x), f64::from(y));
        let w = h[6] * x + h[7] * y + h[8];
        (w > 1e-9).then(|| {
            (((h[0] * x + h[1] * y + h[2]) / w) as f32, ((h[3] * x + h[4] * y + h[5]) / w) as f32)
        })
    }

    /// The least-squares homography mapping every pair's query point onto its reference point
    /// (weighted; exact for four pairs in general position). `None` for fewer than four pairs
    /// or a degenerate set (three or more on a line).
    pub fn from_pairs(pairs: &[Pair]) -> Option<Homography> {
        Homography::fit(pairs, &(0..pairs.len()).collect::<Vec<_>>())
    }

    /// The Jacobian at `(x, y)`, `None` where `w <= 0`.
    fn local(&self, x: f64, y: f64) -> Option<Local> {
        let h = &self.0;
        let w = h[6] * x + h[7] * y + h[8];
        if w <= 1e-9 {
            return None;
        }
        let u = (h[0] * x + h[1] * y + h[2]) / w;
        let v = (h[3] * x + h[4] * y + h[5]) / w;
        let (a, b) = ((h[0] - u * h[6]) / w, (h[1] - u * h[7]) / w);
        let (c, d) = ((h[3] - v * h[6]) / w, (h[4] - v * h[7]) / w);
        let det = a * d - b * c;
        // Singular values of [[a, b], [c, d]] from its conformal and anticonformal parts.
        let q = ((a + d) / 2.0).hypot((c - b) / 2.0);
        let r = ((a - d) / 2.0).hypot((c + b) / 2.0);
        Some(Local {
            scale: det.signum() * det.abs().sqrt(),
            anisotropy: (q + r) / (q - r).abs().max(1e-12),
            rotation: (c - b).atan2(a + d),
        })
    }

    /// Whether the transform is a plausible view of the picture over the box `lo..hi` of
    /// query points: finite everywhere in it, no fold, scale and (at the centre) rotation
    /// within `params`' limits, and no further from a similarity than
    /// [`RansacParams::max_perspective`].
    fn plausible(&self, lo: (f32, f32), hi: (f32, f32), params: &RansacParams) -> bool {
        let (lo, hi) = ((f64::from(lo.0), f64::from(lo.1)), (f64::from(hi.0), f64::from(hi.1)));
        let limit = f64::from(params.max_perspective);
        let (mut smallest, mut largest) = (f64::INFINITY, 0.0f64);
        for (x, y) in [(lo.0, lo.1), (hi.0, lo.1), (lo.0, hi.1), (hi.0, hi.1)] {
            let Some(l) = self.local(x, y) else { return false };
            if !(l.scale > 0.0 && l.anisotropy <= limit) {
                return false;
            }
            smallest = smallest.min(l.scale);
            largest = largest.max(l.scale);
        }
        let Some(centre) = self.local((lo.0 + hi.0) / 2.0, (lo.1 + hi.1) / 2.0) else {
            return false;
        };
        largest <= smallest * limit
            && centre.anisotropy <= limit
            && (f64::from(params.min_scale)..=f64::from(params.max_scale)).contains(&centre.scale)
            && centre.rotation.abs() <= f64::from(params.max_rotation)
    }

    /// The weighted least-squares homography mapping the query points of `pairs[i]` (for `i`
    /// in `subset`) onto their reference points: the normalised direct linear transform, whose
    /// solution is the eigenvector of the smallest eigenvalue of `Σ w aᵀa`. `None` for fewer
    /// than four pairs or a degenerate set (points on a line).
    fn fit(pairs: &[Pair], subset: &[usize]) -> Option<Homography> {
        if subset.len() < 4 {
            return None;
        }
        // Hartley normalisation: both point sets centred, mean distance sqrt(2).
        let normaliser = |pick: fn(&Pair) -> (f32, f32)| -> Option<Matrix3<f64>> {
            let n = subset.len() as f64;
            let (mut cx, mut cy) = (0.0, 0.0);
            for &i in subset {
                let (x, y) = pick(&pairs[i]);
                cx += f64::from(x) / n;
                cy += f64::from(y) / n;
            }
            let spread: f64 = subset
                .iter()
                .map(|&i| {
                    let (x, y) = pick(&pairs[i]);
                    (f64::from(x) - cx).hypot(f64::from(y) - cy)
                })
                .sum::<f64>()
                / n;
            if spread < 1e-6 {
                return None;
            }
            let k = std::f64::consts::SQRT_2 / spread;
            Some(Matrix3::new(k, 0.0, -k * cx, 0.0, k, -k * cy, 0.0, 0.0, 1.0))
        };
        let tq = normaliser(|p| p.q)?;
        let tr = normaliser(|p| p.r)?;
        let mut m = SMatrix::<f64, 9, 9>::zeros();
        for &i in subset {
            let p = &pairs[i];
            let (x, y) = (
                tq[(0, 0)] * f64::from(p.q.0) + tq[(0, 2)],
                tq[(1, 1)] * f64::from(p.q.1) + tq[(1, 2)],
            );
            let (u, v) = (
                tr[(0, 0)] * f64::from(p.r.0) + tr[(0, 2)],
                tr[(1, 1)] * f64::from(p.r.1) + tr[(1, 2)],
            );
            let w = f64::from(p.w.max(1e-3));
            let rows = [
                [-x, -y, -1.0, 0.0, 0.0, 0.0, u * x, u * y, u],
                [0.0, 0.0, 0.0, -x, -y, -1.0, v * x, v * y, v],
            ];
            for row in rows {
                for (r, &a) in row.iter().enumerate() {
                    for (c, &b) in row.iter().enumerate() {
                        m[(r, c)] += w * a * b;
                    }
                }
            }
        }
        let eigen = SymmetricEigen::new(m);
        let mut order: Vec<usize> = (0..9).collect();
        order.sort_by(|&a, &b| eigen.eigenvalues[a].total_cmp(&eigen.eigenvalues[b]));
        let value = |k: usize| eigen.eigenvalues[order[k]];
        // A second (near-)zero eigenvalue: the points do not pin a single homography down.
        if value(1) <= 1e-9 * value(8).max(1e-300) {
            return None;
        }
        let h = eigen.eigenvectors.column(order[0]);
        let normalised = Matrix3::new(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8]);
        let full = tr.try_inverse()? * normalised * tq;
        let scale = full[(2, 2)];
        if scale.abs() < 1e-12 || !full.iter().all(|v| v.is_finite()) {
            return None;
        }
        let full = full / scale;
        Some(Homography(std::array::from_fn(|k| full[(k / 3, k % 3)])))
    }
}

/// Pairs whose query point the homography maps within `sqrt(t2)` of their reference point,
/// with their summed weight.
fn score_homography(h: &Homography, pairs: &[Pair], t2: f32) -> (Vec<usize>, f32) {
    let mut inliers = Vec::new();
    let mut w = 0.0;
    for (i, p) in pairs.iter().enumerate() {
        let Some((x, y)) = h.apply(p.q.0, p.q.1) else { continue };
        let (dx, dy) = (x - p.r.0, y - p.r.1);
        if dx * dx + dy * dy <= t2 {
            inliers.push(i);
            w += p.w;
        }
    }
    (inliers, w)
}

/// The net, in inlier thresholds, within which [`refine_perspective`] gathers the pairs it
/// fits a homography to: a filmed screen's far corners land this far from where the best
/// similarity puts them.
const PERSPECTIVE_NET: f32 = 3.0;

/// Rounds of [`refine_perspective`]: each fits the pairs within the net of the last model.
const PERSPECTIVE_ROUNDS: usize = 4;

/// Grows a similarity fit into a perspective one: fits a [`Homography`] to the pairs within
/// [`PERSPECTIVE_NET`] thresholds of the current model (then again to that fit's own inliers,
/// when that gathers as much), keeps it when it is
/// [plausible](RansacParams::max_perspective) over the area of those pairs and gathers more
/// inlier weight at the inlier threshold than the model before, and repeats from it (a model
/// that fits the near side of a filmed screen extrapolates well enough to catch the next
/// pairs towards the far side). Returns the best such fit, `None` when no homography beats the
/// similarity. Deterministic.
pub fn refine_perspective(
    pairs: &[Pair],
    fit: &RansacFit,
    params: &RansacParams,
) -> Option<RansacFit> {
    if params.max_perspective <= 1.0 {
        return None;
    }
    let t2 = params.threshold * params.threshold;
    let net2 = t2 * PERSPECTIVE_NET * PERSPECTIVE_NET;
    let mut model = Homography::from(fit.transform);
    let mut best_weight = fit.weight;
    let mut best = None;
    for _ in 0..PERSPECTIVE_ROUNDS {
        let (support, _) = score_homography(&model, pairs, net2);
        // Eight pairs at least: a homography has eight degrees of freedom.
        if support.len() < 8 {
            break;
        }
        let (mut lo, mut hi) =
            ((f32::INFINITY, f32::INFINITY), (f32::NEG_INFINITY, f32::NEG_INFINITY));
        for &i in &support {
            let (x, y) = pairs[i].q;
            lo = (lo.0.min(x), lo.1.min(y));
            hi = (hi.0.max(x), hi.1.max(y));
        }
        let plausible_fit = |subset: &[usize]| {
            Homography::fit(pairs, subset).filter(|h| h.plausible(lo, hi, params))
        };
        let Some(grown) = plausible_fit(&support) else { break };
        // The net holds chance pairs too; the fit to its own inliers alone is the sharper one.
        let (inliers, weight) = score_homography(&grown, pairs, t2);
        let (h, inliers, weight) = match plausible_fit(&inliers) {
            Some(sharp) => {
                let (sharp_inliers, sharp_weight) = score_homography(&sharp, pairs, t2);
                if sharp_weight >= weight {
                    (sharp, sharp_inliers, sharp_weight)
                } else {
                    (grown, inliers, weight)
                }
            }
            None => (grown, inliers, weight),
        };
        if weight <= best_weight {
            break;
        }
        best_weight = weight;
        best = Some(RansacFit { transform: fit.transform, perspective: Some(h), inliers, weight });
        model = h;
    }
    best
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
            max_perspective: 1.6,
        }
    }

    /// The verifier's limits: an inlier threshold of 6 px at its 480 px working resolution.
    fn verifier() -> RansacParams {
        RansacParams { threshold: 6.0, max_rotation: 10f32.to_radians(), ..params() }
    }

    /// A picture of 480x270 seen off axis: its `far` side (left or right) is `shrink` times
    /// the height of the near side, with the vertical centre kept, then scaled by `zoom`. Maps
    /// query (the filmed picture) to reference (the picture), as the verifier does.
    fn keystone(shrink: f64, far_left: bool, zoom: f64) -> Homography {
        // Reference corners and where the camera puts them.
        let (w, h) = (480.0f64, 270.0f64);
        let pull = (1.0 - shrink) * h / 2.0;
        let (l, r) = if far_left { (pull, 0.0) } else { (0.0, pull) };
        let src = [(0.0, l), (w, r), (w, h - r), (0.0, h - l)].map(|(x, y)| (x * zoom, y * zoom));
        let dst = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)];
        let pairs: Vec<Pair> = src
            .iter()
            .zip(dst)
            .map(|(&(x, y), (u, v))| Pair {
                q: (x as f32, y as f32),
                r: (u as f32, v as f32),
                w: 1.0,
            })
            .collect();
        Homography::fit(&pairs, &[0, 1, 2, 3]).expect("four corners fix a homography")
    }

    /// `n_in` pairs of `truth` over the query picture (jittered by half a pixel) and `n_out`
    /// random ones.
    fn planted(
        truth: &Homography,
        n_in: usize,
        n_out: usize,
        seed: u64,
        extent: (f32, f32),
    ) -> Vec<Pair> {
        let mut s = seed | 1;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 10_000) as f32 / 10_000.0
        };
        let mut pairs = Vec::new();
        while pairs.len() < n_in {
            let (x, y) = (rnd() * extent.0, rnd() * extent.1);
            let Some((rx, ry)) = truth.apply(x, y) else { continue };
            if (0.0..480.0).contains(&rx) && (0.0..270.0).contains(&ry) {
                pairs.push(Pair { q: (x, y), r: (rx + rnd() - 0.5, ry + rnd() - 0.5), w: 1.0 });
            }
        }
        for _ in 0..n_out {
            pairs.push(Pair {
                q: (rnd() * extent.0, rnd() * extent.1),
                r: (rnd() * 480.0, rnd() * 270.0),
                w: 1.0,
            });
        }
        pairs
    }

    proptest! {
        #[test]
        fn a_picture_filmed_off_axis_is_recovered_in_perspective(
            shrink in 0.78f64..0.88, far_left in any::<bool>(), zoom in 0.8f64..1.2,
            seed in any::<u64>(), n_out in 0usize..40,
        ) {
            // Keystone of about 8-15 degrees: the far side 12-22 % shorter.
            let truth = keystone(shrink, far_left, zoom);
            let extent = ((480.0 * zoom) as f32, (270.0 * zoom) as f32);
            let pairs = planted(&truth, 60, n_out, seed, extent);
            let similarity = fit_similarity_ransac(&pairs, &verifier()).expect("a similarity fits a band");
            let refined = refine_perspective(&pairs, &similarity, &verifier()).expect("a perspective fit");
            prop_assert!(refined.inliers.len() >= 57, "{} of 60 inliers", refined.inliers.len());
            prop_assert!(refined.inliers.len() > similarity.inliers.len());
            let h = refined.perspective.expect("a homography");
            for (x, y) in [(0.1, 0.1), (0.9, 0.1), (0.5, 0.5), (0.1, 0.9), (0.9, 0.9)] {
                let (x, y) = (x * extent.0, y * extent.1);
                let (ex, ey) = truth.apply(x, y).expect("in front");
                let (gx, gy) = h.apply(x, y).expect("in front");
                // Within the inlier threshold everywhere, the far corners included.
                prop_assert!((gx - ex).hypot(gy - ey) < 6.0, "({x}, {y}): {gx},{gy} vs {ex},{ey}");
            }
        }
    }

    #[test]
    fn a_similarity_keeps_its_fit_and_perspective_is_not_invented() {
        // A flat re-stream: the similarity already gathers every true pair; the refinement may
        // only add chance pairs, and must not report a fit weaker than the similarity's.
        let truth = Similarity { a: 0.9, b: 0.02, tx: 20.0, ty: -10.0 };
        let pairs = planted(&Homography::from(truth), 50, 30, 7, (480.0, 270.0));
        let similarity = fit_similarity_ransac(&pairs, &verifier()).expect("a fit");
        assert!(similarity.inliers.len() >= 50);
        if let Some(refined) = refine_perspective(&pairs, &similarity, &verifier()) {
            assert!(refined.weight > similarity.weight);
            assert!(refined.inliers.len() <= 50 + 2, "{} inliers", refined.inliers.len());
        }
    }

    #[test]
    fn a_perspective_beyond_the_limit_is_refused() {
        // The far side at 40 % of the near side: no filmed screen looks like that, and the
        // local scales across the picture differ by far more than 1.6.
        let pairs = planted(&keystone(0.4, false, 1.0), 80, 0, 11, (480.0, 270.0));
        let similarity = fit_similarity_ransac(&pairs, &verifier()).expect("a band fits");
        if let Some(refined) = refine_perspective(&pairs, &similarity, &verifier()) {
            let h = refined.perspective.expect("a homography");
            let (lo, hi) = refined.inliers.iter().fold(
                ((f32::INFINITY, f32::INFINITY), (f32::NEG_INFINITY, f32::NEG_INFINITY)),
                |(lo, hi), &i| {
                    let (x, y) = pairs[i].q;
                    ((lo.0.min(x), lo.1.min(y)), (hi.0.max(x), hi.1.max(y)))
                },
            );
            assert!(h.plausible(lo, hi, &verifier()), "every accepted model is within the limit");
            assert!(
                refined.inliers.len() < 70,
                "the whole picture was taken: {}",
                refined.inliers.len()
            );
        }
        let off = RansacParams { max_perspective: 1.0, ..verifier() };
        let ok = planted(&keystone(0.85, true, 1.0), 60, 0, 3, (480.0, 270.0));
        let s = fit_similarity_ransac(&ok, &off).expect("a fit");
        assert_eq!(refine_perspective(&ok, &s, &off), None, "max_perspective 1 turns it off");
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
