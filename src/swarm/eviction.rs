//! Which connected peer to let go when every `--max-peers` slot is taken
//! and a newcomer has completed its handshake. Plain policy, no I/O:
//! `TorrentState` describes its peers, the connection layer closes the one
//! chosen (or refuses the newcomer when none is).
//!
//! The least useful peer goes: never one still in its grace period after
//! connecting, so newcomers cannot evict each other in a churn, never one
//! that exchanged payload with us within [`USEFUL_WINDOW`]; among the
//! rest, first those with no interest either way (the silent ones before
//! those that announced pieces), then the one idle longest. The grace depends on what the peer has said: one that has
//! announced a piece, shown interest either way or moved data keeps
//! [`GRACE`]; one silent since its handshake gets only [`SILENT_GRACE`]
//! (a real peer speaks within a round trip, so a flood of idle handshakes
//! cannot hold every slot for long).
//!
//! Must not: touch connections or the swarm state.

use std::time::{Duration, Instant};

use super::picker::PeerKey;

/// A freshly connected peer that has said something useful cannot be
/// evicted for this long.
pub const GRACE: Duration = Duration::from_secs(10);
/// The grace of a peer that has said nothing useful since its handshake
/// (no piece announced, no interest either way, no data).
pub const SILENT_GRACE: Duration = Duration::from_secs(2);
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
    /// The peer has announced at least one piece (bitfield or have).
    pub announced: bool,
}

impl PeerActivity {
    /// Nothing useful since the handshake: no piece announced, no interest
    /// either way, no data.
    pub fn is_silent(&self) -> bool {
        !self.announced && !self.interested && self.last_data.is_none()
    }

    /// How long after connecting this peer is protected from eviction.
    pub fn grace(&self) -> Duration {
        if self.is_silent() {
            SILENT_GRACE
        } else {
            GRACE
        }
    }
}

/// The peer to evict for a newcomer, or `None` if every peer is worth
/// keeping (the newcomer is then refused).
pub fn choose_victim(peers: &[PeerActivity], now: Instant) -> Option<PeerKey> {
    peers
        .iter()
        .filter(|p| now.saturating_duration_since(p.connected_at) >= p.grace())
        .filter(|p| {
            p.last_data
                .is_none_or(|t| now.saturating_duration_since(t) >= USEFUL_WINDOW)
        })
        .min_by_key(|p| {
            let last_active = p.last_data.unwrap_or(p.connected_at).max(p.connected_at);
            (p.interested, !p.is_silent(), last_active, p.key)
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
            announced: true,
        }
    }

    fn silent(key: PeerKey, age: Duration) -> PeerActivity {
        PeerActivity {
            key,
            connected_at: now() - age,
            last_data: None,
            interested: false,
            announced: false,
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
    fn a_peer_silent_since_its_handshake_has_the_short_grace() {
        let just_under = SILENT_GRACE - Duration::from_millis(1);
        assert_eq!(choose_victim(&[silent(1, just_under)], now()), None);
        assert_eq!(choose_victim(&[silent(1, SILENT_GRACE)], now()), Some(1));
        // A silent peer goes before an older one that spoke but is idle.
        let peers = [peer(1, 600, None, false), silent(2, SILENT_GRACE)];
        assert_eq!(choose_victim(&peers, now()), Some(2));
    }

    #[test]
    fn saying_anything_useful_earns_the_long_grace() {
        let age = SILENT_GRACE + Duration::from_secs(1);
        assert!(age < GRACE);
        let announced = PeerActivity {
            announced: true,
            ..silent(1, age)
        };
        let interested = PeerActivity {
            interested: true,
            ..silent(2, age)
        };
        let moved_data = PeerActivity {
            last_data: Some(now() - USEFUL_WINDOW),
            ..silent(3, age)
        };
        for p in [announced, interested, moved_data] {
            assert!(!p.is_silent());
            assert_eq!(p.grace(), GRACE);
            assert_eq!(choose_victim(&[p], now()), None, "{p:?}");
        }
        assert!(silent(4, age).is_silent());
        assert_eq!(choose_victim(&[silent(4, age)], now()), Some(4));
    }

    #[test]
    fn no_peers_no_victim() {
        assert_eq!(choose_victim(&[], now()), None);
    }
}
