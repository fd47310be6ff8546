//! What a running node shows: a JSON status file (for scripts and tests)
//! and a progress line on a terminal, or periodic log lines otherwise.

use std::io::{IsTerminal, Write};
use std::path::Path;

use serde::Serialize;

use crate::swarm::torrent::{PeerSummary, Stats};

#[derive(Serialize, Clone, Debug)]
pub struct Status {
    pub info_hash: String,
    pub name: String,
    pub state: &'static str,
    pub peer_port: u16,
    pub overlay_port: Option<u16>,
    pub pieces_total: usize,
    pub pieces_have: usize,
    pub complete: bool,
    pub left: u64,
    pub total_length: u64,
    #[serde(flatten)]
    pub stats: Stats,
    pub down_rate: f64,
    pub up_rate: f64,
    pub peers: Vec<PeerSummary>,
    pub known_peers: usize,
    /// One character per piece, '1' verified: for the API's piece map.
    #[serde(skip)]
    pub piece_map: String,
}

/// Writes `status` to `path` atomically (write a sibling, then rename).
pub fn write_status(path: &Path, status: &Status) {
    let tmp = path.with_extension("tmp");
    let result = serde_json::to_vec_pretty(status)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&tmp, bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = result {
        log::warn!("cannot write status file {}: {e}", path.display());
    }
}

pub struct Progress {
    terminal: bool,
    enabled: bool,
    ticks: u64,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        Progress {
            terminal: std::io::stderr().is_terminal(),
            enabled,
            ticks: 0,
        }
    }

    /// Called once a second.
    pub fn show(&mut self, s: &Status) {
        self.ticks += 1;
        let pct = if s.total_length == 0 {
            100.0
        } else {
            100.0 * (s.total_length - s.left) as f64 / s.total_length as f64
        };
        let eta = if s.left == 0 {
            "done".to_string()
        } else if s.down_rate > 1.0 {
            let secs = (s.left as f64 / s.down_rate) as u64;
            format!("{}:{:02}", secs / 60, secs % 60)
        } else {
            "-".to_string()
        };
        let line = format!(
            "{:5.1}% {:>10}/s down {:>10}/s up {} peers ETA {}",
            pct,
            human(s.down_rate as u64),
            human(s.up_rate as u64),
            s.peers.len(),
            eta
        );
        if self.enabled && self.terminal {
            let filled = (pct / 5.0) as usize;
            let bar = format!(
                "[{}{}]",
                "#".repeat(filled),
                ".".repeat(20 - filled.min(20))
            );
            let mut err = std::io::stderr();
            let _ = write!(err, "\r{bar} {line}\x1b[K");
            let _ = err.flush();
        } else if self.ticks % 5 == 1 {
            log::info!("{} {}", s.name, line);
        }
    }

    /// Ends the progress line so later output starts on a new line.
    pub fn finish(&self) {
        if self.enabled && self.terminal {
            eprintln!();
        }
    }
}

pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
