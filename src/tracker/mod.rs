//! Trackers: the client a node announces with (HTTP, and UDP per BEP 15),
//! and a small HTTP server.

pub mod client;
pub mod server;
pub mod udp;
