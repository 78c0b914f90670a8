//! [`HammingIndex`]: exact range search over 256-bit codes, sub-linear, updatable, snapshottable.
//!
//! # Design
//!
//! Multi-index hashing with eight tables. Each table looks at one 32-bit quarter-word of the
//! code. If a code lies within radius `r` of the query, then by pigeonhole at least one table
//! `k` sees a distance of at most `t_k` on its 32 bits, where the thresholds satisfy
//! `sum(t_k + 1) >= r + 1` (at `r = 31`, `t_k = 3` everywhere). A table only has to find the
//! codes whose bits agree with the query's within `t_k`; a full distance check on the 256 bits
//! then keeps the true matches, so the answer is exact.
//!
//! Why eight tables and not the "textbook" `256 / log2(n)` (12 at a million codes): every table
//! costs one row reference per code (about `log2 n` bits), and the budget is 64 bytes per code,
//! 32 of which are the code itself. Eight packed tables fit; twelve do not.
//!
//! Table layout (built for the *main* part, see below):
//! - the first `p` bits of the table's 32-bit chunk select a bucket (`p = floor(log2 n) - 3`,
//!   so a bucket holds 8–16 codes on uniform data); a `u32` directory gives each bucket's range;
//! - an entry is bit-packed: the code's row number (`ceil(log2 n)` bits) plus a *residue*, the
//!   next few bits of the chunk. The residue width is whatever the 64-byte budget leaves after
//!   the codes, ids, directories and tombstones (4 bits at 10M codes, 9 at 1M, with sequential ids).
//!
//! A query enumerates, per table, every bucket within `f <= t_k` flipped prefix bits, scans the
//! bucket (a few contiguous cache lines), and fetches a code only when the entry's residue is
//! within `t_k - f` of the query's. When the enumeration would touch too large a share of the
//! entries (large radius, small index) the search scans the codes instead, which is also exact.
//!
//! Updates: the main part is compact and immutable (rows sorted by id, ids compressed in
//! frame-of-reference blocks, a tombstone bit per row). Inserts go to a small unsorted *delta*
//! that queries scan linearly; removals of main rows set a tombstone. When the delta outgrows
//! `max(4096, n / 64)` or tombstones exceed an eighth of the rows, everything is merged into a
//! new main part (amortised `O(1)` rebuild work per update, a few microseconds).

use std::collections::HashMap;

use crate::{Error, ErrorKind, Hash256};

/// Number of multi-index tables (each over one 32-bit quarter-word chunk).
const TABLES: usize = 8;
/// Below this many main rows a scan beats probing, and tables would cost more than codes.
const MIN_INDEXED_ROWS: usize = 16_384;
/// The memory target the residue width is fitted to.
const BUDGET_BYTES_PER_CODE: usize = 64;
/// Residues wider than this no longer reduce candidate checks measurably.
const MAX_RESIDUE_BITS: u32 = 16;
/// The delta is merged when it exceeds `max(DELTA_MIN, main_rows / DELTA_DIVISOR)`.
const DELTA_MIN: usize = 4096;
const DELTA_DIVISOR: usize = 64;
/// Main rows are rebuilt when more than `1 / DEAD_DIVISOR` of them are tombstones.
const DEAD_DIVISOR: usize = 8;
/// Probing one table entry costs about 5/4 of scanning one code (measured at 100k and 1M);
/// the search probes only while that estimate beats a scan.
const PROBE_COST_X4: u64 = 5;
/// Ids are stored in blocks of this many rows.
const ID_BLOCK: usize = 64;

const SNAPSHOT_MAGIC: [u8; 8] = *b"OFSXHIDX";
const SNAPSHOT_VERSION: u32 = 1;
const SNAPSHOT_HEADER: usize = 8 + 4 + 8;
const SNAPSHOT_RECORD: usize = 4 + 32;
const SNAPSHOT_TRAILER: usize = 8;

/// One result of [`HammingIndex::search`]: an indexed id and its distance to the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexMatch {
    /// The id the code was inserted under.
    pub id: u32,
    /// Hamming distance between the query and the indexed code (0 to 256).
    pub distance: u32,
}

/// An exact Hamming range-search index over 256-bit codes, keyed by `u32` ids.
///
/// Invariants:
/// - each id maps to at most one code; inserting an existing id replaces its code;
/// - [`search`](Self::search) returns exactly the ids whose code is within the radius (the same
///   set a brute-force scan returns), sorted by distance then id, each id once;
/// - memory stays near 64 bytes per code once merged ([`memory_bytes`](Self::memory_bytes)).
#[derive(Debug, Clone, Default)]
pub struct HammingIndex {
    main: Main,
    /// Recent inserts, scanned linearly. Ids here are never alive in `main`.
    delta: Vec<(u32, Hash256)>,
    delta_pos: HashMap<u32, usize>,
}

impl HammingIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index from `(id, code)` pairs in one pass; a repeated id keeps its last code.
    ///
    /// Equivalent to inserting every pair, but builds the tables once, so it is the way to
    /// load millions of codes.
    pub fn from_entries(entries: impl IntoIterator<Item = (u32, Hash256)>) -> Self {
        let mut all: Vec<(u32, Hash256)> = entries.into_iter().collect();
        // Stable, so among equal ids the last inserted stays last in its run.
        all.sort_by_key(|&(id, _)| id);
        let mut ids: Vec<u32> = Vec::with_capacity(all.len());
        let mut codes: Vec<Hash256> = Vec::with_capacity(all.len());
        for (id, hash) in all {
            if ids.last() == Some(&id) {
                if let Some(last) = codes.last_mut() {
                    *last = hash;
                }
            } else {
                ids.push(id);
                codes.push(hash);
            }
        }
        Self { main: Main::build(&ids, codes), delta: Vec::new(), delta_pos: HashMap::new() }
    }

    /// Inserts many pairs (a repeated or existing id takes the last code) and merges once.
    pub fn extend(&mut self, entries: impl IntoIterator<Item = (u32, Hash256)>) {
        for (id, hash) in entries {
            self.insert_without_merge(id, hash);
        }
        if self.delta.len() > DELTA_MIN {
            self.compact();
        }
    }

    /// Number of indexed codes.
    pub fn len(&self) -> usize {
        self.main.live_rows() + self.delta.len()
    }

    /// Whether the index holds no code.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Indexes `hash` under `id`, replacing the code `id` had before.
    pub fn insert(&mut self, id: u32, hash: Hash256) {
        self.insert_without_merge(id, hash);
        if self.delta.len() > DELTA_MIN.max(self.main.codes.len() / DELTA_DIVISOR) {
            self.compact();
        }
    }

    fn insert_without_merge(&mut self, id: u32, hash: Hash256) {
        if let Some(&pos) = self.delta_pos.get(&id) {
            self.delta[pos].1 = hash;
            return;
        }
        self.main.kill(id);
        self.delta_pos.insert(id, self.delta.len());
        self.delta.push((id, hash));
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&mut self, id: u32) -> bool {
        if let Some(pos) = self.delta_pos.remove(&id) {
            self.delta.swap_remove(pos);
            if let Some(&(moved, _)) = self.delta.get(pos) {
                self.delta_pos.insert(moved, pos);
            }
            return true;
        }
        if !self.main.kill(id) {
            return false;
        }
        if self.main.dead > (self.main.codes.len() / DEAD_DIVISOR).max(DELTA_MIN) {
            self.compact();
        }
        true
    }

    /// The code indexed under `id`, if any.
    pub fn get(&self, id: u32) -> Option<Hash256> {
        if let Some(&pos) = self.delta_pos.get(&id) {
            return Some(self.delta[pos].1);
        }
        let row = self.main.ids.find(id)?;
        self.main.is_alive(row).then(|| self.main.codes[row])
    }

    /// Whether `id` is indexed.
    pub fn contains(&self, id: u32) -> bool {
        self.get(id).is_some()
    }

    /// Every `(id, code)` pair, sorted by id.
    pub fn entries(&self) -> Vec<(u32, Hash256)> {
        let mut out: Vec<(u32, Hash256)> = (0..self.main.codes.len())
            .filter(|&row| self.main.is_alive(row))
            .map(|row| (self.main.ids.get(row), self.main.codes[row]))
            .collect();
        out.extend_from_slice(&self.delta);
        out.sort_unstable_by_key(|&(id, _)| id);
        out
    }

    /// Merges pending inserts and drops removed rows now, rebuilding the tables.
    ///
    /// Updates call this automatically when the pending part grows; call it after a bulk
    /// change to make queries and [`memory_bytes`](Self::memory_bytes) reflect the compact form.
    pub fn compact(&mut self) {
        if self.delta.is_empty() && self.main.dead == 0 {
            return;
        }
        let main = std::mem::take(&mut self.main);
        let mut delta = std::mem::take(&mut self.delta);
        self.delta_pos = HashMap::new();
        delta.sort_unstable_by_key(|&(id, _)| id);
        // Both sides are sorted by id and disjoint (a main row is tombstoned when its id is
        // re-inserted), so a merge keeps the ids sorted without a full sort.
        let total = main.live_rows() + delta.len();
        let mut ids = Vec::with_capacity(total);
        let mut codes = Vec::with_capacity(total);
        let mut d = delta.into_iter().peekable();
        for row in 0..main.codes.len() {
            if !main.is_alive(row) {
                continue;
            }
            let id = main.ids.get(row);
            while let Some(&(did, dh)) = d.peek() {
                if did >= id {
                    break;
                }
                ids.push(did);
                codes.push(dh);
                d.next();
            }
            ids.push(id);
            codes.push(main.codes[row]);
        }
        for (did, dh) in d {
            ids.push(did);
            codes.push(dh);
        }
        drop(main);
        self.main = Main::build(&ids, codes);
    }

    /// Every indexed id whose code is within `radius` bits of `query`, sorted by distance
    /// then id.
    ///
    /// Exact for every radius: a radius of 256 or more returns everything.
    pub fn search(&self, query: &Hash256, radius: u32) -> Vec<IndexMatch> {
        let mut found: Vec<(u32, u32)> = Vec::new();
        self.main.search(query, radius, &mut found);
        let mut out: Vec<IndexMatch> = found
            .into_iter()
            .map(|(distance, row)| IndexMatch { id: self.main.ids.get(row as usize), distance })
            .collect();
        for &(id, hash) in &self.delta {
            let distance = hash.distance(query);
            if distance <= radius {
                out.push(IndexMatch { id, distance });
            }
        }
        out.sort_unstable_by_key(|m| (m.distance, m.id));
        out.dedup();
        out
    }

    /// Heap bytes held by the index (codes, ids, tables, tombstones, pending inserts).
    ///
    /// Counts allocated capacity; the hash map of pending inserts is estimated from its
    /// capacity (key, value and one control byte per slot).
    pub fn memory_bytes(&self) -> usize {
        self.main.memory_bytes()
            + self.delta.capacity() * std::mem::size_of::<(u32, Hash256)>()
            + self.delta_pos.capacity() * (std::mem::size_of::<(u32, usize)>() + 1)
    }

    /// A compact, versioned snapshot: the codes sorted by id, with a checksum.
    ///
    /// Layout (little-endian): magic `OFSXHIDX`, `u32` version (1), `u64` count, then `count`
    /// records of `u32` id and the 32 hash bytes ([`Hash256::to_bytes`]), then an FNV-1a 64
    /// checksum of everything before it. The tables are rebuilt on load.
    pub fn to_bytes(&self) -> Vec<u8> {
        let entries = self.entries();
        let mut out = Vec::with_capacity(
            SNAPSHOT_HEADER + entries.len() * SNAPSHOT_RECORD + SNAPSHOT_TRAILER,
        );
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        for (id, hash) in entries {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&hash.to_bytes());
        }
        let sum = fnv1a(&out);
        out.extend_from_slice(&sum.to_le_bytes());
        out
    }

    /// Rebuilds an index from [`to_bytes`](Self::to_bytes).
    ///
    /// # Errors
    /// - [`ErrorKind::Corrupt`] if the bytes are not a snapshot: wrong magic, a length that
    ///   does not match the count, a checksum mismatch, or ids not strictly increasing.
    /// - [`ErrorKind::Unsupported`] if the snapshot has a version this build does not read.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let corrupt =
            |what: &str| Error::new(ErrorKind::Corrupt, format!("index snapshot: {what}"));
        if bytes.len() < SNAPSHOT_HEADER + SNAPSHOT_TRAILER {
            return Err(corrupt("too short"));
        }
        if bytes[..8] != SNAPSHOT_MAGIC {
            return Err(corrupt("bad magic"));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| corrupt("header"))?);
        if version != SNAPSHOT_VERSION {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("index snapshot version {version} (this build reads {SNAPSHOT_VERSION})"),
            ));
        }
        let count = u64::from_le_bytes(bytes[12..20].try_into().map_err(|_| corrupt("header"))?);
        let expected = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(SNAPSHOT_RECORD))
            .and_then(|b| b.checked_add(SNAPSHOT_HEADER + SNAPSHOT_TRAILER));
        if expected != Some(bytes.len()) {
            return Err(corrupt("length does not match the record count"));
        }
        let body = &bytes[..bytes.len() - SNAPSHOT_TRAILER];
        let stored = u64::from_le_bytes(
            bytes[bytes.len() - SNAPSHOT_TRAILER..].try_into().map_err(|_| corrupt("trailer"))?,
        );
        if fnv1a(body) != stored {
            return Err(corrupt("checksum mismatch"));
        }
        let records = &body[SNAPSHOT_HEADER..];
        let n = records.len() / SNAPSHOT_RECORD;
        let mut ids = Vec::with_capacity(n);
        let mut codes = Vec::with_capacity(n);
        for rec in records.chunks_exact(SNAPSHOT_RECORD) {
            let id = u32::from_le_bytes(rec[..4].try_into().map_err(|_| corrupt("record"))?);
            if ids.last().is_some_and(|&last| last >= id) {
                return Err(corrupt("ids are not strictly increasing"));
            }
            let hash: [u8; 32] = rec[4..].try_into().map_err(|_| corrupt("record"))?;
            ids.push(id);
            codes.push(Hash256::from_bytes(hash));
        }
        Ok(Self { main: Main::build(&ids, codes), delta: Vec::new(), delta_pos: HashMap::new() })
    }
}

/// FNV-1a, 64-bit: detects truncation and bit flips in snapshots without a dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The compact, immutable part: rows sorted by id.
#[derive(Debug, Clone, Default)]
struct Main {
    codes: Vec<Hash256>,
    ids: IdColumn,
    /// One bit per row, set while the row is alive.
    alive: Vec<u64>,
    dead: usize,
    tables: Option<Tables>,
}

impl Main {
    /// `ids` strictly increasing, one per code.
    fn build(ids: &[u32], mut codes: Vec<Hash256>) -> Self {
        debug_assert_eq!(ids.len(), codes.len());
        codes.shrink_to_fit();
        let n = codes.len();
        let mut alive = vec![u64::MAX; n.div_ceil(64)];
        if let Some(last) = alive.last_mut().filter(|_| !n.is_multiple_of(64)) {
            *last = (1u64 << (n % 64)) - 1;
        }
        let ids = IdColumn::from_sorted(ids);
        let fixed = ids.memory_bytes() + alive.len() * 8;
        let tables = (n >= MIN_INDEXED_ROWS).then(|| Tables::build(&codes, fixed));
        Self { codes, ids, alive, dead: 0, tables }
    }

    fn live_rows(&self) -> usize {
        self.codes.len() - self.dead
    }

    #[inline]
    fn is_alive(&self, row: usize) -> bool {
        self.alive[row / 64] >> (row % 64) & 1 == 1
    }

    /// Tombstones the row of `id`; returns whether it was alive.
    fn kill(&mut self, id: u32) -> bool {
        match self.ids.find(id) {
            Some(row) if self.is_alive(row) => {
                self.alive[row / 64] &= !(1u64 << (row % 64));
                self.dead += 1;
                true
            }
            _ => false,
        }
    }

    /// Pushes `(distance, row)` for every live row within `radius` (possibly repeated).
    fn search(&self, q: &Hash256, radius: u32, out: &mut Vec<(u32, u32)>) {
        match &self.tables {
            Some(tables) if radius < 256 => {
                if let Some(thresholds) = tables.plan(radius, self.codes.len()) {
                    tables.probe(self, q, radius, &thresholds, out);
                    return;
                }
            }
            _ => {}
        }
        for (row, code) in self.codes.iter().enumerate() {
            let d = code.distance(q);
            if d <= radius && self.is_alive(row) {
                out.push((d, row as u32));
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        self.codes.capacity() * std::mem::size_of::<Hash256>()
            + self.ids.memory_bytes()
            + self.alive.capacity() * 8
            + self.tables.as_ref().map_or(0, Tables::memory_bytes)
    }
}

/// The eight multi-index tables over the main rows.
#[derive(Debug, Clone)]
struct Tables {
    prefix_bits: u32,
    residue_bits: u32,
    row_bits: u32,
    /// `row_bits + residue_bits`: the packed width of an entry.
    entry_bits: u32,
    /// Per table, `2^prefix_bits + 1` bucket starts.
    dirs: Vec<Vec<u32>>,
    /// Per table, packed entries `(residue << row_bits) | row`, grouped by bucket.
    entries: Vec<Vec<u64>>,
}

/// The 32-bit chunk of `h` that table `k` indexes.
#[inline]
fn chunk(h: &Hash256, k: usize) -> u32 {
    (h.0[k / 2] >> (32 * (1 - (k % 2)))) as u32
}

impl Tables {
    /// `fixed_bytes`: what the main part spends besides codes and tables (ids, tombstones).
    fn build(codes: &[Hash256], fixed_bytes: usize) -> Self {
        let n = codes.len();
        let row_bits = bits_for(n as u64 - 1).max(1);
        let lg = usize::BITS - 1 - n.leading_zeros();
        // 8–16 codes per bucket: measured faster than 4–8 (more directory, less residue)
        // and than 16–32 (more entries scanned) at 1M and 10M codes.
        let prefix_bits = lg.saturating_sub(3).clamp(1, 28);
        let dir_bytes = TABLES * ((1usize << prefix_bits) + 1) * 4;
        // What the budget leaves for entries, in bits per entry (each of the TABLES tables
        // has one entry per code, so bytes per code for all tables = bits per entry).
        let budget = BUDGET_BYTES_PER_CODE * n;
        let spent = std::mem::size_of_val(codes) + fixed_bytes + dir_bytes;
        let entry_budget_bits = (budget.saturating_sub(spent) / n) as u32;
        let residue_bits =
            entry_budget_bits.saturating_sub(row_bits).min(MAX_RESIDUE_BITS).min(32 - prefix_bits);
        let entry_bits = row_bits + residue_bits;
        let mut dirs = Vec::with_capacity(TABLES);
        let mut entries = Vec::with_capacity(TABLES);
        let buckets = 1usize << prefix_bits;
        for k in 0..TABLES {
            let mut dir = vec![0u32; buckets + 1];
            for code in codes {
                dir[(chunk(code, k) >> (32 - prefix_bits)) as usize + 1] += 1;
            }
            for b in 0..buckets {
                dir[b + 1] += dir[b];
            }
            let mut cursor: Vec<u32> = dir[..buckets].to_vec();
            let mut packed = vec![0u64; (n * entry_bits as usize).div_ceil(64) + 1];
            for (row, code) in codes.iter().enumerate() {
                let c = chunk(code, k);
                let bucket = (c >> (32 - prefix_bits)) as usize;
                let residue = residue_of(c, prefix_bits, residue_bits);
                let pos = cursor[bucket];
                cursor[bucket] += 1;
                write_bits(
                    &mut packed,
                    u64::from(pos) * u64::from(entry_bits),
                    entry_bits,
                    (u64::from(residue) << row_bits) | row as u64,
                );
            }
            dirs.push(dir);
            entries.push(packed);
        }
        Self { prefix_bits, residue_bits, row_bits, entry_bits, dirs, entries }
    }

    /// Per-table thresholds `t_k` (negative: table not needed) for `radius`, or `None` when a
    /// scan is cheaper than enumerating the buckets.
    fn plan(&self, radius: u32, rows: usize) -> Option<[i32; TABLES]> {
        let mut t = [0i32; TABLES];
        let spread = radius as usize + 1;
        let mut probes: u64 = 0;
        for (k, tk) in t.iter_mut().enumerate() {
            *tk = (spread / TABLES) as i32 - 1 + i32::from(k < spread % TABLES);
            if *tk >= 0 {
                probes = probes.saturating_add(ball_size(self.prefix_bits, *tk as u32));
            }
        }
        let touched = probes.saturating_mul(rows as u64) >> self.prefix_bits;
        (touched.saturating_mul(PROBE_COST_X4) / 4 < rows as u64).then_some(t)
    }

    /// Probes in phases so that the random memory accesses of different buckets overlap:
    /// a probe is a chain (directory, then entries, then the code), and walking the chains one
    /// by one leaves the CPU waiting on each miss in turn. Gathering all bucket ranges first,
    /// then touching every bucket's first entry word, then scanning, then verifying turns each
    /// phase into independent loads that the out-of-order core overlaps (about 4x faster at
    /// a million codes than the one-chain-at-a-time loop, measured).
    fn probe(
        &self,
        main: &Main,
        q: &Hash256,
        radius: u32,
        thresholds: &[i32; TABLES],
        out: &mut Vec<(u32, u32)>,
    ) {
        let row_mask = low_mask(self.row_bits);
        let width = u64::from(self.entry_bits);
        // (table, allowed residue distance, first entry, end entry)
        let mut ranges: Vec<(u8, u8, u32, u32)> = Vec::new();
        for (k, &tk) in thresholds.iter().enumerate() {
            if tk < 0 {
                continue;
            }
            let t = tk as u32;
            let qprefix = chunk(q, k) >> (32 - self.prefix_bits);
            let dir = &self.dirs[k];
            for_each_ball_mask(self.prefix_bits, t, &mut |mask, flips| {
                let bucket = (qprefix ^ mask) as usize;
                ranges.push((k as u8, (t - flips) as u8, dir[bucket], dir[bucket + 1]));
            });
        }
        let mut touch = 0u64;
        for &(k, _, start, end) in &ranges {
            // One load per 64-byte line of the bucket's entries.
            let packed = &self.entries[k as usize];
            let first = (u64::from(start) * width / 64) as usize;
            let last = (u64::from(end) * width / 64) as usize;
            for w in (first..last.min(packed.len())).step_by(8) {
                touch ^= packed[w];
            }
            if start < end {
                touch ^= packed[last.min(packed.len() - 1)];
            }
        }
        std::hint::black_box(touch);
        let mut candidates: Vec<u32> = Vec::new();
        let mut qres = [0u32; TABLES];
        for (k, r) in qres.iter_mut().enumerate() {
            *r = residue_of(chunk(q, k), self.prefix_bits, self.residue_bits);
        }
        for &(k, allow, start, end) in &ranges {
            let packed = &self.entries[k as usize];
            let (allow, qr) = (u32::from(allow), qres[k as usize]);
            let check_residue = allow < self.residue_bits;
            let mut bit = u64::from(start) * width;
            for _ in start..end {
                let e = read_bits(packed, bit, self.entry_bits);
                bit += width;
                let res = (e >> self.row_bits) as u32;
                let keep = if allow == 0 {
                    res == qr
                } else {
                    !check_residue || (res ^ qr).count_ones() <= allow
                };
                if keep {
                    candidates.push((e & row_mask) as u32);
                }
            }
        }
        for row in candidates {
            let d = main.codes[row as usize].distance(q);
            if d <= radius && main.is_alive(row as usize) {
                out.push((d, row));
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        self.dirs.iter().map(|d| d.capacity() * 4).sum::<usize>()
            + self.entries.iter().map(|e| e.capacity() * 8).sum::<usize>()
    }
}

#[inline]
fn residue_of(chunk: u32, prefix_bits: u32, residue_bits: u32) -> u32 {
    if residue_bits == 0 {
        return 0;
    }
    (chunk >> (32 - prefix_bits - residue_bits)) & (low_mask(residue_bits) as u32)
}

/// Number of `bits`-bit masks with at most `t` set bits.
fn ball_size(bits: u32, t: u32) -> u64 {
    let mut total: u64 = 0;
    let mut c: u64 = 1; // C(bits, f)
    for f in 0..=t.min(bits) {
        total = total.saturating_add(c);
        c = c.saturating_mul(u64::from(bits - f)) / u64::from(f + 1);
    }
    total
}

/// Calls `f(mask, flips)` for every `bits`-bit mask with at most `t` set bits.
fn for_each_ball_mask(bits: u32, t: u32, f: &mut impl FnMut(u32, u32)) {
    fn rec(bits: u32, t: u32, start: u32, depth: u32, mask: u32, f: &mut impl FnMut(u32, u32)) {
        f(mask, depth);
        if depth < t {
            for i in start..bits {
                rec(bits, t, i + 1, depth + 1, mask | (1 << i), f);
            }
        }
    }
    rec(bits, t, 0, 0, 0, f);
}

/// Ids sorted ascending, stored in blocks as `base + i + deviation` with the deviations
/// bit-packed at the block's width. Consecutive ids cost about 0.2 bytes each, random sparse
/// ids 2–3 bytes, never more than 4.2.
#[derive(Debug, Clone, Default)]
struct IdColumn {
    len: usize,
    bases: Vec<u32>,
    widths: Vec<u8>,
    starts: Vec<u64>,
    bits: Vec<u64>,
}

impl IdColumn {
    /// `ids` strictly increasing.
    fn from_sorted(ids: &[u32]) -> Self {
        let blocks = ids.len().div_ceil(ID_BLOCK);
        let mut bases = Vec::with_capacity(blocks);
        let mut widths = Vec::with_capacity(blocks);
        let mut starts = Vec::with_capacity(blocks);
        let mut total: u64 = 0;
        for block in ids.chunks(ID_BLOCK) {
            let base = block[0];
            // Deviations never decrease in a strictly increasing run, so the last is the max.
            let last = block.len() - 1;
            let width = bits_for(u64::from(block[last] - base - last as u32));
            bases.push(base);
            widths.push(width as u8);
            starts.push(total);
            total += u64::from(width) * block.len() as u64;
        }
        let mut bits = vec![0u64; (total as usize).div_ceil(64) + 1];
        for (b, block) in ids.chunks(ID_BLOCK).enumerate() {
            let width = u32::from(widths[b]);
            for (i, &id) in block.iter().enumerate() {
                let dev = id - bases[b] - i as u32;
                write_bits(
                    &mut bits,
                    starts[b] + i as u64 * u64::from(width),
                    width,
                    u64::from(dev),
                );
            }
        }
        Self { len: ids.len(), bases, widths, starts, bits }
    }

    #[inline]
    fn get(&self, row: usize) -> u32 {
        let (b, i) = (row / ID_BLOCK, row % ID_BLOCK);
        let width = u32::from(self.widths[b]);
        let dev = read_bits(&self.bits, self.starts[b] + i as u64 * u64::from(width), width);
        self.bases[b] + i as u32 + dev as u32
    }

    fn find(&self, id: u32) -> Option<usize> {
        let b = self.bases.partition_point(|&base| base <= id).checked_sub(1)?;
        let lo = b * ID_BLOCK;
        let hi = (lo + ID_BLOCK).min(self.len);
        let (mut a, mut z) = (lo, hi);
        while a < z {
            let mid = (a + z) / 2;
            match self.get(mid).cmp(&id) {
                std::cmp::Ordering::Less => a = mid + 1,
                std::cmp::Ordering::Greater => z = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    fn memory_bytes(&self) -> usize {
        self.bases.capacity() * 4
            + self.widths.capacity()
            + self.starts.capacity() * 8
            + self.bits.capacity() * 8
    }
}

/// Bits needed to write `v` (0 for 0).
fn bits_for(v: u64) -> u32 {
    u64::BITS - v.leading_zeros()
}

#[inline]
fn low_mask(width: u32) -> u64 {
    if width >= 64 { u64::MAX } else { (1u64 << width) - 1 }
}

/// Reads `width <= 64` bits at bit offset `bit`; `words` has one padding word at the end.
#[inline]
fn read_bits(words: &[u64], bit: u64, width: u32) -> u64 {
    if width == 0 {
        return 0;
    }
    let w = (bit / 64) as usize;
    let off = (bit % 64) as u32;
    let mut v = words[w] >> off;
    if off + width > 64 {
        v |= words[w + 1] << (64 - off);
    }
    v & low_mask(width)
}

/// ORs `value` (< 2^width) into zeroed bits at `bit`.
#[inline]
fn write_bits(words: &mut [u64], bit: u64, width: u32, value: u64) {
    if width == 0 {
        return;
    }
    let w = (bit / 64) as usize;
    let off = (bit % 64) as u32;
    words[w] |= value << off;
    if off + width > 64 {
        words[w + 1] |= value >> (64 - off);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn random_hash(state: &mut u64) -> Hash256 {
        Hash256([xorshift(state), xorshift(state), xorshift(state), xorshift(state)])
    }

    fn flip(mut h: Hash256, k: u32, state: &mut u64) -> Hash256 {
        let mut flipped = 0;
        while flipped < k {
            let bit = (xorshift(state) % 256) as usize;
            let before = h;
            h.0[3 - bit / 64] ^= 1 << (bit % 64);
            if before != h {
                flipped += 1;
            }
        }
        h
    }

    fn brute(entries: &[(u32, Hash256)], q: &Hash256, r: u32) -> Vec<IndexMatch> {
        let mut v: Vec<IndexMatch> = entries
            .iter()
            .filter_map(|&(id, h)| {
                let d = h.distance(q);
                (d <= r).then_some(IndexMatch { id, distance: d })
            })
            .collect();
        v.sort_unstable_by_key(|m| (m.distance, m.id));
        v
    }

    #[test]
    fn probing_large_index_matches_brute_force_on_planted_neighbours() {
        let mut s = 0x9e37_79b9_7f4a_7c15;
        let mut entries: Vec<(u32, Hash256)> =
            (0..40_000u32).map(|i| (i * 3 + 7, random_hash(&mut s))).collect();
        let anchors: Vec<Hash256> = (0..20).map(|_| random_hash(&mut s)).collect();
        for (a, anchor) in anchors.iter().enumerate() {
            for k in 0..40u32 {
                entries.push((1_000_000 + a as u32 * 100 + k, flip(*anchor, k, &mut s)));
            }
        }
        let index = HammingIndex::from_entries(entries.clone());
        assert!(index.main.tables.is_some(), "large index should build tables");
        for anchor in &anchors {
            for r in [0, 3, 8, 15, 24, 31, 32, 40] {
                let q = flip(*anchor, 2, &mut s);
                assert_eq!(index.search(&q, r), brute(&entries, &q, r), "radius {r}");
            }
        }
    }

    #[test]
    fn id_column_round_trips_dense_and_sparse_ids() {
        let mut s = 42;
        let mut sparse: Vec<u32> = (0..1000).map(|_| xorshift(&mut s) as u32).collect();
        sparse.sort_unstable();
        sparse.dedup();
        for ids in [(0..1000).collect::<Vec<u32>>(), sparse, vec![0, u32::MAX], vec![5]] {
            let col = IdColumn::from_sorted(&ids);
            for (row, &id) in ids.iter().enumerate() {
                assert_eq!(col.get(row), id);
                assert_eq!(col.find(id), Some(row));
            }
            if !ids.contains(&1) {
                assert_eq!(col.find(1), None);
            }
        }
    }

    #[test]
    fn ball_size_counts_masks() {
        assert_eq!(ball_size(20, 3), 1 + 20 + 190 + 1140);
        let mut n = 0;
        for_each_ball_mask(20, 3, &mut |_, _| n += 1);
        assert_eq!(n, 1351);
        assert_eq!(ball_size(3, 5), 8);
    }
}
