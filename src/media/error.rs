//! The media layer's error type.

use std::fmt;

/// How far decoding got before something went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Frames decoded so far.
    pub frames: u64,
    /// Stream time of the last decoded frame, in ms.
    pub last_ts_ms: Option<i64>,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.last_ts_ms {
            Some(ts) => {
                write!(f, "{} frames decoded, the last at {:.3} s", self.frames, ts as f64 / 1000.0)
            }
            None => write!(f, "{} frames decoded", self.frames),
        }
    }
}

/// Why a video could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// FFmpeg could not open the input or find its streams (missing file, unreachable URL,
    /// unknown format, or a file truncated before its index).
    #[error("cannot open {input} (nothing decoded): {source}")]
    Open {
        /// The input as given.
        input: String,
        /// FFmpeg's reason.
        #[source]
        source: ffmpeg_next::Error,
    },
    /// The input has no video stream.
    #[error("{input} has no video stream")]
    NoVideoStream {
        /// The input as given.
        input: String,
    },
    /// No decoder for the video codec, or the decoder refused to open.
    #[error("{input}: cannot decode its {codec} video: {source}")]
    Codec {
        /// The input as given.
        input: String,
        /// The codec's name.
        codec: String,
        /// FFmpeg's reason.
        #[source]
        source: ffmpeg_next::Error,
    },
    /// The decoder produced a pixel format the scaler cannot convert.
    #[error("{input}: pixel format {format} cannot be converted ({progress})")]
    PixelFormat {
        /// The input as given.
        input: String,
        /// The format's name as FFmpeg reports it.
        format: String,
        /// How far decoding got.
        progress: Progress,
    },
    /// Reading or decoding failed part way.
    #[error("{input}: decoding failed after {progress}: {source}")]
    Decode {
        /// The input as given.
        input: String,
        /// How far decoding got.
        progress: Progress,
        /// FFmpeg's reason.
        #[source]
        source: ffmpeg_next::Error,
    },
    /// The input ended well before the duration its container announces: a truncated file.
    #[error(
        "{input} is truncated: it ends after {progress}, but its container announces {expected_ms} ms"
    )]
    Truncated {
        /// The input as given.
        input: String,
        /// How far decoding got.
        progress: Progress,
        /// The duration the container announced, in ms.
        expected_ms: i64,
    },
    /// Not one frame could be decoded.
    #[error(
        "{input} contains no decodable video frame ({corrupt_packets} corrupt packets skipped)"
    )]
    NoFrames {
        /// The input as given.
        input: String,
        /// Packets the decoder rejected.
        corrupt_packets: u64,
    },
    /// A keyframe could not be encoded as JPEG.
    #[error("cannot encode the frame at {ts_ms} ms as JPEG: {source}")]
    Encode {
        /// Stream time of the frame.
        ts_ms: i64,
        /// The encoder's reason.
        #[source]
        source: jpeg_encoder::EncodingError,
    },
}

impl MediaError {
    /// How far decoding got, when the error happened part way through the input.
    pub fn progress(&self) -> Option<Progress> {
        match self {
            MediaError::PixelFormat { progress, .. }
            | MediaError::Decode { progress, .. }
            | MediaError::Truncated { progress, .. } => Some(*progress),
            _ => None,
        }
    }
}
