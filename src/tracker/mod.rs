//! HTTP tracker: the client a node announces with, and a small server.

pub mod client;
pub mod server;
