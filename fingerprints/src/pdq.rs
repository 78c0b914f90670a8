//! PDQ: Meta's 256-bit perceptual image hash, with its quality score and the eight dihedral
//! (rotation and mirror) variants.
//!
//! This is a port of the reference implementation (ThreatExchange `pdq/cpp`), written to give
//! the same bits, not merely similar ones: the same Jarosz tent filter (two passes of 1-D box
//! filters per axis, window `ceil(dim / 128)`), the same centre-sampling decimation to 64x64,
//! the same single-precision 16x16 DCT from the 64x64 buffer with the same summation order, the
//! same quality metric (gradients quantised to integers exactly as the reference does) and the
//! same Torben median. Every value the hash depends on is computed by the operations the
//! reference performs on it, in its order, so rounding matches too. The speed comes from
//! vectorising *across* independent rows and columns instead of reordering any one sum, from
//! computing only what the 64x64 samples read (the last passes keep the sampled columns), and,
//! for 8-bit luma, from a first pass in exact integer arithmetic (see `box_bytes`).
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
    let (dct, quality) =
        dct_of(img.height() as usize, img.width() as usize, true, Source::Bytes(img.pixels()));
    PdqHash { hash: bits_of(&dct), quality }
}

/// Hashes a greyscale image and derives the seven other dihedral hashes from the same DCT.
///
/// Returns the hashes and the quality. `original` equals [`pdq`]'s hash except for 64x64
/// input, where the reference's dihedral entry point blurs and [`pdq`] does not.
pub fn pdq_dihedral(img: &Luma) -> (Dihedral, u8) {
    let (dct, quality) =
        dct_of(img.height() as usize, img.width() as usize, false, Source::Bytes(img.pixels()));
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
    let (dct, quality) = dct_of(
        height as usize,
        width as usize,
        true,
        Source::Floats(&|out| fill_from_rgb(out, rgb)),
    );
    Ok(PdqHash { hash: bits_of(&dct), quality })
}

/// [`pdq_dihedral`] for interleaved 8-bit RGB pixels, with [`pdq_rgb`]'s luma conversion.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] if `rgb.len()` is not `3 * width * height` or a dimension is 0.
pub fn pdq_dihedral_rgb(width: u32, height: u32, rgb: &[u8]) -> Result<(Dihedral, u8), Error> {
    check_rgb(width, height, rgb)?;
    let (dct, quality) = dct_of(
        height as usize,
        width as usize,
        false,
        Source::Floats(&|out| fill_from_rgb(out, rgb)),
    );
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
/// Rows per strip for the horizontal pass. The strip is transposed so that the running sums of
/// `STRIP` rows advance together in SIMD lanes, while each row's own sum keeps the reference's
/// sequential order; 16 rows of a 1280-pixel frame fit comfortably in L2.
const STRIP: usize = 16;

type Dct16 = [f32; 256];

/// The luma a hash starts from.
enum Source<'a> {
    /// 8-bit grey levels, row-major. Their box sums are whole numbers, which single precision
    /// holds exactly in any order (see [`box_bytes`]).
    Bytes(&'a [u8]),
    /// Writes the float luma, row-major (luma converted from colour, not rounded).
    Floats(&'a dyn Fn(&mut [f32])),
}

impl Source<'_> {
    /// Writes the float luma, row-major.
    fn fill(&self, out: &mut [f32]) {
        match self {
            Source::Bytes(px) => {
                for (o, &p) in out.iter_mut().zip(*px) {
                    *o = f32::from(p);
                }
            }
            Source::Floats(fill) => fill(out),
        }
    }
}

struct Buffers {
    a: Vec<f32>,
    b: Vec<f32>,
    strip_in: Vec<f32>,
    strip_out: Vec<f32>,
    sums: Vec<f32>,
    prefix: Vec<u32>,
    sampled: Vec<f32>,
    sampled_out: Vec<f32>,
}

thread_local! {
    // Frame-sized scratch reused across calls on one thread: a keyframe worker hashes frame after
    // frame of the same size, and fresh megabyte allocations would cost page faults each time.
    static BUFFERS: RefCell<Buffers> = const {
        RefCell::new(Buffers {
            a: Vec::new(),
            b: Vec::new(),
            strip_in: Vec::new(),
            strip_out: Vec::new(),
            sums: Vec::new(),
            prefix: Vec::new(),
            sampled: Vec::new(),
            sampled_out: Vec::new(),
        })
    };
}

/// Runs the reference pipeline up to the 16x16 DCT. Returns the DCT and the quality.
///
/// The reference blurs the whole image (box filters along rows, then columns, twice) and then
/// samples 64x64 points of it. The same values come out here with less work, each computed by
/// the very operations the reference performs on it:
/// - from 8-bit luma, the first pass along rows is exact integer arithmetic ([`box_bytes`]);
/// - the second pass along rows keeps only the 64 sampled columns, and the last pass along
///   columns runs on those alone (a column's pass never reads another column).
fn dct_of(rows: usize, cols: usize, skip_blur_at_64: bool, source: Source<'_>) -> (Dct16, u8) {
    if rows < MIN_HASHABLE_DIM || cols < MIN_HASHABLE_DIM {
        // The reference clears the hash; an all-zero DCT thresholds to all-zero bits.
        return ([0.0; 256], 0);
    }
    let mut small = [[0f32; 64]; 64];
    BUFFERS.with(|cell| {
        let mut guard = cell.borrow_mut();
        let bufs = &mut *guard;
        let n = rows * cols;
        // Every pass writes every element of its output: what a buffer held from the last
        // frame needs no clearing (frame-sized memsets).
        bufs.a.resize(n, 0.0);
        if skip_blur_at_64 && rows == 64 && cols == 64 {
            source.fill(&mut bufs.a);
            for (dst, src) in small.iter_mut().zip(bufs.a.chunks_exact(64)) {
                dst.copy_from_slice(src);
            }
            return;
        }
        bufs.b.resize(n, 0.0);
        let window_along_rows = jarosz_window(cols, 64);
        let window_along_cols = jarosz_window(rows, 64);
        let keep = sample_indices(cols);
        // First pass: rows into `b`, columns back into `a`.
        match source {
            Source::Bytes(px) if integer_sums_are_exact(window_along_rows) => {
                box_bytes(px, &mut bufs.b, cols, window_along_rows, &mut bufs.prefix);
            }
            _ => {
                source.fill(&mut bufs.a);
                box_along_rows(
                    &bufs.a,
                    &mut bufs.b,
                    rows,
                    cols,
                    window_along_rows,
                    None,
                    &mut bufs.strip_in,
                    &mut bufs.strip_out,
                    &mut bufs.sums,
                );
            }
        }
        box_along_cols(&bufs.b, &mut bufs.a, rows, cols, window_along_cols, &mut bufs.sums);
        // Second pass: rows, keeping the sampled columns (`rows x 64`), then those columns.
        bufs.sampled.resize(rows * 64, 0.0);
        bufs.sampled_out.resize(rows * 64, 0.0);
        box_along_rows(
            &bufs.a,
            &mut bufs.sampled,
            rows,
            cols,
            window_along_rows,
            Some(&keep),
            &mut bufs.strip_in,
            &mut bufs.strip_out,
            &mut bufs.sums,
        );
        box_along_cols(
            &bufs.sampled,
            &mut bufs.sampled_out,
            rows,
            64,
            window_along_cols,
            &mut bufs.sums,
        );
        for (out_row, i) in small.iter_mut().zip(sample_indices(rows)) {
            out_row.copy_from_slice(&bufs.sampled_out[i * 64..(i + 1) * 64]);
        }
    });
    let quality = quality_of(&small);
    (dct64_to_16(&small), quality)
}

/// Whether the reference's running float sums over `window` 8-bit values are all exact (every
/// partial sum a whole number below 2^24), so [`box_bytes`] gives its values. True for any
/// image narrower than about 8.4 million pixels.
fn integer_sums_are_exact(window: usize) -> bool {
    // A running sum holds up to `window + 1` values between its addition and its subtraction.
    (window + 1) * 255 < 1 << 24
}

/// `decimateFloat`'s sample positions along a side of `n` pixels: the centres of 64 cells.
fn sample_indices(n: usize) -> [usize; 64] {
    std::array::from_fn(|j| (((j as f64 + 0.5) * n as f64) / 64.0) as usize)
}

/// The reference's `box1DFloat` along every row of 8-bit luma (`cols` pixels per row), into
/// `out`. With `half = (window + 2) / 2`, output `o` of a row is the mean of the row's pixels
/// from `o + half - window` to `o + half - 1`, clipped to the row: what the reference's running
/// sum holds when it writes `o` (its four phases grow the window, slide it, and shrink it). On
/// whole numbers below 2^24 every one of the reference's additions and subtractions is exact,
/// so its running sum *is* the integer sum, and one division by the same count gives the same
/// float. Computed from integer prefix sums, with no sequential float chain and no transpose.
fn box_bytes(px: &[u8], out: &mut [f32], cols: usize, window: usize, prefix: &mut Vec<u32>) {
    let half = (window + 2) / 2;
    prefix.resize(cols + 1, 0);
    for (row, out) in px.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
        let mut total = 0u32;
        for (p, &x) in prefix[1..].iter_mut().zip(row) {
            total += u32::from(x);
            *p = total;
        }
        let mean = |o: usize| {
            let lo = (o + half).saturating_sub(window);
            let hi = (o + half).min(cols);
            (prefix[hi] - prefix[lo]) as f32 / (hi - lo) as f32
        };
        // The full windows, `o` in `window - half + 1 .. cols - half + 1`, as one branch-free
        // loop over two shifted slices of the prefix sums.
        let first = (window - half + 1).min(cols);
        let last = (cols + 1 - half).max(first);
        let full = window as f32;
        for ((o, hi), lo) in out[first..last]
            .iter_mut()
            .zip(&prefix[first + half..])
            .zip(&prefix[first + half - window..])
        {
            *o = (hi - lo) as f32 / full;
        }
        for o in (0..first).chain(last..cols) {
            out[o] = mean(o);
        }
    }
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
/// With `keep`, only those columns of each row are written, as the row of a `rows x 64` output.
#[allow(clippy::too_many_arguments)]
fn box_along_rows(
    input: &[f32],
    out: &mut [f32],
    rows: usize,
    cols: usize,
    window: usize,
    keep: Option<&[usize; 64]>,
    strip_in: &mut Vec<f32>,
    strip_out: &mut Vec<f32>,
    sums: &mut Vec<f32>,
) {
    strip_in.resize(cols * STRIP, 0.0);
    strip_out.resize(cols * STRIP, 0.0);
    let out_cols = keep.map_or(cols, |k| k.len());
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
        // The `k`-th column written: every column, or the kept ones.
        let column = |k: usize| keep.map_or(k, |keep| keep[k]);
        let dst = out[r0 * out_cols..(r0 + h) * out_cols].chunks_exact_mut(out_cols);
        for (l, dst) in dst.enumerate() {
            for (k, d) in dst.iter_mut().enumerate() {
                *d = tout[column(k) * h + l];
            }
        }
        r0 += h;
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

    /// The reference's pipeline written out plainly: every pixel of the image blurred by
    /// one-dimensional box filters (`box1DFloat`, one row or column at a time), two passes of
    /// rows then columns, then the 64x64 centre samples.
    fn reference_dct(img: &Luma) -> (Dct16, u8) {
        let (rows, cols) = (img.height() as usize, img.width() as usize);
        let mut a: Vec<f32> = img.pixels().iter().map(|&p| f32::from(p)).collect();
        let mut sums = Vec::new();
        let (wr, wc) = (jarosz_window(cols, 64), jarosz_window(rows, 64));
        for _ in 0..2 {
            for r in 0..rows {
                let line = a[r * cols..(r + 1) * cols].to_vec();
                box_lanes(&line, &mut a[r * cols..(r + 1) * cols], cols, 1, wr, &mut sums);
            }
            for c in 0..cols {
                let line: Vec<f32> = (0..rows).map(|r| a[r * cols + c]).collect();
                let mut out = vec![0.0; rows];
                box_lanes(&line, &mut out, rows, 1, wc, &mut sums);
                for (r, v) in out.into_iter().enumerate() {
                    a[r * cols + c] = v;
                }
            }
        }
        let (ri, ci) = (sample_indices(rows), sample_indices(cols));
        let small: [[f32; 64]; 64] =
            std::array::from_fn(|i| std::array::from_fn(|j| a[ri[i] * cols + ci[j]]));
        (dct64_to_16(&small), quality_of(&small))
    }

    #[test]
    fn integer_row_sums_are_used_only_where_the_reference_sums_exactly() {
        // A 1280-pixel row blurs over 10 pixels. The integer pass holds up to windows of
        // 65,792 pixels (rows about 8.4 million wide): a running sum of 65,793 grey levels of
        // 255 is 16,777,215, still below 2^24; one more and it is not.
        assert!(integer_sums_are_exact(jarosz_window(1280, 64)));
        assert!(integer_sums_are_exact(65_792));
        assert!(!integer_sums_are_exact(65_793));
    }

    #[test]
    fn the_sampled_blur_gives_every_bit_of_the_whole_image_blur() {
        // Noisy pictures (sums that are not round) of sizes whose windows, phases and sample
        // positions all differ, the sizes keyframes are decoded to among them.
        let mut state = 0x9e37_79b9_u32;
        for (w, h) in [
            (6, 5),
            (5, 200),
            (65, 63),
            (127, 81),
            (333, 517),
            (640, 360),
            (427, 240),
            (1280, 720),
            (97, 1000),
        ] {
            let px = (0..w * h)
                .map(|i| {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    ((i % w * 3 + i / w * 5) as u32 % 200 + (state >> 27)) as u8
                })
                .collect();
            let img = Luma::new(w as u32, h as u32, px).unwrap();
            let (want, want_quality) = reference_dct(&img);
            let bytes = dct_of(h, w, false, Source::Bytes(img.pixels()));
            let as_floats = |out: &mut [f32]| Source::Bytes(img.pixels()).fill(out);
            let floats = dct_of(h, w, false, Source::Floats(&as_floats));
            for (path, (dct, quality)) in [("bytes", bytes), ("floats", floats)] {
                assert_eq!(quality, want_quality, "{w}x{h} {path}");
                let bits = |d: &Dct16| d.map(f32::to_bits);
                assert_eq!(bits(&dct), bits(&want), "{w}x{h} {path}");
            }
        }
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
