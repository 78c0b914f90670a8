//! Keyframe extraction: one JPEG every N seconds of stream time, as a platform would send.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::source::{Scaler, Source};
use super::still::encode_rgb_frame;
use super::{DecodeSummary, InputOptions, MediaError, Progress};
use ffmpeg_next as ff;

/// How to extract keyframes.
#[derive(Debug, Clone)]
pub struct KeyframeOptions {
    /// Where to read from and how.
    pub input: InputOptions,
    /// Stream time between two keyframes. Platforms send one every 2 s.
    pub interval: Duration,
    /// JPEG quality, 1-100.
    pub jpeg_quality: u8,
    /// Shrink frames whose longer side exceeds this (never upscaled); `None` keeps the
    /// decoded size. 1280 keeps 720p intact and makes 1080p/4K keyframes cheap to send.
    pub max_long_side: Option<u32>,
    /// Deliver each keyframe no earlier than its stream time after the first frame, as a live
    /// stream would (like `ffmpeg -re`). Live inputs are paced by the source already; this is
    /// for replaying files as if they were live.
    pub realtime: bool,
}

impl Default for KeyframeOptions {
    fn default() -> Self {
        Self {
            input: InputOptions::default(),
            interval: Duration::from_secs(2),
            jpeg_quality: 80,
            max_long_side: Some(1280),
            realtime: false,
        }
    }
}

/// One extracted keyframe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyframe {
    /// Stream time in ms from the first decoded frame.
    pub ts_ms: i64,
    /// Width of the encoded picture.
    pub width: u32,
    /// Height of the encoded picture.
    pub height: u32,
    /// The JPEG bytes.
    pub jpeg: Vec<u8>,
}

/// Decodes `input` and calls `on_keyframe` with one JPEG keyframe per
/// [`KeyframeOptions::interval`] of stream time (the first frame, then the first frame at or
/// after each multiple of the interval), until the input ends or `on_keyframe` breaks.
///
/// # Errors
/// A [`MediaError`]; errors after the first frame carry the [`Progress`] made, and a file that
/// ends well before its announced duration is [`MediaError::Truncated`].
pub fn extract_keyframes(
    input: &str,
    opts: &KeyframeOptions,
    mut on_keyframe: impl FnMut(Keyframe) -> ControlFlow<()>,
) -> Result<DecodeSummary, MediaError> {
    let source = Source::open(input, &opts.input)?;
    let mut scaler = Scaler::new(
        ff::format::Pixel::RGB24,
        opts.max_long_side,
        ff::software::scaling::Flags::AREA,
    );
    let interval_ms = i64::try_from(opts.interval.as_millis()).unwrap_or(i64::MAX).max(1);
    let quality = opts.jpeg_quality.clamp(1, 100);
    let input_name = input.to_owned();
    let mut first_ts: Option<i64> = None;
    let mut next_slot = 0i64;
    let mut started = None::<Instant>;
    let mut decoded = 0u64;
    let mut delivered = 0u64;
    let mut summary = source.run(|frame| {
        decoded += 1;
        let origin = *first_ts.get_or_insert(frame.ts_ms);
        let ts_ms = frame.ts_ms - origin;
        // Frames stamped before the first one (B-frame reordering glitches) never qualify.
        if ts_ms < next_slot {
            return Ok(ControlFlow::Continue(()));
        }
        next_slot = (ts_ms / interval_ms + 1) * interval_ms;
        if opts.realtime {
            let start = *started.get_or_insert_with(Instant::now);
            let due = start + Duration::from_millis(u64::try_from(ts_ms).unwrap_or(0));
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let progress = Progress { frames: decoded, last_ts_ms: Some(frame.ts_ms) };
        let rgb = scaler.scale(frame.frame, &input_name, progress)?;
        let (width, height) = (rgb.width(), rgb.height());
        let jpeg = encode_rgb_frame(rgb, quality, ts_ms)?;
        delivered += 1;
        Ok(on_keyframe(Keyframe { ts_ms, width, height, jpeg }))
    })?;
    summary.frames_delivered = delivered;
    Ok(summary)
}
