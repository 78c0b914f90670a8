//! Temporal matcher and border detection benchmarks.
//!
//! `cargo bench -p fingerprints --bench matcher`.
//!
//! - `matcher/keyframes`: one stream of 1000 keyframes (every 2 s), each with 20 hits: 3 from
//!   the true reference at a consistent offset (adjacent densely hashed frames) and 17 chance
//!   hits scattered over 50 ten-minute references, so the matcher keeps hundreds of candidates
//!   as it would for a stream full of look-alike frames. Throughput is keyframes per second.
//! - `border/640x360`: [`content_rect`] on a letterboxed 640x360 frame and on one without bars.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fingerprints::{Hit, Luma, MatcherConfig, StreamMatcher, content_rect};

const KEYFRAMES: usize = 1000;
const HITS_PER_KEYFRAME: usize = 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64: fast, well mixed, deterministic.
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn stream() -> Vec<(i64, Vec<Hit>)> {
    let mut rng = Rng(7);
    (0..KEYFRAMES)
        .map(|k| {
            let ts = k as i64 * 2_000;
            let mut hits: Vec<Hit> = (0..3)
                .map(|j| Hit {
                    reference: 0,
                    reference_ts_ms: 120_000 + ts + (j - 1) * 40,
                    distance: 8 + rng.below(10) as u32,
                    weight: 1.0,
                })
                .collect();
            hits.extend((3..HITS_PER_KEYFRAME).map(|_| Hit {
                reference: 1 + rng.below(50),
                reference_ts_ms: rng.below(600_000) as i64,
                distance: rng.below(32) as u32,
                weight: 1.0,
            }));
            (ts, hits)
        })
        .collect()
}

fn matcher(c: &mut Criterion) {
    let keyframes = stream();
    let mut g = c.benchmark_group("matcher");
    g.throughput(Throughput::Elements(KEYFRAMES as u64));
    g.bench_function("keyframes", |b| {
        b.iter(|| {
            let mut m = StreamMatcher::new(MatcherConfig::default());
            for (ts, hits) in &keyframes {
                m.observe(*ts, hits);
            }
            black_box(m.conclusive())
        })
    });
    g.finish();
}

fn textured(w: u32, h: u32) -> Vec<u8> {
    let mut rng = Rng(11);
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x * 3 + y * 2) % 200))
        .map(|base| (base as u64 + rng.below(56)) as u8)
        .collect()
}

fn border(c: &mut Criterion) {
    let plain = Luma::new(640, 360, textured(640, 360)).unwrap();
    let inner = Luma::new(512, 288, textured(512, 288)).unwrap();
    let mut px = vec![0u8; 640 * 360];
    for r in 0..288 {
        let start = (36 + r) * 640 + 64;
        px[start..start + 512].copy_from_slice(inner.row(r as u32));
    }
    let letterboxed = Luma::new(640, 360, px).unwrap();
    assert!(content_rect(&letterboxed).is_some());
    let mut g = c.benchmark_group("border");
    g.throughput(Throughput::Elements(1));
    g.bench_function("640x360_letterboxed", |b| b.iter(|| content_rect(black_box(&letterboxed))));
    g.bench_function("640x360_no_bars", |b| b.iter(|| content_rect(black_box(&plain))));
    g.finish();
}

criterion_group!(benches, matcher, border);
criterion_main!(benches);
