//! How many connection threads the swarm runs: `--max-peers`, the spare
//! threads for incoming handshakes past it, and the budget of pending dials.
//! Plain functions of counts; `Swarm::dial` and `Swarm::accept` apply them
//! under the registry lock.

/// Connection threads allowed past `--max-peers`, for handshakes only: a
/// newcomer must complete its handshake before it may evict an idle peer
/// (see `swarm::eviction`), and it needs a thread to do so.
pub fn handshake_spare(max_peers: usize) -> usize {
    (max_peers / 4).max(4)
}

/// Of the spare handshake threads, how many one source address may hold:
/// half, so raw connections from one address that never handshake cannot
/// keep every other newcomer from reaching eviction.
pub fn spare_per_ip(max_peers: usize) -> usize {
    (handshake_spare(max_peers) / 2).max(1)
}

/// Outgoing connections that may be dialing or handshaking at once. Fewer
/// than `--max-peers`, so dials to addresses that hang (a connect timeout
/// plus a handshake timeout each) never hold every thread below the limit;
/// incoming handshakes do not count them either (see
/// [`room_for_incoming`]).
pub fn dial_budget(max_peers: usize) -> usize {
    max_peers.saturating_sub((max_peers / 4).max(1)).max(1)
}

/// Whether `Swarm::dial` may start another dial: below `--max-peers` in
/// all and below [`dial_budget`] pending.
pub fn room_for_dial(threads: usize, dialing: usize, max_peers: usize) -> bool {
    threads < max_peers && dialing < dial_budget(max_peers)
}

/// Connection threads now, as the accept decision sees them.
#[derive(Debug, Clone, Copy)]
pub struct ThreadCount {
    /// All connection threads, handshaking or not, both directions.
    pub threads: usize,
    /// Incoming ones still in their handshake (pending dials have their
    /// own budget, [`dial_budget`], and do not count).
    pub handshaking: usize,
    /// Of those, the ones from the newcomer's source
    /// (`runtime::listener::source_key`).
    pub handshaking_from_ip: usize,
}

/// Whether an accepted connection gets a thread: below `--max-peers`
/// always; past it only a spare handshake thread, and only
/// [`spare_per_ip`] of those per address.
pub fn room_for_incoming(n: ThreadCount, max_peers: usize) -> bool {
    let spare = handshake_spare(max_peers);
    n.threads < max_peers
        || (n.handshaking < spare
            && n.threads < max_peers + spare
            && n.handshaking_from_ip < spare_per_ip(max_peers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(threads: usize, handshaking: usize, from_ip: usize) -> ThreadCount {
        ThreadCount {
            threads,
            handshaking,
            handshaking_from_ip: from_ip,
        }
    }

    #[test]
    fn below_max_peers_every_connection_gets_a_thread() {
        assert!(room_for_incoming(count(49, 49, 49), 50));
    }

    #[test]
    fn past_max_peers_only_spare_handshake_threads_and_half_per_address() {
        let (max, spare) = (50, handshake_spare(50));
        assert_eq!((spare, spare_per_ip(50)), (12, 6));
        assert!(room_for_incoming(count(max, 0, 0), max));
        assert!(room_for_incoming(count(max + 5, 5, 5), max));
        assert!(
            !room_for_incoming(count(max + 6, 6, 6), max),
            "one address holds half the spare threads"
        );
        assert!(room_for_incoming(count(max + 6, 6, 0), max), "another may");
        assert!(!room_for_incoming(count(max + spare, spare, 0), max));
        // Threads past the spare ones (handshaken, not yet dropped) also stop it.
        assert!(!room_for_incoming(count(max + spare, 0, 0), max));
    }

    #[test]
    fn tiny_limits_still_leave_a_spare_thread_per_address() {
        assert_eq!(spare_per_ip(1), 2);
        assert!(room_for_incoming(count(1, 0, 0), 1));
        assert!(room_for_incoming(count(2, 1, 1), 1));
        assert!(!room_for_incoming(count(3, 2, 2), 1));
    }

    #[test]
    fn pending_dials_leave_threads_below_the_limit_for_incoming() {
        for max in [1, 2, 4, 8, 50] {
            let budget = dial_budget(max);
            assert!(budget >= 1 && (max == 1 || budget < max), "{max}: {budget}");
            assert!(room_for_dial(budget - 1, budget - 1, max));
            assert!(!room_for_dial(budget, budget, max), "{max}");
            // Dials hanging in their handshake do not count against the
            // spare handshake threads.
            assert!(room_for_incoming(count(budget, 0, 0), max), "{max}");
        }
        assert!(!room_for_dial(4, 0, 4), "never past --max-peers");
    }
}
