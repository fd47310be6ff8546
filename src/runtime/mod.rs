//! Services every subsystem's I/O stands on; depends on nothing else in the crate.

pub mod http;
pub mod listener;
