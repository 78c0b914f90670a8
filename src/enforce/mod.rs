//! Enforcement: what happens after a decision: signed takedown webhooks ([`webhook`]) and the
//! outbox delivery loop ([`delivery`]).

pub mod delivery;
pub mod webhook;
