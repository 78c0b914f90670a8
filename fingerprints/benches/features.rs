//! The geometric tier's cost per query keyframe: feature extraction on a 720p-derived luma
//! (640x360, what the decoder produces from a 720p JPEG at 1/2 DCT scale), and lookup plus
//! verification against an index sized like ten hours of reference (one frame per second, the
//! reference budget of features per frame; synthetic random descriptors fill it, with the true
//! frame among them). Prints the index's bytes per reference second once.

use criterion::{Criterion, criterion_group, criterion_main};
use fingerprints::Luma;
use fingerprints::features::{
    Descriptor, FeatureConfig, FeatureIndex, Keypoint, LocalFeatures, VerifyConfig,
};
use std::hint::black_box;

const REFERENCE_SECONDS: u32 = 36_000;
const FRAMES_PER_SECOND: u32 = 1;

fn scene(seed: u64, w: u32, h: u32) -> Luma {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = move |n: u32| {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s % u64::from(n.max(1))) as u32
    };
    let mut px: Vec<u8> =
        (0..w * h).map(|i| ((i % w) * 60 / w + (i / w) * 60 / h + 60) as u8).collect();
    for _ in 0..260 {
        let (cx, cy) = (rnd(w), rnd(h));
        let (rw, rh) = (4 + rnd(w / 10), 4 + rnd(h / 8));
        let g = rnd(256) as u8;
        for y in cy.saturating_sub(rh)..(cy + rh).min(h) {
            for x in cx.saturating_sub(rw)..(cx + rw).min(w) {
                px[(y * w + x) as usize] = g;
            }
        }
    }
    Luma::new(w, h, px).unwrap()
}

/// A 5 % zoom into the centre, as a re-streamer hiding a logo would do.
fn zoomed(src: &Luma) -> Luma {
    let (w, h) = (src.width(), src.height());
    let mut px = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let sx = (w as f32 / 2.0 + (x as f32 - w as f32 / 2.0) / 1.05) as u32;
            let sy = (h as f32 / 2.0 + (y as f32 - h as f32 / 2.0) / 1.05) as u32;
            px.push(src.row(sy.min(h - 1))[sx.min(w - 1) as usize]);
        }
    }
    Luma::new(w, h, px).unwrap()
}

fn bench(c: &mut Criterion) {
    let frame = scene(1, 640, 360);
    let qcfg = FeatureConfig::query();
    let rcfg = FeatureConfig::reference();
    c.bench_function("features/extract_query_640x360", |b| {
        b.iter(|| LocalFeatures::extract(black_box(&frame), &qcfg))
    });
    c.bench_function("features/extract_reference_640x360", |b| {
        b.iter(|| LocalFeatures::extract(black_box(&frame), &rcfg))
    });

    let mut index = FeatureIndex::default();
    let mut s: u64 = 0x1234_5678_9ABC_DEF1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let frames = REFERENCE_SECONDS * FRAMES_PER_SECOND;
    for f in 0..frames {
        let n = rcfg.max_features;
        let kps = (0..n)
            .map(|_| Keypoint {
                x: (next() % 480) as f32,
                y: (next() % 270) as f32,
                level: (next() % 5) as u8,
                response: 0,
            })
            .collect();
        let descs = (0..n).map(|_| Descriptor([next(), next(), next(), next()])).collect();
        index.insert(
            f,
            f / 1800,
            i64::from(f % 1800) * 1000,
            &LocalFeatures::from_parts(480, 270, kps, descs),
        );
    }
    index.insert(frames, u32::MAX, 0, &LocalFeatures::extract(&frame, &rcfg));
    eprintln!(
        "feature index: {} frames, {} features, {:.0} bytes of RAM and {:.0} bytes of snapshot per reference second",
        index.frames(),
        index.len(),
        index.memory_bytes() as f64 / f64::from(REFERENCE_SECONDS),
        index.to_bytes().len() as f64 / f64::from(REFERENCE_SECONDS),
    );

    let query = LocalFeatures::extract(&zoomed(&frame), &qcfg);
    let vcfg = VerifyConfig::default();
    assert_eq!(
        index.query(&query, &vcfg).first().map(|v| v.frame),
        Some(frames),
        "the planted frame must verify"
    );
    c.bench_function("features/lookup_verify_10h_index", |b| {
        b.iter(|| index.query(black_box(&query), &vcfg))
    });
    c.bench_function("features/keyframe_total_10h_index", |b| {
        b.iter(|| {
            let q = LocalFeatures::extract(black_box(&frame), &qcfg);
            index.query(&q, &vcfg)
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
