//! [`Hash256`]: the 256-bit code of PDQ.

use std::fmt;
use std::str::FromStr;

use crate::{Error, ErrorKind};

/// A 256-bit perceptual hash (PDQ bits).
///
/// Stored as four `u64` words. Word 0 holds the most significant 64 bits of the hex form, so
/// `to_hex` and `from_hex` round-trip and the hex matches Meta's reference output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Hash256(pub [u64; 4]);

impl Hash256 {
    /// The all-zero hash.
    pub const ZERO: Hash256 = Hash256([0; 4]);

    /// Parses 64 hex digits (either case).
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`] if the string is not exactly 64 hex digits.
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("a hash is 64 hex digits, got {:?}", truncate(s, 80)),
            ));
        }
        let mut words = [0u64; 4];
        for (i, w) in words.iter_mut().enumerate() {
            *w = u64::from_str_radix(&s[i * 16..i * 16 + 16], 16)
                .map_err(|e| Error::new(ErrorKind::InvalidInput, e.to_string()))?;
        }
        Ok(Hash256(words))
    }

    /// The 64-digit lower-case hex form.
    pub fn to_hex(&self) -> String {
        format!("{self}")
    }

    /// The big-endian bytes (the hex form's order).
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, w) in self.0.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// Rebuilds a hash from [`Hash256::to_bytes`].
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let mut words = [0u64; 4];
        for (i, w) in words.iter_mut().enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
            *w = u64::from_be_bytes(b);
        }
        Hash256(words)
    }

    /// The Hamming distance: the number of differing bits, 0 to 256.
    #[inline]
    pub fn distance(&self, other: &Hash256) -> u32 {
        (self.0[0] ^ other.0[0]).count_ones()
            + (self.0[1] ^ other.0[1]).count_ones()
            + (self.0[2] ^ other.0[2]).count_ones()
            + (self.0[3] ^ other.0[3]).count_ones()
    }

    /// Bit `i` (0 = least significant bit of the last hex digit, as in PDQ's reference).
    #[inline]
    pub fn bit(&self, i: usize) -> bool {
        let word = 3 - i / 64;
        (self.0[word] >> (i % 64)) & 1 == 1
    }

    /// Sets bit `i` (same numbering as [`Hash256::bit`]).
    #[inline]
    pub fn set_bit(&mut self, i: usize) {
        let word = 3 - i / 64;
        self.0[word] |= 1 << (i % 64);
    }

    /// The number of set bits.
    pub fn count_ones(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}{:016x}{:016x}{:016x}", self.0[0], self.0[1], self.0[2], self.0[3])
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({self})")
    }
}

impl FromStr for Hash256 {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Hash256::from_hex(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_hash() -> impl Strategy<Value = Hash256> {
        any::<[u64; 4]>().prop_map(Hash256)
    }

    proptest! {
        #[test]
        fn hex_round_trips(h in any_hash()) {
            prop_assert_eq!(Hash256::from_hex(&h.to_hex()).unwrap(), h);
        }

        #[test]
        fn bytes_round_trip(h in any_hash()) {
            prop_assert_eq!(Hash256::from_bytes(h.to_bytes()), h);
        }

        #[test]
        fn distance_is_symmetric_and_zero_on_self(a in any_hash(), b in any_hash()) {
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            prop_assert_eq!(a.distance(&a), 0);
        }

        #[test]
        fn distance_obeys_triangle_inequality(a in any_hash(), b in any_hash(), c in any_hash()) {
            prop_assert!(a.distance(&c) <= a.distance(&b) + b.distance(&c));
        }
    }

    #[test]
    fn bit_zero_is_the_last_hex_digits_low_bit() {
        let mut h = Hash256::ZERO;
        h.set_bit(0);
        assert!(h.to_hex().ends_with('1'));
        h.set_bit(255);
        assert!(h.to_hex().starts_with('8'));
        assert_eq!(h.count_ones(), 2);
    }

    #[test]
    fn malformed_hex_is_rejected_with_invalid_input() {
        for bad in ["", "abc", &"g".repeat(64), &"0".repeat(63), &"0".repeat(65)] {
            assert_eq!(Hash256::from_hex(bad).unwrap_err().kind(), ErrorKind::InvalidInput);
        }
    }
}
