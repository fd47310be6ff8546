//! Trackers: the client a node announces with (HTTP, and UDP per BEP 15),
//! and a small server speaking both.

pub mod client;
pub mod schedule;
pub mod server;
pub mod udp;
pub mod udp_server;
