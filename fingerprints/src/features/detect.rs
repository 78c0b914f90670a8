//! FAST-9 corners, grid-spread selection and the mirror-symmetric BRIEF descriptor.

use super::image::Plane;
use std::sync::OnceLock;

/// Offsets of the 16-pixel Bresenham circle of radius 3, clockwise from the top.
const CIRCLE: [(isize, isize); 16] = [
    (0, -3),
    (1, -3),
    (2, -2),
    (3, -1),
    (3, 0),
    (3, 1),
    (2, 2),
    (1, 3),
    (0, 3),
    (-1, 3),
    (-2, 2),
    (-3, 1),
    (-3, 0),
    (-3, -1),
    (-2, -2),
    (-1, -3),
];

/// Radius of the BRIEF sampling patch. Points lie within it; keypoints keep this margin (plus
/// FAST's 3) from every border so no test reads outside the level.
pub(crate) const PATCH_RADIUS: isize = 13;
/// Keypoints closer than this to a border of their level are not detected.
pub(crate) const BORDER: usize = PATCH_RADIUS as usize + 3;

/// A FAST corner on one pyramid level, in that level's integer pixel coordinates.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Corner {
    pub(crate) x: usize,
    pub(crate) y: usize,
    pub(crate) score: u32,
}

/// True when `mask` (16 circle bits) has 9 consecutive set bits, wrapping around.
#[inline]
fn has_arc9(mask: u32) -> bool {
    let m = mask | (mask << 16);
    let mut a = m;
    for s in 1..9 {
        a &= m >> s;
    }
    a != 0
}

/// FAST-9 corners with their score (the summed contrast of the circle pixels beyond the
/// threshold, on the side that made it a corner), after 3x3 non-maximum suppression.
pub(crate) fn fast9(p: &Plane, threshold: u8) -> Vec<Corner> {
    let (w, h) = (p.width, p.height);
    if w <= 2 * BORDER || h <= 2 * BORDER {
        return Vec::new();
    }
    let offs: [isize; 16] = CIRCLE.map(|(dx, dy)| dy * w as isize + dx);
    let t = i32::from(threshold);
    let mut scores = vec![0u32; w * h];
    let mut found = Vec::new();
    for y in BORDER..h - BORDER {
        for x in BORDER..w - BORDER {
            let i = y * w + x;
            let v = i32::from(p.pixels[i]);
            let px = |k: usize| i32::from(p.pixels[(i as isize + offs[k]) as usize]);
            // An arc of 9 contains at least two of the four compass points: reject early.
            let (a, b, c, d) = (px(0), px(4), px(8), px(12));
            let bright =
                (a > v + t) as u8 + (b > v + t) as u8 + (c > v + t) as u8 + (d > v + t) as u8;
            let dark =
                (a < v - t) as u8 + (b < v - t) as u8 + (c < v - t) as u8 + (d < v - t) as u8;
            if bright < 2 && dark < 2 {
                continue;
            }
            let mut bm = 0u32;
            let mut dm = 0u32;
            let mut bs = 0u32;
            let mut ds = 0u32;
            for k in 0..16 {
                let q = px(k);
                if q > v + t {
                    bm |= 1 << k;
                    bs += (q - v - t) as u32;
                } else if q < v - t {
                    dm |= 1 << k;
                    ds += (v - t - q) as u32;
                }
            }
            let score = match (has_arc9(bm), has_arc9(dm)) {
                (true, true) => bs.max(ds),
                (true, false) => bs,
                (false, true) => ds,
                (false, false) => continue,
            };
            scores[i] = score;
            found.push(i);
        }
    }
    found
        .into_iter()
        .filter_map(|i| {
            let s = scores[i];
            let (x, y) = (i % w, i / w);
            // Ties keep the first in raster order so a plateau yields one corner.
            let neighbours =
                [i - w - 1, i - w, i - w + 1, i - 1, i + 1, i + w - 1, i + w, i + w + 1];
            let is_max = neighbours
                .iter()
                .enumerate()
                .all(|(k, &j)| if k < 4 { scores[j] < s } else { scores[j] <= s });
            is_max.then_some(Corner { x, y, score: s })
        })
        .collect()
}

/// Keeps at most `budget` corners spread over a `cols x rows` grid: each cell first contributes
/// its strongest `budget / cells` corners, then the leftover budget goes to the strongest of the
/// rest. A face-cam or a text banner thus cannot take every feature of the frame.
pub(crate) fn spread(
    mut corners: Vec<Corner>,
    w: usize,
    h: usize,
    cols: usize,
    rows: usize,
    budget: usize,
) -> Vec<Corner> {
    if corners.len() <= budget {
        return corners;
    }
    corners.sort_unstable_by(|a, b| b.score.cmp(&a.score).then(a.y.cmp(&b.y)).then(a.x.cmp(&b.x)));
    let cells = cols * rows;
    let quota = (budget / cells).max(1);
    let mut taken = vec![0usize; cells];
    let mut keep = Vec::with_capacity(budget);
    let mut rest = Vec::new();
    for c in corners {
        let cell = (c.y * rows / h).min(rows - 1) * cols + (c.x * cols / w).min(cols - 1);
        if taken[cell] < quota && keep.len() < budget {
            taken[cell] += 1;
            keep.push(c);
        } else {
            rest.push(c);
        }
    }
    let room = budget - keep.len();
    keep.extend(rest.into_iter().take(room));
    keep
}

/// The 128 base point pairs of the descriptor; bit `i + 128` is the left-right mirror of pair
/// `i`, so the descriptor of a mirrored image is this one with its two halves swapped.
fn base_pairs() -> &'static [[(i8, i8); 2]; 128] {
    static PAIRS: OnceLock<[[(i8, i8); 2]; 128]> = OnceLock::new();
    PAIRS.get_or_init(|| {
        // A fixed xorshift stream: the pattern is part of the index format and must never vary.
        let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        // Approximately Gaussian offsets (sum of four uniforms), sigma about a third of the
        // patch radius, as in the BRIEF paper's best-performing pattern (G II).
        let mut coord = move || -> i8 {
            let sum: i64 = (0..4).map(|_| (next() % 1000) as i64 - 500).sum();
            let v = sum as f64 / 2000.0 * 1.732 * (PATCH_RADIUS as f64 / 1.5);
            v.round().clamp(-(PATCH_RADIUS as f64), PATCH_RADIUS as f64) as i8
        };
        let mut pairs = [[(0i8, 0i8); 2]; 128];
        let mut n = 0;
        while n < 128 {
            let a = (coord(), coord());
            let b = (coord(), coord());
            // Skip degenerate tests and tests that equal their own mirror (both points on the
            // vertical axis), which would make the mirror bit a duplicate.
            if a == b || (a.0 == 0 && b.0 == 0) {
                continue;
            }
            pairs[n] = [a, b];
            n += 1;
        }
        pairs
    })
}

/// Computes the 256-bit descriptor of a keypoint at `(x, y)` on a smoothed level. The caller
/// guarantees the keypoint keeps [`BORDER`] from every edge.
pub(crate) fn describe(p: &Plane, x: usize, y: usize) -> [u64; 4] {
    let w = p.width as isize;
    let base = (y * p.width + x) as isize;
    let at = |dx: i8, dy: i8, mirror: bool| {
        let dx = if mirror { -isize::from(dx) } else { isize::from(dx) };
        p.pixels[(base + isize::from(dy) * w + dx) as usize]
    };
    let mut d = [0u64; 4];
    for (i, [a, b]) in base_pairs().iter().enumerate() {
        let bit = u64::from(at(a.0, a.1, false) < at(b.0, b.1, false));
        let mbit = u64::from(at(a.0, a.1, true) < at(b.0, b.1, true));
        d[i / 64] |= bit << (i % 64);
        d[2 + i / 64] |= mbit << (i % 64);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_circle_has_radius_three_and_sixteen_distinct_points() {
        let mut pts = CIRCLE.to_vec();
        pts.sort();
        pts.dedup();
        assert_eq!(pts.len(), 16);
        for (dx, dy) in CIRCLE {
            let r2 = dx * dx + dy * dy;
            assert!((8..=10).contains(&r2), "({dx},{dy})");
        }
    }

    #[test]
    fn arc_detection_needs_nine_consecutive_bits_with_wraparound() {
        assert!(has_arc9(0b1_1111_1111));
        assert!(!has_arc9(0b1111_1111));
        assert!(has_arc9(0xF000 | 0x1F), "an arc across bit 15 and bit 0 counts");
        assert!(!has_arc9(0b0101_0101_0101_0101));
    }

    #[test]
    fn pattern_points_stay_inside_the_patch() {
        for [a, b] in base_pairs() {
            for p in [a, b] {
                assert!(
                    isize::from(p.0).abs() <= PATCH_RADIUS
                        && isize::from(p.1).abs() <= PATCH_RADIUS
                );
            }
        }
    }
}
