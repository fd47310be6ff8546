//! Tracker client: announce and scrape over HTTP (minreq, blocking, with a
//! timeout and a bounded reply size), or over UDP (BEP 15, in `udp`) for
//! `udp://` URLs. Owns the node-facing request and response types and the
//! mapping from HTTP outcomes to [`TrackerError`]; the bytes themselves are
//! `wire::tracker`'s business.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use crate::core::{InfoHash, PeerId};
use crate::wire::tracker::{self as codec, AnnounceReply, TrackerWireError};

pub use crate::wire::tracker::Event;

/// Largest reply read from a tracker.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

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
    /// The tracker's `interval`, unclamped; zero when it gave none usable
    /// (missing or negative). `tracker::schedule` decides what to wait.
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    /// IPv4 and IPv6 peers, without duplicates.
    pub peers: Vec<SocketAddr>,
    /// Seeders, when the tracker says.
    pub complete: Option<u64>,
    /// Leechers, when the tracker says.
    pub incomplete: Option<u64>,
    pub warning: Option<String>,
}

/// A torrent's counts from a scrape: the codec's own type, under the name
/// callers of the client know it by.
pub use codec::ScrapeEntry as ScrapeStats;

/// Why an announce or scrape failed. Every variant means "no peers from this
/// tracker this time"; they differ in whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The tracker answered and refused with a `failure reason` (unknown
    /// torrent, banned client, full): retrying soon will not help.
    #[error("tracker refused: {0}")]
    Failure(String),
    /// Neither `http://` nor `udp://` (`https://`, `wss://`...): skip this
    /// tracker for good.
    #[error("only http:// and udp:// trackers are supported, not {0}")]
    UnsupportedScheme(String),
    /// Scrape asked of a tracker whose URL does not follow the BEP 48
    /// convention (last path segment starting with `announce`).
    #[error("tracker has no scrape URL (its path does not end in `announce`)")]
    NoScrape,
    /// Redirected in a loop or more than three times: leave it alone a while.
    #[error("redirected in a loop or too often")]
    Redirects,
    /// An HTTP status other than 200 without a `failure reason` body.
    #[error("HTTP {0}")]
    Status(i32),
    /// Name resolution, connection, timeout or a broken HTTP exchange:
    /// worth retrying later.
    #[error("request failed: {0}")]
    Transport(String),
    /// A 200 reply that is not a valid tracker reply, or too large.
    #[error("bad reply: {0}")]
    BadReply(String),
}

impl TrackerError {
    /// How the announcer should treat this failure.
    pub fn kind(&self) -> crate::tracker::schedule::FailureKind {
        use crate::tracker::schedule::FailureKind;
        match self {
            TrackerError::UnsupportedScheme(_) | TrackerError::NoScrape => FailureKind::Never,
            TrackerError::Redirects => FailureKind::RedirectLoop,
            _ => FailureKind::Retry,
        }
    }
}

impl From<TrackerWireError> for TrackerError {
    fn from(e: TrackerWireError) -> Self {
        match e {
            TrackerWireError::Failure(f) => TrackerError::Failure(f),
            other => TrackerError::BadReply(other.to_string()),
        }
    }
}

/// One random `key` per process (BEP 7): the tracker can tie our announces
/// together if our address changes, and it reveals nothing else.
fn process_key() -> &'static str {
    static KEY: OnceLock<String> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut b = [0u8; 4];
        getrandom::getrandom(&mut b).expect("the OS random source is available");
        crate::core::ids::to_hex(&b)
    })
}

/// minreq takes whole seconds: round up, so a 1.5 s budget is not cut to 1 s.
fn whole_seconds(timeout: Duration) -> u64 {
    (timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)).max(1)
}

/// GETs `url`; the body of any status, or why there is none.
fn get(url: &str, timeout: Duration) -> Result<(i32, Vec<u8>), TrackerError> {
    let scheme_len = url.find("://").unwrap_or(url.len());
    if !url[..scheme_len].eq_ignore_ascii_case("http") {
        return Err(TrackerError::UnsupportedScheme(
            url[..scheme_len].to_string(),
        ));
    }
    let resp = minreq::get(url)
        .with_timeout(whole_seconds(timeout))
        .with_max_redirects(3)
        .with_max_headers_size(16 * 1024)
        .with_max_status_line_length(1024)
        .send_lazy()
        .map_err(|e| match e {
            minreq::Error::TooManyRedirections | minreq::Error::InfiniteRedirectionLoop => {
                TrackerError::Redirects
            }
            e => TrackerError::Transport(e.to_string()),
        })?;
    let status = resp.status_code;
    let declared = resp
        .headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REPLY_BYTES as u64) {
        return Err(TrackerError::BadReply("reply over 1 MiB".into()));
    }
    let mut body = Vec::new();
    Read::take(resp, MAX_REPLY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| TrackerError::Transport(e.to_string()))?;
    if body.len() > MAX_REPLY_BYTES {
        return Err(TrackerError::BadReply("reply over 1 MiB".into()));
    }
    Ok((status, body))
}

/// Decodes a body with `decode`; a non-200 status still yields the
/// tracker's `failure reason` when the body carries one (some trackers
/// refuse with 400), otherwise the status.
fn interpret<T>(
    (status, body): (i32, Vec<u8>),
    decode: impl Fn(&[u8]) -> Result<T, TrackerWireError>,
) -> Result<T, TrackerError> {
    match (status, decode(&body)) {
        (_, Err(TrackerWireError::Failure(reason))) => Err(TrackerError::Failure(reason)),
        (200, decoded) => decoded.map_err(TrackerError::from),
        (status, _) => Err(TrackerError::Status(status)),
    }
}

/// The peers of a reply worth dialing, whichever transport brought them:
/// no unspecified address or port 0, each once, in the tracker's order.
pub(super) fn usable_peers(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = HashSet::new();
    addrs
        .into_iter()
        .filter(|a| !a.ip().is_unspecified() && a.port() != 0 && seen.insert(*a))
        .collect()
}

fn is_udp(url: &str) -> bool {
    url.get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("udp://"))
}

pub fn announce(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    if is_udp(url) {
        return super::udp::announce(url, req, timeout);
    }
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
        key: Some(process_key().to_string()),
    };
    let reply = interpret(
        get(&codec::with_query(url, &wire.to_query()), timeout)?,
        AnnounceReply::decode,
    )?;
    let peers = usable_peers(reply.peers.into_iter().map(|p| p.addr));
    Ok(AnnounceResponse {
        interval: Duration::from_secs(reply.interval.into()),
        min_interval: reply.min_interval.map(|s| Duration::from_secs(s.into())),
        peers,
        complete: reply.complete,
        incomplete: reply.incomplete,
        warning: reply.warning,
    })
}

/// Scrapes `hashes` (every torrent the tracker lists when empty) at the
/// scrape URL derived from `announce_url`.
pub fn scrape(
    announce_url: &str,
    hashes: &[InfoHash],
    timeout: Duration,
) -> Result<HashMap<InfoHash, ScrapeStats>, TrackerError> {
    if is_udp(announce_url) {
        return super::udp::scrape(announce_url, hashes, timeout);
    }
    let url = codec::scrape_url(announce_url).ok_or(TrackerError::NoScrape)?;
    let files = interpret(
        get(
            &codec::with_query(&url, &codec::scrape_query(hashes)),
            timeout,
        )?,
        codec::decode_scrape,
    )?;
    Ok(files.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(800)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(5)), 5);
    }

    #[test]
    fn status_and_failure_reason_are_told_apart() {
        let failure = codec::encode_failure("go away");
        let decode = AnnounceReply::decode;
        assert!(matches!(
            interpret((400, failure.clone()), decode),
            Err(TrackerError::Failure(r)) if r == "go away"
        ));
        assert!(matches!(
            interpret((200, failure), decode),
            Err(TrackerError::Failure(_))
        ));
        assert!(matches!(
            interpret((502, b"<html>".to_vec()), decode),
            Err(TrackerError::Status(502))
        ));
        assert!(matches!(
            interpret((200, b"<html>".to_vec()), decode),
            Err(TrackerError::BadReply(_))
        ));
    }

    #[test]
    fn other_schemes_are_refused_before_any_io() {
        let req = AnnounceRequest {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([2; 20]),
            port: 1,
            uploaded: 0,
            downloaded: 0,
            left: 0,
            event: None,
            numwant: None,
        };
        for url in ["https://t/announce", "t/announce"] {
            assert!(matches!(
                announce(url, &req, Duration::from_secs(1)),
                Err(TrackerError::UnsupportedScheme(_))
            ));
        }
    }
}
