//! The daemon's control surface: the HTTP API (`/api/v1/...`), the
//! Prometheus `/metrics` page and the dashboard at `/`, all served from
//! one bounded listener. This module knows nothing of how torrents run:
//! it talks to a [`Control`] (the session implements it) and speaks the
//! JSON shapes in [`model`], which `btnode add/list/...` parse back.

pub mod auth;
pub mod client;
pub mod dashboard;
pub mod exposition;
pub mod metrics;
pub mod model;
pub mod server;

pub use model::{
    ControlError, FileEntry, PeerEntry, SessionCounters, SessionInfo, TorrentDetail, TorrentSummary,
};

/// What the API can ask of the session. Info-hashes are 40 lowercase hex
/// characters; the server checks the shape before calling.
pub trait Control: Send + Sync {
    fn list(&self) -> Vec<TorrentSummary>;
    /// Adds a torrent from its metainfo bytes. `dir` is relative to the
    /// daemon's download root (None: the root itself). Returns the
    /// info-hash.
    fn add(&self, metainfo: &[u8], dir: Option<&str>, paused: bool)
        -> Result<String, ControlError>;
    fn detail(&self, info_hash: &str) -> Result<TorrentDetail, ControlError>;
    fn pause(&self, info_hash: &str) -> Result<(), ControlError>;
    fn resume(&self, info_hash: &str) -> Result<(), ControlError>;
    fn remove(&self, info_hash: &str, delete_data: bool) -> Result<(), ControlError>;
    fn session(&self) -> SessionInfo;
}
