//! Peer addresses we know of (from trackers, the overlay, peer exchange,
//! `--peer`) and when each may be dialed next: exponential backoff after
//! each attempt, reset while connected; banned addresses are never dialed
//! again.
//!
//! The table is bounded and always has room for a new address: when it is
//! full, the least promising entries (most failed attempts, then longest
//! unheard of) are evicted, never one that has worked. A source handing out
//! thousands of dead addresses therefore cannot make the node deaf to real
//! peers learned later. Dials go first to the addresses with the fewest
//! failures, newest first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const BASE_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF_SHIFT: u32 = 4;
/// Bound on remembered addresses (a hostile source cannot grow us forever).
pub const MAX_CANDIDATES: usize = 2000;
/// Bound on banned addresses; past it the oldest ban is forgotten.
pub const MAX_BANNED: usize = 1000;
/// Share of the table freed at once when it is full, so a flood of new
/// addresses costs one sort per batch, not one scan per address.
const EVICT_BATCH: usize = MAX_CANDIDATES / 10;

#[derive(Debug)]
struct Candidate {
    next_attempt: Instant,
    /// Dials since this address was last seen connected.
    attempts: u32,
    /// A source last told us about it (or we added it).
    last_heard: Instant,
    /// We have been connected to it at least once.
    worked: bool,
}

#[derive(Default)]
pub struct Candidates {
    known: HashMap<SocketAddr, Candidate>,
    banned: HashMap<SocketAddr, Instant>,
}

impl Candidates {
    pub fn add(&mut self, addrs: impl IntoIterator<Item = SocketAddr>, now: Instant) {
        for a in addrs {
            if a.port() == 0 || a.ip().is_unspecified() || self.banned.contains_key(&a) {
                continue;
            }
            if let Some(c) = self.known.get_mut(&a) {
                c.last_heard = now;
                continue;
            }
            if self.known.len() >= MAX_CANDIDATES {
                self.evict(EVICT_BATCH);
            }
            self.known.insert(
                a,
                Candidate {
                    next_attempt: now,
                    attempts: 0,
                    last_heard: now,
                    worked: false,
                },
            );
        }
    }

    /// Drops the `n` least promising entries: most failed attempts first,
    /// then the longest unheard of; addresses that have worked are kept.
    fn evict(&mut self, n: usize) {
        let mut ranked: Vec<(u32, Instant, SocketAddr)> = self
            .known
            .iter()
            .filter(|(_, c)| !c.worked)
            .map(|(a, c)| (c.attempts, c.last_heard, *a))
            .collect();
        // Most attempts first; among equals, oldest news first.
        ranked.sort_unstable_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(&y.1)));
        for (_, _, a) in ranked.into_iter().take(n.max(1)) {
            self.known.remove(&a);
        }
        // Every entry has worked: still make room, oldest news first.
        if self.known.len() >= MAX_CANDIDATES {
            let oldest = self.known.iter().min_by_key(|(_, c)| c.last_heard);
            if let Some(a) = oldest.map(|(a, _)| *a) {
                self.known.remove(&a);
            }
        }
    }

    pub fn ban(&mut self, addr: SocketAddr) {
        self.known.remove(&addr);
        if self.banned.len() >= MAX_BANNED && !self.banned.contains_key(&addr) {
            let oldest = self
                .banned
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(a, _)| *a);
            if let Some(a) = oldest {
                self.banned.remove(&a);
            }
        }
        self.banned.insert(addr, Instant::now());
    }

    pub fn is_banned(&self, addr: &SocketAddr) -> bool {
        self.banned.contains_key(addr)
    }

    /// Addresses due for a dial, `connected` excluded; marks them attempted.
    /// Fewest failed attempts first, then the most recently heard of.
    pub fn due(
        &mut self,
        now: Instant,
        max: usize,
        connected: impl Fn(&SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let mut ready: Vec<(u32, Instant, SocketAddr)> = Vec::new();
        for (addr, c) in self.known.iter_mut() {
            if connected(addr) {
                c.attempts = 0;
                c.worked = true;
                c.next_attempt = now + BASE_BACKOFF;
                continue;
            }
            if c.next_attempt <= now {
                ready.push((c.attempts, c.last_heard, *addr));
            }
        }
        ready.sort_unstable_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)));
        ready.truncate(max);
        ready
            .into_iter()
            .map(|(_, _, addr)| {
                if let Some(c) = self.known.get_mut(&addr) {
                    c.next_attempt = now + BASE_BACKOFF * (1 << c.attempts.min(MAX_BACKOFF_SHIFT));
                    c.attempts += 1;
                }
                addr
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.known.len()
    }

    pub fn is_empty(&self) -> bool {
        self.known.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    #[test]
    fn backoff_grows_and_bans_stick() {
        let mut c = Candidates::default();
        let t = Instant::now();
        c.add([addr(1), addr(2), addr(0)], t);
        assert_eq!(c.len(), 2, "port 0 is not an address");
        c.ban(addr(2));
        c.add([addr(2)], t);
        assert!(c.is_banned(&addr(2)));
        assert_eq!(c.due(t, 10, |_| false), vec![addr(1)]);
        assert!(c.due(t + Duration::from_secs(4), 10, |_| false).is_empty());
        assert_eq!(c.due(t + Duration::from_secs(5), 10, |_| false).len(), 1);
        // Second retry waits 10 s.
        assert!(c.due(t + Duration::from_secs(14), 10, |_| false).is_empty());
        assert_eq!(c.due(t + Duration::from_secs(15), 10, |_| false).len(), 1);
        assert!(c
            .due(t + Duration::from_secs(1000), 10, |a| *a == addr(1))
            .is_empty());
    }

    fn dead(i: u32) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 6881))
    }

    /// The poisoning of issue 10: a source fills the table with dead
    /// addresses; a real peer learned afterwards must still be dialed.
    #[test]
    fn a_full_table_of_dead_addresses_still_takes_and_dials_a_real_peer() {
        let mut c = Candidates::default();
        let t = Instant::now();
        c.add((0..MAX_CANDIDATES as u32).map(dead), t);
        assert_eq!(c.len(), MAX_CANDIDATES);
        // Every dead one is tried (and fails) a few times.
        let mut at = t;
        for _ in 0..3 {
            assert_eq!(c.due(at, MAX_CANDIDATES, |_| false).len(), MAX_CANDIDATES);
            at += Duration::from_secs(100);
        }
        let real = addr(6881);
        c.add([real], at);
        assert!(c.len() <= MAX_CANDIDATES);
        assert_eq!(c.due(at, 5, |_| false)[0], real, "fewest failures first");
    }

    #[test]
    fn a_flood_of_fresh_addresses_never_evicts_a_peer_that_worked() {
        let mut c = Candidates::default();
        let t = Instant::now();
        let good = addr(1);
        c.add([good], t);
        c.due(t, 10, |a| *a == good);
        for round in 0..5u32 {
            let base = round * MAX_CANDIDATES as u32;
            c.add((base..base + MAX_CANDIDATES as u32).map(dead), t);
            assert!(c.len() <= MAX_CANDIDATES);
        }
        // Disconnected now: it is due again after its backoff, not forgotten.
        let later = t + Duration::from_secs(6);
        assert!(c.due(later, MAX_CANDIDATES, |_| false).contains(&good));
    }

    #[test]
    fn eviction_takes_the_most_failed_first() {
        let mut c = Candidates::default();
        let t = Instant::now();
        c.add((0..MAX_CANDIDATES as u32 - 1).map(dead), t);
        c.due(t, MAX_CANDIDATES, |_| false);
        let (fresh, newest) = (addr(2), addr(3));
        let later = t + Duration::from_secs(1);
        c.add([fresh], later);
        assert_eq!(c.len(), MAX_CANDIDATES);
        c.add([newest], later);
        assert!(c.known.contains_key(&fresh), "never tried: kept");
        assert!(c.known.contains_key(&newest));
        assert_eq!(c.len(), MAX_CANDIDATES - EVICT_BATCH + 1);
    }

    #[test]
    fn bans_are_bounded() {
        let mut c = Candidates::default();
        for i in 0..(MAX_BANNED as u32 * 2) {
            c.ban(dead(i));
        }
        assert_eq!(c.banned.len(), MAX_BANNED);
    }
}
