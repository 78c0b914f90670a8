//! Outbound connections made on a client's behalf: webhook deliveries and live feeds (and
//! everything FFmpeg opens for a feed).
//!
//! - [`outbound`]: the one address policy ([`OutboundPolicy`]): which addresses may be
//!   reached, judged on resolved addresses, never on names.
//! - [`proxy`]: [`CheckingProxy`], the loopback forward proxy that checks every HTTP(S)
//!   connection FFmpeg makes (playlists, segments, keys, redirects) when it makes it.
//! - [`ffmpeg`]: how a feed URL is handed to FFmpeg: the protocols and formats it may use, the
//!   proxy for HTTP(S), and a checked address literal for RTMP, SRT and UDP.

pub mod ffmpeg;
pub mod outbound;
pub mod proxy;

pub use outbound::{Cidr, NonPublic, OutboundError, OutboundPolicy, Refused};
pub use proxy::CheckingProxy;
