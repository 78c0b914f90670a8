//! Property tests: `HammingIndex` and `LiveIndex` return exactly what a brute-force scan
//! returns, on random and on clustered (near-duplicate) codes, across inserts, removals,
//! merges and snapshot round trips.

use std::collections::BTreeMap;

use fingerprints::{ErrorKind, HammingIndex, Hash256, IndexMatch, LiveIndex, LiveMatch};
use proptest::prelude::*;

/// splitmix64, so large data sets are cheap to describe by a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
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
        let mut mask = [0u64; 4];
        let mut flipped = 0;
        while flipped < k {
            let bit = (self.next() % 256) as usize;
            if mask[bit / 64] >> (bit % 64) & 1 == 0 {
                mask[bit / 64] |= 1 << (bit % 64);
                flipped += 1;
            }
        }
        for (w, m) in h.0.iter_mut().zip(mask) {
            *w ^= m;
        }
        h
    }
}

fn brute(model: &BTreeMap<u32, Hash256>, q: &Hash256, radius: u32) -> Vec<IndexMatch> {
    let mut out: Vec<IndexMatch> = model
        .iter()
        .filter_map(|(&id, h)| {
            let distance = h.distance(q);
            (distance <= radius).then_some(IndexMatch { id, distance })
        })
        .collect();
    out.sort_unstable_by_key(|m| (m.distance, m.id));
    out
}

/// Families of near-duplicates: an anchor and copies with 0–40 bits flipped, like the frames
/// of one shot. Returns the anchors so queries can aim at them.
fn clustered(
    rng: &mut Rng,
    families: usize,
    per_family: usize,
) -> (Vec<(u32, Hash256)>, Vec<Hash256>) {
    let mut entries = Vec::new();
    let mut anchors = Vec::new();
    for f in 0..families {
        let anchor = rng.hash();
        anchors.push(anchor);
        for j in 0..per_family {
            let k = (rng.next() % 41) as u32;
            entries.push(((f * per_family + j) as u32 * 7 + 3, rng.flip(anchor, k)));
        }
    }
    (entries, anchors)
}

fn assert_exact(index: &HammingIndex, model: &BTreeMap<u32, Hash256>, q: &Hash256, radius: u32) {
    assert_eq!(index.search(q, radius), brute(model, q, radius), "radius {radius}");
}

#[test]
fn search_matches_brute_force_on_a_large_clustered_index_at_many_radii() {
    let mut rng = Rng(1);
    // 600 families of 50 plus 30k random codes: large enough for the tables to be built.
    let (mut entries, anchors) = clustered(&mut rng, 600, 50);
    entries.extend((0..30_000u32).map(|i| (1_000_000 + i, rng.hash())));
    let model: BTreeMap<u32, Hash256> = entries.iter().copied().collect();
    let index = HammingIndex::from_entries(entries);
    assert_eq!(index.len(), model.len());
    for (i, anchor) in anchors.iter().enumerate().take(40) {
        let q = rng.flip(*anchor, (i % 12) as u32);
        for radius in [0, 1, 5, 10, 16, 23, 31, 32, 40, 64, 256] {
            assert_exact(&index, &model, &q, radius);
        }
    }
    for _ in 0..20 {
        assert_exact(&index, &model, &rng.hash(), 31);
    }
}

#[test]
fn planted_neighbours_are_found_at_every_distance_up_to_the_radius() {
    let mut rng = Rng(2);
    let mut model: BTreeMap<u32, Hash256> = (0..50_000u32).map(|i| (i, rng.hash())).collect();
    let queries: Vec<Hash256> = (0..40).map(|_| rng.hash()).collect();
    for (i, q) in queries.iter().enumerate() {
        model.insert(100_000 + i as u32, rng.flip(*q, i as u32));
    }
    let index = HammingIndex::from_entries(model.clone());
    for (i, q) in queries.iter().enumerate() {
        let hits = index.search(q, 31);
        let planted = IndexMatch { id: 100_000 + i as u32, distance: i as u32 };
        assert_eq!(hits.contains(&planted), i <= 31, "planted at distance {i}");
        assert_exact(&index, &model, q, 31);
    }
}

#[test]
fn updates_and_merges_keep_search_exact() {
    let mut rng = Rng(3);
    let (entries, anchors) = clustered(&mut rng, 400, 50);
    let mut model: BTreeMap<u32, Hash256> = entries.iter().copied().collect();
    let mut index = HammingIndex::from_entries(entries);
    // Enough updates to force several delta merges and tombstone compactions.
    for step in 0..30_000u32 {
        let op = rng.next() % 4;
        let id = (rng.next() % 200_000) as u32;
        if op == 0 {
            assert_eq!(index.remove(id), model.remove(&id).is_some());
        } else {
            let anchor = anchors[(rng.next() % anchors.len() as u64) as usize];
            let k = (rng.next() % 35) as u32;
            let h = if op == 1 { rng.hash() } else { rng.flip(anchor, k) };
            index.insert(id, h);
            model.insert(id, h);
        }
        if step % 3000 == 0 {
            assert_eq!(index.len(), model.len());
            let q = rng.flip(anchors[step as usize % anchors.len()], 4);
            assert_exact(&index, &model, &q, 31);
            assert_exact(&index, &model, &q, 12);
        }
    }
    for (&id, h) in model.iter().take(500) {
        assert_eq!(index.get(id), Some(*h));
    }
    assert_eq!(index.get(u32::MAX), None);
    index.compact();
    for anchor in anchors.iter().take(20) {
        assert_exact(&index, &model, anchor, 31);
    }
    let restored = HammingIndex::from_bytes(&index.to_bytes()).expect("snapshot loads");
    assert_eq!(restored.len(), model.len());
    assert_eq!(restored.entries(), model.iter().map(|(&i, &h)| (i, h)).collect::<Vec<_>>());
    for anchor in anchors.iter().take(20) {
        assert_exact(&restored, &model, anchor, 31);
    }
}

#[test]
fn memory_stays_within_64_bytes_per_code_at_scale() {
    let mut rng = Rng(4);
    let index = HammingIndex::from_entries((0..200_000u32).map(|i| (i, rng.hash())));
    let per_code = index.memory_bytes() as f64 / index.len() as f64;
    assert!(per_code <= 64.0, "{per_code} bytes per code");
    let mut sparse: Vec<u32> = (0..200_000).map(|_| rng.next() as u32).collect();
    sparse.sort_unstable();
    sparse.dedup();
    let n = sparse.len();
    let index = HammingIndex::from_entries(sparse.into_iter().map(|id| (id, rng.hash())));
    let per_code = index.memory_bytes() as f64 / n as f64;
    assert!(per_code <= 64.0, "{per_code} bytes per code with random ids");
}

#[test]
fn garbage_and_damaged_snapshots_are_rejected_as_corrupt() {
    let mut rng = Rng(5);
    let index = HammingIndex::from_entries((0..100u32).map(|i| (i * 2, rng.hash())));
    let good = index.to_bytes();
    assert_eq!(HammingIndex::from_bytes(&good).map(|i| i.len()), Ok(100));
    let mut flipped = good.clone();
    flipped[40] ^= 1;
    let mut bad_version = good.clone();
    bad_version[8] = 9;
    for bad in [&b""[..], &b"not a snapshot at all, really"[..], &good[..good.len() - 1], &flipped]
    {
        assert_eq!(
            HammingIndex::from_bytes(bad).map(|_| ()).unwrap_err().kind(),
            ErrorKind::Corrupt
        );
    }
    assert_eq!(
        HammingIndex::from_bytes(&bad_version).map(|_| ()).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
}

fn live_brute(
    frames: &[(u32, Hash256, i64)],
    cutoff: i64,
    q: &Hash256,
    radius: u32,
    from: i64,
    to: i64,
) -> Vec<LiveMatch> {
    let mut out: Vec<LiveMatch> = frames
        .iter()
        .filter(|(_, _, t)| *t >= cutoff && (from..=to).contains(t))
        .filter_map(|&(id, h, time_ms)| {
            let distance = h.distance(q);
            (distance <= radius).then_some(LiveMatch { id, distance, time_ms })
        })
        .collect();
    out.sort_unstable_by_key(|m| (m.distance, m.time_ms, m.id));
    out
}

#[test]
fn live_index_is_exact_within_the_window_and_forgets_expired_frames() {
    let mut rng = Rng(6);
    let retention = 120_000;
    let mut live = LiveIndex::new(retention);
    let anchors: Vec<Hash256> = (0..20).map(|_| rng.hash()).collect();
    let mut frames = Vec::new();
    // A 25 fps feed for ten minutes whose frames come from 20 recurring shots.
    for i in 0..15_000u32 {
        let t = 1_700_000_000_000 + i64::from(i) * 40;
        let k = (rng.next() % 30) as u32;
        let h = rng.flip(anchors[(i / 250) as usize % anchors.len()], k);
        live.insert(i, h, t);
        frames.push((i, h, t));
    }
    let end = frames.last().map_or(0, |f| f.2);
    let mut cutoff = i64::MIN;
    for now in [end - 400_000, end - 200_000, end] {
        live.expire(now);
        cutoff = now - retention;
        let kept = frames.iter().filter(|f| f.2 >= cutoff).count();
        assert_eq!(live.len(), kept);
        for (j, anchor) in anchors.iter().enumerate() {
            let q = rng.flip(*anchor, 3);
            let from = end - 300_000 + j as i64 * 10_000;
            let to = from + 90_000;
            assert_eq!(
                live.search(&q, 31, from, to),
                live_brute(&frames, cutoff, &q, 31, from, to)
            );
        }
    }
    assert!(live.search(&anchors[0], 256, i64::MIN, cutoff - 1).is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn small_indexes_match_brute_force_under_random_operations(
        seed in any::<u64>(),
        ops in proptest::collection::vec((0u8..4, 0u32..64, 0u32..48), 1..300),
        radius in 0u32..70,
    ) {
        let mut rng = Rng(seed);
        let anchors: Vec<Hash256> = (0..4).map(|_| rng.hash()).collect();
        let mut index = HammingIndex::new();
        let mut model = BTreeMap::new();
        for (op, id, k) in ops {
            match op {
                0 => prop_assert_eq!(index.remove(id), model.remove(&id).is_some()),
                3 => {
                    index = HammingIndex::from_bytes(&index.to_bytes()).expect("round trip");
                }
                _ => {
                    let h = rng.flip(anchors[(id % 4) as usize], k);
                    index.insert(id, h);
                    model.insert(id, h);
                }
            }
        }
        prop_assert_eq!(index.len(), model.len());
        for anchor in &anchors {
            prop_assert_eq!(index.search(anchor, radius), brute(&model, anchor, radius));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_snapshot_reader(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = HammingIndex::from_bytes(&bytes);
        let mut framed = b"OFSXHIDX\x01\x00\x00\x00".to_vec();
        framed.extend_from_slice(&bytes);
        // A random body matching the count and the 64-bit checksum is out of reach.
        prop_assert!(HammingIndex::from_bytes(&framed).is_err());
    }
}
