//! Packed storage of the feature index: a chunked slab of features and compact LSH tables.
//!
//! # Why this shape
//! RAM per reference second is a target (8 KB), and `Vec` growth slack was most of it in the
//! first cut (a `Vec` per bucket, each up to twice its length). Here:
//! - the slab is a list of fixed 4,096-entry chunks, so at most one chunk is partly empty and
//!   growing never copies hours of features;
//! - each table is a *base* in compressed-sparse-row form (one offsets array, one items array
//!   sorted by key, both sized exactly), plus a small append *log* of newer items chained per
//!   key. A lookup scans the base bucket sequentially, then the short chain. When the log (and
//!   the tombstones left by removals) reach a sixteenth of the base, log and base are merged in
//!   one pass over the keys: amortised, a few item moves per insertion, and the log never
//!   holds more than a sixteenth of the table;
//! - an item is 8 bytes: the slab slot and a 32-bit check code.

/// Marks an empty slab slot and a removed table item.
pub(crate) const FREE: u32 = u32::MAX;
const NONE: u32 = u32::MAX;
const CHUNK_BITS: u32 = 12;
const CHUNK: usize = 1 << CHUNK_BITS;

/// One reference feature.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) desc: [u64; 4],
    /// The frame id, or [`FREE`].
    pub(crate) frame: u32,
    /// x (13 bits, half pixels) | y (13 bits, half pixels) << 13 | level (4 bits) << 26.
    pub(crate) pos: u32,
}

/// The slab: entries addressed by slot, in fixed-size chunks, with a free list.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slab {
    chunks: Vec<Vec<Entry>>,
    free: Vec<u32>,
    used: usize,
}

impl Slab {
    #[inline]
    pub(crate) fn get(&self, slot: u32) -> &Entry {
        &self.chunks[(slot >> CHUNK_BITS) as usize][slot as usize & (CHUNK - 1)]
    }

    /// Stores `e` and returns its slot (a freed one if any).
    pub(crate) fn add(&mut self, e: Entry) -> u32 {
        self.used += 1;
        if let Some(s) = self.free.pop() {
            self.chunks[(s >> CHUNK_BITS) as usize][s as usize & (CHUNK - 1)] = e;
            return s;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let n = self.chunks.len() - 1;
        let last = &mut self.chunks[n];
        last.push(e);
        ((n << CHUNK_BITS) + last.len() - 1) as u32
    }

    pub(crate) fn release(&mut self, slot: u32) {
        self.chunks[(slot >> CHUNK_BITS) as usize][slot as usize & (CHUNK - 1)].frame = FREE;
        self.free.push(slot);
        self.used -= 1;
    }

    pub(crate) fn len(&self) -> usize {
        self.used
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity() * std::mem::size_of::<Entry>()).sum::<usize>()
            + self.chunks.capacity() * std::mem::size_of::<Vec<Entry>>()
            + self.free.capacity() * 4
    }
}

/// One bucket item: a slab slot (or [`FREE`] once removed) and the slot's check code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Item {
    pub(crate) slot: u32,
    pub(crate) check: u32,
}

#[derive(Clone, Copy, Debug)]
struct Logged {
    item: Item,
    next: u32,
}

/// One LSH table: CSR base plus a chained append log (see the module docs).
#[derive(Clone, Debug)]
pub(crate) struct Table {
    offsets: Vec<u32>,
    items: Vec<Item>,
    dead: usize,
    head: Vec<u32>,
    log: Vec<Logged>,
    /// Live items per key, wherever they sit (base or log); empty while the table is merged
    /// (no log, no removed items), when the base's bounds give the same counts.
    live: Vec<u32>,
    /// Live items in all.
    total: usize,
}

impl Table {
    pub(crate) fn new(key_bits: u8) -> Self {
        let keys = 1usize << key_bits;
        Self {
            offsets: vec![0; keys + 1],
            items: Vec::new(),
            dead: 0,
            head: vec![NONE; keys],
            log: Vec::new(),
            live: Vec::new(),
            total: 0,
        }
    }

    /// Live items in bucket `key`, in the base and the log alike, so the count does not depend
    /// on the order the items came in. A merged table (no log, no removed items) reads it from
    /// the base's bounds, which the scan reads next anyway.
    #[inline]
    pub(crate) fn len(&self, key: usize) -> usize {
        if self.live.is_empty() {
            (self.offsets[key + 1] - self.offsets[key]) as usize
        } else {
            self.live[key] as usize
        }
    }

    /// The live counts, taken from the base's bounds when the table was merged.
    fn live_mut(&mut self) -> &mut [u32] {
        if self.live.is_empty() {
            self.live = self.offsets.windows(2).map(|w| w[1] - w[0]).collect();
        }
        &mut self.live
    }

    /// Mean number of live items per bucket.
    pub(crate) fn mean_len(&self) -> f32 {
        self.total as f32 / self.head.len() as f32
    }

    /// Calls `f` on every live item of bucket `key`.
    #[inline]
    pub(crate) fn for_each(&self, key: usize, mut f: impl FnMut(Item)) {
        let (a, b) = (self.offsets[key] as usize, self.offsets[key + 1] as usize);
        for &it in &self.items[a..b] {
            if it.slot != FREE {
                f(it);
            }
        }
        // Merged tables (a library loaded at start) have no log: skip the chain's head, a
        // cache miss of its own.
        if self.log.is_empty() {
            return;
        }
        let mut j = self.head[key];
        while j != NONE {
            let l = &self.log[j as usize];
            if l.item.slot != FREE {
                f(l.item);
            }
            j = l.next;
        }
    }

    /// Adds an item to bucket `key`. With `merge`, folds the log into the base once it is
    /// large; without, the caller merges later (bulk loading).
    pub(crate) fn push(&mut self, key: usize, item: Item, merge: bool) {
        if merge && self.log.len() == self.log.capacity() {
            // Grow by the merge threshold at most, not by doubling (a bulk load doubles; its
            // final merge drops the log).
            self.log.reserve_exact(self.threshold());
        }
        self.log.push(Logged { item, next: self.head[key] });
        self.head[key] = (self.log.len() - 1) as u32;
        self.live_mut()[key] += 1;
        self.total += 1;
        if merge && self.log.len() + self.dead >= self.threshold() {
            self.merge();
        }
    }

    /// Marks the item of `slot` in bucket `key` removed; false if it is not there.
    pub(crate) fn remove(&mut self, key: usize, slot: u32, merge: bool) -> bool {
        let (a, b) = (self.offsets[key] as usize, self.offsets[key + 1] as usize);
        if let Some(it) = self.items[a..b].iter_mut().find(|it| it.slot == slot) {
            it.slot = FREE;
            self.dead += 1;
            self.live_mut()[key] -= 1;
            self.total -= 1;
            if merge && self.log.len() + self.dead >= self.threshold() {
                self.merge();
            }
            return true;
        }
        let mut j = self.head[key];
        while j != NONE {
            let l = &mut self.log[j as usize];
            if l.item.slot == slot {
                // A removed log item stays in its chain until the next merge drops it.
                l.item.slot = FREE;
                self.live_mut()[key] -= 1;
                self.total -= 1;
                return true;
            }
            j = l.next;
        }
        false
    }

    /// Log and tombstones are merged when they reach a sixteenth of the base (at least 1,024
    /// items, so small indexes do not merge on every insertion).
    fn threshold(&self) -> usize {
        (self.items.len() / 16).max(1024)
    }

    /// Folds the log into the base and drops removed items, in one pass over the keys.
    pub(crate) fn merge(&mut self) {
        if self.log.is_empty() && self.dead == 0 {
            return;
        }
        let live = self.items.len() - self.dead + self.log.len();
        let mut items = Vec::with_capacity(live);
        let mut offsets = Vec::with_capacity(self.offsets.len());
        offsets.push(0u32);
        for key in 0..self.head.len() {
            let (a, b) = (self.offsets[key] as usize, self.offsets[key + 1] as usize);
            items.extend(self.items[a..b].iter().filter(|it| it.slot != FREE));
            let mut j = self.head[key];
            while j != NONE {
                let l = &self.log[j as usize];
                if l.item.slot != FREE {
                    items.push(l.item);
                }
                j = l.next;
            }
            offsets.push(items.len() as u32);
        }
        items.shrink_to_fit();
        self.items = items;
        self.offsets = offsets;
        self.dead = 0;
        self.head.fill(NONE);
        self.log = Vec::new();
        self.live = Vec::new();
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.offsets.capacity() * 4
            + self.items.capacity() * std::mem::size_of::<Item>()
            + self.head.capacity() * 4
            + self.log.capacity() * std::mem::size_of::<Logged>()
            + self.live.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(t: &Table, key: usize) -> Vec<u32> {
        let mut v = Vec::new();
        t.for_each(key, |it| v.push(it.slot));
        v.sort_unstable();
        v
    }

    #[test]
    fn a_table_answers_the_same_before_and_after_merging() {
        let mut t = Table::new(8);
        let mut truth: Vec<Vec<u32>> = vec![Vec::new(); 256];
        for slot in 0..5000u32 {
            let key = (slot.wrapping_mul(2_654_435_761) >> 24) as usize;
            t.push(key, Item { slot, check: slot }, true);
            truth[key].push(slot);
            if slot % 7 == 3 {
                let victim = slot / 2;
                let vkey = (victim.wrapping_mul(2_654_435_761) >> 24) as usize;
                if let Some(p) = truth[vkey].iter().position(|&s| s == victim) {
                    truth[vkey].remove(p);
                    assert!(t.remove(vkey, victim, true));
                }
            }
        }
        // Items, and their count, whether they sit in the base or the log.
        for (key, slots) in truth.iter_mut().enumerate() {
            slots.sort_unstable();
            assert_eq!(&bucket(&t, key), slots);
            assert_eq!(t.len(key), slots.len());
        }
        t.merge();
        for (key, slots) in truth.iter().enumerate() {
            assert_eq!(&bucket(&t, key), slots);
            assert_eq!(t.len(key), slots.len());
        }
        let live: usize = truth.iter().map(Vec::len).sum();
        assert!((t.mean_len() - live as f32 / 256.0).abs() < 1e-6);
        assert!(!t.remove(0, 999_999, true));
    }

    #[test]
    fn the_slab_reuses_freed_slots_and_counts_live_entries() {
        let mut s = Slab::default();
        let e = Entry { desc: [1, 2, 3, 4], frame: 9, pos: 0 };
        let slots: Vec<u32> = (0..5000).map(|_| s.add(e)).collect();
        assert_eq!(s.len(), 5000);
        s.release(slots[17]);
        assert_eq!(s.get(slots[17]).frame, FREE);
        assert_eq!(s.add(Entry { frame: 3, ..e }), slots[17]);
        assert_eq!(s.get(slots[17]).frame, 3);
        assert_eq!(s.get(slots[4500]).frame, 9);
        assert_eq!(s.len(), 5000);
    }
}
