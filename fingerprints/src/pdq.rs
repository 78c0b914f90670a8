//! PDQ: Meta's 256-bit perceptual image hash, with its quality score and the eight dihedral
//! (rotation and mirror) variants.
//!
//! This is a port of the reference implementation (ThreatExchange `pdq/cpp`), written to give
//! the same bits, not merely similar ones: the same Jarosz tent filter (two passes of 1-D box
//! filters per axis, window `ceil(dim / 128)`), the same centre-sampling decimation to 64x64,
//! the same single-precision 16x16 DCT from the 64x64 buffer with the same summation order, the
//! same quality metric (gradients quantised to integers exactly as the reference does) and the
//! same Torben median. Every floating-point operation happens in the order the reference
//! performs it, so rounding matches too; the speed comes from vectorising *across* independent
//! rows and columns instead of reordering any one sum.
//!
//! The dihedral hashes come from sign flips and transposes of the one 16x16 DCT, so the
//! mirrored hash a matcher needs costs a median and 256 comparisons, not a second hash.

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::{Error, ErrorKind, Hash256, Luma};

/// A PDQ hash and its quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PdqHash {
    /// The 256 bits.
    pub hash: Hash256,
    /// How much usable detail the image has, 0 to 100. Meta's guidance (and Offside's policy)
    /// is that hashes below 50 are too featureless to count as evidence.
    pub quality: u8,
}

/// The hashes of the eight dihedral transforms of an image (its four rotations and four
/// mirrors), as the reference's `pdqDihedralHash256esFromFloatLuma` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Dihedral {
    /// The image as given.
    pub original: Hash256,
    /// Rotated 90 degrees.
    pub rotate90: Hash256,
    /// Rotated 180 degrees.
    pub rotate180: Hash256,
    /// Rotated 270 degrees.
    pub rotate270: Hash256,
    /// Flipped about the horizontal (x) axis: the image turned upside down. (The reference's
    /// name; the left-right mirror is [`Dihedral::flip_y`], also reachable as
    /// [`Dihedral::mirror`].)
    pub flip_x: Hash256,
    /// Flipped about the vertical (y) axis: the left-right mirror a re-streamer applies to
    /// dodge matching.
    pub flip_y: Hash256,
    /// Transposed about the main diagonal.
    pub flip_plus1: Hash256,
    /// Transposed about the anti-diagonal.
    pub flip_minus1: Hash256,
}

impl Dihedral {
    /// The hash of the left-right mirror image ([`Dihedral::flip_y`] in the reference's naming).
    pub fn mirror(&self) -> Hash256 {
        self.flip_y
    }

    /// The eight hashes in the reference's order (original, rotate90, rotate180, rotate270,
    /// flip_x, flip_y, flip_plus1, flip_minus1).
    pub fn to_array(&self) -> [Hash256; 8] {
        [
            self.original,
            self.rotate90,
            self.rotate180,
            self.rotate270,
            self.flip_x,
            self.flip_y,
            self.flip_plus1,
            self.flip_minus1,
        ]
    }
}

/// Hashes a greyscale image.
///
/// Images smaller than 5 pixels on a side get the all-zero hash and quality 0, as in the
/// reference. A 64x64 image is hashed without the blur, also as in the reference (its
/// `pdqHash256FromFloatLuma` assumes such input was already downsampled, e.g. by FFmpeg).
pub fn pdq(img: &Luma) -> PdqHash {
    let (dct, quality) = dct_of(img.height() as usize, img.width() as usize, true, |out| {
        for (o, &p) in out.iter_mut().zip(img.pixels()) {
            *o = f32::from(p);
        }
    });
    PdqHash { hash: bits_of(&dct), quality }
}

/// Hashes a greyscale image and derives the seven other dihedral hashes from the same DCT.
///
/// Returns the hashes and the quality. `original` equals [`pdq`]'s hash except for 64x64
/// input, where the reference's dihedral entry point blurs and [`pdq`] does not.
pub fn pdq_dihedral(img: &Luma) -> (Dihedral, u8) {
    let (dct, quality) = dct_of(img.height() as usize, img.width() as usize, false, |out| {
        for (o, &p) in out.iter_mut().zip(img.pixels()) {
            *o = f32::from(p);
        }
    });
    (dihedral_of(&dct), quality)
}

/// Hashes interleaved 8-bit RGB pixels, converting to luma in floating point
/// (0.299 R + 0.587 G + 0.114 B, not rounded to 8 bits), which is what Meta's reference
/// bindings feed the hasher. Prefer this over [`Luma::from_rgb`] + [`pdq`] when the RGB is at
/// hand and bit-exact agreement with other PDQ implementations matters.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] if `rgb.len()` is not `3 * width * height` or a dimension is 0.
pub fn pdq_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<PdqHash, Error> {
    check_rgb(width, height, rgb)?;
    let (dct, quality) =
        dct_of(height as usize, width as usize, true, |out| fill_from_rgb(out, rgb));
    Ok(PdqHash { hash: bits_of(&dct), quality })
}

/// [`pdq_dihedral`] for interleaved 8-bit RGB pixels, with [`pdq_rgb`]'s luma conversion.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] if `rgb.len()` is not `3 * width * height` or a dimension is 0.
pub fn pdq_dihedral_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<(Dihedral, u8), Error> {
    check_rgb(width, height, rgb)?;
    let (dct, quality) =
        dct_of(height as usize, width as usize, false, |out| fill_from_rgb(out, rgb));
    Ok((dihedral_of(&dct), quality))
}

fn check_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<(), Error> {
    if width == 0 || height == 0 || rgb.len() as u64 != 3 * u64::from(width) * u64::from(height) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "{width}x{height} RGB needs {} non-zero bytes, got {}",
                3 * u64::from(width) * u64::from(height),
                rgb.len()
            ),
        ));
    }
    Ok(())
}

/// The reference's Python bindings compute luma in double precision (NumPy) and round once to
/// single precision; doing the same keeps the hashes bit-identical to the published vectors.
fn fill_from_rgb(out: &mut [f32], rgb: &[u8]) {
    for (o, p) in out.iter_mut().zip(rgb.chunks_exact(3)) {
        *o = (f64::from(p[0]) * 0.299 + f64::from(p[1]) * 0.587 + f64::from(p[2]) * 0.114) as f32;
    }
}

/// The reference's minimum hashable side.
const MIN_HASHABLE_DIM: usize = 5;
/// Two X/Y passes of box filters make the tent ("Jarosz") filter.
const JAROSZ_PASSES: usize = 2;
/// Rows per strip for the horizontal pass. The strip is transposed so that the running sums of
/// `STRIP` rows advance together in SIMD lanes, while each row's own sum keeps the reference's
/// sequential order; 16 rows of a 1280-pixel frame fit comfortably in L2.
const STRIP: usize = 16;

type Dct16 = [f32; 256];

struct Buffers {
    a: Vec<f32>,
    b: Vec<f32>,
    strip_in: Vec<f32>,
    strip_out: Vec<f32>,
    sums: Vec<f32>,
}

thread_local! {
    // Frame-sized scratch reused across calls on one thread: a keyframe worker hashes frame after
    // frame of the same size, and fresh megabyte allocations would cost page faults each time.
    static BUFFERS: RefCell<Buffers> = const {
        RefCell::new(Buffers { a: Vec::new(), b: Vec::new(), strip_in: Vec::new(), strip_out: Vec::new(), sums: Vec::new() })
    };
}

/// Runs the reference pipeline up to the 16x16 DCT; `fill` writes the float luma, row-major.
/// Returns the DCT and the quality.
fn dct_of(
    rows: usize,
    cols: usize,
    skip_blur_at_64: bool,
    fill: impl FnOnce(&mut [f32]),
) -> (Dct16, u8) {
    if rows < MIN_HASHABLE_DIM || cols < MIN_HASHABLE_DIM {
        // The reference clears the hash; an all-zero DCT thresholds to all-zero bits.
        return ([0.0; 256], 0);
    }
    let mut small = [[0f32; 64]; 64];
    BUFFERS.with(|cell| {
        let mut guard = cell.borrow_mut();
        let bufs = &mut *guard;
        let n = rows * cols;
        // `fill` writes every element of `a`, and the first pass every element of `b`: what a
        // buffer held from the last frame needs no clearing (two frame-sized memsets).
        bufs.a.resize(n, 0.0);
        fill(&mut bufs.a);
        if skip_blur_at_64 && rows == 64 && cols == 64 {
            for (dst, src) in small.iter_mut().zip(bufs.a.chunks_exact(64)) {
                dst.copy_from_slice(src);
            }
            return;
        }
        bufs.b.resize(n, 0.0);
        let window_along_rows = jarosz_window(cols, 64);
        let window_along_cols = jarosz_window(rows, 64);
        for _ in 0..JAROSZ_PASSES {
            box_along_rows(
                &bufs.a,
                &mut bufs.b,
                rows,
                cols,
                window_along_rows,
                &mut bufs.strip_in,
                &mut bufs.strip_out,
                &mut bufs.sums,
            );
            box_along_cols(&bufs.b, &mut bufs.a, rows, cols, window_along_cols, &mut bufs.sums);
        }
        decimate(&bufs.a, rows, cols, &mut small);
    });
    let quality = quality_of(&small);
    (dct64_to_16(&small), quality)
}

/// `computeJaroszFilterWindowSize`: half the decimation step, rounded up.
fn jarosz_window(old: usize, new: usize) -> usize {
    old.div_ceil(2 * new)
}

/// The reference's `box1DFloat`, run on `lanes` independent vectors at once. Vector element `i`
/// of lane `l` lives at `input[i * lanes + l]`; each lane's running sum sees exactly the
/// reference's sequence of additions, subtractions and divisions.
fn box_lanes(
    input: &[f32],
    out: &mut [f32],
    len: usize,
    lanes: usize,
    window: usize,
    sums: &mut Vec<f32>,
) {
    let half = (window + 2) / 2;
    let phase1 = half - 1;
    let phase2 = window - half + 1;
    let phase3 = len - window;
    let phase4 = half - 1;
    sums.clear();
    sums.resize(lanes, 0.0);
    let row = |i: usize| &input[i * lanes..(i + 1) * lanes];
    let (mut li, mut ri, mut oi) = (0usize, 0usize, 0usize);
    let mut current = 0u32;
    for _ in 0..phase1 {
        for (s, &x) in sums.iter_mut().zip(row(ri)) {
            *s += x;
        }
        current += 1;
        ri += 1;
    }
    for _ in 0..phase2 {
        current += 1;
        let div = current as f32;
        let o = &mut out[oi * lanes..(oi + 1) * lanes];
        for ((s, &x), o) in sums.iter_mut().zip(row(ri)).zip(o) {
            *s += x;
            *o = *s / div;
        }
        ri += 1;
        oi += 1;
    }
    let div = current as f32;
    for _ in 0..phase3 {
        let o = &mut out[oi * lanes..(oi + 1) * lanes];
        for (((s, &x), &y), o) in sums.iter_mut().zip(row(ri)).zip(row(li)).zip(o) {
            *s += x;
            *s -= y;
            *o = *s / div;
        }
        li += 1;
        ri += 1;
        oi += 1;
    }
    for _ in 0..phase4 {
        current -= 1;
        let div = current as f32;
        let o = &mut out[oi * lanes..(oi + 1) * lanes];
        for ((s, &y), o) in sums.iter_mut().zip(row(li)).zip(o) {
            *s -= y;
            *o = *s / div;
        }
        li += 1;
        oi += 1;
    }
}

/// Vertical box filter: every column at once, the lanes being the columns themselves.
fn box_along_cols(
    input: &[f32],
    out: &mut [f32],
    rows: usize,
    cols: usize,
    window: usize,
    sums: &mut Vec<f32>,
) {
    box_lanes(input, out, rows, cols, window, sums);
}

/// Horizontal box filter: strips of rows are transposed so their running sums become lanes.
#[allow(clippy::too_many_arguments)]
fn box_along_rows(
    input: &[f32],
    out: &mut [f32],
    rows: usize,
    cols: usize,
    window: usize,
    strip_in: &mut Vec<f32>,
    strip_out: &mut Vec<f32>,
    sums: &mut Vec<f32>,
) {
    strip_in.resize(cols * STRIP, 0.0);
    strip_out.resize(cols * STRIP, 0.0);
    let mut r0 = 0;
    while r0 < rows {
        let h = STRIP.min(rows - r0);
        let tin = &mut strip_in[..cols * h];
        for (l, src) in input[r0 * cols..(r0 + h) * cols].chunks_exact(cols).enumerate() {
            for (c, &v) in src.iter().enumerate() {
                tin[c * h + l] = v;
            }
        }
        let tout = &mut strip_out[..cols * h];
        box_lanes(tin, tout, cols, h, window, sums);
        for (l, dst) in out[r0 * cols..(r0 + h) * cols].chunks_exact_mut(cols).enumerate() {
            for (c, d) in dst.iter_mut().enumerate() {
                *d = tout[c * h + l];
            }
        }
        r0 += h;
    }
}

/// `decimateFloat`: sample the centres of a 64x64 grid of cells.
fn decimate(input: &[f32], rows: usize, cols: usize, out: &mut [[f32; 64]; 64]) {
    let col_index: [usize; 64] =
        std::array::from_fn(|j| (((j as f64 + 0.5) * cols as f64) / 64.0) as usize);
    for (i, out_row) in out.iter_mut().enumerate() {
        let ini = (((i as f64 + 0.5) * rows as f64) / 64.0) as usize;
        let src = &input[ini * cols..(ini + 1) * cols];
        for (o, &j) in out_row.iter_mut().zip(&col_index) {
            *o = src[j];
        }
    }
}

/// `pdqImageDomainQualityMetric`: the sum of absolute neighbour differences, each quantised to
/// an integer percentage of full scale (so many tiny gradients do not add up to detail).
fn quality_of(buf: &[[f32; 64]; 64]) -> u8 {
    let quantised = |u: f32, v: f32| (((u - v) * 100.0) / 255.0) as i32;
    let mut sum: i32 = 0;
    for (upper, lower) in buf.iter().zip(&buf[1..]) {
        for (&u, &v) in upper.iter().zip(lower) {
            sum += quantised(u, v).abs();
        }
    }
    for row in buf {
        for pair in row.windows(2) {
            sum += quantised(pair[0], pair[1]).abs();
        }
    }
    (sum / 90).min(100) as u8
}

/// The 16x64 DCT-II basis (rows 1..=16 of the 64-point DCT), computed as the reference does:
/// a single-precision scale times a double-precision cosine, rounded to single precision.
fn dct_matrix() -> &'static [[f32; 64]; 16] {
    static MATRIX: OnceLock<[[f32; 64]; 16]> = OnceLock::new();
    MATRIX.get_or_init(|| {
        let scale = f64::from((2.0f64 / 64.0).sqrt() as f32);
        std::array::from_fn(|i| {
            std::array::from_fn(|j| {
                let angle =
                    (std::f64::consts::PI / 2.0 / 64.0) * (i + 1) as f64 * (2 * j + 1) as f64;
                (scale * angle.cos()) as f32
            })
        })
    })
}

/// `dct64To16`: B = D A Dᵀ, each output a sequential single-precision sum over k, as in the
/// reference; the loops run across the independent outputs so they vectorise.
fn dct64_to_16(a: &[[f32; 64]; 64]) -> Dct16 {
    let d = dct_matrix();
    let mut t = [[0f32; 64]; 16];
    for (t_row, d_row) in t.iter_mut().zip(d) {
        for (&dk, a_row) in d_row.iter().zip(a) {
            for (t, &x) in t_row.iter_mut().zip(a_row) {
                *t += dk * x;
            }
        }
    }
    // Dᵀ so the innermost loop runs over the 16 contiguous outputs of a row.
    let mut dt = [[0f32; 16]; 64];
    for (j, d_row) in d.iter().enumerate() {
        for (k, &v) in d_row.iter().enumerate() {
            dt[k][j] = v;
        }
    }
    let mut b = [0f32; 256];
    for (b_row, t_row) in b.chunks_exact_mut(16).zip(&t) {
        for (&tk, dt_row) in t_row.iter().zip(&dt) {
            for (o, &dv) in b_row.iter_mut().zip(dt_row) {
                *o += tk * dv;
            }
        }
    }
    b
}

/// The 128th smallest of the 256 coefficients: what the reference's Torben median returns.
fn median(dct: &Dct16) -> f32 {
    let mut copy = *dct;
    let (_, m, _) = copy.select_nth_unstable_by(127, f32::total_cmp);
    *m
}

/// `pdqBuffer16x16ToBits`: bit `16 i + j` is set when coefficient (i, j) exceeds the median.
fn bits_of(dct: &Dct16) -> Hash256 {
    let m = median(dct);
    let mut h = Hash256::ZERO;
    for (k, &v) in dct.iter().enumerate() {
        if v > m {
            h.set_bit(k);
        }
    }
    h
}

/// A dihedral transform in the DCT domain: optional transpose, then a sign per coefficient.
fn transformed(a: &Dct16, transpose: bool, negate: impl Fn(usize, usize) -> bool) -> Hash256 {
    let mut b = [0f32; 256];
    for i in 0..16 {
        for j in 0..16 {
            let v = if negate(i, j) { -a[i * 16 + j] } else { a[i * 16 + j] };
            if transpose {
                b[j * 16 + i] = v;
            } else {
                b[i * 16 + j] = v;
            }
        }
    }
    bits_of(&b)
}

/// The reference's `dct16OriginalTo*` family: the DCT of a mirrored image is the original's with
/// every odd- (or even-) indexed basis function negated, and a transpose swaps the axes.
fn dihedral_of(a: &Dct16) -> Dihedral {
    let even = |x: usize| x & 1 == 0;
    Dihedral {
        original: bits_of(a),
        rotate90: transformed(a, true, |_, j| even(j)),
        rotate180: transformed(a, false, |i, j| !even(i + j)),
        rotate270: transformed(a, true, |i, _| even(i)),
        flip_x: transformed(a, false, |i, _| even(i)),
        flip_y: transformed(a, false, |_, j| even(j)),
        flip_plus1: transformed(a, true, |_, _| false),
        flip_minus1: transformed(a, true, |i, j| !even(i + j)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn textured(width: u32, height: u32) -> Luma {
        let pixels = (0..height)
            .flat_map(|y| (0..width).map(move |x| ((x * 7 + y * 13 + (x * y) % 31) % 256) as u8))
            .collect();
        Luma::new(width, height, pixels).unwrap()
    }

    #[test]
    fn jarosz_window_is_half_the_decimation_step_rounded_up() {
        assert_eq!(jarosz_window(1024, 64), 8);
        assert_eq!(jarosz_window(1280, 64), 10);
        assert_eq!(jarosz_window(1281, 64), 11);
        assert_eq!(jarosz_window(5, 64), 1);
    }

    #[test]
    fn box_filter_matches_the_reference_walkthrough() {
        // The reference's comment for a window of 7 over 0..16 lists the running sums; our
        // output is those sums divided by the current window size.
        let input: Vec<f32> = (0..16).map(|x| x as f32).collect();
        let mut out = vec![0.0; 16];
        box_lanes(&input, &mut out, 16, 1, 7, &mut Vec::new());
        let sums = [6, 10, 15, 21, 28, 35, 42, 49, 56, 63, 70, 77, 84, 75, 65, 54];
        let sizes = [4, 5, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 5, 4];
        for i in 0..16 {
            assert_eq!(out[i], sums[i] as f32 / sizes[i] as f32, "output {i}");
        }
    }

    #[test]
    fn median_is_the_lower_middle_value() {
        let mut v = [0f32; 256];
        for (i, x) in v.iter_mut().enumerate() {
            *x = (255 - i) as f32;
        }
        assert_eq!(median(&v), 127.0);
        assert_eq!(bits_of(&v).count_ones(), 128);
    }

    #[test]
    fn tiny_images_hash_to_zero_with_zero_quality() {
        let h = pdq(&textured(4, 100));
        assert_eq!(h, PdqHash { hash: Hash256::ZERO, quality: 0 });
    }

    #[test]
    fn mirrored_image_hashes_to_the_mirror_variant() {
        // 333 columns give an odd box window and a sampling grid symmetric about the centre,
        // where the DCT-domain mirror is exact up to float rounding.
        let img = textured(333, 120);
        let (d, q) = pdq_dihedral(&img);
        let mirrored = pdq(&img.flip_horizontal());
        assert_eq!(q, pdq(&img).quality);
        assert!(
            d.mirror().distance(&mirrored.hash) <= 2,
            "{}",
            d.mirror().distance(&mirrored.hash)
        );
        assert!(d.original.distance(&mirrored.hash) > 40);
    }

    #[test]
    fn dihedral_original_equals_the_plain_hash() {
        let img = textured(333, 217);
        assert_eq!(pdq_dihedral(&img).0.original, pdq(&img).hash);
    }

    #[test]
    fn rgb_input_is_length_checked() {
        assert_eq!(pdq_rgb(10, 10, &[0; 299]).unwrap_err().kind(), ErrorKind::InvalidInput);
        assert!(pdq_rgb(10, 10, &[0; 300]).is_ok());
    }
}
