//! Tracker client (announce and scrape over HTTP with minreq).
//! Placeholder with the final interface; replaced by the tracker branch.

use std::net::SocketAddr;
use std::time::Duration;

use crate::core::{InfoHash, PeerId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Started,
    Completed,
    Stopped,
}

#[derive(Clone, Debug)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Option<Event>,
    pub numwant: Option<u32>,
}

#[derive(Clone, Debug)]
pub struct AnnounceResponse {
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    pub peers: Vec<SocketAddr>,
    pub complete: Option<u64>,
    pub incomplete: Option<u64>,
    pub warning: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    #[error("tracker said: {0}")]
    Failure(String),
    #[error("not built yet")]
    Unsupported,
}

pub fn announce(
    _url: &str,
    _req: &AnnounceRequest,
    _timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    Err(TrackerError::Unsupported)
}
