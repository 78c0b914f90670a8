//! Domain types: what references, policies, live feeds and events are, apart from the
//! mechanisms that store, run or deliver them. The store, the HTTP layer, the job runner, the
//! live ingest, the worker and the webhook delivery all speak these types, and this module
//! depends on none of them.
//!
//! - [`policy`]: a reference's [`Policy`] (action, evidence seconds, validity window, allowed
//!   accounts) and its validation.
//! - [`reference`]: where a reference's frames come from ([`ReferenceSource`]) and where it is
//!   in its life ([`ReferenceStatus`]).
//! - [`feed`]: where a live feed is in its life ([`FeedStatus`]).
//! - [`event`]: the webhook events of the contract ([`Event`], [`EventType`]).

pub mod event;
pub mod feed;
pub mod policy;
pub mod reference;

pub use event::{Event, EventType};
pub use feed::FeedStatus;
pub use policy::{Policy, PolicyAction, PolicyError};
pub use reference::{ReferenceSource, ReferenceStatus};

/// `as_str`, `FromStr` and `Display` of an enum stored and sent as lowercase text.
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The stored and wire name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }
        impl std::str::FromStr for $ty {
            type Err = $crate::domain::UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err($crate::domain::UnknownValue(other.to_owned())),
                }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use text_enum;

/// A stored enum value this version does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownValue(pub String);
