//! Opening an input and running its video decoder: the loop both readers share.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ff::software::scaling;
use ffmpeg_next as ff;

use super::{DecodeSummary, MediaError, Progress};

/// How to open an input.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// Give up on a network read that stalls this long (FFmpeg's `rw_timeout`); `None` waits
    /// as long as the protocol does. Ignored by plain files.
    pub read_timeout: Option<Duration>,
    /// Set to true from another thread to stop reading: a blocked network read returns and
    /// the run ends with `stopped_early`.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Decoder threads; 0 lets FFmpeg choose (one per core), 1 keeps decoding on the caller's
    /// thread only.
    pub decoder_threads: usize,
    /// How much of the input FFmpeg reads to learn its streams before the first frame is
    /// decoded (its `analyzeduration`); `None` keeps FFmpeg's default of 5 s. Live inputs use
    /// [`LIVE_PROBE`].
    pub probe: Option<Duration>,
    /// More FFmpeg options for the input, set after the ones above: what confines a network
    /// feed (`protocol_whitelist`, `format_whitelist`, `http_proxy`; see
    /// [`crate::net::ffmpeg`]). Local files need none: FFmpeg's `file` protocol already limits
    /// what a file opens in turn (an uploaded HLS playlist's segments) to `file,crypto,data`.
    pub avoptions: Vec<(String, String)>,
}

/// The probe of a live input. FFmpeg's default reads 5 s of an RTMP or MPEG-TS feed (FLV and
/// MPEG-TS may add streams at any time, so it waits the whole duration) before the first frame:
/// measured on loopback, a new connection's first frame took 5.6 s (RTMP) and 6.4 s (UDP
/// MPEG-TS) with the default, 1.6 s and 2.4 s with this. The decoder learns the picture's size
/// from the stream itself, so a probe that ends before the first keyframe loses nothing.
pub const LIVE_PROBE: Duration = Duration::from_secs(1);

/// What the container says about the video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// Coded width in pixels.
    pub width: u32,
    /// Coded height in pixels.
    pub height: u32,
    /// Width the picture is meant to be shown at (coded width times the sample aspect ratio).
    pub display_width: u32,
    /// Codec name, e.g. `h264`.
    pub codec: String,
    /// Average frame rate, when known.
    pub frame_rate: Option<f64>,
    /// Duration in ms, when the container announces one (not for live inputs).
    pub duration_ms: Option<i64>,
}

/// Opens `input` and describes its video stream without decoding it.
///
/// # Errors
/// [`MediaError::Open`], [`MediaError::NoVideoStream`] or [`MediaError::Codec`].
pub fn probe(input: &str) -> Result<VideoInfo, MediaError> {
    Ok(Source::open(input, &InputOptions::default())?.info)
}

/// An opened input with its video decoder.
pub(super) struct Source {
    pub input: String,
    pub info: VideoInfo,
    ictx: ff::format::context::Input,
    decoder: ff::decoder::Video,
    stream_index: usize,
    time_base: f64,
    start_pts: Option<i64>,
    cancel: Option<Arc<AtomicBool>>,
}

/// One decoded frame with its stream time.
pub(super) struct DecodedFrame<'a> {
    pub frame: &'a ff::frame::Video,
    pub ts_ms: i64,
}

impl Source {
    pub fn open(input: &str, opts: &InputOptions) -> Result<Self, MediaError> {
        super::init();
        let mut dict = ff::Dictionary::new();
        if let Some(t) = opts.read_timeout {
            dict.set("rw_timeout", &t.as_micros().to_string());
        }
        if let Some(t) = opts.probe {
            dict.set("analyzeduration", &t.as_micros().to_string());
        }
        for (key, value) in &opts.avoptions {
            dict.set(key, value);
        }
        let open_err = |source| MediaError::Open { input: input.to_owned(), source };
        let ictx = match &opts.cancel {
            Some(flag) => {
                let flag = flag.clone();
                ff::format::input_with_interrupt_and_dictionary(
                    input,
                    move || flag.load(Ordering::Relaxed),
                    dict,
                )
            }
            None => ff::format::input_with_dictionary(input, dict),
        }
        .map_err(open_err)?;

        let stream = ictx
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| MediaError::NoVideoStream { input: input.to_owned() })?;
        let stream_index = stream.index();
        let tb = stream.time_base();
        let time_base = f64::from(tb.numerator()) / f64::from(tb.denominator().max(1));
        let start_pts =
            (stream.start_time() != ff::ffi::AV_NOPTS_VALUE).then(|| stream.start_time());
        let avg = stream.avg_frame_rate();
        let frame_rate = (avg.numerator() > 0 && avg.denominator() > 0)
            .then(|| f64::from(avg.numerator()) / f64::from(avg.denominator()));
        let stream_duration_ms =
            (stream.duration() > 0).then(|| (stream.duration() as f64 * time_base * 1000.0) as i64);
        let container_duration_ms = (ictx.duration() > 0)
            .then(|| ictx.duration() * 1000 / i64::from(ff::ffi::AV_TIME_BASE));
        let duration_ms = stream_duration_ms.or(container_duration_ms);

        let mut ctx =
            ff::codec::context::Context::from_parameters(stream.parameters()).map_err(open_err)?;
        let codec = ctx.id().name().to_owned();
        ctx.set_threading(ff::codec::threading::Config {
            kind: ff::codec::threading::Type::Frame,
            count: opts.decoder_threads,
            ..ff::codec::threading::Config::default()
        });
        let decoder = ctx.decoder().video().map_err(|source| MediaError::Codec {
            input: input.to_owned(),
            codec: codec.clone(),
            source,
        })?;
        let sar = decoder.aspect_ratio();
        let display_width = display_width(decoder.width(), sar.numerator(), sar.denominator());
        let info = VideoInfo {
            width: decoder.width(),
            height: decoder.height(),
            display_width,
            codec,
            frame_rate,
            duration_ms,
        };
        Ok(Self {
            input: input.to_owned(),
            info,
            ictx,
            decoder,
            stream_index,
            time_base,
            start_pts,
            cancel: opts.cancel.clone(),
        })
    }

    /// Skips the in-loop deblocking filter of codecs that have one (H.264, HEVC).
    pub fn skip_loop_filter(&mut self) {
        self.decoder.skip_loop_filter(ff::codec::discard::Discard::All);
    }

    /// Decodes every frame of the video stream in presentation order and hands it to `on_frame`
    /// until the input ends or `on_frame` breaks.
    pub fn run(
        mut self,
        mut on_frame: impl FnMut(DecodedFrame<'_>) -> Result<ControlFlow<()>, MediaError>,
    ) -> Result<DecodeSummary, MediaError> {
        let mut progress = Progress::default();
        let mut corrupt_packets = 0u64;
        let mut delivered_any_break = false;
        let mut frame = ff::frame::Video::empty();
        let mut origin = self.start_pts;
        let mut packet = ff::Packet::empty();
        let mut input_done = false;
        let mut fallback_index = 0i64;

        'outer: loop {
            if self.cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                delivered_any_break = true;
                break;
            }
            if !input_done {
                match packet.read(&mut self.ictx) {
                    Ok(()) => {
                        if packet.stream() != self.stream_index {
                            continue;
                        }
                        match self.decoder.send_packet(&packet) {
                            Ok(()) => {}
                            // A damaged packet: skip it like a player would, keep going.
                            Err(ff::Error::InvalidData) => corrupt_packets += 1,
                            Err(source) => {
                                return Err(MediaError::Decode {
                                    input: self.input,
                                    progress,
                                    source,
                                });
                            }
                        }
                    }
                    Err(ff::Error::Eof) => {
                        input_done = true;
                        let _ = self.decoder.send_eof();
                    }
                    Err(ff::Error::InvalidData) => {
                        corrupt_packets += 1;
                        continue;
                    }
                    Err(ff::Error::Exit) => {
                        // The interrupt callback fired: cancellation, not failure.
                        delivered_any_break = true;
                        break;
                    }
                    Err(source) => {
                        return Err(MediaError::Decode { input: self.input, progress, source });
                    }
                }
            }
            loop {
                match self.decoder.receive_frame(&mut frame) {
                    Ok(()) => {}
                    Err(ff::Error::Other { errno }) if errno == ff::util::error::EAGAIN => break,
                    Err(ff::Error::Eof) => break 'outer,
                    Err(ff::Error::InvalidData) => {
                        corrupt_packets += 1;
                        continue;
                    }
                    Err(source) => {
                        return Err(MediaError::Decode { input: self.input, progress, source });
                    }
                }
                let ts_ms = match frame.timestamp() {
                    Some(pts) => {
                        let o = *origin.get_or_insert(pts);
                        ((pts - o) as f64 * self.time_base * 1000.0).round() as i64
                    }
                    // No timestamp at all: count frames at the announced rate.
                    None => {
                        let rate = self.info.frame_rate.unwrap_or(25.0);
                        (fallback_index as f64 * 1000.0 / rate).round() as i64
                    }
                };
                fallback_index += 1;
                progress.frames += 1;
                progress.last_ts_ms = Some(ts_ms);
                if on_frame(DecodedFrame { frame: &frame, ts_ms })?.is_break() {
                    delivered_any_break = true;
                    break 'outer;
                }
            }
            if input_done {
                // Draining after EOF: receive_frame returned EAGAIN, which a flushed decoder
                // should not do; stop rather than spin.
                break;
            }
        }

        if !delivered_any_break {
            if progress.frames == 0 {
                return Err(MediaError::NoFrames { input: self.input, corrupt_packets });
            }
            if let (Some(expected_ms), Some(last)) = (self.info.duration_ms, progress.last_ts_ms) {
                // The last frame starts one frame period before the end; allow that plus
                // slack for containers whose duration includes audio or edit lists.
                let frame_ms = self.info.frame_rate.map_or(100.0, |r| 1000.0 / r.max(1.0));
                let slack = (frame_ms * 3.0).max(500.0) as i64 + expected_ms / 20;
                if last + slack < expected_ms {
                    return Err(MediaError::Truncated { input: self.input, progress, expected_ms });
                }
            }
        }
        Ok(DecodeSummary {
            input: self.input,
            frames_decoded: progress.frames,
            frames_delivered: 0,
            last_ts_ms: progress.last_ts_ms,
            corrupt_packets,
            stopped_early: delivered_any_break,
        })
    }
}

/// Coded width times the sample aspect ratio (1 when unknown).
fn display_width(width: u32, sar_num: i32, sar_den: i32) -> u32 {
    if sar_num <= 0 || sar_den <= 0 || sar_num == sar_den {
        return width;
    }
    ((u64::from(width) * sar_num as u64 + sar_den as u64 / 2) / sar_den as u64).max(1) as u32
}

/// Output size that fits `(w, h)` within `long_side` on its longer side, never upscaling.
pub(super) fn fit_long_side(w: u32, h: u32, long_side: Option<u32>) -> (u32, u32) {
    let long = w.max(h);
    match long_side {
        Some(limit) if long > limit && limit > 0 => {
            let scale = f64::from(limit) / f64::from(long);
            let sw = ((f64::from(w) * scale).round() as u32).max(1);
            let sh = ((f64::from(h) * scale).round() as u32).max(1);
            (sw, sh)
        }
        _ => (w, h),
    }
}

/// A scaler that follows the decoder's output: rebuilt when the frame size or pixel format
/// changes mid-stream (live inputs do that), and never created for a pixel format swscale
/// cannot read (creating one aborts the process).
pub(super) struct Scaler {
    target: ff::format::Pixel,
    long_side: Option<u32>,
    flags: scaling::Flags,
    current: Option<(ff::format::Pixel, u32, u32, scaling::Context)>,
    out: ff::frame::Video,
}

impl Scaler {
    pub fn new(target: ff::format::Pixel, long_side: Option<u32>, flags: scaling::Flags) -> Self {
        Self { target, long_side, flags, current: None, out: ff::frame::Video::empty() }
    }

    /// Converts `frame` to the target format and size, keeping its display aspect ratio.
    pub fn scale(
        &mut self,
        frame: &ff::frame::Video,
        input: &str,
        progress: Progress,
    ) -> Result<&ff::frame::Video, MediaError> {
        let (fmt, w, h) = (frame.format(), frame.width(), frame.height());
        let stale =
            !matches!(&self.current, Some((f, cw, ch, _)) if *f == fmt && *cw == w && *ch == h);
        if stale {
            let unsupported = || MediaError::PixelFormat {
                input: input.to_owned(),
                format: format!("{fmt:?}"),
                progress,
            };
            if fmt == ff::format::Pixel::None || !scaling::support::input(fmt) || w == 0 || h == 0 {
                return Err(unsupported());
            }
            let sar = frame.aspect_ratio();
            let shown_w = display_width(w, sar.numerator(), sar.denominator());
            let (ow, oh) = fit_long_side(shown_w, h, self.long_side);
            let (ow, oh) = even_if_subsampled(self.target, ow, oh);
            let ctx = scaling::Context::get(fmt, w, h, self.target, ow, oh, self.flags)
                .map_err(|_| unsupported())?;
            self.current = Some((fmt, w, h, ctx));
            self.out = ff::frame::Video::empty();
        }
        let Some((_, _, _, ctx)) = self.current.as_mut() else {
            unreachable!("the scaler was built above")
        };
        ctx.run(frame, &mut self.out).map_err(|source| MediaError::Decode {
            input: input.to_owned(),
            progress,
            source,
        })?;
        Ok(&self.out)
    }
}

/// Chroma-subsampled targets (the JPEG path's YUV) need even dimensions.
fn even_if_subsampled(target: ff::format::Pixel, w: u32, h: u32) -> (u32, u32) {
    if target == ff::format::Pixel::GRAY8 { (w, h) } else { ((w & !1).max(2), (h & !1).max(2)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_side_is_capped_without_upscaling() {
        assert_eq!(fit_long_side(1280, 720, Some(512)), (512, 288));
        assert_eq!(fit_long_side(720, 1280, Some(512)), (288, 512));
        assert_eq!(fit_long_side(176, 144, Some(512)), (176, 144));
        assert_eq!(fit_long_side(1280, 720, None), (1280, 720));
    }

    #[test]
    fn sample_aspect_ratio_widens_the_picture() {
        assert_eq!(display_width(720, 16, 15), 768);
        assert_eq!(display_width(720, 0, 1), 720);
        assert_eq!(display_width(640, 1, 1), 640);
    }
}
