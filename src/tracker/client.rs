//! Tracker client: announce and scrape over HTTP (minreq, blocking, with a
//! timeout and a bounded reply size).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::core::{InfoHash, PeerId};
use crate::wire::tracker::{self as codec, AnnounceReply, TrackerWireError};

pub use crate::wire::tracker::Event;

/// Largest reply read from a tracker.
const MAX_REPLY: usize = 1 << 20;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScrapeStats {
    pub complete: u64,
    pub incomplete: u64,
    pub downloaded: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The tracker answered with a `failure reason`.
    #[error("tracker refused: {0}")]
    Failure(String),
    #[error("only http:// trackers are supported, not {0}")]
    UnsupportedScheme(String),
    #[error("tracker has no scrape URL (its path does not end in `announce`)")]
    NoScrape,
    #[error("HTTP {0}")]
    Status(i32),
    #[error("request failed: {0}")]
    Transport(String),
    #[error("bad reply: {0}")]
    BadReply(String),
}

impl From<TrackerWireError> for TrackerError {
    fn from(e: TrackerWireError) -> Self {
        match e {
            TrackerWireError::Failure(f) => TrackerError::Failure(f),
            other => TrackerError::BadReply(other.to_string()),
        }
    }
}

fn get(url: &str, timeout: Duration) -> Result<Vec<u8>, TrackerError> {
    if !url.starts_with("http://") {
        let scheme = url.split(':').next().unwrap_or(url).to_string();
        return Err(TrackerError::UnsupportedScheme(scheme));
    }
    let resp = minreq::get(url)
        .with_timeout(timeout.as_secs().max(1))
        .with_max_headers_size(16 * 1024)
        .with_max_status_line_length(1024)
        .send_lazy()
        .map_err(|e| TrackerError::Transport(e.to_string()))?;
    if resp.status_code != 200 {
        return Err(TrackerError::Status(resp.status_code));
    }
    let mut body = Vec::new();
    for byte in resp {
        let (b, _) = byte.map_err(|e| TrackerError::Transport(e.to_string()))?;
        if body.len() >= MAX_REPLY {
            return Err(TrackerError::BadReply("reply over 1 MiB".into()));
        }
        body.push(b);
    }
    Ok(body)
}

fn join(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

pub fn announce(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    let wire = codec::AnnounceRequest {
        info_hash: req.info_hash,
        peer_id: req.peer_id,
        port: req.port,
        uploaded: req.uploaded,
        downloaded: req.downloaded,
        left: req.left,
        event: req.event,
        numwant: req.numwant,
        compact: true,
        no_peer_id: true,
    };
    let body = get(&join(url, &wire.to_query()), timeout)?;
    let reply = AnnounceReply::decode(&body)?;
    Ok(AnnounceResponse {
        interval: Duration::from_secs(reply.interval as u64),
        min_interval: reply.min_interval.map(|s| Duration::from_secs(s as u64)),
        peers: reply.peers.into_iter().map(|p| p.addr).collect(),
        complete: reply.complete,
        incomplete: reply.incomplete,
        warning: reply.warning,
    })
}

pub fn scrape(
    announce_url: &str,
    hashes: &[InfoHash],
    timeout: Duration,
) -> Result<HashMap<InfoHash, ScrapeStats>, TrackerError> {
    let url = codec::scrape_url(announce_url).ok_or(TrackerError::NoScrape)?;
    let body = get(&join(&url, &codec::scrape_query(hashes)), timeout)?;
    Ok(codec::decode_scrape(&body)?
        .into_iter()
        .map(|(h, e)| {
            (
                h,
                ScrapeStats {
                    complete: e.complete,
                    incomplete: e.incomplete,
                    downloaded: e.downloaded,
                },
            )
        })
        .collect())
}
