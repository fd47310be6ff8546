//! Who we upload to: the choker (BEP 3's tit-for-tat).
//!
//! Every rechoke (10 s), the interested peers with the best rates get the
//! regular slots: the rate is what they gave us while we download, and what
//! we sent them once we seed (so fast peers finish and reseed). One more
//! slot, the optimistic unchoke, goes to a random other interested peer and
//! rotates every 30 s, so newcomers get a chance to prove themselves.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::picker::PeerKey;

pub const RECHOKE_INTERVAL: Duration = Duration::from_secs(10);
pub const OPTIMISTIC_INTERVAL: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub key: PeerKey,
    pub interested: bool,
    /// Bytes/s that counts for this peer (see module doc).
    pub rate: f64,
}

pub struct Choker {
    slots: usize,
    optimistic: Option<PeerKey>,
    optimistic_since: Option<Instant>,
    /// Picks the optimistic unchoke; seeded, so tests are deterministic.
    rng: fastrand::Rng,
}

impl Choker {
    pub fn new(slots: usize, seed: u64) -> Choker {
        Choker {
            slots,
            optimistic: None,
            optimistic_since: None,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub fn slots(&self) -> usize {
        self.slots
    }

    /// The set of peers to have unchoked from now on.
    pub fn rechoke(&mut self, candidates: &[Candidate], now: Instant) -> HashSet<PeerKey> {
        let mut interested: Vec<&Candidate> = candidates.iter().filter(|c| c.interested).collect();
        interested.sort_by(|a, b| b.rate.total_cmp(&a.rate).then(a.key.cmp(&b.key)));
        let mut unchoked: HashSet<PeerKey> =
            interested.iter().take(self.slots).map(|c| c.key).collect();

        let others: Vec<PeerKey> = interested
            .iter()
            .map(|c| c.key)
            .filter(|k| !unchoked.contains(k))
            .collect();
        let keep = self.optimistic.filter(|k| others.contains(k)).is_some()
            && self
                .optimistic_since
                .is_some_and(|t| now.duration_since(t) < OPTIMISTIC_INTERVAL);
        if !keep {
            self.optimistic = if others.is_empty() {
                None
            } else {
                Some(others[self.rng.usize(..others.len())])
            };
            self.optimistic_since = Some(now);
        }
        if let Some(k) = self.optimistic {
            unchoked.insert(k);
        }
        unchoked
    }

    /// Between rechokes: may a newly interested peer be unchoked at once?
    /// Yes while fewer than `slots + 1` peers are unchoked.
    pub fn has_free_slot(&self, unchoked_now: usize) -> bool {
        unchoked_now < self.slots + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(key: PeerKey, interested: bool, rate: f64) -> Candidate {
        Candidate {
            key,
            interested,
            rate,
        }
    }

    #[test]
    fn fastest_interested_get_regular_slots_plus_one_optimistic() {
        let mut ch = Choker::new(2, 5);
        let cands = [
            c(1, true, 10.0),
            c(2, true, 50.0),
            c(3, true, 30.0),
            c(4, false, 99.0),
            c(5, true, 1.0),
        ];
        let now = Instant::now();
        let set = ch.rechoke(&cands, now);
        assert!(set.contains(&2) && set.contains(&3));
        assert!(!set.contains(&4), "not interested");
        assert_eq!(set.len(), 3);
        let optimistic = *set.iter().find(|k| **k != 2 && **k != 3).unwrap();
        assert!(optimistic == 1 || optimistic == 5);
        // Kept within 30 s, rotated after.
        let again = ch.rechoke(&cands, now + Duration::from_secs(10));
        assert!(again.contains(&optimistic));
        let mut seen = HashSet::new();
        for i in 1..20 {
            let s = ch.rechoke(&cands, now + OPTIMISTIC_INTERVAL * i);
            seen.extend(s.into_iter().filter(|k| *k == 1 || *k == 5));
        }
        assert_eq!(seen.len(), 2, "the optimistic slot rotates");
    }

    #[test]
    fn few_peers_all_unchoked() {
        let mut ch = Choker::new(4, 1);
        let set = ch.rechoke(&[c(1, true, 0.0), c(2, true, 0.0)], Instant::now());
        assert_eq!(set.len(), 2);
        assert!(ch.has_free_slot(2));
        assert!(!ch.has_free_slot(5));
    }
}
