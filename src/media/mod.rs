//! Video input through FFmpeg (`ffmpeg-next` over the system libraries).
//!
//! Two ways to read a video, both synchronous (run them on a blocking thread):
//! - [`decode_luma_frames`]: every frame (up to a frame-rate cap) as a small greyscale
//!   [`fingerprints::Luma`], for dense reference hashing. The scaler converts straight from the
//!   decoder's pixel format to a small GRAY8 picture, so a 720p frame costs one decode and one
//!   cheap downscale; PDQ only looks at a 64x64 summary of it anyway.
//! - [`LumaOptions::still_interval_ms`]: in the same pass, a small colour JPEG of one frame per
//!   interval ([`LumaFrame::still`]), the visual evidence reviewers see.
//! - [`extract_keyframes`]: one frame every N seconds encoded as JPEG, with its stream time,
//!   optionally paced in real time. This is what a platform would send us, so it is the
//!   building block of `offside tap` and of live references.
//!
//! Inputs are anything FFmpeg can open: a file path or a URL (HTTP, HLS, RTMP, SRT, UDP...).
//! A truncated or corrupt input returns a [`MediaError`] that says how far decoding got.

mod error;
mod keyframes;
mod luma;
mod source;
mod still;

pub use error::{MediaError, Progress};
pub use keyframes::{Keyframe, KeyframeOptions, extract_keyframes};
pub use luma::{LumaFrame, LumaOptions, decode_luma_frames};
pub use source::{InputOptions, LIVE_PROBE, VideoInfo, probe};
pub use still::{
    REFERENCE_STILL_LONG_SIDE, STILL_JPEG_QUALITY, STREAM_STILL_LONG_SIDE, Still, StillError,
    still_of_image,
};

/// What a decoding run did, returned when it ends without error.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeSummary {
    /// The input as given.
    pub input: String,
    /// Frames the decoder produced (before any frame-rate cap or interval selection).
    pub frames_decoded: u64,
    /// Frames handed to the caller's callback.
    pub frames_delivered: u64,
    /// Stream time of the last decoded frame, in ms from the start of the stream.
    pub last_ts_ms: Option<i64>,
    /// Packets the decoder rejected as corrupt and skipped.
    pub corrupt_packets: u64,
    /// True when the callback asked to stop or the run was cancelled before the end of input.
    pub stopped_early: bool,
}

/// Registers FFmpeg's formats and network protocols and quiets its logging (our errors carry
/// the reason). Idempotent and cheap; every public function here calls it.
pub fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        // `init` only registers error strings on FFmpeg 5 and cannot fail there.
        let _ = ffmpeg_next::init();
        ffmpeg_next::format::network::init();
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
    });
}
