//! Peer addresses we know of (from trackers, the overlay, `--peer`) and
//! when each may be dialed next: exponential backoff after each attempt,
//! reset while connected; banned addresses are never dialed again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const BASE_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF_SHIFT: u32 = 4;
/// Bound on remembered addresses (a hostile source cannot grow us forever).
pub const MAX_CANDIDATES: usize = 2000;

#[derive(Debug)]
struct Candidate {
    next_attempt: Instant,
    attempts: u32,
    banned: bool,
}

#[derive(Default)]
pub struct Candidates {
    known: HashMap<SocketAddr, Candidate>,
}

impl Candidates {
    pub fn add(&mut self, addrs: impl IntoIterator<Item = SocketAddr>, now: Instant) {
        for a in addrs {
            if a.port() == 0 || a.ip().is_unspecified() {
                continue;
            }
            if self.known.len() >= MAX_CANDIDATES && !self.known.contains_key(&a) {
                break;
            }
            self.known.entry(a).or_insert(Candidate {
                next_attempt: now,
                attempts: 0,
                banned: false,
            });
        }
    }

    pub fn ban(&mut self, addr: SocketAddr) {
        self.known
            .entry(addr)
            .or_insert(Candidate {
                next_attempt: Instant::now(),
                attempts: 0,
                banned: true,
            })
            .banned = true;
    }

    /// Addresses due for a dial, `connected` excluded; marks them attempted.
    pub fn due(
        &mut self,
        now: Instant,
        max: usize,
        connected: impl Fn(&SocketAddr) -> bool,
    ) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for (addr, c) in self.known.iter_mut() {
            if connected(addr) {
                c.attempts = 0;
                c.next_attempt = now + BASE_BACKOFF;
                continue;
            }
            if out.len() >= max || c.banned || c.next_attempt > now {
                continue;
            }
            c.next_attempt = now + BASE_BACKOFF * (1 << c.attempts.min(MAX_BACKOFF_SHIFT));
            c.attempts += 1;
            out.push(*addr);
        }
        out
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
}
