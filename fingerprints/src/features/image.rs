//! Small pixel-level helpers of the feature extractor: resampling and smoothing of 8-bit planes.
//!
//! They work on a bare `(width, height, Vec<u8>)` [`Plane`] rather than [`crate::Luma`] so the
//! pyramid can be built without re-validating every level.

/// A row-major 8-bit plane with no padding.
#[derive(Clone, Debug)]
pub(crate) struct Plane {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) pixels: Vec<u8>,
}

impl Plane {
    #[cfg(test)]
    pub(crate) fn at(&self, x: usize, y: usize) -> u8 {
        self.pixels[y * self.width + x]
    }

    /// Halves both dimensions by averaging 2x2 blocks (a cheap anti-aliased downscale).
    pub(crate) fn halve(&self) -> Plane {
        let (w, h) = (self.width / 2, self.height / 2);
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            let r0 = &self.pixels[2 * y * self.width..2 * y * self.width + 2 * w];
            let r1 = &self.pixels[(2 * y + 1) * self.width..(2 * y + 1) * self.width + 2 * w];
            for x in 0..w {
                let s = u16::from(r0[2 * x])
                    + u16::from(r0[2 * x + 1])
                    + u16::from(r1[2 * x])
                    + u16::from(r1[2 * x + 1]);
                out.push(((s + 2) / 4) as u8);
            }
        }
        Plane { width: w, height: h, pixels: out }
    }

    /// Resizes to `w x h` (both non-zero) with bilinear interpolation, after halving while the
    /// target is at most half the current size, so a large downscale does not alias.
    pub(crate) fn resize(&self, w: usize, h: usize) -> Plane {
        let mut src = std::borrow::Cow::Borrowed(self);
        while src.width >= 2 * w && src.height >= 2 * h && src.width >= 2 && src.height >= 2 {
            src = std::borrow::Cow::Owned(src.halve());
        }
        if src.width == w && src.height == h {
            return src.into_owned();
        }
        bilinear(&src, w, h)
    }

    /// Smooths with the separable binomial kernel `[1 4 6 4 1] / 16` (a Gaussian of sigma 1),
    /// replicating edge pixels. BRIEF compares single pixels, so without it noise and JPEG
    /// ringing flip many bits.
    ///
    /// All in 16-bit lanes (the horizontal sum is at most 16 * 255, the vertical one at most
    /// 256 * 255 + 128), with the interior loops free of clamps so they vectorise.
    pub(crate) fn smooth(&self) -> Plane {
        let (w, h) = (self.width, self.height);
        if w == 0 || h == 0 {
            return self.clone();
        }
        let mut tmp = vec![0u16; w * h];
        for (row, out) in self.pixels.chunks_exact(w).zip(tmp.chunks_exact_mut(w)) {
            let px = |x: isize| u16::from(row[x.clamp(0, w as isize - 1) as usize]);
            let tap = |x: isize| px(x - 2) + 4 * px(x - 1) + 6 * px(x) + 4 * px(x + 1) + px(x + 2);
            if w < 5 {
                for (x, o) in out.iter_mut().enumerate() {
                    *o = tap(x as isize);
                }
                continue;
            }
            for x in [0, 1, w - 2, w - 1] {
                out[x] = tap(x as isize);
            }
            let n = w - 4;
            let (a, b, c, d, e) =
                (&row[..n], &row[1..n + 1], &row[2..n + 2], &row[3..n + 3], &row[4..n + 4]);
            for (i, o) in out[2..w - 2].iter_mut().enumerate() {
                *o = u16::from(a[i])
                    + 4 * u16::from(b[i])
                    + 6 * u16::from(c[i])
                    + 4 * u16::from(d[i])
                    + u16::from(e[i]);
            }
        }
        let mut out = vec![0u8; w * h];
        for (y, orow) in out.chunks_exact_mut(w).enumerate() {
            let r = |d: isize| {
                let yy = (y as isize + d).clamp(0, h as isize - 1) as usize;
                &tmp[yy * w..(yy + 1) * w]
            };
            let (a, b, c, d, e) = (r(-2), r(-1), r(0), r(1), r(2));
            for (x, o) in orow.iter_mut().enumerate() {
                // At most 16 * 4080 + 128 = 65408: no 16-bit overflow.
                let full = a[x] + 4 * b[x] + 6 * c[x] + 4 * d[x] + e[x] + 128;
                *o = (full >> 8) as u8;
            }
        }
        Plane { width: w, height: h, pixels: out }
    }
}

/// Bilinear resampling with pixel-centre alignment, in 8-bit fixed point. Separable, rows
/// first: each output row blends its two source rows in a loop that vectorises, then reads its
/// pixels from that blend, so a downscale reads one pair of blended values per output pixel
/// (where columns first would interpolate most source rows, a superset of the output's rows).
/// The integer sums are those of columns first, term for term, so the order changes no value.
fn bilinear(src: &Plane, w: usize, h: usize) -> Plane {
    let sx = src.width as f32 / w as f32;
    let sy = src.height as f32 / h as f32;
    let tap = |v: usize, scale: f32, n: usize| {
        let f = ((v as f32 + 0.5) * scale - 0.5).clamp(0.0, (n - 1) as f32);
        let i = f.floor() as usize;
        (i, ((f - i as f32) * 256.0) as u32)
    };
    // The horizontal taps, once for every row: a column and the weight (of 256) of the column
    // after it. The blended row carries a copy of its last value after it, so every pair lies
    // inside it (the weight on that copy is 0 or it equals the true neighbour: the last).
    let xs: Vec<(usize, u32)> = (0..w).map(|x| tap(x, sx, src.width)).collect();
    let mut blend = vec![0u16; src.width + 1];
    let mut out = vec![0u8; w * h];
    for (y, orow) in out.chunks_exact_mut(w).enumerate() {
        let (y0, wy) = tap(y, sy, src.height);
        let y1 = (y0 + 1).min(src.height - 1);
        let top = &src.pixels[y0 * src.width..(y0 + 1) * src.width];
        let bot = &src.pixels[y1 * src.width..(y1 + 1) * src.width];
        // At most 255 * 256: 16-bit lanes hold every product and sum.
        let (wt, wb) = ((256 - wy) as u16, wy as u16);
        for ((v, &t), &b) in blend.iter_mut().zip(top).zip(bot) {
            *v = u16::from(t) * wt + u16::from(b) * wb;
        }
        blend[src.width] = blend[src.width - 1];
        for (o, &(x0, wx)) in orow.iter_mut().zip(&xs) {
            let pair = &blend[x0..x0 + 2];
            *o = ((u32::from(pair[0]) * (256 - wx) + u32::from(pair[1]) * wx + (1 << 15)) >> 16)
                as u8;
        }
    }
    Plane { width: w, height: h, pixels: out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plane(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Plane {
        let mut pixels = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                pixels.push(f(x, y));
            }
        }
        Plane { width: w, height: h, pixels }
    }

    #[test]
    fn resizing_a_flat_plane_keeps_it_flat() {
        let p = plane(97, 53, |_, _| 77);
        for (w, h) in [(40, 20), (97, 53), (13, 7), (120, 60)] {
            let r = p.resize(w, h);
            assert_eq!((r.width, r.height), (w, h));
            assert!(r.pixels.iter().all(|&v| v == 77));
        }
        assert!(p.smooth().pixels.iter().all(|&v| v == 77));
    }

    #[test]
    fn vectorised_smoothing_and_resizing_equal_the_per_pixel_formulas() {
        for (w, h) in [(1usize, 1usize), (3, 7), (5, 5), (37, 23), (64, 9)] {
            let p = plane(w, h, |x, y| ((x * 53 + y * 97 + x * y * 7) % 256) as u8);
            let px = |x: isize, y: isize| {
                u32::from(
                    p.at(x.clamp(0, w as isize - 1) as usize, y.clamp(0, h as isize - 1) as usize),
                )
            };
            let k = [1u32, 4, 6, 4, 1];
            let s = p.smooth();
            for y in 0..h as isize {
                for x in 0..w as isize {
                    let mut sum = 0;
                    for (j, ky) in k.iter().enumerate() {
                        for (i, kx) in k.iter().enumerate() {
                            sum += ky * kx * px(x + i as isize - 2, y + j as isize - 2);
                        }
                    }
                    assert_eq!(u32::from(s.at(x as usize, y as usize)), (sum + 128) >> 8);
                }
            }
        }
        // Bilinear: a horizontal ramp stays a ramp (within rounding) at any size.
        let ramp = plane(200, 50, |x, _| x as u8);
        let r = ramp.resize(160, 40);
        for x in 1..159 {
            let expect = (x as f32 + 0.5) * 200.0 / 160.0 - 0.5;
            assert!((f32::from(r.at(x, 20)) - expect).abs() <= 1.0, "{x}: {}", r.at(x, 20));
        }
    }

    #[test]
    fn bilinear_resampling_equals_its_per_pixel_formula() {
        for (sw, sh, w, h) in [(1, 1, 3, 2), (2, 5, 1, 3), (640, 360, 480, 270), (97, 61, 77, 49)] {
            let p = plane(sw, sh, |x, y| ((x * 37 + y * 101 + x * y) % 256) as u8);
            let (sx, sy) = (sw as f32 / w as f32, sh as f32 / h as f32);
            let tap = |v: usize, s: f32, n: usize| {
                let f = ((v as f32 + 0.5) * s - 0.5).clamp(0.0, (n - 1) as f32);
                let i = f.floor() as usize;
                (i, (i + 1).min(n - 1), ((f - i as f32) * 256.0) as u32)
            };
            let r = bilinear(&p, w, h);
            for y in 0..h {
                let (y0, y1, wy) = tap(y, sy, sh);
                for x in 0..w {
                    let (x0, x1, wx) = tap(x, sx, sw);
                    let along = |yy: usize| {
                        u32::from(p.at(x0, yy)) * (256 - wx) + u32::from(p.at(x1, yy)) * wx
                    };
                    let v = (along(y0) * (256 - wy) + along(y1) * wy + (1 << 15)) >> 16;
                    assert_eq!(u32::from(r.at(x, y)), v, "{sw}x{sh} -> {w}x{h} at ({x}, {y})");
                }
            }
        }
    }

    #[test]
    fn smoothing_is_mirror_symmetric() {
        let p = plane(31, 9, |x, y| ((x * 37 + y * 91) % 251) as u8);
        let mirrored = plane(31, 9, |x, y| p.at(30 - x, y));
        let a = p.smooth();
        let b = mirrored.smooth();
        for y in 0..9 {
            for x in 0..31 {
                assert_eq!(a.at(x, y), b.at(30 - x, y));
            }
        }
    }
}
