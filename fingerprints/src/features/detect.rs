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

/// Non-zero when the 16 circle bits of `mask` hold 9 consecutive set bits (with wraparound),
/// by doubling runs: 2, 4, 8, then 9. Branch-free, so a loop of it vectorises.
#[inline]
fn arc9(mask: u16) -> u16 {
    let r2 = mask & mask.rotate_right(1);
    let r4 = r2 & r2.rotate_right(2);
    let r8 = r4 & r4.rotate_right(4);
    r8 & mask.rotate_right(8)
}

/// Pixels whose corner test runs side by side: sixteen bytes, one SSE2 register.
const LANES: usize = 16;

/// The bright and dark circle masks of the `L` pixels from index `at` of `pixels`, whose
/// circle lies at `ring` offsets from each centre: bit `k` of a pixel's bright (dark) mask is
/// set when circle point `k` is brighter (darker) than the pixel by more than `t`. A point
/// beyond a saturated bound (255 or 0) is never brighter or darker, exactly as in the
/// unsaturated test.
///
/// Everything stays in registers: sixteen comparisons a side. A quick test on the four cardinal
/// points comes first: nine consecutive circle points always include two neighbouring cardinal
/// points, so a block where no pixel has two neighbouring cardinals beyond the same bound (most
/// of a smooth frame) has no corner and gets empty masks.
#[inline(always)]
fn circle_masks<const L: usize>(
    pixels: &[u8],
    at: usize,
    ring: &[isize; 16],
    t: u8,
) -> ([u16; L], [u16; L]) {
    #[inline(always)]
    fn add_point<const L: usize>(
        planes: &mut [[[u8; L]; 2]; 2],
        k: usize,
        q: &[u8; L],
        hi: &[u8; L],
        lo: &[u8; L],
    ) {
        let bit = 1u8 << (k % 8);
        for i in 0..L {
            planes[0][k / 8][i] |= u8::from(q[i] > hi[i]).wrapping_neg() & bit;
            planes[1][k / 8][i] |= u8::from(q[i] < lo[i]).wrapping_neg() & bit;
        }
    }
    let block = |offset: isize| -> [u8; L] {
        let start = (at as isize + offset) as usize;
        pixels[start..start + L].try_into().expect("L bytes")
    };
    let centre = block(0);
    let hi = centre.map(|v| v.saturating_add(t));
    let lo = centre.map(|v| v.saturating_sub(t));
    // Circle bits 0-7 and 8-15 in separate byte planes: a comparison of sixteen pixels sets
    // one bit of sixteen bytes.
    let mut planes = [[[0u8; L]; 2]; 2];
    for k in [0, 4, 8, 12] {
        add_point(&mut planes, k, &block(ring[k]), &hi, &lo);
    }
    // Neighbouring cardinals: bits 0 and 4 of the low plane, 0 and 4 of the high one (circle
    // points 8 and 12), 4 of the low and 0 of the high (4 and 8), 4 of the high and 0 of the
    // low (12 and 0).
    let pairs = |[low, high]: &[[u8; L]; 2], i: usize| {
        let (l, h) = (low[i], high[i]);
        (l & l >> 4) | (h & h >> 4) | (l >> 4 & h) | (h >> 4 & l)
    };
    let any = (0..L).fold(0, |any, i| any | pairs(&planes[0], i) | pairs(&planes[1], i));
    if any & 1 == 0 {
        return ([0; L], [0; L]);
    }
    for k in [1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15] {
        add_point(&mut planes, k, &block(ring[k]), &hi, &lo);
    }
    let mask = |[low, high]: &[[u8; L]; 2]| {
        std::array::from_fn(|i| u16::from(low[i]) | u16::from(high[i]) << 8)
    };
    (mask(&planes[0]), mask(&planes[1]))
}

/// FAST-9 corners with their score (the summed contrast of the circle pixels beyond the
/// threshold, on the side that made it a corner), after 3x3 non-maximum suppression.
///
/// Row at a time, for speed: the circle masks of blocks of [`LANES`] pixels are built side by
/// side with one branch a block, the quick test ([`circle_masks`]; a row's last few pixels one
/// at a time), then one branch-free pass applies the arc test to the row. The contrast score is
/// computed only for the few corners.
pub(crate) fn fast9(p: &Plane, threshold: u8) -> Vec<Corner> {
    let (w, h) = (p.width, p.height);
    if w <= 2 * BORDER || h <= 2 * BORDER {
        return Vec::new();
    }
    let t = threshold;
    let (x0, x1) = (BORDER, w - BORDER);
    let n = x1 - x0;
    // Scores fit in 16 bits: at most 16 circle pixels times 255.
    let mut scores = vec![0u16; w * h];
    let mut found: Vec<usize> = Vec::new();
    let mut bright = vec![0u16; n];
    let mut dark = vec![0u16; n];
    let mut corner = vec![0u8; n];
    // The circle as offsets from its centre in `p.pixels`.
    let ring = CIRCLE.map(|(dx, dy)| dy * w as isize + dx);
    let mut candidates: Vec<usize> = Vec::new();
    for y in BORDER..h - BORDER {
        let first = y * w + x0;
        let blocks = n / LANES * LANES;
        for (i, (b, d)) in
            bright[..blocks].chunks_exact_mut(LANES).zip(dark.chunks_exact_mut(LANES)).enumerate()
        {
            let (bm, dm) = circle_masks::<LANES>(&p.pixels, first + i * LANES, &ring, t);
            b.copy_from_slice(&bm);
            d.copy_from_slice(&dm);
        }
        for i in blocks..n {
            let (bm, dm) = circle_masks::<1>(&p.pixels, first + i, &ring, t);
            (bright[i], dark[i]) = (bm[0], dm[0]);
        }
        for ((c, b), d) in corner.iter_mut().zip(&bright).zip(&dark) {
            *c = u8::from((arc9(*b) | arc9(*d)) != 0);
        }
        nonzero_positions(&corner, &mut candidates);
        for &i in &candidates {
            let centre = first + i;
            let v = i32::from(p.pixels[centre]);
            let (hv, lv) = (v + i32::from(t), v - i32::from(t));
            // Branch-free: a circle pixel is beyond at most one of the two bounds.
            let (mut bs, mut ds) = (0i32, 0i32);
            for off in ring {
                let q = i32::from(p.pixels[(centre as isize + off) as usize]);
                bs += (q - hv).max(0);
                ds += (lv - q).max(0);
            }
            let (bs, ds) = (bs as u32, ds as u32);
            let score = match (arc9(bright[i]) != 0, arc9(dark[i]) != 0) {
                (true, true) => bs.max(ds),
                (true, false) => bs,
                _ => ds,
            };
            // At least 1, so a corner is never confused with "no corner" in the NMS below.
            scores[centre] = score.clamp(1, u32::from(u16::MAX)) as u16;
            found.push(centre);
        }
    }
    found
        .into_iter()
        .filter_map(|i| {
            let s = scores[i];
            let (x, y) = (i % w, i / w);
            // Ties keep the first in raster order so a plateau yields one corner.
            let above = &scores[i - w - 1..i - w + 2];
            let below = &scores[i + w - 1..i + w + 2];
            let is_max = above.iter().all(|&o| o < s)
                && scores[i - 1] < s
                && scores[i + 1] <= s
                && below.iter().all(|&o| o <= s);
            is_max.then_some(Corner { x, y, score: u32::from(s) })
        })
        .collect()
}

/// Replaces `out` with the positions of the non-zero bytes of `bytes`, in order, reading eight
/// at a time: corners are a small share of a row.
fn nonzero_positions(bytes: &[u8], out: &mut Vec<usize>) {
    out.clear();
    let mut words = bytes.chunks_exact(8);
    for (c, chunk) in words.by_ref().enumerate() {
        let mut word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        while word != 0 {
            let byte = word.trailing_zeros() / 8;
            out.push(c * 8 + byte as usize);
            word &= !(0xFF << (byte * 8));
        }
    }
    let from = bytes.len() - words.remainder().len();
    out.extend(
        words.remainder().iter().enumerate().filter(|(_, b)| **b != 0).map(|(j, _)| from + j),
    );
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

/// The descriptor's sampling pattern laid out for one level: each test's two points as offsets
/// from the keypoint in that level's pixels, the 128 base tests then their 128 mirrors.
pub(crate) struct Pattern {
    width: usize,
    offsets: [[isize; 2]; 256],
}

impl Pattern {
    /// The pattern for planes `width` pixels wide.
    pub(crate) fn new(width: usize) -> Pattern {
        let w = width as isize;
        let at = |(dx, dy): (i8, i8), mirror: bool| {
            let dx = if mirror { -isize::from(dx) } else { isize::from(dx) };
            isize::from(dy) * w + dx
        };
        let mut offsets = [[0isize; 2]; 256];
        for (i, [a, b]) in base_pairs().iter().enumerate() {
            offsets[i] = [at(*a, false), at(*b, false)];
            offsets[i + 128] = [at(*a, true), at(*b, true)];
        }
        Pattern { width, offsets }
    }

    /// Computes the 256-bit descriptor of a keypoint at `(x, y)` on a smoothed level of this
    /// pattern's width, and the mask of its *unstable* bits: tests whose two samples differ by
    /// at most `margin` grey levels, which re-encoding, blur or noise may flip. The caller
    /// guarantees the keypoint keeps [`BORDER`] from every edge.
    pub(crate) fn describe(
        &self,
        p: &Plane,
        x: usize,
        y: usize,
        margin: u8,
    ) -> ([u64; 4], [u64; 4]) {
        debug_assert_eq!(p.width, self.width);
        let base = (y * p.width + x) as isize;
        let mut d = [0u64; 4];
        let mut unstable = [0u64; 4];
        for (i, [a, b]) in self.offsets.iter().enumerate() {
            let (va, vb) = (p.pixels[(base + a) as usize], p.pixels[(base + b) as usize]);
            d[i / 64] |= u64::from(va < vb) << (i % 64);
            unstable[i / 64] |= u64::from(va.abs_diff(vb) <= margin) << (i % 64);
        }
        (d, unstable)
    }
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
        let has_arc9 = |m: u16| arc9(m) != 0;
        assert!(has_arc9(0b1_1111_1111));
        assert!(!has_arc9(0b1111_1111));
        assert!(has_arc9(0xF000 | 0x1F), "an arc across bit 15 and bit 0 counts");
        assert!(!has_arc9(0b0101_0101_0101_0101));
    }

    /// The textbook per-pixel FAST-9 with the same score and suppression rules.
    fn fast9_naive(p: &Plane, t: u8) -> Vec<(usize, usize, u32)> {
        let (w, h) = (p.width, p.height);
        let mut scores = vec![0u32; w * h];
        for y in BORDER..h - BORDER {
            for x in BORDER..w - BORDER {
                let v = i32::from(p.at(x, y));
                let (mut bm, mut dm, mut bs, mut ds) = (0u32, 0u32, 0u32, 0u32);
                for (k, &(dx, dy)) in CIRCLE.iter().enumerate() {
                    let q = i32::from(p.at((x as isize + dx) as usize, (y as isize + dy) as usize));
                    if q > v + i32::from(t) {
                        bm |= 1 << k;
                        bs += (q - v - i32::from(t)) as u32;
                    } else if q < v - i32::from(t) {
                        dm |= 1 << k;
                        ds += (v - i32::from(t) - q) as u32;
                    }
                }
                let arc = |m: u32| (0..16).any(|s| (0..9).all(|i| m >> ((s + i) % 16) & 1 == 1));
                scores[y * w + x] = match (arc(bm), arc(dm)) {
                    (true, true) => bs.max(ds),
                    (true, false) => bs,
                    (false, true) => ds,
                    (false, false) => 0,
                };
            }
        }
        let mut out = Vec::new();
        for y in BORDER..h - BORDER {
            for x in BORDER..w - BORDER {
                let s = scores[y * w + x];
                if s == 0 {
                    continue;
                }
                let before = [(-1, -1), (0, -1), (1, -1), (-1, 0)];
                let after = [(1, 0), (-1, 1), (0, 1), (1, 1)];
                let at = |(dx, dy): (isize, isize)| {
                    scores[(y as isize + dy) as usize * w + (x as isize + dx) as usize]
                };
                if before.iter().all(|&d| at(d) < s) && after.iter().all(|&d| at(d) <= s) {
                    out.push((x, y, s));
                }
            }
        }
        out
    }

    #[test]
    fn the_row_vectorised_fast9_finds_exactly_the_textbook_corners() {
        let mut s: u64 = 0x1234_5678;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for (w, h, t) in [(97usize, 61usize, 12u8), (64, 40, 0), (150, 80, 40), (33, 33, 250)] {
            // Blocky noise with saturated values, so corners, plateaus and clipped bounds occur.
            let pixels = (0..w * h)
                .map(|i| {
                    let (x, y) = (i % w, i / w);
                    let v = (next() % 256) as u8;
                    if (x / 3 + y / 4) % 5 == 0 { v | 0xF0 } else { v & 0x3F }
                })
                .collect();
            // And a flat frame with a few small patches, where most blocks of pixels are
            // passed over by the quick test on the cardinal points.
            let mut sparse = vec![100u8; w * h];
            for _ in 0..6 {
                let (cx, cy, g) = (next() as usize % w, next() as usize % h, next() as u8);
                for y in cy..(cy + 5).min(h) {
                    sparse[y * w + cx..y * w + (cx + 4).min(w)].fill(g);
                }
            }
            for (kind, pixels) in [("noise", pixels), ("sparse", sparse)] {
                let plane = Plane { width: w, height: h, pixels };
                let fast: Vec<(usize, usize, u32)> =
                    fast9(&plane, t).iter().map(|c| (c.x, c.y, c.score)).collect();
                assert_eq!(fast, fast9_naive(&plane, t), "{kind} {w}x{h} threshold {t}");
            }
        }
    }

    #[test]
    fn a_lone_arc_is_found_wherever_it_starts_on_the_circle() {
        // One arc of nine circle points on a flat frame: its block has no other corner, so only
        // the quick test on the cardinal points stands between it and the full test.
        let (w, h) = (80usize, 40usize);
        for start in 0..16 {
            for value in [0u8, 200] {
                let mut pixels = vec![100u8; w * h];
                let (cx, cy) = (BORDER + 5 + start, 20);
                for k in start..start + 9 {
                    let (dx, dy) = CIRCLE[k % 16];
                    pixels[(cy as isize + dy) as usize * w + (cx as isize + dx) as usize] = value;
                }
                let plane = Plane { width: w, height: h, pixels };
                let fast: Vec<(usize, usize, u32)> =
                    fast9(&plane, 12).iter().map(|c| (c.x, c.y, c.score)).collect();
                let naive = fast9_naive(&plane, 12);
                assert!(naive.iter().any(|&(x, y, _)| (x, y) == (cx, cy)), "arc from {start}");
                assert_eq!(fast, naive, "arc from {start}, value {value}");
            }
        }
    }

    #[test]
    fn the_laid_out_pattern_describes_as_the_pairs_read_point_by_point() {
        let (w, h) = (61usize, 47usize);
        let pixels = (0..w * h).map(|i| ((i * 7919 + (i / w) * 31) % 251) as u8).collect();
        let plane = Plane { width: w, height: h, pixels };
        let pattern = Pattern::new(w);
        for (x, y) in [(BORDER, BORDER), (30, 23), (w - BORDER - 1, h - BORDER - 1)] {
            let at = |(dx, dy): (i8, i8), mirror: bool| {
                let dx = if mirror { -isize::from(dx) } else { isize::from(dx) };
                plane.at((x as isize + dx) as usize, (y as isize + isize::from(dy)) as usize)
            };
            let (mut d, mut unstable) = ([0u64; 4], [0u64; 4]);
            for (i, [a, b]) in base_pairs().iter().enumerate() {
                for (half, mirror) in [(0, false), (2, true)] {
                    let (va, vb) = (at(*a, mirror), at(*b, mirror));
                    d[half + i / 64] |= u64::from(va < vb) << (i % 64);
                    unstable[half + i / 64] |= u64::from(va.abs_diff(vb) <= 2) << (i % 64);
                }
            }
            assert_eq!(pattern.describe(&plane, x, y, 2), (d, unstable), "({x}, {y})");
        }
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
