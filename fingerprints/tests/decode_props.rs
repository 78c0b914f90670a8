//! `decode_luma` on hostile input: random bytes, truncated and bit-flipped keyframes and
//! decompression bombs give typed errors, never a panic, and bombs are refused before any
//! pixel memory is allocated.
// The allocation probe below needs a `GlobalAlloc`, which is an unsafe trait.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Cursor;

use fingerprints::{DecodeLimits, ErrorKind, Luma, decode_luma, pdq, pdq_rgb};
use image::ImageEncoder;
use proptest::prelude::*;

/// Records the largest single allocation made by the current thread while probing.
struct Probe;

thread_local! {
    static PROBING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Probe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if PROBING.with(Cell::get) {
            LARGEST.with(|l| l.set(l.get().max(layout.size())));
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if PROBING.with(Cell::get) {
            LARGEST.with(|l| l.set(l.get().max(new_size)));
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static PROBE: Probe = Probe;

/// Runs `f` and returns its result with the largest allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    PROBING.with(|p| p.set(true));
    let out = f();
    PROBING.with(|p| p.set(false));
    (out, LARGEST.with(Cell::get))
}

fn source_rgb() -> image::RgbImage {
    let png = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pdq/rocket_96x64.png");
    image::open(png).expect("vector PNG").to_rgb8()
}

fn jpeg_of(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(img).unwrap();
    out
}

fn png_of(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

fn webp_of(img: &image::RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::webp::WebPEncoder::new_lossless(&mut out)
        .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn keyframes() -> Vec<Vec<u8>> {
    let img = source_rgb();
    vec![jpeg_of(&img), png_of(&img), webp_of(&img)]
}

/// Decoding either succeeds with a consistent image or fails with one of the documented kinds.
fn assert_typed(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode_luma(bytes, &DecodeLimits::default()) {
        Ok(luma) => {
            prop_assert_eq!(luma.pixels().len(), luma.width() as usize * luma.height() as usize)
        }
        Err(e) => prop_assert!(
            matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::Unsupported | ErrorKind::TooLarge),
            "unexpected error kind {:?}: {}",
            e.kind(),
            e
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_give_a_typed_error(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let err = decode_luma(&bytes, &DecodeLimits::default());
        // Random data essentially never carries a valid magic number; when it does, it still
        // must not panic.
        assert_typed(&bytes)?;
        prop_assert!(err.is_err());
    }

    #[test]
    fn random_bytes_behind_a_valid_magic_number_give_a_typed_error(
        which in 0usize..3,
        tail in proptest::collection::vec(any::<u8>(), 0..4096),
    ) {
        let magic: &[u8] = match which {
            0 => b"\xFF\xD8\xFF",
            1 => b"\x89PNG\r\n\x1a\n",
            _ => b"RIFF\x00\x10\x00\x00WEBPVP8 ",
        };
        let mut bytes = magic.to_vec();
        bytes.extend_from_slice(&tail);
        assert_typed(&bytes)?;
    }

    #[test]
    fn truncated_keyframes_give_an_image_or_a_typed_error(which in 0usize..3, cut in 0.0f64..1.0) {
        let frames = keyframes();
        let frame = &frames[which];
        let len = (frame.len() as f64 * cut) as usize;
        assert_typed(&frame[..len])?;
    }

    #[test]
    fn bit_flipped_keyframes_give_an_image_or_a_typed_error(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..8),
    ) {
        let mut frame = keyframes().swap_remove(which);
        for (at, bit) in flips {
            let i = at.index(frame.len());
            frame[i] ^= 1 << bit;
        }
        assert_typed(&frame)?;
    }
}

/// Rewrites the dimensions in a baseline JPEG's SOF0 segment.
fn with_jpeg_dimensions(mut jpeg: Vec<u8>, width: u16, height: u16) -> Vec<u8> {
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).expect("a baseline JPEG");
    jpeg[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    jpeg
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Rewrites the dimensions in a PNG's IHDR chunk, with a valid CRC.
fn with_png_dimensions(mut png: Vec<u8>, width: u32, height: u32) -> Vec<u8> {
    // Signature (8), length (4), "IHDR" (4), then width and height.
    png[16..20].copy_from_slice(&width.to_be_bytes());
    png[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

#[test]
fn a_jpeg_claiming_60000_by_60000_is_too_large_and_nothing_big_is_allocated() {
    let bomb = with_jpeg_dimensions(jpeg_of(&source_rgb()), 60000, 60000);
    let (result, largest) = largest_allocation(|| decode_luma(&bomb, &DecodeLimits::default()));
    assert_eq!(result.unwrap_err().kind(), ErrorKind::TooLarge);
    assert!(largest < 1 << 20, "the refusal allocated {largest} bytes at once");
}

#[test]
fn a_png_claiming_60000_by_60000_is_too_large_and_nothing_big_is_allocated() {
    let bomb = with_png_dimensions(png_of(&source_rgb()), 60000, 60000);
    let (result, largest) = largest_allocation(|| decode_luma(&bomb, &DecodeLimits::default()));
    assert_eq!(result.unwrap_err().kind(), ErrorKind::TooLarge);
    assert!(largest < 1 << 20, "the refusal allocated {largest} bytes at once");
}

#[test]
fn the_pixel_limit_applies_to_every_format() {
    let limits = DecodeLimits { max_pixels: 96 * 64 - 1, ..DecodeLimits::default() };
    for frame in keyframes() {
        assert_eq!(decode_luma(&frame, &limits).unwrap_err().kind(), ErrorKind::TooLarge);
    }
    let limits = DecodeLimits { max_width: 95, ..DecodeLimits::default() };
    for frame in keyframes() {
        assert_eq!(decode_luma(&frame, &limits).unwrap_err().kind(), ErrorKind::TooLarge);
    }
}

#[test]
fn lossless_keyframes_decode_to_pdq_luma() {
    let img = source_rgb();
    let expected = Luma::from_rgb(img.width(), img.height(), img.as_raw()).unwrap();
    for frame in [png_of(&img), webp_of(&img)] {
        assert_eq!(decode_luma(&frame, &DecodeLimits::default()).unwrap(), expected);
    }
}

#[test]
fn a_720p_jpeg_keyframe_decodes_at_half_size_and_hashes_like_the_full_frame() {
    let src =
        image::open(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/pdq/rocket_640x360.png"))
            .unwrap()
            .to_rgb8();
    let frame = image::imageops::resize(&src, 1280, 720, image::imageops::FilterType::Triangle);
    let jpeg = jpeg_of(&frame);
    let luma = decode_luma(&jpeg, &DecodeLimits::default()).unwrap();
    assert_eq!((luma.width(), luma.height()), (640, 360));
    let full = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    let reference = pdq_rgb(1280, 720, full.as_raw()).unwrap();
    let ours = pdq(&luma);
    assert!(
        ours.hash.distance(&reference.hash) <= 12,
        "{} bits",
        ours.hash.distance(&reference.hash)
    );
    assert!(ours.quality.abs_diff(reference.quality) <= 5);

    let unreduced = DecodeLimits { min_long_side: u32::MAX, ..DecodeLimits::default() };
    let luma = decode_luma(&jpeg, &unreduced).unwrap();
    assert_eq!((luma.width(), luma.height()), (1280, 720));
}

#[test]
fn greyscale_jpegs_decode() {
    let grey = image::DynamicImage::ImageRgb8(source_rgb()).to_luma8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90).encode_image(&grey).unwrap();
    let luma = decode_luma(&jpeg, &DecodeLimits::default()).unwrap();
    assert_eq!((luma.width(), luma.height()), (96, 64));
}
