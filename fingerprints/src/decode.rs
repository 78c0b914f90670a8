//! Keyframe bytes to [`Luma`], cheaply and safely.
//!
//! JPEG, the format keyframes arrive in, is decoded by `zune-jpeg` straight to luma (the chroma
//! planes are entropy-decoded but never transformed, upsampled or colour-converted) and then
//! box-reduced by 2, 4 or 8, the strongest factor that keeps the long side at or above
//! [`DecodeLimits::min_long_side`]. PDQ blurs every image down to 64x64 anyway, so the reduction
//! loses almost nothing the hash keeps, and the hash then runs on a quarter or a sixteenth of
//! the pixels. (`jpeg-decoder`'s reduced-scale IDCT was the first choice; measured here it took
//! 4 to 5 ms of CPU for a 720p keyframe, against 2.6 ms for zune-jpeg's luma-only decode, and it
//! starts helper threads for every frame.) PNG and WebP go through `image`. The header is read
//! and checked against [`DecodeLimits`] before any pixel buffer exists, so a few hundred bytes
//! claiming a gigapixel image (a decompression bomb) cost a few hundred bytes.

use std::io::Cursor;

use crate::{Error, ErrorKind, Luma};

/// Bounds on what [`decode_luma`] accepts, and how far it may shrink a JPEG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width in pixels (of the encoded image, before any reduction).
    pub max_width: u32,
    /// Largest accepted height in pixels.
    pub max_height: u32,
    /// Largest accepted `width * height`.
    pub max_pixels: u64,
    /// A JPEG is reduced by the strongest factor (8, 4, 2) that keeps its long side at or above
    /// this; `u32::MAX` always keeps the full size.
    pub min_long_side: u32,
}

impl Default for DecodeLimits {
    /// 16384x16384 and 100 megapixels at most (far above any broadcast frame, far below what
    /// would exhaust a worker's memory), and a 400-pixel floor for reduced JPEG decoding, which
    /// keeps PDQ within a few bits of a full-size decode.
    fn default() -> Self {
        Self { max_width: 16384, max_height: 16384, max_pixels: 100_000_000, min_long_side: 400 }
    }
}

/// The image formats [`decode_luma`] recognises by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jpeg,
    Png,
    WebP,
}

fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(Format::Png)
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Format::WebP)
    } else {
        None
    }
}

/// Decodes a JPEG, PNG or WebP image (recognised by its magic bytes, not by any name) to luma.
///
/// JPEGs come out shrunk by the strongest of the factors 8, 4 and 2 that keeps the long side at
/// or above `limits.min_long_side` (a 720p keyframe becomes 640x360, 1080p 480x270); PNG and
/// WebP come out at full size. Colour JPEGs give their Y plane (BT.601 luma, PDQ's weights);
/// PNG and WebP colour is converted with those weights.
///
/// # Errors
/// - [`ErrorKind::Unsupported`]: not one of the three formats (including empty input), or a
///   variant the decoders do not handle (for example arithmetic-coded or lossless JPEG).
/// - [`ErrorKind::TooLarge`]: the header declares dimensions or a pixel count above `limits`;
///   checked before pixel memory is allocated.
/// - [`ErrorKind::Corrupt`]: malformed or truncated data.
pub fn decode_luma(bytes: &[u8], limits: &DecodeLimits) -> Result<Luma, Error> {
    match sniff(bytes) {
        Some(Format::Jpeg) => decode_jpeg(bytes, limits),
        Some(Format::Png) => decode_with_image(bytes, image::ImageFormat::Png, limits),
        Some(Format::WebP) => decode_with_image(bytes, image::ImageFormat::WebP, limits),
        None => Err(unsupported(bytes)),
    }
}

fn unsupported(bytes: &[u8]) -> Error {
    let what = if bytes.is_empty() { "empty image data" } else { "not a JPEG, PNG or WebP image" };
    Error::new(ErrorKind::Unsupported, what)
}

/// An image decoded to 8-bit RGB at its full size: what PDQ's reference hashes (through its
/// float luma, [`crate::pdq_rgb`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` RGB triples, row by row.
    pub pixels: Vec<u8>,
}

/// Decodes a JPEG, PNG or WebP image (recognised by its magic bytes) to RGB at full size, as
/// other PDQ implementations read an image file: alpha is dropped, grey is replicated.
///
/// Use it where the hash must agree with other PDQ systems bit for bit ([`crate::pdq_rgb`] of
/// the result is Meta's reference hash of a lossless image); the keyframe path uses the faster
/// [`decode_luma`], whose 8-bit luma moves a hash by a few bits at most.
///
/// # Errors
/// As [`decode_luma`].
pub fn decode_rgb(bytes: &[u8], limits: &DecodeLimits) -> Result<Rgb, Error> {
    let format = match sniff(bytes) {
        Some(Format::Jpeg) => return decode_jpeg_rgb(bytes, limits),
        Some(Format::Png) => image::ImageFormat::Png,
        Some(Format::WebP) => image::ImageFormat::WebP,
        None => return Err(unsupported(bytes)),
    };
    let rgb = decode_dynamic(bytes, format, limits)?.to_rgb8();
    Ok(Rgb { width: rgb.width(), height: rgb.height(), pixels: rgb.into_raw() })
}

fn decode_jpeg_rgb(bytes: &[u8], limits: &DecodeLimits) -> Result<Rgb, Error> {
    let (width, height, pixels) =
        decode_jpeg_pixels(bytes, limits, zune_core::colorspace::ColorSpace::RGB)?;
    Ok(Rgb { width, height, pixels })
}

fn check_limits(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), Error> {
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_width || height > limits.max_height || pixels > limits.max_pixels {
        return Err(Error::new(
            ErrorKind::TooLarge,
            format!(
                "{width}x{height} image exceeds the limits ({}x{}, {} pixels)",
                limits.max_width, limits.max_height, limits.max_pixels
            ),
        ));
    }
    if width == 0 || height == 0 {
        return Err(Error::new(ErrorKind::Corrupt, "image header declares a zero dimension"));
    }
    Ok(())
}

fn jpeg_error(e: zune_jpeg::errors::DecodeErrors) -> Error {
    use zune_jpeg::errors::DecodeErrors as E;
    match e {
        E::Unsupported(what) => {
            Error::new(ErrorKind::Unsupported, format!("unsupported JPEG: {what:?}"))
        }
        E::LargeDimensions(_) => Error::new(ErrorKind::TooLarge, format!("JPEG too large: {e}")),
        other => Error::new(ErrorKind::Corrupt, format!("corrupt JPEG: {other}")),
    }
}

fn decode_jpeg(bytes: &[u8], limits: &DecodeLimits) -> Result<Luma, Error> {
    // Luma output makes zune-jpeg skip the chroma planes' inverse DCT, upsampling and colour
    // conversion (it still entropy-decodes them, as it must to walk the bitstream).
    let (width, height, pixels) =
        decode_jpeg_pixels(bytes, limits, zune_core::colorspace::ColorSpace::Luma)?;
    let full = Luma::new(width, height, pixels)?;
    let factor = reduction(width, height, limits.min_long_side);
    Ok(if factor == 1 { full } else { box_reduce(&full, factor) })
}

/// A JPEG's pixels in `colorspace` (Luma or RGB) at full size, within `limits`. zune-jpeg's own
/// size limits are opened to the format's maximum so that ours, checked after the header with
/// the right error kind, are the ones that apply.
fn decode_jpeg_pixels(
    bytes: &[u8],
    limits: &DecodeLimits,
    colorspace: zune_core::colorspace::ColorSpace,
) -> Result<(u32, u32, Vec<u8>), Error> {
    use zune_core::{bytestream::ZCursor, options::DecoderOptions};
    let options = DecoderOptions::default()
        .jpeg_set_out_colorspace(colorspace)
        .set_max_width(usize::from(u16::MAX))
        .set_max_height(usize::from(u16::MAX));
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(jpeg_error)?;
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| Error::new(ErrorKind::Corrupt, "JPEG without a frame header"))?;
    let (width, height) = (width as u32, height as u32);
    check_limits(width, height, limits)?;
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let channels = colorspace.num_components();
    if pixels.len() != width as usize * height as usize * channels {
        return Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "JPEG decoded to {} bytes for {width}x{height} pixels of {channels} channels",
                pixels.len()
            ),
        ));
    }
    Ok((width, height, pixels))
}

/// The strongest of the reductions 8, 4 and 2 that keeps the long side at or above
/// `min_long_side` (and both sides at least one pixel); 1 when none does.
fn reduction(width: u32, height: u32, min_long_side: u32) -> u32 {
    [8, 4, 2]
        .into_iter()
        .find(|&f| width.max(height) / f >= min_long_side && width.min(height) / f >= 1)
        .unwrap_or(1)
}

/// Averages `factor`x`factor` blocks (rounding to nearest), dropping the fewer than `factor`
/// pixels left over at the right and bottom edges.
///
/// This is the pixel-domain counterpart of a JPEG decoder's reduced-scale IDCT: PDQ blurs the
/// frame to 64x64 anyway, so averaging first changes a few bits at most, and every later stage
/// runs on a quarter (or a sixteenth) of the pixels.
///
/// `factor` is at most 16, which keeps a block's sum within `u16`.
pub(crate) fn box_reduce(img: &Luma, factor: u32) -> Luma {
    debug_assert!((1..=16).contains(&factor), "box_reduce factor {factor}");
    let (w, h) = (img.width() as usize, img.height() as usize);
    let f = factor as usize;
    let (ow, oh) = (w / f, h / f);
    let mut out = Vec::with_capacity(ow * oh);
    if f == 2 {
        // The common case (720p keyframes), written so that it vectorises.
        for rows in img.pixels()[..2 * oh * w].chunks_exact(2 * w) {
            let (top, bottom) = rows.split_at(w);
            out.extend(top.chunks_exact(2).zip(bottom.chunks_exact(2)).take(ow).map(|(t, b)| {
                ((u16::from(t[0]) + u16::from(t[1]) + u16::from(b[0]) + u16::from(b[1]) + 2) >> 2)
                    as u8
            }));
        }
    } else {
        // At most 16x16 pixels of 255 per block: the sums fit in u16.
        let area = (f * f) as u16;
        let mut col_sums = vec![0u16; ow * f];
        for rows in img.pixels()[..f * oh * w].chunks_exact(f * w) {
            col_sums.fill(0);
            for row in rows.chunks_exact(w) {
                for (s, &p) in col_sums.iter_mut().zip(row) {
                    *s += u16::from(p);
                }
            }
            out.extend(
                col_sums.chunks_exact(f).map(|c| ((c.iter().sum::<u16>() + area / 2) / area) as u8),
            );
        }
    }
    // Both reduced sides are at least 1 by `reduction`'s choice of factor.
    Luma::new(ow as u32, oh as u32, out).expect("reduced dimensions are non-zero and match")
}

fn image_error(e: image::ImageError) -> Error {
    use image::ImageError as E;
    match e {
        E::Limits(l) => Error::new(ErrorKind::TooLarge, format!("image exceeds the limits: {l}")),
        E::Unsupported(u) => Error::new(ErrorKind::Unsupported, format!("unsupported image: {u}")),
        other => Error::new(ErrorKind::Corrupt, format!("corrupt image: {other}")),
    }
}

/// Decodes a PNG or WebP with `image`, within `limits` (checked on the header, before pixel
/// memory is allocated).
fn decode_dynamic(
    bytes: &[u8],
    format: image::ImageFormat,
    limits: &DecodeLimits,
) -> Result<image::DynamicImage, Error> {
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(limits.max_width);
    image_limits.max_image_height = Some(limits.max_height);
    // The largest buffer `image` may need: 16-bit RGBA at the pixel limit.
    image_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(image_limits.clone());
    let (width, height) = reader.into_dimensions().map_err(image_error)?;
    check_limits(width, height, limits)?;

    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(image_limits);
    reader.decode().map_err(image_error)
}

fn decode_with_image(
    bytes: &[u8],
    format: image::ImageFormat,
    limits: &DecodeLimits,
) -> Result<Luma, Error> {
    match decode_dynamic(bytes, format, limits)? {
        image::DynamicImage::ImageLuma8(grey) => {
            let (w, h) = grey.dimensions();
            Luma::new(w, h, grey.into_raw())
        }
        other => {
            // `image`'s own grey conversion uses Rec. 709 weights; PDQ's reference uses 601.
            let rgb = other.to_rgb8();
            Luma::from_rgb(rgb.width(), rgb.height(), rgb.as_raw())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_by_magic_bytes() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(Format::Png));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::WebP));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b""), None);
    }

    #[test]
    fn unknown_and_empty_input_is_unsupported() {
        let limits = DecodeLimits::default();
        assert_eq!(decode_luma(b"GIF89a....", &limits).unwrap_err().kind(), ErrorKind::Unsupported);
        assert_eq!(decode_luma(b"", &limits).unwrap_err().kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn reduction_is_the_strongest_that_keeps_the_long_side_above_the_floor() {
        assert_eq!(reduction(1280, 720, 400), 2);
        assert_eq!(reduction(1920, 1080, 400), 4);
        assert_eq!(reduction(3840, 2160, 400), 8);
        assert_eq!(reduction(640, 360, 400), 1);
        assert_eq!(reduction(1280, 720, u32::MAX), 1);
        assert_eq!(reduction(4000, 3, 0), 2);
    }

    #[test]
    fn box_reduction_averages_blocks_and_drops_the_ragged_edge() {
        let img = Luma::new(5, 2, vec![0, 2, 10, 20, 99, 4, 6, 30, 40, 99]).unwrap();
        let r = box_reduce(&img, 2);
        assert_eq!((r.width(), r.height()), (2, 1));
        assert_eq!(r.pixels(), &[3, 25]);
        let img = Luma::new(9, 5, (0..45).collect()).unwrap();
        let r = box_reduce(&img, 4);
        assert_eq!((r.width(), r.height()), (2, 1));
        // Pixel (x, y) is 9 y + x, so a block's mean is 9 * 1.5 plus its mean column.
        assert_eq!(r.pixels(), &[15, 19]);
    }
}
