//! What the state counts and reports: torrent-wide counters, per-peer
//! summaries for the status file, total rates.

use super::TorrentState;

#[derive(Default, Clone, Debug, serde::Serialize)]
pub struct Stats {
    /// Payload bytes accepted from peers (duplicates excluded).
    pub downloaded: u64,
    pub uploaded: u64,
    /// Bytes discarded: duplicates and pieces that failed the hash check.
    pub wasted: u64,
    pub hash_failures: u64,
    /// Pieces verified after downloading them in this run.
    pub pieces_downloaded: u64,
    /// Pieces found valid on disk at start.
    pub pieces_resumed: u64,
    /// Pieces hashed at start to check what was on disk (0 when
    /// fast-resume data was trusted).
    pub pieces_checked_at_start: u64,
}

impl TorrentState {
    /// Per-peer view for status output.
    pub fn peer_summaries(&self) -> Vec<PeerSummary> {
        self.peers
            .values()
            .map(|p| PeerSummary {
                addr: p.addr.to_string(),
                client: p.client.clone(),
                have: p.bitfield.count(),
                down_rate: p.down.per_sec,
                up_rate: p.up.per_sec,
                downloaded: p.down.total,
                uploaded: p.up.total,
                am_choking: p.am_choking,
                peer_choking: p.peer_choking,
            })
            .collect()
    }

    pub fn rates(&self) -> (f64, f64) {
        self.peers.values().fold((0.0, 0.0), |(d, u), p| {
            (d + p.down.per_sec, u + p.up.per_sec)
        })
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerSummary {
    pub addr: String,
    pub client: Option<String>,
    pub have: usize,
    pub down_rate: f64,
    pub up_rate: f64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub am_choking: bool,
    pub peer_choking: bool,
}
