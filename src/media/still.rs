//! Stills: small colour JPEGs of what was recognised, kept so that a reviewer can see it.
//!
//! Two sources, one encoding: decoded video frames (reference files and live feeds, one still
//! per second of reference time, long side [`REFERENCE_STILL_LONG_SIDE`]) and the keyframe
//! images a platform sends (stream side, long side [`STREAM_STILL_LONG_SIDE`]). Both are
//! baseline JPEG at [`STILL_JPEG_QUALITY`]: every browser shows it, and at these sizes it is
//! 8-20 KB, which is what keeps a reference hour under 40 MB of stills.
//!
//! A keyframe's still is made by the worker for every keyframe with hits that the stream keeps
//! (`pipeline::StillToKeep`), so its cost is paid on the busiest path the service has: it
//! decodes with zune-jpeg (through `fingerprints::decode_rgb`, which also bounds the image),
//! shrinks with `fast_image_resize` (SIMD) and encodes with `jpeg-encoder`, about a third of
//! the CPU of decoding, `thumbnail` and encoding with `image` (docs/LOAD.md, issue #14).

use fast_image_resize as fir;
use ffmpeg_next as ff;

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
    encode_rgb(&packed, frame.width(), frame.height(), quality)
        .map_err(|source| MediaError::Encode { ts_ms, source })
}

/// Encodes packed RGB24 pixels as a baseline JPEG: the one encoder of stills and keyframes.
fn encode_rgb(
    rgb: &[u8],
    width: u32,
    height: u32,
    quality: u8,
) -> Result<Vec<u8>, jpeg_encoder::EncodingError> {
    let side = |v: u32| {
        u16::try_from(v).map_err(|_| {
            jpeg_encoder::EncodingError::Write(format!(
                "{width}x{height} pixels: a JPEG is at most 65535 a side"
            ))
        })
    };
    let (w, h) = (side(width)?, side(height)?);
    let mut jpeg = Vec::with_capacity(rgb.len() / 8);
    jpeg_encoder::Encoder::new(&mut jpeg, quality.clamp(1, 100)).encode(
        rgb,
        w,
        h,
        jpeg_encoder::ColorType::Rgb,
    )?;
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
pub enum StillError {
    /// The image does not decode (or is larger than any keyframe the service accepts).
    #[error("cannot make a still of the keyframe: {0}")]
    Decode(#[from] fingerprints::Error),
    /// Shrinking failed (an image too small for the resizer to work on).
    #[error("cannot shrink the keyframe for its still: {0}")]
    Resize(String),
    /// The JPEG encoder refused the pixels.
    #[error("cannot encode the keyframe's still: {0}")]
    Encode(#[from] jpeg_encoder::EncodingError),
}

/// A still of an encoded keyframe image (JPEG, PNG or WebP): decoded in colour, shrunk to
/// `long_side` (never enlarged) and encoded as JPEG.
///
/// # Errors
/// The image cannot be decoded (or is larger than any keyframe the service accepts).
pub fn still_of_image(bytes: &[u8], long_side: u32) -> Result<Vec<u8>, StillError> {
    let limits = fingerprints::DecodeLimits {
        max_width: MAX_KEYFRAME_SIDE,
        max_height: MAX_KEYFRAME_SIDE,
        ..fingerprints::DecodeLimits::default()
    };
    let rgb = fingerprints::decode_rgb(bytes, &limits)?;
    let (width, height) = (rgb.width, rgb.height);
    let long = width.max(height);
    if long <= long_side {
        return Ok(encode_rgb(&rgb.pixels, width, height, STILL_JPEG_QUALITY)?);
    }
    let scaled = |v: u32| (u64::from(v) * u64::from(long_side)).div_ceil(u64::from(long)).max(1);
    let (to_w, to_h) = (scaled(width) as u32, scaled(height) as u32);
    let source = fir::images::Image::from_vec_u8(width, height, rgb.pixels, fir::PixelType::U8x3)
        .map_err(|e| StillError::Resize(e.to_string()))?;
    let mut target = fir::images::Image::new(to_w, to_h, fir::PixelType::U8x3);
    // Bilinear over the whole source (a convolution, not a point sample): no aliasing on the
    // fine detail of a broadcast frame shrunk 2-4 times.
    let options = fir::ResizeOptions::new()
        .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    fir::Resizer::new()
        .resize(&source, &mut target, &options)
        .map_err(|e| StillError::Resize(e.to_string()))?;
    Ok(encode_rgb(target.buffer(), to_w, to_h, STILL_JPEG_QUALITY)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8])
        });
        encode_rgb(img.as_raw(), w, h, 90).unwrap()
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
