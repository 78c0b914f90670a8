//! Letterbox and pillarbox detection: where the picture is inside a padded frame.
//!
//! PDQ hashes the whole frame, so a broadcast shrunk into a canvas with bars (black, any flat
//! colour, or the "blur fill" of vertical phone streams: a blurred, darkened, enlarged copy of
//! the picture behind it) hashes nothing like the broadcast. [`content_rect`] finds the picture
//! to the pixel so the caller can hash it on its own.
//!
//! How: the frame is read as lines (rows for bars above and below, then columns for bars left
//! and right inside the rows kept, then the rows again inside the columns kept). From each
//! side we walk inwards while lines look like a bar: no segment of the line has texture (mean
//! absolute *second* difference, so the gentle gradients of a blurred fill pass while texture,
//! text and edges do not) and the line barely changes from the previous one. Where the walk
//! stops (give or take the few lines that compression ringing spoils), the bar must end at an
//! edge that is
//! - strong: the step between two lines is well above the bar's own line-to-line noise;
//! - persistent: three lines into the picture it still differs from the bar (a thin grid line
//!   on a flat background does not);
//! - straight: along the line, every segment that departs from the bar nearby departs exactly
//!   at this edge (a title's outline, a horizon or a slanted object depart at varying lines),
//!   over at least a quarter of the line.
//!
//! The two bars of an axis must mirror each other (same thickness within 1 % of the frame:
//! every padding filter centres the picture), the picture between them must have texture, and
//! bars on all four sides may not leave a small box in the middle (a logo on a plain
//! background). [`layout_band`] lets the bars above and below differ, on portrait frames only,
//! where a re-streamer's layout rather than a padding filter places the picture.
//!
//! False bars cost matching (the caller would hash a wrong crop), so every test leans towards
//! `None`. Pictures whose own margins are as flat as the bars (a planet in black space inside
//! black bars, a night scene) are not found: the edge is invisible. The caller hashes the full
//! frame as well, so a miss only costs the bar-stripped hash. Footage that carries bars of its
//! own (a 2.35:1 film in a 16:9 frame) gives the picture inside them: the caller should hash
//! the content rectangle of reference frames too, so both sides strip the same bars.

use std::borrow::Cow;

use crate::Luma;

/// A rectangle of an image, in pixels: columns `x..x + width`, rows `y..y + height`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels (non-zero).
    pub width: u32,
    /// Height in pixels (non-zero).
    pub height: u32,
}

impl Rect {
    /// Copies this rectangle out of `img`; `None` if it does not fit inside `img`.
    pub fn crop(&self, img: &Luma) -> Option<Luma> {
        img.crop(self.x, self.y, self.width, self.height).ok()
    }

    /// True when every edge of `other` is within 1 % of the frame (`width` x `height`) of the
    /// same edge of this rectangle: the two crops would hash alike.
    pub fn near(&self, other: &Rect, width: u32, height: u32) -> bool {
        let close =
            |p: u32, q: u32, n: u32| (i64::from(p) - i64::from(q)).abs() * 100 <= i64::from(n);
        close(self.x, other.x, width)
            && close(self.y, other.y, height)
            && close(self.x + self.width, other.x + other.width, width)
            && close(self.y + self.height, other.y + other.height, height)
    }
}

/// Images smaller than this on either side are not analysed: too few lines to tell a bar
/// from the picture.
const MIN_SIDE: usize = 48;
/// A bar's line may have no segment whose mean absolute second difference along the line
/// exceeds this (grey levels). Second differences vanish on gradients, so a blur-fill bar reads
/// as smooth even where it blurs a strong edge of the picture (its gradients reach several grey
/// levels per pixel, its curvature stays near the compression noise), and compressed black
/// bars sit near 0, while any line of picture with texture, text or a single star exceeds it
/// somewhere.
const BAR_DETAIL: f32 = 4.0;
/// Same limit for the change between two consecutive bar lines (per segment).
const BAR_STEP: f32 = 8.0;
/// A bar's edge must change the line by at least this much on average (grey levels).
const EDGE_MIN: f32 = 2.5;
/// ... and by at least this many times the bar's own largest line-to-line change.
const EDGE_OVER_NOISE: f32 = 3.0;
/// ... and three lines into the picture, the line must still differ from the bar by this
/// fraction of the edge's step.
const EDGE_PERSISTENCE: f32 = 0.5;
/// A segment of a line "departs" from the bar when it differs from a bar line by this much on
/// average (grey levels): well above compression ringing, well below any visible edge.
const DEPARTURE: f32 = 6.0;
/// Of the segments that depart from the bar within 3 lines of the edge, at least this fraction
/// must do so at the edge itself (within a line).
const EDGE_STRAIGHTNESS: f32 = 0.75;
/// ... and those must be at least this fraction of all segments: a dark picture against black
/// bars shows its edge only where it is bright, but an edge seen along less than a quarter of the
/// frame is too little to tell from an object's outline.
const EDGE_EXTENT: f32 = 0.25;

/// Finds the picture inside letterbox (above/below) and pillarbox (left/right) bars.
///
/// Returns `Some` only when bars were found on at least one axis: symmetric within 1 % of the
/// frame (at least 2 pixels), each at least 2 % and at most 40 % of the frame thick, leaving a
/// picture of at least 20 % of the frame on that axis (a 2.35:1 film inside a vertical 9:16
/// canvas keeps 24 %). Bars may be black, any near-uniform colour, or a heavily blurred copy of
/// the picture. `None` means "no bars, or not sure": hash the whole frame. Images under 48
/// pixels on a side give `None`.
///
/// ```
/// use fingerprints::{Luma, Rect, content_rect};
///
/// // A textured 512x288 picture padded with black to 640x360.
/// let mut px = vec![0u8; 640 * 360];
/// for y in 36..324 {
///     for x in 64..576 {
///         px[y * 640 + x] = ((x * 7 + y * 13) % 97 + (x * y) % 61) as u8 + 40;
///     }
/// }
/// let img = Luma::new(640, 360, px).unwrap();
/// assert_eq!(content_rect(&img), Some(Rect { x: 64, y: 36, width: 512, height: 288 }));
/// ```
pub fn content_rect(img: &Luma) -> Option<Rect> {
    picture_rect(img, Bars::Mirrored)
}

/// The picture inside bars above and below that relate as `rows` says, and mirrored bars left
/// and right.
fn picture_rect(img: &Luma, rows: Bars) -> Option<Rect> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < MIN_SIDE || h < MIN_SIDE {
        return None;
    }
    let (mut top, mut bottom) = find_bars(&Lines::rows(img, 0, w), rows).unwrap_or((0, 0));
    let (left, right) =
        find_bars(&Lines::columns(img, top, h - bottom), Bars::Mirrored).unwrap_or((0, 0));
    if left + right > 0 {
        // Pillar bars dilute the row statistics; measure the rows again inside the picture.
        if let Some((t, b)) = find_bars(&Lines::rows(img, left, w - right), rows) {
            (top, bottom) = (t, b);
        }
    }
    if top + bottom + left + right == 0 {
        return None;
    }
    // Bars on all four sides shrink a picture only a little (a letterbox pad, a film's own
    // bars inside a vertical canvas); a small box in the middle of the frame, under half of
    // it both ways, is a title or a logo on a plain background.
    if 2 * (top + bottom) > h && 2 * (left + right) > w {
        return None;
    }
    Some(Rect {
        x: left as u32,
        y: top as u32,
        width: (w - left - right) as u32,
        height: (h - top - bottom) as u32,
    })
}

/// Finds a landscape picture laid out as a band across a portrait frame: the picture over a
/// blurred fill or between plain bars, as [`content_rect`] finds it, but anywhere from the top
/// to the bottom, not only centred (a phone stream's layout puts the picture where it leaves
/// room for a face-cam or a chat). The bars above and below may differ, one may be absent, and
/// each may cover up to 70 % of the frame; the picture between them has a landscape picture's
/// shape (width over height from 1.15 to 2.5). Mirrored bars left and right inside the band (a
/// 4:3 picture's own) are stripped as [`content_rect`] strips them.
///
/// Returns `None` for frames no taller than wide (a landscape frame's bars are padding, which
/// [`content_rect`] finds), when no such band is found, and for images under 48 pixels on a
/// side. Only the query side looks for bands: a reference is the picture itself.
///
/// ```
/// use fingerprints::{Luma, Rect, layout_band};
///
/// // A textured 360x202 picture in a 360x640 portrait frame, its top at a fifth of the
/// // height: black above, dark grey below.
/// let px = (0..640usize)
///     .flat_map(|y| (0..360usize).map(move |x| (x, y)))
///     .map(|(x, y)| match y {
///         0..128 => 0,
///         128..330 => ((x * 7 + y * 13) % 97 + (x * y) % 61) as u8 + 40,
///         _ => 30,
///     })
///     .collect();
/// let img = Luma::new(360, 640, px).unwrap();
/// assert_eq!(layout_band(&img), Some(Rect { x: 0, y: 128, width: 360, height: 202 }));
/// ```
pub fn layout_band(img: &Luma) -> Option<Rect> {
    if img.height() <= img.width() {
        return None;
    }
    // A band has a bar above or below it; pillar bars alone are padding.
    picture_rect(img, Bars::Band).filter(|r| r.height < img.height())
}

/// A pixel brighter than this grey level is lit: the black of padding, of space or of a night
/// sky sits below it after compression, any visible detail above.
const DARK_LEVEL: u8 = 40;
/// A row or column belongs to the picture when at least this fraction of its pixels are lit
/// (so a few compression specks in the black do not stop the trim).
const LIT_FRACTION: f32 = 0.01;
/// The trimmed box must keep at least this fraction of the frame on both axes: a small bright
/// thing in the dark (a logo, a caption) is not a picture.
const TRIM_MIN_KEEP: f32 = 0.2;
/// ... and remove at least this fraction of the frame on some side, or it is the frame.
const TRIM_MIN_CUT: f32 = 0.03;

/// The bounding box of everything lit in a frame: the picture with its dark margins trimmed.
///
/// [`content_rect`] needs a visible bar edge, and a picture whose own margins are black (a
/// planet in space, a night scene, a stage in the dark) shows none once it is shrunk into black
/// bars. Trimming the dark margins works on both sides instead: padding with black and scaling
/// do not move the box relative to the picture, so the trimmed box of a letterboxed copy is
/// the trimmed box of the original, scaled. Callers hash it on the reference and the query
/// side alike.
///
/// Returns `None` when nothing dark is trimmed (under 3 % of the frame on every side), when
/// the box keeps under 20 % of the frame on either axis, when the frame is all dark, and for
/// images under 48 pixels on a side.
///
/// ```
/// use fingerprints::{Luma, Rect, dark_trim};
///
/// // A bright disc of radius 100 on black: the box is the disc's (its outermost rows and
/// // columns, a few pixels long, are under the 1 % a line needs to count as lit).
/// let mut px = vec![0u8; 640 * 360];
/// for y in 0..360i32 {
///     for x in 0..640i32 {
///         let (dx, dy) = (x - 320, y - 180);
///         if dx * dx + dy * dy <= 100 * 100 {
///             px[(y * 640 + x) as usize] = 200;
///         }
///     }
/// }
/// let img = Luma::new(640, 360, px).unwrap();
/// assert_eq!(dark_trim(&img), Some(Rect { x: 221, y: 81, width: 199, height: 199 }));
/// ```
pub fn dark_trim(img: &Luma) -> Option<Rect> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < MIN_SIDE || h < MIN_SIDE {
        return None;
    }
    // Branch-free counts over whole rows, so the loops vectorise (this runs on every keyframe).
    let mut lit_in_col = vec![0_u32; w];
    let lit_in_row: Vec<u32> = img
        .pixels()
        .chunks_exact(w)
        .map(|row| {
            let mut lit = 0;
            for (col, &p) in lit_in_col.iter_mut().zip(row) {
                let on = u32::from(p > DARK_LEVEL);
                *col += on;
                lit += on;
            }
            lit
        })
        .collect();
    let needed = |n: usize| ((n as f32 * LIT_FRACTION).ceil() as u32).max(2);
    let span = |counts: &[u32], need: u32| {
        let first = counts.iter().position(|&c| c >= need)?;
        let last = counts.iter().rposition(|&c| c >= need)?;
        Some((first, last + 1))
    };
    let (top, bottom) = span(&lit_in_row, needed(w))?;
    let (left, right) = span(&lit_in_col, needed(h))?;
    let (width, height) = (right - left, bottom - top);
    let keeps = |kept: usize, n: usize| kept as f32 >= TRIM_MIN_KEEP * n as f32;
    if !keeps(width, w) || !keeps(height, h) {
        return None;
    }
    let cut = |c: usize, n: usize| c as f32 >= TRIM_MIN_CUT * n as f32;
    if !(cut(top, h) || cut(h - bottom, h) || cut(left, w) || cut(w - right, w)) {
        return None;
    }
    Some(Rect { x: left as u32, y: top as u32, width: width as u32, height: height as u32 })
}

/// The pictures inside a frame worth hashing on their own: the picture inside bars
/// ([`content_rect`]) and the box of everything lit ([`dark_trim`]), the second left out when
/// it is the first give or take 1 % of the frame on every edge. Empty for a frame that is all
/// picture. The reference and the query side both hash these, so whichever of them a pirate's
/// padding leaves intact lines the two up.
pub fn inner_pictures(img: &Luma) -> Vec<Rect> {
    let mut out: Vec<Rect> = content_rect(img).into_iter().collect();
    if let Some(trim) = dark_trim(img)
        && !out.iter().any(|r| r.near(&trim, img.width(), img.height()))
    {
        out.push(trim);
    }
    out
}

/// An image read as `n` lines of `m` pixels each: rows restricted to a span of columns, or
/// columns restricted to a span of rows. Nothing is copied up front; a column is gathered when
/// it is looked at.
struct Lines<'a> {
    img: &'a Luma,
    columns: bool,
    n: usize,
    m: usize,
    /// First pixel of the span along each line.
    start: usize,
}

impl<'a> Lines<'a> {
    /// Rows of `img`, restricted to columns `x0..x1`.
    fn rows(img: &'a Luma, x0: usize, x1: usize) -> Self {
        Lines { img, columns: false, n: img.height() as usize, m: x1 - x0, start: x0 }
    }

    /// Columns of `img`, restricted to rows `y0..y1`.
    fn columns(img: &'a Luma, y0: usize, y1: usize) -> Self {
        Lines { img, columns: true, n: img.width() as usize, m: y1 - y0, start: y0 }
    }

    fn line(&self, i: usize) -> Cow<'a, [u8]> {
        if self.columns {
            let w = self.img.width() as usize;
            let px = self.img.pixels();
            Cow::Owned((self.start..self.start + self.m).map(|y| px[y * w + i]).collect())
        } else {
            Cow::Borrowed(&self.img.row(i as u32)[self.start..self.start + self.m])
        }
    }
}

fn segment_len(m: usize) -> usize {
    (m / 24).clamp(8, 32)
}

/// Per-line measurements, computed on demand: a frame without bars is rejected after a few
/// lines from each side, so most frames never pay for a full profile.
impl Lines<'_> {
    /// Largest segment mean of |p[j-1] - 2 p[j] + p[j+1]| along line i: curvature, not slope,
    /// so a blurred gradient reads as smooth while texture, edges and text do not.
    fn detail(&self, i: usize) -> f32 {
        let seg = segment_len(self.m);
        let mut worst = 0u32;
        for chunk in self.line(i).chunks(seg + 2).filter(|c| c.len() > 2) {
            let s: u32 = chunk
                .windows(3)
                .map(|p| (i32::from(p[0]) - 2 * i32::from(p[1]) + i32::from(p[2])).unsigned_abs())
                .sum();
            worst = worst.max(s * 64 / (chunk.len() as u32 - 2));
        }
        worst as f32 / 64.0
    }

    /// Mean |line i - line i-1| (0 for i = 0).
    fn step(&self, i: usize) -> f32 {
        if i == 0 { 0.0 } else { line_diff(self, i - 1, i) }
    }

    /// Largest segment mean of |line i - line i-1| (0 for i = 0).
    fn step_seg(&self, i: usize) -> f32 {
        if i == 0 {
            return 0.0;
        }
        let seg = segment_len(self.m);
        let mut worst = 0u32;
        let (prev, line) = (self.line(i - 1), self.line(i));
        for (a, b) in prev.chunks(seg).zip(line.chunks(seg)) {
            let s: u32 = a.iter().zip(b).map(|(x, y)| u32::from(x.abs_diff(*y))).sum();
            worst = worst.max(s * 64 / a.len() as u32);
        }
        worst as f32 / 64.0
    }
}

/// Mean over the line of |line a - line b|.
fn line_diff(lines: &Lines<'_>, a: usize, b: usize) -> f32 {
    let (a, b) = (lines.line(a), lines.line(b));
    let s: u32 = a.iter().zip(b.iter()).map(|(x, y)| u32::from(x.abs_diff(*y))).sum();
    s as f32 / lines.m as f32
}

/// How the two bars of an axis must relate to count as bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bars {
    /// Padding: every padding filter centres the picture, so the two bars mirror each other
    /// (within 1 % of the frame, at least 2 lines) and each is at most 40 % of the frame.
    Mirrored,
    /// A layout's band: the picture anywhere along the axis, so the bars may differ and either
    /// may be absent, each up to 70 % of the frame; the picture between them must have a
    /// landscape picture's shape ([`BAND_ASPECT`]), which is what tells a layout from a tall
    /// picture with a plain sky or floor.
    Band,
}

/// Width over height of a picture laid out as a band: a 4:3 to a 2.39:1 picture, with some
/// slack.
const BAND_ASPECT: std::ops::RangeInclusive<f32> = 1.15..=2.5;

/// Bars at the start and end of `lines`: `(start, end)` thicknesses, or `None`.
fn find_bars(lines: &Lines<'_>, bars: Bars) -> Option<(usize, usize)> {
    let n = lines.n;
    if n < MIN_SIDE || lines.m < MIN_SIDE / 2 {
        return None;
    }
    let max_bar = match bars {
        Bars::Mirrored => n * 2 / 5,
        Bars::Band => n * 7 / 10,
    };
    // Bars can nest (a film's own black bars inside a pad or a blur fill, whose outer edge may
    // be invisible on one side): take the outermost pair of candidate edges that fits.
    let mut starts = edges(lines, false, max_bar);
    let mut ends = edges(lines, true, max_bar);
    if bars == Bars::Band {
        // The picture may touch the frame's border on a side with no bar edge.
        for side in [&mut starts, &mut ends] {
            if side.is_empty() {
                side.push(0);
            }
        }
    }
    let tolerance = (n / 100).max(2);
    let fits = |a: usize, b: usize| match bars {
        Bars::Mirrored => a.abs_diff(b) <= tolerance,
        Bars::Band => a + b > 0 && BAND_ASPECT.contains(&(lines.m as f32 / (n - a - b) as f32)),
    };
    let (a, b) = starts
        .iter()
        .flat_map(|&a| ends.iter().map(move |&b| (a, b)))
        .filter(|&(a, b)| a + b < n && n - a - b >= n / 5 && fits(a, b))
        .min_by_key(|&(a, b)| a + b)?;
    // The picture between the bars must have detail somewhere: a uniform frame with two faint
    // bands is not a padded picture.
    let needed = (n - a - b).div_ceil(10);
    let busy = (a..n - b).filter(|&i| lines.detail(i) > BAR_DETAIL).take(needed).count();
    (busy >= needed).then_some((a, b))
}

/// Up to three nested bar edges on one side (`from_end`: the last lines inward), outermost
/// first, as bar thicknesses.
fn edges(lines: &Lines<'_>, from_end: bool, max_bar: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut begin = 0;
    while out.len() < 3
        && let Some(k) = edge(lines, from_end, begin, max_bar)
    {
        out.push(k);
        begin = k;
    }
    out
}

/// The bar edge on one side whose bar-like run starts at line `begin` from that side (0 for
/// the frame's border, or a previous edge for a bar nested inside another), for a bar of at
/// most `max_bar` lines.
fn edge(lines: &Lines<'_>, from_end: bool, begin: usize, max_bar: usize) -> Option<usize> {
    let n = lines.n;
    // The k-th line from this side, and the step between it and the (k-1)-th: the edge that
    // makes a bar of k lines.
    let at = |k: usize| if from_end { n - 1 - k } else { k };
    let step_at = |k: usize| if from_end { lines.step(n - k) } else { lines.step(k) };
    let step_seg_at = |k: usize| if from_end { lines.step_seg(n - k) } else { lines.step_seg(k) };
    let min_bar = (n / 50).max(2);
    // The run of bar-like lines from this side.
    let mut smooth = begin;
    while smooth < max_bar
        && lines.detail(at(smooth)) <= BAR_DETAIL
        && (smooth == begin || step_seg_at(smooth) <= BAR_STEP)
    {
        smooth += 1;
    }
    // Compression rings next to a sharp edge (JPEG blocks, H.264 transforms): the run may stop
    // a few lines short of the edge. The edge is then the first strong step in the window.
    let slack = (n / 100).max(4);
    let lo = smooth.saturating_sub(1).max(min_bar);
    let hi = (smooth + slack).min(max_bar).min(n - 2);
    if lo > hi || smooth < begin + 2 {
        return None;
    }
    let noise = (begin + 1..smooth.saturating_sub(slack).max(begin + 1))
        .map(step_at)
        .fold(0.0f32, f32::max);
    let peak = (lo..=hi).map(step_at).fold(0.0f32, f32::max);
    let floor = EDGE_MIN.max(EDGE_OVER_NOISE * noise).max(peak / 2.0);
    let k = (lo..=hi).find(|&k| step_at(k) >= floor)?;
    // Persistence: a few lines into the picture, it still differs from the bar (a thin line
    // drawn on a flat background, such as a grid, returns to the background's level).
    let near = line_diff(lines, at(k - 1), at(k))
        .max(line_diff(lines, at(k - 1), at(k + 1)).min(line_diff(lines, at(k - 2), at(k))));
    let persist = line_diff(lines, at(k - 1), at((k + 3).min(n - 1)));
    if persist < EDGE_PERSISTENCE * near {
        return None;
    }
    // Straightness: along the line, wherever the picture departs from the bar it does so at
    // this edge (within a line), not a few lines before or after as the outline of a title, a
    // horizon or a slanted object would. And it does so along a fair part of the line.
    let bar = at(k.saturating_sub(4).max(begin));
    let seg = segment_len(lines.m);
    let segments = lines.m.div_ceil(seg);
    let bar_line = lines.line(bar);
    let window: Vec<(usize, Cow<[u8]>)> =
        (k.saturating_sub(3)..=(k + 3).min(n - 1)).map(|t| (t, lines.line(at(t)))).collect();
    let (mut aligned, mut departing) = (0usize, 0usize);
    for s in 0..segments {
        let (j0, j1) = (s * seg, ((s + 1) * seg).min(lines.m));
        let reference = &bar_line[j0..j1];
        let first = window.iter().find_map(|(t, line)| {
            let d: u32 =
                line[j0..j1].iter().zip(reference).map(|(p, q)| u32::from(p.abs_diff(*q))).sum();
            (d as f32 >= DEPARTURE * (j1 - j0) as f32).then_some(*t)
        });
        if let Some(t) = first {
            departing += 1;
            if t + 1 >= k && t <= k + 1 {
                aligned += 1;
            }
        }
    }
    let straight = aligned as f32 >= EDGE_STRAIGHTNESS * departing as f32
        && aligned as f32 >= EDGE_EXTENT * segments as f32;
    straight.then_some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rectangles_are_near_within_one_percent_of_the_frame_on_every_edge() {
        let a = Rect { x: 100, y: 50, width: 400, height: 225 };
        let within = Rect { x: 106, y: 47, width: 397, height: 230 };
        assert!(a.near(&within, 640, 360) && within.near(&a, 640, 360));
        // The right edge 7 pixels away: more than 1 % of 640.
        let wider = Rect { width: 407, ..a };
        assert!(!a.near(&wider, 640, 360));
    }

    /// Deterministic texture: a mix of gradients and hashed noise, like a busy picture.
    fn texture(w: u32, h: u32, seed: u32) -> Luma {
        let px = (0..h)
            .flat_map(|y| {
                (0..w).map(move |x| {
                    let mut v = x.wrapping_mul(374_761_393) ^ y.wrapping_mul(668_265_263) ^ seed;
                    v = (v ^ (v >> 13)).wrapping_mul(1_274_126_177);
                    let noise = (v >> 24) as i32 - 128;
                    let base = 128 + ((x as i32 * 3 + y as i32 * 2) % 80) - 40;
                    (base + noise / 2).clamp(0, 255) as u8
                })
            })
            .collect();
        Luma::new(w, h, px).unwrap()
    }

    fn pad(content: &Luma, w: u32, h: u32, x: u32, y: u32, fill: u8) -> Luma {
        let mut px = vec![fill; (w * h) as usize];
        for r in 0..content.height() {
            let start = ((y + r) * w + x) as usize;
            px[start..start + content.width() as usize].copy_from_slice(content.row(r));
        }
        Luma::new(w, h, px).unwrap()
    }

    #[test]
    fn black_letterbox_and_pillarbox_bars_are_found_to_the_pixel() {
        let img = pad(&texture(512, 288, 1), 640, 360, 64, 36, 0);
        assert_eq!(content_rect(&img), Some(Rect { x: 64, y: 36, width: 512, height: 288 }));
    }

    #[test]
    fn grey_bars_above_and_below_are_found() {
        let img = pad(&texture(360, 202, 2), 360, 640, 0, 219, 90);
        assert_eq!(content_rect(&img), Some(Rect { x: 0, y: 219, width: 360, height: 202 }));
    }

    /// Separable box blur of the given radius, applied `passes` times (as FFmpeg's boxblur).
    fn box_blur(img: &Luma, radius: usize, passes: usize) -> Luma {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut px: Vec<f32> = img.pixels().iter().map(|&p| f32::from(p)).collect();
        let blur_line = |get: &dyn Fn(usize) -> f32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| {
                    let (a, b) = (i.saturating_sub(radius), (i + radius).min(n - 1));
                    (a..=b).map(get).sum::<f32>() / (b - a + 1) as f32
                })
                .collect()
        };
        for _ in 0..passes {
            for y in 0..h {
                let row = blur_line(&|x| px[y * w + x], w);
                px[y * w..(y + 1) * w].copy_from_slice(&row);
            }
            for x in 0..w {
                let col = blur_line(&|y| px[y * w + x], h);
                for (y, v) in col.into_iter().enumerate() {
                    px[y * w + x] = v;
                }
            }
        }
        Luma::new(w as u32, h as u32, px.into_iter().map(|v| v.round() as u8).collect()).unwrap()
    }

    /// As a vertical phone stream: the 16:9 picture `content` with its top at row `y` of a
    /// 9:16 canvas, over a blurred, darkened copy of its centre enlarged to fill the canvas.
    fn blurred_fill(content: &Luma, y: u32) -> Luma {
        let (cw, ch) = (content.width(), content.height());
        let (w, h) = (cw, cw * 16 / 9);
        let centre = content.crop(cw * 123 / 360, 0, cw * 114 / 360, ch).unwrap();
        let enlarged: Vec<u8> = (0..h)
            .flat_map(|row| {
                let c = &centre;
                (0..w).map(move |x| c.row(row * ch / h)[(x * c.width() / w) as usize])
            })
            .collect();
        let blurred = box_blur(&Luma::new(w, h, enlarged).unwrap(), 16, 2);
        let mut px: Vec<u8> = blurred.pixels().iter().map(|p| p.saturating_sub(20)).collect();
        for r in 0..ch {
            let start = ((y + r) * w) as usize;
            px[start..start + w as usize].copy_from_slice(content.row(r));
        }
        Luma::new(w, h, px).unwrap()
    }

    #[test]
    fn blurred_fill_bars_are_found_to_the_pixel() {
        let img = blurred_fill(&texture(360, 202, 7), 219);
        assert_eq!(content_rect(&img), Some(Rect { x: 0, y: 219, width: 360, height: 202 }));
        // A centred band is the same picture to the layout finder.
        assert_eq!(layout_band(&img), content_rect(&img));
    }

    #[test]
    fn a_picture_laid_out_anywhere_in_a_portrait_frame_is_found_as_a_band() {
        let picture = texture(360, 202, 7);
        // From the top third to the very top: bars no longer mirror each other, so only the
        // band finder sees them.
        for y in [0, 30, 60, 112, 160] {
            let img = blurred_fill(&picture, y);
            assert_eq!(content_rect(&img), None, "top at {y}");
            let band = Rect { x: 0, y, width: 360, height: 202 };
            assert_eq!(layout_band(&img), Some(band), "top at {y}");
        }
        // Plain bars below a picture near the top.
        let img = pad(&picture, 360, 640, 0, 70, 0);
        assert_eq!(layout_band(&img), Some(Rect { x: 0, y: 70, width: 360, height: 202 }));
    }

    #[test]
    fn a_tall_picture_with_a_plain_band_or_a_landscape_frame_is_not_a_band() {
        // A portrait picture over a plain floor: the part above is taller than wide, not a
        // landscape picture laid out in the frame.
        let floor = pad(&texture(360, 420, 8), 360, 640, 0, 0, 40);
        assert_eq!(layout_band(&floor), None);
        // A landscape frame's bars are padding, centred: content_rect's business.
        let boxed = pad(&texture(640, 240, 9), 640, 360, 0, 20, 0);
        assert_eq!(layout_band(&boxed), None);
        assert_eq!(layout_band(&texture(360, 640, 3)), None);
        assert_eq!(layout_band(&Luma::new(360, 640, vec![16; 360 * 640]).unwrap()), None);
    }

    #[test]
    fn a_dark_sky_above_a_skyline_and_dark_ground_below_give_none() {
        // Smooth dark bands of the same height at the top and the bottom, but their edges with
        // the busy middle are ragged, as a skyline and a foreground are.
        let busy = texture(640, 360, 9);
        let bands = |ragged: &dyn Fn(u32) -> u32| {
            let px = (0..360u32)
                .flat_map(|y| (0..640u32).map(move |x| (y, x)))
                .map(|(y, x)| {
                    let r = ragged(x);
                    if y < r || y >= 360 - r { 18 } else { busy.row(y)[x as usize] }
                })
                .collect();
            Luma::new(640, 360, px).unwrap()
        };
        assert_eq!(content_rect(&bands(&|x| 90 + (x / 16 * 7919 % 23))), None);
        // The same bands with straight edges are bars.
        let straight = Rect { x: 0, y: 90, width: 640, height: 180 };
        assert_eq!(content_rect(&bands(&|_| 90)), Some(straight));
    }

    #[test]
    fn a_frame_without_bars_gives_none() {
        assert_eq!(content_rect(&texture(640, 360, 3)), None);
    }

    #[test]
    fn a_uniform_frame_gives_none() {
        let img = Luma::new(640, 360, vec![16; 640 * 360]).unwrap();
        assert_eq!(content_rect(&img), None);
    }

    #[test]
    fn tiny_images_give_none() {
        let img = pad(&texture(20, 10, 4), 30, 30, 5, 10, 0);
        assert_eq!(content_rect(&img), None);
    }

    #[test]
    fn dark_trim_of_a_letterboxed_copy_is_the_scaled_trim_of_the_original() {
        // A bright textured disc on black (a planet in space), and the same frame shrunk to
        // 80 % and padded back with black: the boxes correspond.
        let disc = |w: u32, h: u32, r: f32| {
            let px = (0..h)
                .flat_map(|y| (0..w).map(move |x| (x, y)))
                .map(|(x, y)| {
                    let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 2.0);
                    if dx * dx + dy * dy <= r * r { 60 + ((x * 7 + y * 13) % 120) as u8 } else { 3 }
                })
                .collect();
            Luma::new(w, h, px).unwrap()
        };
        let original = dark_trim(&disc(640, 360, 120.0)).unwrap();
        let padded = pad(&disc(512, 288, 96.0), 640, 360, 64, 36, 0);
        let copy = dark_trim(&padded).unwrap();
        assert!(
            (original.width as f32 * 0.8 - copy.width as f32).abs() <= 2.0,
            "{original:?} {copy:?}"
        );
        assert!(
            (original.height as f32 * 0.8 - copy.height as f32).abs() <= 2.0,
            "{original:?} {copy:?}"
        );
        assert!((copy.x as i32 + copy.width as i32 / 2 - 320).abs() <= 2, "{copy:?}");
        // content_rect sees no bar edge here: the margins are as dark as the bars.
        assert_eq!(content_rect(&padded), None);
    }

    #[test]
    fn dark_trim_leaves_bright_frames_small_specks_and_black_frames_alone() {
        assert_eq!(dark_trim(&texture(640, 360, 5)), None);
        assert_eq!(dark_trim(&Luma::new(640, 360, vec![8; 640 * 360]).unwrap()), None);
        // A small logo on black keeps under a fifth of the frame.
        let logo = pad(&texture(100, 50, 6), 640, 360, 270, 155, 0);
        assert_eq!(dark_trim(&logo), None);
        // A few bright specks in the margin do not stop the trim.
        let mut specked = pad(&texture(400, 240, 8), 640, 360, 120, 60, 0);
        let mut px = specked.pixels().to_vec();
        px[5 * 640 + 7] = 255;
        px[300 * 640 + 600] = 255;
        specked = Luma::new(640, 360, px).unwrap();
        assert_eq!(dark_trim(&specked), Some(Rect { x: 120, y: 60, width: 400, height: 240 }));
    }

    #[test]
    fn inner_pictures_give_bars_and_trim_once_each() {
        // Black bars around a bright picture: both methods find the same box, listed once.
        let boxed = pad(&texture(512, 288, 1), 640, 360, 64, 36, 0);
        assert_eq!(inner_pictures(&boxed), vec![Rect { x: 64, y: 36, width: 512, height: 288 }]);
        // Grey bars: only the bars are seen (grey is lit).
        let grey = pad(&texture(360, 202, 2), 360, 640, 0, 219, 90);
        assert_eq!(inner_pictures(&grey).len(), 1);
        assert!(inner_pictures(&texture(640, 360, 3)).is_empty());
    }
}
