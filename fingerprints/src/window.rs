//! Windows: a picture shown as a rectangle inside a larger layout — a player window beside a
//! chat panel, a picture-in-picture in a corner of another video — found by its four straight
//! edges.
//!
//! A re-streamer who shows the broadcast in a window shrinks it to half or two thirds of the
//! frame and puts it anywhere; the frame's hash then describes the layout, not the picture,
//! and [`crate::content_rect`] (which needs bars mirrored on both sides) does not find it.
//! What every such layout has is the window's border: four straight, axis-aligned edges at
//! which the luma steps, with the picture's texture inside.
//!
//! How: each row boundary and each column boundary of the frame is scored by how much of it is
//! an edge (a step of at least [`STEP`] grey levels between the two rows or columns on either
//! side, thinned to its strongest line). The most edge-like rows and columns are paired into
//! rectangles of a landscape picture's shape and at least [`MIN_SIDE`] of the frame each way,
//! and a rectangle is a window when its four sides are edges along most of their length
//! ([`MIN_MEAN_COVER`], and [`MIN_COVER`] each), then its sides are refined at full resolution.
//!
//! Footage with boxes of its own (a screencast's windows, a game's panels, motion graphics, a
//! face-cam box over the picture) has windows too: on the development set one keyframe in
//! three of plain re-encodes has one. The caller then hashes one more crop, which costs a
//! lookup; the reference side does not hash such crops, so it finds nothing unless the crop is
//! itself a broadcast picture.

use crate::decode::box_reduce;
use crate::{Luma, Rect};

/// Grey levels the luma must step across an edge (mean of two lines on each side).
const STEP: i32 = 14;
/// A window spans at least this fraction of the frame's width and of its height.
const MIN_SIDE: f32 = 0.3;
/// Each side of a window is an edge along at least this fraction of its length (a picture
/// whose own margin is as dark as the desktop hides part of its border)...
const MIN_COVER: f32 = 0.45;
/// ... and the four sides together along at least this fraction of the perimeter's length.
const MIN_MEAN_COVER: f32 = 0.7;
/// Width over height of a window: a 4:3 to a 2.39:1 picture, with some slack.
const ASPECT: std::ops::RangeInclusive<f32> = 1.15..=2.5;
/// Candidate lines kept per axis (a chat panel's lines of text take some).
const LINES: usize = 24;
/// Frames smaller than this on either side are not analysed.
const MIN_FRAME: usize = 64;
/// Frames are analysed at a long side of at most this many pixels.
const WORK: usize = 360;

/// The step across a boundary: the two pixels after it minus the two before, halved (the
/// difference of the two lines' means on either side).
fn step(before2: u8, before1: u8, after1: u8, after2: u8) -> i32 {
    (i32::from(after1) + i32::from(after2) - i32::from(before1) - i32::from(before2)).abs() / 2
}

/// Edges of one axis: `near[line * len + pos]` is true when the boundary before `line`, or
/// one line either side, is an edge at position `pos` along it.
struct Edges {
    lines: usize,
    len: usize,
    near: Vec<bool>,
}

impl Edges {
    /// Edges between the rows of a `lines x len` row-major image (pass the transposed image for
    /// edges between columns).
    fn of(px: &[u8], lines: usize, len: usize) -> Edges {
        // Every loop below runs along whole lines with no branch, so it vectorises (this runs
        // on every keyframe, once per axis).
        // Step across the boundary before each line.
        let mut steps = vec![0u8; lines * len];
        for line in 2..lines.saturating_sub(1) {
            let row = |l: usize| &px[l * len..(l + 1) * len];
            let (a, b, c, d) = (row(line - 2), row(line - 1), row(line), row(line + 1));
            let out = &mut steps[line * len..(line + 1) * len];
            for ((((s, &a), &b), &c), &d) in out.iter_mut().zip(a).zip(b).zip(c).zip(d) {
                *s = step(a, b, c, d).min(255) as u8;
            }
        }
        // Thinned: an edge where the step is strong and the strongest of the neighbouring
        // boundaries (ties go to the first).
        let mut on = vec![false; lines * len];
        for line in 3..lines.saturating_sub(2) {
            let row = |l: usize| &steps[l * len..(l + 1) * len];
            let (before, here, after) = (row(line - 1), row(line), row(line + 1));
            let out = &mut on[line * len..(line + 1) * len];
            for (((o, &s), &p), &n) in out.iter_mut().zip(here).zip(before).zip(after) {
                *o = (i32::from(s) >= STEP) & (s >= p) & (s > n);
            }
        }
        let mut near = on.clone();
        for line in 1..lines.saturating_sub(1) {
            let (above, below) =
                (&on[(line - 1) * len..line * len], &on[(line + 1) * len..(line + 2) * len]);
            for ((n, &a), &b) in near[line * len..(line + 1) * len].iter_mut().zip(above).zip(below)
            {
                *n |= a | b;
            }
        }
        Edges { lines, len, near }
    }

    /// The lines with the most edge positions (within a line), most first, each with at
    /// least `min_count`; of neighbouring lines only the first is kept.
    fn candidates(&self, min_count: usize) -> Vec<Line> {
        let mut counts: Vec<(usize, usize)> = (0..self.lines)
            .map(|line| {
                let row = &self.near[line * self.len..(line + 1) * self.len];
                (row.iter().filter(|&&e| e).count(), line)
            })
            .filter(|&(count, _)| count >= min_count)
            .collect();
        counts.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut out: Vec<usize> = Vec::new();
        for (_, line) in counts {
            if out.len() == LINES {
                break;
            }
            if out.iter().all(|&o| o.abs_diff(line) > 2) {
                out.push(line);
            }
        }
        out.sort_unstable();
        out.into_iter()
            .map(|at| {
                let row = &self.near[at * self.len..(at + 1) * self.len];
                let prefix = std::iter::once(0)
                    .chain(row.iter().scan(0u32, |n, &e| {
                        *n += u32::from(e);
                        Some(*n)
                    }))
                    .collect();
                Line { at, prefix }
            })
            .collect()
    }
}

/// A candidate line: its index and the running count of its edge positions.
struct Line {
    at: usize,
    prefix: Vec<u32>,
}

impl Line {
    /// Fraction of `from..to` along the line that is an edge (within a line).
    fn cover(&self, from: usize, to: usize) -> f32 {
        if to <= from {
            return 0.0;
        }
        (self.prefix[to] - self.prefix[from]) as f32 / (to - from) as f32
    }
}

/// The picture windows of a frame, best first (at most one today): rectangles of a landscape
/// picture's shape, at least 30 % of the frame each way, whose four sides are straight edges
/// along most of their length. Empty when there is none, and for frames under 64 pixels.
pub fn picture_windows(img: &Luma) -> Vec<Rect> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < MIN_FRAME || h < MIN_FRAME {
        return Vec::new();
    }
    // Box-reduced by a whole factor to a long side of at most WORK pixels: a window's border
    // survives averaging, and the rectangle comes back within a factor's pixels.
    let f = w.max(h).div_ceil(WORK).clamp(1, 16);
    let small;
    let (px, w, h) = if f == 1 {
        (img.pixels(), w, h)
    } else {
        small = box_reduce(img, f as u32);
        (small.pixels(), small.width() as usize, small.height() as usize)
    };
    let rows = Edges::of(px, h, w);
    let transposed: Vec<u8> = (0..w).flat_map(|x| (0..h).map(move |y| px[y * w + x])).collect();
    let cols = Edges::of(&transposed, w, h);
    let (min_w, min_h) = ((MIN_SIDE * w as f32) as usize, (MIN_SIDE * h as f32) as usize);
    let ys = rows.candidates((min_w as f32 * MIN_COVER) as usize);
    let xs = cols.candidates((min_h as f32 * MIN_COVER) as usize);
    let mut best: Option<(f32, Rect)> = None;
    for (i, top) in ys.iter().enumerate() {
        for bottom in &ys[i + 1..] {
            let height = bottom.at - top.at;
            if height < min_h {
                continue;
            }
            for (j, left) in xs.iter().enumerate() {
                for right in &xs[j + 1..] {
                    let width = right.at - left.at;
                    if width < min_w || !ASPECT.contains(&(width as f32 / height as f32)) {
                        continue;
                    }
                    // The whole frame is not a window of itself.
                    if width * height * 100 > w * h * 92 {
                        continue;
                    }
                    let sides = [
                        top.cover(left.at, right.at),
                        bottom.cover(left.at, right.at),
                        left.cover(top.at, bottom.at),
                        right.cover(top.at, bottom.at),
                    ];
                    let score = sides.iter().sum::<f32>();
                    if sides.iter().any(|&c| c < MIN_COVER) || score < 4.0 * MIN_MEAN_COVER {
                        continue;
                    }
                    if best.is_none_or(|(s, _)| score > s) {
                        let rect = Rect {
                            x: (left.at * f) as u32,
                            y: (top.at * f) as u32,
                            width: (width * f) as u32,
                            height: (height * f) as u32,
                        };
                        best = Some((score, rect));
                    }
                }
            }
        }
    }
    best.map(|(_, r)| if f == 1 { r } else { refine(img, r, f) }).into_iter().collect()
}

/// Moves each side of `r` (found on the image reduced by `f`) to the boundary within `f`
/// pixels where the full-resolution luma steps most along that side.
fn refine(img: &Luma, r: Rect, f: usize) -> Rect {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let px = img.pixels();
    let at = |x: usize, y: usize| px[y * w + x];
    let (x0, y0) = (r.x as usize, r.y as usize);
    let (x1, y1) = (x0 + r.width as usize, y0 + r.height as usize);
    // Summed step across the boundary before row `y` (or column `x`) over the side's span.
    let row_step = |y: usize| -> i32 {
        (x0..x1.min(w)).map(|x| step(at(x, y - 2), at(x, y - 1), at(x, y), at(x, y + 1))).sum()
    };
    let col_step = |x: usize| -> i32 {
        (y0..y1.min(h)).map(|y| step(at(x - 2, y), at(x - 1, y), at(x, y), at(x + 1, y))).sum()
    };
    let best = |around: usize, n: usize, step: &dyn Fn(usize) -> i32| -> usize {
        let lo = around.saturating_sub(f).max(2);
        let hi = (around + f).min(n.saturating_sub(2));
        (lo..=hi)
            .max_by_key(|&i| (step(i), std::cmp::Reverse(i.abs_diff(around))))
            .unwrap_or(around)
    };
    let (top, bottom) = (best(y0, h, &row_step), best(y1, h, &row_step));
    let (left, right) = (best(x0, w, &col_step), best(x1, w, &col_step));
    if bottom <= top || right <= left {
        return r;
    }
    Rect {
        x: left as u32,
        y: top as u32,
        width: (right - left) as u32,
        height: (bottom - top) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic picture: smooth value noise (random greys on a 24-pixel grid,
    /// interpolated), spatially coherent like real footage, with no straight lines.
    fn texture(seed: u32, w: u32, h: u32) -> Vec<u8> {
        let cell = 24u32;
        let grey = |i: u32, j: u32| -> f32 {
            let v = i.wrapping_mul(2_654_435_761) ^ j.wrapping_mul(40_503) ^ seed.wrapping_mul(97);
            (40 + (v.wrapping_mul(2_246_822_519) >> 24) % 180) as f32
        };
        (0..w * h)
            .map(|k| {
                let (x, y) = (k % w, k / w);
                let (i, j) = (x / cell, y / cell);
                let (fx, fy) = ((x % cell) as f32 / cell as f32, (y % cell) as f32 / cell as f32);
                let top = grey(i, j) * (1.0 - fx) + grey(i + 1, j) * fx;
                let bottom = grey(i, j + 1) * (1.0 - fx) + grey(i + 1, j + 1) * fx;
                (top * (1.0 - fy) + bottom * fy) as u8
            })
            .collect()
    }

    /// `inner` pasted into `outer` (both w x h buffers) inside `r`, the inner picture scaled
    /// (nearest) to the rectangle.
    fn paste(outer: &mut [u8], w: u32, inner: &[u8], iw: u32, ih: u32, r: Rect) {
        for y in 0..r.height {
            for x in 0..r.width {
                let (sx, sy) = (x * iw / r.width, y * ih / r.height);
                outer[((r.y + y) * w + r.x + x) as usize] = inner[(sy * iw + sx) as usize];
            }
        }
    }

    fn close(a: Rect, b: Rect) -> bool {
        let d = |p: u32, q: u32| p.abs_diff(q) <= 1;
        d(a.x, b.x)
            && d(a.y, b.y)
            && d(a.x + a.width, b.x + b.width)
            && d(a.y + a.height, b.y + b.height)
    }

    #[test]
    fn a_window_beside_a_chat_panel_is_found() {
        let (w, h) = (640u32, 360u32);
        let mut px = vec![0x22u8; (w * h) as usize];
        let window = Rect { x: 12, y: 70, width: 420, height: 236 };
        paste(&mut px, w, &texture(1, 1280, 720), 1280, 720, window);
        // A chat panel: a lighter box with lines of "text".
        for y in 70..306u32 {
            for x in 446..628u32 {
                let text = (y - 70) % 24 < 8 && (x / 3) % 4 != 0;
                px[(y * w + x) as usize] = if text { 0xdd } else { 0x2f };
            }
        }
        let found = picture_windows(&Luma::new(w, h, px).unwrap());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(close(found[0], window), "{found:?} vs {window:?}");
    }

    #[test]
    fn a_picture_in_picture_over_another_video_is_found() {
        let (w, h) = (640u32, 360u32);
        let mut px = texture(7, w, h);
        let pip = Rect { x: 10, y: 10, width: 320, height: 180 };
        paste(&mut px, w, &texture(3, 1280, 720), 1280, 720, pip);
        let found = picture_windows(&Luma::new(w, h, px).unwrap());
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(close(found[0], pip), "{found:?} vs {pip:?}");
    }

    #[test]
    fn a_plain_picture_flat_frames_and_tiny_frames_have_no_window() {
        assert!(picture_windows(&Luma::new(640, 360, texture(5, 640, 360)).unwrap()).is_empty());
        assert!(picture_windows(&Luma::new(640, 360, vec![0; 640 * 360]).unwrap()).is_empty());
        assert!(picture_windows(&Luma::new(40, 30, vec![9; 1200]).unwrap()).is_empty());
        // A tall panel is not a picture's shape.
        let (w, h) = (640u32, 360u32);
        let mut px = vec![0x22u8; (w * h) as usize];
        paste(
            &mut px,
            w,
            &texture(2, 200, 300),
            200,
            300,
            Rect { x: 200, y: 20, width: 180, height: 320 },
        );
        assert!(picture_windows(&Luma::new(w, h, px).unwrap()).is_empty());
    }

    proptest::proptest! {
        #[test]
        fn any_frame_gives_windows_inside_it(
            w in 1u32..900, h in 1u32..400, seed in proptest::prelude::any::<u32>(), boxes in 0usize..4
        ) {
            let mut px = texture(seed, w, h);
            // Flat boxes drawn over it make straight edges in random places.
            for b in 0..boxes as u32 {
                let (x0, y0) = ((seed >> b) % w, (seed >> (b + 8)) % h);
                for y in y0..(y0 + h / 2).min(h) {
                    for x in x0..(x0 + w / 2).min(w) {
                        px[(y * w + x) as usize] = (b * 60) as u8;
                    }
                }
            }
            let img = Luma::new(w, h, px).unwrap();
            for r in picture_windows(&img) {
                proptest::prop_assert!(r.width > 0 && r.height > 0);
                proptest::prop_assert!(r.x + r.width <= w && r.y + r.height <= h, "{r:?} in {w}x{h}");
            }
        }
    }
}
