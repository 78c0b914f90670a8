//! Offside: recognises pirated re-streams of broadcasts in live video and acts on them.
//!
//! The service crate. The pure recognition core lives in the `fingerprints` crate; this crate
//! owns everything with IO: the command line, configuration, storage, queues, media decoding
//! with FFmpeg, the HTTP API, the worker pipeline and enforcement.

pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod console;
pub mod domain;
pub mod enforce;
pub mod eval;
pub mod http;
pub mod live;
pub mod media;
pub mod net;
pub mod pipeline;
pub mod queue;
pub mod recognition;
pub mod references;
pub mod review;
pub mod store;
pub mod telemetry;
