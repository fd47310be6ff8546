//! btnode: a BitTorrent node whose peers find each other through a gossip
//! overlay, with an HTTP tracker as fallback and an auxiliary DNS.
//!
//! Module map (dependencies point down the list; see ARCHITECTURE.md):
//! - [`core`]: vocabulary with no I/O (ids, bencode, bitfields, metainfo).
//! - [`runtime`]: the bounded listener service and HTTP/1.1 request reader every server uses (std only).
//! - [`wire`]: pure codecs (peerwire messages, tracker replies).
//! - [`swarm`]: download/upload policy as plain structs (picker, choker, torrent state).
//! - [`storage`]: memory-mapped file set and the SHA-1 worker pool.
//! - [`peer`]: thread-per-connection peerwire I/O.
//! - [`tracker`]: HTTP tracker client and server.
//! - [`overlay`]: gossip overlay for discovery.
//! - [`dns`]: the distributed DNS service.
//! - [`node`]: composition root, lifecycle and signals.
//! - [`runtime`]: process-level machinery (the lock-cycle watchdog).

pub mod api;
pub mod cli;
pub mod core;
pub mod dns;
pub mod node;
pub mod overlay;
pub mod peer;
pub mod runtime;
pub mod session;
pub mod storage;
pub mod swarm;
pub mod tracker;
pub mod wire;
