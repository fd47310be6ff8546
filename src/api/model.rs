//! The JSON the API speaks, both ways (the server writes it, the
//! `btnode list/status` client reads it). Documented in docs/API.md.

use serde::{Deserialize, Serialize};

/// Why a control call failed; the server maps each to one status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// 404: no torrent with that info-hash.
    #[error("no such torrent")]
    NotFound,
    /// 400: bad metainfo, a data directory outside the root, ...
    #[error("{0}")]
    BadRequest(String),
    /// 409: the torrent is already in the session.
    #[error("{0}")]
    Conflict(String),
    /// 500: the session could not do it (disk, threads).
    #[error("{0}")]
    Internal(String),
}

/// One line of `GET /api/v1/torrents`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TorrentSummary {
    pub info_hash: String,
    pub name: String,
    /// Bytes in the torrent.
    pub size: u64,
    /// 0.0 ..= 1.0, verified bytes over size.
    pub progress: f64,
    pub pieces_have: usize,
    pub pieces_total: usize,
    /// "checking", "downloading", "seeding", "paused" or "failed".
    pub state: String,
    /// Bytes per second, over the last few seconds.
    pub down_rate: u64,
    pub up_rate: u64,
    pub peers: usize,
    /// Seconds to completion at the current rate; None when unknown
    /// (no rate) or complete.
    pub eta_secs: Option<u64>,
    /// Payload bytes since this run started.
    pub downloaded: u64,
    pub uploaded: u64,
    /// Pieces that passed the hash check after download, this run.
    pub pieces_verified: u64,
    pub hash_failures: u64,
    /// Pieces hashed at start to check data already on disk (0 when
    /// fast-resume data was trusted).
    pub pieces_checked_at_start: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative to the torrent's data directory, `/`-separated.
    pub path: String,
    pub length: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerEntry {
    pub addr: String,
    /// Pieces the peer has, as far as we know.
    pub pieces: usize,
    pub down_rate: u64,
    pub up_rate: u64,
    /// Whether we are choking the peer / the peer is choking us.
    pub choked: bool,
    pub choking_us: bool,
}

/// `GET /api/v1/torrents/{info_hash}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TorrentDetail {
    #[serde(flatten)]
    pub summary: TorrentSummary,
    /// The data directory relative to the download root ("" for the root).
    pub dir: String,
    pub files: Vec<FileEntry>,
    pub peer_list: Vec<PeerEntry>,
    /// One character per piece: '1' verified, '0' missing.
    pub piece_map: String,
}

/// Counters over the whole process, for `/metrics` and `btnode status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionCounters {
    pub gossip_bytes_in: u64,
    pub gossip_bytes_out: u64,
    pub tracker_announces: u64,
    pub tracker_failures: u64,
    pub dns_queries: u64,
    /// Overlay frames dropped unopened: not sealed under the swarm key,
    /// stale or replayed (0 without a key).
    pub overlay_auth_failures: u64,
}

/// `GET /api/v1/session`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub version: String,
    pub uptime_secs: u64,
    pub peer_port: u16,
    /// The overlay's address, None when the daemon runs without one.
    pub overlay_addr: Option<String>,
    pub overlay_members: usize,
    /// The name registered at the DNS service, if any.
    pub dns_registration: Option<String>,
    pub torrents: usize,
    pub down_rate: u64,
    pub up_rate: u64,
    pub counters: SessionCounters,
}
