//! Subcommands that run offline, without the service: hashing files and scoring an
//! evaluation set.

pub mod hash;
