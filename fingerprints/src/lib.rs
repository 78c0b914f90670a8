//! Perceptual video fingerprints for recognising re-streamed broadcasts.
//!
//! This crate is the pure core of Offside: bytes and pixels in, values out. It does no IO,
//! spawns no threads, never logs and has no async code, so the service can call it from any
//! context (typically `spawn_blocking` or a worker thread) and tests can exercise it directly.
//!
//! What it owns:
//! - [`Hash256`]: a 256-bit perceptual hash with hex form and Hamming distance.
//! - [`Luma`]: an 8-bit greyscale image, the one pixel format every algorithm here consumes.
//! - [`pdq`], [`pdq_dihedral`], [`pdq_rgb`]: Meta's PDQ hash with quality and the eight
//!   dihedral variants from one DCT, bit-compatible with the reference implementation.
//! - [`content_rect`], [`Rect`]: letterbox and pillarbox detection (plain or blurred-fill bars),
//!   so the picture inside a padded frame can be hashed on its own; [`dark_trim`], the box of
//!   everything lit, for pictures whose own margins are as black as the bars; [`inner_pictures`],
//!   both, as the reference and the query side hash them; [`layout_band`], a landscape
//!   picture laid out as a band anywhere in a portrait frame, for the query side.
//! - [`picture_windows`]: a picture shown as a window of a re-streamer's layout (beside a chat
//!   panel, picture-in-picture over another video), found by its four straight edges, so the
//!   query side can hash it on its own.
//! - [`centre_crop`], [`CropVariant`]: centred 9:16, 1:1 and 4:3 crops of reference frames, so
//!   portrait and 4:3 re-streams of a landscape broadcast match.
//! - [`StreamMatcher`]: per-stream temporal evidence, votes of keyframe [`Hit`]s for a
//!   (reference, time offset) that must agree over distinct reference times ([`Evidence`]).
//! - [`HammingIndex`]: exact Hamming range search over 256-bit codes (multi-index hashing,
//!   updatable, byte snapshots, about 64 bytes per code); [`LiveIndex`]: its time-windowed
//!   variant for live reference feeds, expired by retention.
//! - [`features`]: local binary features (FAST + mirror-symmetric BRIEF over a pyramid), an LSH
//!   [`features::FeatureIndex`] of reference frames and RANSAC verification of query keyframes:
//!   the geometric tier that catches zoomed, cropped, overlaid and filmed re-streams.
//! - [`decode_luma`], [`DecodeLimits`]: JPEG (luma only, box-reduced), PNG and WebP keyframe
//!   bytes to [`Luma`], with typed errors and decompression-bomb limits checked before decoding.
//! - [`Error`]: the crate's one error type, with a `#[non_exhaustive]` [`ErrorKind`].
#![deny(missing_docs)]

mod border;
mod crops;
mod decode;
mod error;
pub mod features;
mod hash;
mod index;
mod live;
mod luma;
mod pdq;
mod temporal;
mod window;

pub use border::{Rect, content_rect, dark_trim, inner_pictures, layout_band};
pub use crops::{CropVariant, centre_crop};
pub use decode::{DecodeLimits, Rgb, decode_luma, decode_rgb};
pub use error::{Error, ErrorKind};
pub use hash::Hash256;
pub use index::{HammingIndex, IndexMatch};
pub use live::{LiveIndex, LiveMatch};
pub use luma::Luma;
pub use pdq::{Dihedral, PdqHash, pdq, pdq_dihedral, pdq_dihedral_rgb, pdq_rgb};
pub use temporal::{Evidence, EvidenceHit, Hit, MatcherConfig, StreamMatcher, broadness_weight};
pub use window::picture_windows;
