//! Hamming index benchmarks: radius-31 queries at 100k, 1M and 10M codes, insert/remove.
//!
//! `cargo bench -p fingerprints --bench index`. Sizes can be restricted with
//! `OFFSIDE_INDEX_BENCH_SIZES=100000,1000000` (the 10M build takes about a gigabyte and tens
//! of seconds). Each size is built once; the memory per code is printed when it is built.
//!
//! Query sets, 1000 queries each:
//! - `random`: random codes against random codes, with 10 % of the queries given a planted
//!   neighbour at distance 5–25 (flip k random bits of the query and index that code);
//! - `clustered`: the data is made of near-duplicate families (a random anchor plus 49 copies
//!   with 1–30 random bits flipped, like consecutive frames of a shot) and every query is an
//!   anchor with 8 bits flipped, so each query has dozens of true matches.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fingerprints::{HammingIndex, Hash256};

const RADIUS: u32 = 31;
const QUERIES: usize = 1000;
const FAMILY: usize = 50;

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

    fn hash(&mut self) -> Hash256 {
        Hash256([self.next(), self.next(), self.next(), self.next()])
    }

    /// `h` with exactly `k` distinct bits flipped.
    fn flip(&mut self, mut h: Hash256, k: u32) -> Hash256 {
        let mut flipped = 0;
        let mut mask = [0u64; 4];
        while flipped < k {
            let bit = (self.next() % 256) as usize;
            let (w, b) = (bit / 64, bit % 64);
            if mask[w] >> b & 1 == 0 {
                mask[w] |= 1 << b;
                flipped += 1;
            }
        }
        for (w, m) in h.0.iter_mut().zip(mask) {
            *w ^= m;
        }
        h
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("OFFSIDE_INDEX_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000, 10_000_000])
}

fn label(n: usize) -> String {
    if n >= 1_000_000 { format!("{}M", n / 1_000_000) } else { format!("{}k", n / 1000) }
}

fn report(name: &str, index: &HammingIndex) {
    eprintln!(
        "index {name}: {} codes, {:.1} bytes/code",
        index.len(),
        index.memory_bytes() as f64 / index.len() as f64
    );
}

/// Random codes; 10 % of the queries get a planted neighbour at distance 5–25.
fn random_set(n: usize, rng: &mut Rng) -> (HammingIndex, Vec<Hash256>) {
    let queries: Vec<Hash256> = (0..QUERIES).map(|_| rng.hash()).collect();
    let mut entries: Vec<(u32, Hash256)> = (0..n as u32).map(|i| (i, rng.hash())).collect();
    for (i, q) in queries.iter().enumerate().filter(|(i, _)| i % 10 == 0) {
        let slot = (rng.next() % n as u64) as usize;
        entries[slot].1 = rng.flip(*q, 5 + (i as u32 / 10) % 21);
    }
    (HammingIndex::from_entries(entries), queries)
}

/// Families of near-duplicates; every query is a perturbed anchor.
fn clustered_set(n: usize, rng: &mut Rng) -> (HammingIndex, Vec<Hash256>) {
    let families = n / FAMILY;
    let anchors: Vec<Hash256> = (0..families).map(|_| rng.hash()).collect();
    let mut entries = Vec::with_capacity(n);
    for (f, anchor) in anchors.iter().enumerate() {
        entries.push(((f * FAMILY) as u32, *anchor));
        for j in 1..FAMILY {
            let k = 1 + (rng.next() % 30) as u32;
            entries.push(((f * FAMILY + j) as u32, rng.flip(*anchor, k)));
        }
    }
    let queries = (0..QUERIES)
        .map(|_| {
            let a = anchors[(rng.next() % families as u64) as usize];
            rng.flip(a, 8)
        })
        .collect();
    (HammingIndex::from_entries(entries), queries)
}

fn bench_queries(c: &mut Criterion) {
    let mut group = c.benchmark_group("index_query_r31");
    group.sample_size(10).warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(QUERIES as u64));
    for n in sizes() {
        let mut rng = Rng(n as u64);
        let sets = [("random", random_set(n, &mut rng)), ("clustered", clustered_set(n, &mut rng))];
        for (name, (index, queries)) in &sets {
            report(&format!("{name}/{}", label(n)), index);
            let found: usize = queries.iter().map(|q| index.search(q, RADIUS).len()).sum();
            eprintln!("index {name}/{}: {found} matches over {QUERIES} queries", label(n));
            group.bench_with_input(BenchmarkId::new(*name, label(n)), queries, |b, queries| {
                b.iter(|| {
                    let mut total = 0;
                    for q in queries {
                        total += index.search(black_box(q), RADIUS).len();
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

fn bench_updates(c: &mut Criterion) {
    let n = 1_000_000;
    let mut rng = Rng(7);
    let base = HammingIndex::from_entries((0..n as u32).map(|i| (i, rng.hash())));
    report("updates/1M", &base);
    let batch: Vec<(u32, Hash256)> = (0..10_000u32).map(|i| (n as u32 + i, rng.hash())).collect();
    let mut group = c.benchmark_group("index_updates_1M");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(batch.len() as u64));
    // Each iteration inserts 10k new codes (merges included when the delta fills up) and
    // removes 10k existing ones, on a fresh clone so the work is the same every time.
    group.bench_function("insert_10k", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |index| {
                for &(id, h) in &batch {
                    index.insert(id, h);
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.bench_function("remove_10k", |b| {
        b.iter_batched_ref(
            || base.clone(),
            |index| {
                for id in (0..n as u32).step_by(n / 10_000) {
                    black_box(index.remove(id));
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.bench_function("snapshot_round_trip", |b| {
        b.iter(|| HammingIndex::from_bytes(&base.to_bytes()).map(|i| i.len()))
    });
    group.finish();
}

criterion_group!(benches, bench_queries, bench_updates);
criterion_main!(benches);
