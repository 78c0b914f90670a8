//! Enforcement: what happens after a decision. Signed takedown webhooks and their delivery.

pub mod webhook;
