//! Thread-per-connection peerwire I/O: the handshake, a reader thread that
//! decodes messages and streams block payloads into storage, and a writer
//! thread that pulls what to send from the swarm state. Policy lives in
//! `crate::swarm`; these threads only move bytes and report events.

mod budget;
pub mod connection;
pub mod handshake;
pub mod limiter;
pub mod listener;
mod reader;
pub mod router;
mod writer;

pub use connection::{RateLimits, Swarm};

#[cfg(test)]
mod tests;
