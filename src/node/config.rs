//! What a node needs, validated by the command line layer (`crate::cli`)
//! before the node starts, and the error a running node fails with.

use std::path::PathBuf;
use std::time::Duration;

use crate::dns::RegisterConfig;
use crate::overlay::OverlayConfig;

/// How a node finds peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryMode {
    Overlay,
    Tracker,
    Hybrid,
}

impl std::str::FromStr for DiscoveryMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "overlay" => Ok(DiscoveryMode::Overlay),
            "tracker" => Ok(DiscoveryMode::Tracker),
            "hybrid" => Ok(DiscoveryMode::Hybrid),
            other => Err(format!(
                "--discovery-mode must be overlay, tracker or hybrid, not {other:?}"
            )),
        }
    }
}

/// Everything a node needs, validated.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub torrent: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub bind: std::net::IpAddr,
    pub peer_port: u16,
    /// The user gave `--port` or BTNODE_PORT: a taken port is then an
    /// error; otherwise the node falls back to a free port.
    pub peer_port_chosen: bool,
    /// The node's overlay (every node runs one unless it uses trackers only).
    pub overlay: OverlayConfig,
    /// `--dns-register`: where this node registers its overlay address.
    pub dns_registration: Option<RegisterConfig>,
    pub exit_on_complete: bool,
    /// `None` means: hybrid when the torrent names a tracker, overlay otherwise.
    pub discovery_mode: Option<DiscoveryMode>,
    pub direct_peers: Vec<String>,
    pub max_peers: usize,
    pub upload_slots: usize,
    /// Super-seed once complete (`swarm::superseed`).
    pub super_seed: bool,
    pub announce_interval: Option<Duration>,
    pub status_file: Option<PathBuf>,
    pub upload_rate_limit: Option<u64>,
    pub download_rate_limit: Option<u64>,
    pub progress: bool,
    /// Fast-resume data (the daemon's): trusted at start after a clean
    /// stop with unchanged files, kept while running, rewritten at stop.
    pub resume_file: Option<PathBuf>,
}

/// A node that started and failed (exit code 1): what failed, with its
/// cause, for the log and stderr. Nothing branches on it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NodeError(pub String);
