//! The reference library: the jobs that turn an uploaded file into indexed frames and the
//! in-memory index synchronisation.
//!
//! The runner lives in [`jobs`], the in-memory index synchronisation in [`index`]; the domain
//! types a reference carries (its source, status and policy) are in [`crate::domain`].

pub mod engine;
pub mod index;
pub mod jobs;
