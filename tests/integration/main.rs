//! Offside's integration tests: the real service against real PostgreSQL, RabbitMQ, FFmpeg and
//! Chromium, one module per area. One test binary (one link, dependencies' generics compiled
//! once) instead of one per file: on two cores that saves minutes of build and gigabytes of
//! target/ per CI run. `cargo nextest run` runs every test in its own process, so tests do not
//! share process state; `-E 'test(/^live_feed::/)'` (nextest) or
//! `cargo test --test integration live_feed::` picks one module.

#[macro_use]
mod common;

mod api_auth;
mod api_references;
mod broker_restart;
mod console_browser;
mod console_pages;
mod console_store;
mod durable_ingest;
mod enforce_amqp;
mod enforce_embedded;
mod eval_subset;
mod evidence;
mod geometric;
mod http_edge;
mod live_cost;
mod live_feed;
mod live_geometric;
mod live_lease;
mod live_resilience;
mod media;
mod operations;
mod ops_pack;
mod outbound;
mod pdq_cli;
mod permissions;
mod queue_amqp;
mod queue_db;
mod review_cost;
mod store;
mod tap;
