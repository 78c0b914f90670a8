//! Stills: small colour JPEGs of what was recognised, kept so that a reviewer can see it.
//!
//! Two sources, one encoding: decoded video frames (reference files and live feeds, one still
//! per second of reference time, long side [`REFERENCE_STILL_LONG_SIDE`]) and the keyframe
//! images a platform sends (stream side, long side [`STREAM_STILL_LONG_SIDE`]). Both are
//! baseline JPEG at [`STILL_JPEG_QUALITY`]: every browser shows it, and at these sizes it is
//! 8-20 KB, which is what keeps a reference hour under 40 MB of stills.

use ffmpeg_next as ff;
use image::codecs::jpeg::JpegEncoder;
use image::{ExtendedColorType, ImageReader, Limits};

use super::source::Scaler;
use super::{MediaError, Progress};

/// Long side of a reference still, in pixels: enough to recognise a scene beside the stream's.
pub const REFERENCE_STILL_LONG_SIDE: u32 = 320;
/// Long side of a stream keyframe's still: a little larger, since a re-stream often shows the
/// picture small (a window, a filmed screen) and the reviewer must find it in there.
pub const STREAM_STILL_LONG_SIDE: u32 = 480;
/// JPEG quality of stills. Measured on the development set's 720p clips: 320 px stills at 70
/// are 7-14 KB, at 85 about twice that, with no difference a reviewer would notice.
pub const STILL_JPEG_QUALITY: u8 = 70;
/// Largest keyframe image (either side, pixels) made into a still; keyframes were already
/// refused above this by the hashing decoder, this only bounds the allocation on its own.
const MAX_KEYFRAME_SIDE: u32 = 8192;

/// A still: a small colour JPEG of a moment of a reference or a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Still {
    /// Time of the moment, in ms (reference time or stream time).
    pub ts_ms: i64,
    /// The JPEG bytes.
    pub jpeg: Vec<u8>,
}

/// Packs an RGB24 frame (rows may be padded) and encodes it as JPEG.
pub(super) fn encode_rgb_frame(
    frame: &ff::frame::Video,
    quality: u8,
    ts_ms: i64,
) -> Result<Vec<u8>, MediaError> {
    let row_bytes = frame.width() as usize * 3;
    let stride = frame.stride(0);
    let data = frame.data(0);
    let mut packed = Vec::with_capacity(row_bytes * frame.height() as usize);
    for row in 0..frame.height() as usize {
        let start = row * stride;
        packed.extend_from_slice(data.get(start..start + row_bytes).unwrap_or(&[]));
    }
    let mut jpeg = Vec::with_capacity(packed.len() / 8);
    JpegEncoder::new_with_quality(&mut jpeg, quality.clamp(1, 100))
        .encode(&packed, frame.width(), frame.height(), ExtendedColorType::Rgb8)
        .map_err(|source| MediaError::Encode { ts_ms, source })?;
    Ok(jpeg)
}

/// Makes stills of decoded frames: scales to RGB at a long side and encodes JPEG.
pub(super) struct StillMaker {
    scaler: Scaler,
}

impl StillMaker {
    pub fn new(long_side: u32) -> Self {
        Self {
            scaler: Scaler::new(
                ff::format::Pixel::RGB24,
                Some(long_side.max(16)),
                ff::software::scaling::Flags::AREA,
            ),
        }
    }

    pub fn still(
        &mut self,
        frame: &ff::frame::Video,
        ts_ms: i64,
        input: &str,
        progress: Progress,
    ) -> Result<Vec<u8>, MediaError> {
        let rgb = self.scaler.scale(frame, input, progress)?;
        encode_rgb_frame(rgb, STILL_JPEG_QUALITY, ts_ms)
    }
}

/// Why a keyframe image could not be made into a still.
#[derive(Debug, thiserror::Error)]
#[error("cannot make a still of the keyframe: {0}")]
pub struct StillError(#[from] image::ImageError);

/// A still of an encoded keyframe image (JPEG, PNG or WebP): decoded in colour, shrunk to
/// `long_side` (never enlarged) and encoded as JPEG.
///
/// # Errors
/// The image cannot be decoded (or is larger than any keyframe the service accepts).
pub fn still_of_image(bytes: &[u8], long_side: u32) -> Result<Vec<u8>, StillError> {
    let mut reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| StillError(image::ImageError::IoError(e)))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_KEYFRAME_SIDE);
    limits.max_image_height = Some(MAX_KEYFRAME_SIDE);
    reader.limits(limits);
    let img = reader.decode()?;
    let img = if img.width().max(img.height()) > long_side {
        img.thumbnail(long_side, long_side)
    } else {
        img
    };
    let rgb = img.to_rgb8();
    let mut jpeg = Vec::with_capacity(rgb.len() / 8);
    JpegEncoder::new_with_quality(&mut jpeg, STILL_JPEG_QUALITY).encode(
        rgb.as_raw(),
        rgb.width(),
        rgb.height(),
        ExtendedColorType::Rgb8,
    )?;
    Ok(jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
        });
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 90)
            .encode(img.as_raw(), w, h, ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn size_of(still: &[u8]) -> (u32, u32) {
        let img = image::load_from_memory(still).unwrap();
        (img.width(), img.height())
    }

    #[test]
    fn a_keyframe_still_keeps_the_aspect_ratio_at_the_long_side() {
        assert_eq!(size_of(&still_of_image(&jpeg(1280, 720), 480).unwrap()), (480, 270));
        assert_eq!(size_of(&still_of_image(&jpeg(720, 1280), 480).unwrap()), (270, 480));
    }

    #[test]
    fn a_small_keyframe_is_not_enlarged() {
        assert_eq!(size_of(&still_of_image(&jpeg(320, 180), 480).unwrap()), (320, 180));
    }

    #[test]
    fn a_corrupt_keyframe_makes_no_still() {
        assert!(still_of_image(b"\xff\xd8\xff\xe0 not a jpeg", 480).is_err());
        assert!(still_of_image(b"", 480).is_err());
    }
}
