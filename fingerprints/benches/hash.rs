//! Keyframe cost: JPEG decode (at the reduced DCT scale) plus PDQ, for 720p and 1080p frames,
//! and the search for pictures inside the frame (bars, dark margins, windows), and for a
//! phone's 720x1280 layout with the picture as a band a third of the way down.
//!
//! The keyframes are made here, so the bench runs from a plain clone: a committed vector PNG is
//! upscaled to the frame size, given a little deterministic grain (real broadcast frames are
//! not as smooth as an upscaled still, and grain is what makes entropy decoding cost what it
//! does) and encoded at JPEG quality 80. Throughput is reported in keyframes per second.
//!
//! `cargo bench -p fingerprints --bench hash`; pin to one core with `taskset -c 0` to measure
//! the per-core figure (the JPEG decoder may use helper threads for colour components).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fingerprints::{
    DecodeLimits, Luma, decode_luma, inner_pictures, layout_band, pdq, pdq_dihedral,
    picture_windows,
};
use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;

/// The picture at `width` x `height` or, for a portrait size, as a 16:9 band of that width with
/// its centre a third of the way down a flat dark grey frame (another picture then: the rocket's
/// dark sky would hide the band's edges, and a band not found costs less).
fn keyframe(width: u32, height: u32) -> Vec<u8> {
    let portrait = height > width;
    let png = if portrait { "camera_640x360.png" } else { "rocket_640x360.png" };
    let png = format!("{}/tests/data/pdq/{png}", env!("CARGO_MANIFEST_DIR"));
    let src = image::open(png).expect("the vector PNG is readable").to_rgb8();
    let picture_height = if portrait { width * 9 / 16 } else { height };
    let mut picture = image::imageops::resize(&src, width, picture_height, FilterType::Triangle);
    let mut state = 0x2545_f491_u32;
    for p in picture.pixels_mut() {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let grain = ((state >> 24) % 13) as i16 - 6;
        for c in &mut p.0 {
            *c = (i16::from(*c) + grain).clamp(0, 255) as u8;
        }
    }
    let frame = if portrait {
        let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([32, 32, 32]));
        let top = height / 3 - picture_height / 2;
        image::imageops::overlay(&mut canvas, &picture, 0, i64::from(top));
        canvas
    } else {
        picture
    };
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, 80).encode_image(&frame).expect("JPEG encodes");
    out
}

fn bench(c: &mut Criterion) {
    let limits = DecodeLimits::default();
    for (name, w, h) in [("720p", 1280, 720), ("1080p", 1920, 1080), ("720x1280 layout", 720, 1280)]
    {
        let jpeg = keyframe(w, h);
        let luma = decode_luma(&jpeg, &limits).expect("the keyframe decodes");
        eprintln!(
            "{name}: {} KB JPEG, decoded to {}x{}, band {:?}",
            jpeg.len() / 1024,
            luma.width(),
            luma.height(),
            layout_band(&luma)
        );
        let full = Luma::from_rgb(w, h, image::load_from_memory(&jpeg).unwrap().to_rgb8().as_raw())
            .unwrap();

        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(1));
        g.bench_function("decode+pdq", |b| {
            b.iter(|| pdq(&decode_luma(black_box(&jpeg), &limits).unwrap()))
        });
        g.bench_function("decode+pdq_dihedral", |b| {
            b.iter(|| pdq_dihedral(&decode_luma(black_box(&jpeg), &limits).unwrap()))
        });
        g.bench_function("decode", |b| b.iter(|| decode_luma(black_box(&jpeg), &limits).unwrap()));
        g.bench_function("pdq(reduced)", |b| b.iter(|| pdq(black_box(&luma))));
        g.bench_function("pdq_dihedral(reduced)", |b| b.iter(|| pdq_dihedral(black_box(&luma))));
        g.bench_function("pdq(full size)", |b| b.iter(|| pdq(black_box(&full))));
        // What the query side looks for before hashing the pictures inside a keyframe.
        g.bench_function("inner_pictures(reduced)", |b| {
            b.iter(|| inner_pictures(black_box(&luma)))
        });
        g.bench_function("picture_windows(reduced)", |b| {
            b.iter(|| picture_windows(black_box(&luma)))
        });
        g.bench_function("layout_band(reduced)", |b| b.iter(|| layout_band(black_box(&luma))));
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
