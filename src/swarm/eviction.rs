//! Which connected peer to let go when every `--max-peers` slot is taken
//! and a newcomer has completed its handshake. Plain policy, no I/O:
//! `TorrentState` describes its peers, the connection layer closes the one
//! chosen (or refuses the newcomer when none is).
//!
//! The least useful peer goes: never one still in its grace period after
//! connecting ([`GRACE`], so newcomers cannot evict each other in a
//! churn), never one that exchanged payload with us within
//! [`USEFUL_WINDOW`]; among the rest, first those with no interest either
//! way, then the one idle longest.
//!
//! Must not: touch connections or the swarm state.

use std::time::{Duration, Instant};

use super::picker::PeerKey;

/// A freshly connected peer cannot be evicted for this long.
pub const GRACE: Duration = Duration::from_secs(10);
/// A peer that sent or received payload this recently is kept.
pub const USEFUL_WINDOW: Duration = Duration::from_secs(60);

/// What eviction needs to know about one connected peer.
#[derive(Debug, Clone, Copy)]
pub struct PeerActivity {
    pub key: PeerKey,
    pub connected_at: Instant,
    /// Last time a payload block went either way.
    pub last_data: Option<Instant>,
    /// Either side is interested in the other.
    pub interested: bool,
}

/// The peer to evict for a newcomer, or `None` if every peer is worth
/// keeping (the newcomer is then refused).
pub fn choose_victim(peers: &[PeerActivity], now: Instant) -> Option<PeerKey> {
    peers
        .iter()
        .filter(|p| now.saturating_duration_since(p.connected_at) >= GRACE)
        .filter(|p| {
            p.last_data
                .is_none_or(|t| now.saturating_duration_since(t) >= USEFUL_WINDOW)
        })
        .min_by_key(|p| {
            let last_active = p.last_data.unwrap_or(p.connected_at).max(p.connected_at);
            (p.interested, last_active, p.key)
        })
        .map(|p| p.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(key: PeerKey, age_s: u64, data_ago_s: Option<u64>, interested: bool) -> PeerActivity {
        let now = now();
        PeerActivity {
            key,
            connected_at: now - Duration::from_secs(age_s),
            last_data: data_ago_s.map(|s| now - Duration::from_secs(s)),
            interested,
        }
    }

    /// One fixed "now" for a test (far enough from boot to subtract from).
    fn now() -> Instant {
        static NOW: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *NOW.get_or_init(|| Instant::now() + Duration::from_secs(3600))
    }

    #[test]
    fn peers_in_their_grace_period_are_never_evicted() {
        let peers = [peer(1, 0, None, false), peer(2, 9, None, false)];
        assert_eq!(choose_victim(&peers, now()), None);
        let peers = [peer(1, 0, None, false), peer(2, 10, None, false)];
        assert_eq!(choose_victim(&peers, now()), Some(2));
    }

    #[test]
    fn peers_exchanging_data_are_kept() {
        let peers = [peer(1, 600, Some(5), false), peer(2, 600, Some(59), true)];
        assert_eq!(choose_victim(&peers, now()), None);
        let peers = [peer(1, 600, Some(5), false), peer(2, 600, Some(61), true)];
        assert_eq!(choose_victim(&peers, now()), Some(2));
    }

    #[test]
    fn the_uninterested_go_before_the_interested_then_the_longest_idle() {
        let peers = [
            peer(1, 600, None, true),
            peer(2, 30, None, false),
            peer(3, 300, None, false),
            peer(4, 900, Some(100), false),
        ];
        // 4 last moved data 100 s ago, 3 has been idle since it came 300 s
        // ago: 3 is idle longest among the uninterested.
        assert_eq!(choose_victim(&peers, now()), Some(3));
        let peers = [peer(1, 600, None, true), peer(2, 30, None, true)];
        assert_eq!(choose_victim(&peers, now()), Some(1));
    }

    #[test]
    fn no_peers_no_victim() {
        assert_eq!(choose_victim(&[], now()), None);
    }
}
