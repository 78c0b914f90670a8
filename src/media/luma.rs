//! Dense decoding into small greyscale frames, for reference hashing.

use std::ops::ControlFlow;

use ffmpeg_next as ff;
use fingerprints::Luma;

use super::source::{Scaler, Source};
use super::still::StillMaker;
use super::{DecodeSummary, InputOptions, MediaError, Progress};

/// How to decode frames for hashing.
#[derive(Debug, Clone)]
pub struct LumaOptions {
    /// Where to read from and how.
    pub input: InputOptions,
    /// Deliver at most this many frames per second of stream time (frames in between are
    /// decoded, which H.264 requires, but not converted); `None` delivers every frame.
    pub max_fps: Option<f64>,
    /// Scale frames so their longer side is at most this many pixels (never upscaled). PDQ
    /// summarises a picture into 64x64 blocks, so 512 loses nothing it would see while making
    /// the conversion and hashing several times cheaper than full 720p or 1080p.
    pub long_side: u32,
    /// Also make a colour still ([`LumaFrame::still`], long side
    /// [`super::REFERENCE_STILL_LONG_SIDE`]) of the first delivered frame of every this many
    /// ms of stream time; `None` makes none. The still is scaled from the decoded frame, not
    /// from the small luma, so it costs one more downscale and a JPEG encode per interval.
    pub still_interval_ms: Option<i64>,
    /// Skip H.264/HEVC deblocking. It saves about a third of the decode time and changes a
    /// few pixels' values along block edges, which a perceptual hash at 64x64 does not see.
    pub skip_loop_filter: bool,
}

impl Default for LumaOptions {
    fn default() -> Self {
        Self {
            input: InputOptions { decoder_threads: 1, ..InputOptions::default() },
            max_fps: Some(30.0),
            long_side: 512,
            still_interval_ms: None,
            skip_loop_filter: false,
        }
    }
}

/// One decoded frame: its stream time and its luma at working size.
#[derive(Debug, Clone)]
pub struct LumaFrame {
    /// Stream time in ms (the first frame of a file is at its container start, usually 0).
    pub ts_ms: i64,
    /// The frame's greyscale picture, display aspect ratio, long side at most
    /// [`LumaOptions::long_side`].
    pub luma: Luma,
    /// A small colour JPEG of the frame, when [`LumaOptions::still_interval_ms`] asked for one
    /// at this frame's time.
    pub still: Option<Vec<u8>>,
}

/// Decodes the video of `input` and calls `on_frame` for each frame (after the frame-rate cap)
/// in presentation order, until the input ends or `on_frame` returns `Break`.
///
/// # Errors
/// A [`MediaError`]; errors after the first frame carry the [`Progress`] made, and a file that
/// ends well before its announced duration is [`MediaError::Truncated`].
pub fn decode_luma_frames(
    input: &str,
    opts: &LumaOptions,
    mut on_frame: impl FnMut(LumaFrame) -> ControlFlow<()>,
) -> Result<DecodeSummary, MediaError> {
    let mut source = Source::open(input, &opts.input)?;
    if opts.skip_loop_filter {
        source.skip_loop_filter();
    }
    let mut scaler = Scaler::new(
        ff::format::Pixel::GRAY8,
        Some(opts.long_side.max(16)),
        ff::software::scaling::Flags::AREA,
    );
    let interval_ms = opts.max_fps.filter(|f| *f > 0.0).map(|f| 1000.0 / f);
    let mut next_due = f64::NEG_INFINITY;
    let mut stills = opts
        .still_interval_ms
        .filter(|i| *i > 0)
        .map(|i| (StillMaker::new(super::REFERENCE_STILL_LONG_SIDE), i, i64::MIN));
    let mut delivered = 0u64;
    let mut decoded = 0u64;
    let input_name = input.to_owned();
    let mut summary = source.run(|decoded_frame| {
        decoded += 1;
        let ts = decoded_frame.ts_ms as f64;
        if let Some(interval) = interval_ms {
            // A quarter-interval tolerance absorbs ms rounding of timestamps (33, 67, 100...).
            if ts < next_due - interval * 0.25 {
                return Ok(ControlFlow::Continue(()));
            }
            next_due = if next_due.is_finite() { next_due + interval } else { ts + interval };
            if next_due <= ts {
                next_due = ts + interval;
            }
        }
        let progress = Progress { frames: decoded, last_ts_ms: Some(decoded_frame.ts_ms) };
        let grey = scaler.scale(decoded_frame.frame, &input_name, progress)?;
        let luma = gray_frame_to_luma(grey).map_err(|_| MediaError::PixelFormat {
            input: input_name.clone(),
            format: "GRAY8 output".to_owned(),
            progress,
        })?;
        let ts_ms = decoded_frame.ts_ms;
        let still = match &mut stills {
            // The first frame at or after each multiple of the interval.
            Some((maker, interval, next)) if ts_ms >= *next => {
                *next = (ts_ms.div_euclid(*interval) + 1) * *interval;
                Some(maker.still(decoded_frame.frame, ts_ms, &input_name, progress)?)
            }
            _ => None,
        };
        delivered += 1;
        Ok(on_frame(LumaFrame { ts_ms, luma, still }))
    })?;
    summary.frames_delivered = delivered;
    Ok(summary)
}

/// Copies a GRAY8 frame's plane (whose rows may be padded) into a [`Luma`].
fn gray_frame_to_luma(frame: &ff::frame::Video) -> Result<Luma, fingerprints::Error> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.stride(0);
    let data = frame.data(0);
    let mut pixels = Vec::with_capacity(w * h);
    for row in 0..h {
        let start = row * stride;
        pixels.extend_from_slice(data.get(start..start + w).unwrap_or(&[]));
    }
    Luma::new(frame.width(), frame.height(), pixels)
}
