//! Subcommands beside the service itself: hashing files offline, tapping a video into the
//! keyframe queue as a platform would, and driving load at a running service.

pub mod hash;
pub mod load;
pub mod tap;
