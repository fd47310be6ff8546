//! What both client transports take and give: the announce (the `wire`
//! type every transport and both sides share), the node-facing response
//! and scrape counts, and [`TrackerError`]. `client` (HTTP, and the
//! dispatch by scheme) and `udp` (BEP 15) both import this and nothing of
//! each other's.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use crate::tracker::schedule::FailureKind;
use crate::wire::tracker::{AnnounceReply, TrackerWireError};
use crate::wire::udp_tracker::UdpTrackerError;

pub use crate::wire::tracker::{AnnounceRequest, Event};

/// A torrent's counts from a scrape: the codec's own type, under the name
/// callers of the client know it by.
pub use crate::wire::tracker::ScrapeEntry as ScrapeStats;

/// A reply as the node uses it, whichever transport brought it.
#[derive(Clone, Debug)]
pub struct AnnounceResponse {
    /// The tracker's `interval`, unclamped; zero when it gave none usable
    /// (missing or negative). `tracker::schedule` decides what to wait.
    pub interval: Duration,
    pub min_interval: Option<Duration>,
    /// IPv4 and IPv6 peers worth dialing, without duplicates.
    pub peers: Vec<SocketAddr>,
    /// Seeders, when the tracker says.
    pub complete: Option<u64>,
    /// Leechers, when the tracker says.
    pub incomplete: Option<u64>,
    pub warning: Option<String>,
}

impl From<AnnounceReply> for AnnounceResponse {
    fn from(reply: AnnounceReply) -> Self {
        AnnounceResponse {
            interval: Duration::from_secs(reply.interval.into()),
            min_interval: reply.min_interval.map(|s| Duration::from_secs(s.into())),
            peers: usable_peers(reply.peers.into_iter().map(|p| p.addr)),
            complete: reply.complete,
            incomplete: reply.incomplete,
            warning: reply.warning,
        }
    }
}

/// Why an announce or scrape failed. Every variant means "no peers from this
/// tracker this time"; they differ in whether retrying can help.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// The tracker answered and refused with a `failure reason` (unknown
    /// torrent, banned client, full): retrying soon will not help.
    #[error("tracker refused: {0}")]
    Failure(String),
    /// Neither `http://`, `https://` nor `udp://` (`wss://`...): skip this
    /// tracker for good.
    #[error("only http://, https:// and udp:// trackers are supported, not {0}")]
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
    pub fn kind(&self) -> FailureKind {
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

impl From<UdpTrackerError> for TrackerError {
    fn from(e: UdpTrackerError) -> Self {
        match e {
            UdpTrackerError::Failure(f) => TrackerError::Failure(f),
            other => TrackerError::BadReply(other.to_string()),
        }
    }
}

/// The peers of a reply worth dialing: no unspecified address or port 0,
/// each once, in the tracker's order.
fn usable_peers(addrs: impl IntoIterator<Item = SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = HashSet::new();
    addrs
        .into_iter()
        .filter(|a| !a.ip().is_unspecified() && a.port() != 0 && seen.insert(*a))
        .collect()
}

/// Four bytes from the OS random source: the process key, and UDP
/// transaction ids (unguessable, so an off-path forger cannot match them).
pub(super) fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::getrandom(&mut b).expect("the OS random source is available");
    u32::from_be_bytes(b)
}

/// One random `key` per process (BEP 7, BEP 15), the same over both
/// transports: the tracker can tie our announces together if our address
/// changes, and it reveals nothing else.
pub(super) fn process_key() -> u32 {
    static KEY: OnceLock<u32> = OnceLock::new();
    *KEY.get_or_init(random_u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tracker::PeerEntry;

    #[test]
    fn a_reply_keeps_each_dialable_peer_once_in_order() {
        let entry = |a: &str| PeerEntry {
            addr: a.parse().unwrap(),
            peer_id: None,
        };
        let reply = AnnounceReply {
            interval: 30,
            min_interval: Some(10),
            complete: Some(1),
            incomplete: None,
            warning: Some("w".into()),
            peers: [
                "10.0.0.2:1",
                "0.0.0.0:5",
                "10.0.0.1:0",
                "10.0.0.2:1",
                "[::1]:2",
            ]
            .map(entry)
            .to_vec(),
        };
        let r = AnnounceResponse::from(reply);
        assert_eq!(
            r.peers,
            ["10.0.0.2:1", "[::1]:2"]
                .map(|a| a.parse().unwrap())
                .to_vec()
        );
        assert_eq!(
            (r.interval, r.min_interval),
            (Duration::from_secs(30), Some(Duration::from_secs(10)))
        );
        assert_eq!((r.complete, r.incomplete), (Some(1), None));
        assert_eq!(r.warning.as_deref(), Some("w"));
    }

    #[test]
    fn failures_map_to_what_the_announcer_does() {
        assert_eq!(
            TrackerError::UnsupportedScheme("wss".into()).kind(),
            FailureKind::Never
        );
        assert_eq!(TrackerError::Redirects.kind(), FailureKind::RedirectLoop);
        assert!(matches!(
            TrackerError::from(UdpTrackerError::Failure("no".into())),
            TrackerError::Failure(m) if m == "no"
        ));
        assert!(matches!(
            TrackerError::from(UdpTrackerError::Malformed("announce")),
            TrackerError::BadReply(_)
        ));
    }
}
