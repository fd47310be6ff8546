//! Who is to blame for pieces that fail their hash check, and how much a
//! peer may have unverified at once. Plain policy, no I/O: `TorrentState`
//! feeds it hash results with each piece's contributors and applies the
//! verdicts (drop and ban, stop requesting, discard data in flight).
//!
//! Rules:
//! - A failed piece with one contributor bans it.
//! - A failed piece with several: each gets a strike. A peer with two
//!   strikes (two failed pieces with no verified one in between) is banned.
//!   The others are suspended (no requests, their data discarded) until
//!   the piece is settled (verified), except one — the one with the most
//!   verified pieces — which keeps going, so the exclusive refetch (see the
//!   picker) can come from a suspect and name the culprit. A suspension
//!   also ends after [`SUSPEND_LIMIT`], so one that nobody settles cannot
//!   strand the piece.
//! - A strike counts only as fresh evidence: a failed piece the peer
//!   already had awaiting its hash at its last strike adds none (it is
//!   still suspended). Hashing is asynchronous, so an honest peer sharing
//!   two in-flight pieces with a corrupt one would otherwise be banned
//!   with it. A sole sender is banned regardless.
//! - Only peers [`Suspicion::add`]ed have records: a contributor gone
//!   before the verdict is neither remembered again nor kept.
//! - A verified piece clears its contributors' strikes.
//! - A peer may have blocks of at most [`Suspicion::piece_budget`] pieces
//!   outstanding or awaiting their hash: hashing is asynchronous, so a
//!   corrupt peer's data keeps arriving until the first verdict; the
//!   budget grows with verified pieces, so an honest peer soon runs at its
//!   full pipeline.
//!
//! Must not: touch peers' connections or the picker (the caller does).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::picker::PeerKey;

/// Failed pieces (shared ones) that ban a peer with no verified piece in between.
pub const STRIKES_TO_BAN: u32 = 2;
/// A suspension nobody settles ends after this long.
pub const SUSPEND_LIMIT: Duration = Duration::from_secs(20);
/// Pieces an unproven peer may have outstanding or unverified.
pub const INITIAL_PIECE_BUDGET: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Drop the peer and never talk to it again.
    Ban,
    /// Stop requesting from it and discard its data until released.
    Suspend,
}

#[derive(Debug, Default)]
struct Record {
    strikes: u32,
    passed: u32,
    /// Failed pieces whose verification ends this peer's suspension.
    waiting_for: HashSet<u32>,
    suspended_at: Option<Instant>,
    /// Pieces it had awaiting their hash at its last strike: their failure
    /// is not fresh evidence (its data in them came before that strike).
    in_doubt: HashSet<u32>,
}

#[derive(Debug, Default)]
pub struct Suspicion {
    peers: HashMap<PeerKey, Record>,
}

impl Suspicion {
    /// A peer connected: only registered peers have records, so a
    /// contributor that left before its piece's verdict is not remembered
    /// again (nor chosen to keep going).
    pub fn add(&mut self, key: PeerKey) {
        self.peers.entry(key).or_default();
    }

    /// Piece `piece`, with blocks from `contributors` (every sender, gone
    /// or not), failed its hash. `unsettled` gives each contributor still
    /// connected the other pieces it has awaiting their hash.
    pub fn on_fail(
        &mut self,
        piece: u32,
        contributors: &HashSet<PeerKey>,
        unsettled: &HashMap<PeerKey, HashSet<u32>>,
        now: Instant,
    ) -> Vec<(PeerKey, Verdict)> {
        if contributors.len() == 1 {
            let key = *contributors.iter().next().expect("one");
            let Some(r) = self.peers.get_mut(&key) else {
                return Vec::new();
            };
            r.strikes += 1;
            return vec![(key, Verdict::Ban)];
        }
        let mut live: Vec<PeerKey> = contributors
            .iter()
            .copied()
            .filter(|k| self.peers.contains_key(k))
            .collect();
        live.sort_unstable();
        // The most proven live contributor keeps going (ties: fewest
        // strikes, then the oldest connection).
        let kept = live.iter().copied().min_by_key(|k| {
            let r = &self.peers[k];
            (std::cmp::Reverse(r.passed), r.strikes, *k)
        });
        let mut verdicts = Vec::new();
        for key in live {
            let r = self.peers.get_mut(&key).expect("live key");
            // Data already awaiting its hash at the last strike cannot
            // be fresh evidence: an honest peer sharing several pieces
            // with a corrupt one would earn a strike for each.
            if !r.in_doubt.remove(&piece) {
                r.strikes += 1;
                r.in_doubt = unsettled.get(&key).cloned().unwrap_or_default();
                r.in_doubt.remove(&piece);
            }
            if r.strikes >= STRIKES_TO_BAN {
                verdicts.push((key, Verdict::Ban));
            } else if Some(key) != kept {
                r.waiting_for.insert(piece);
                r.suspended_at.get_or_insert(now);
                verdicts.push((key, Verdict::Suspend));
            }
        }
        verdicts
    }

    /// Piece `piece` was verified: its contributors' strikes are cleared
    /// and every peer suspended on it alone is released (returned).
    pub fn on_pass(&mut self, piece: u32, contributors: &HashSet<PeerKey>) -> Vec<PeerKey> {
        for key in contributors {
            if let Some(r) = self.peers.get_mut(key) {
                r.strikes = 0;
                r.in_doubt.clear();
                r.passed += 1;
            }
        }
        let mut released = Vec::new();
        for (key, r) in &mut self.peers {
            r.in_doubt.remove(&piece);
            if r.waiting_for.remove(&piece) && r.waiting_for.is_empty() {
                r.suspended_at = None;
                released.push(*key);
            }
        }
        released.sort_unstable();
        released
    }

    /// Ends suspensions older than [`SUSPEND_LIMIT`]; the peers released.
    pub fn expire(&mut self, now: Instant) -> Vec<PeerKey> {
        let mut released = Vec::new();
        for (key, r) in &mut self.peers {
            if r.suspended_at
                .is_some_and(|t| now.duration_since(t) >= SUSPEND_LIMIT)
            {
                r.suspended_at = None;
                r.waiting_for.clear();
                released.push(*key);
            }
        }
        released.sort_unstable();
        released
    }

    pub fn is_suspended(&self, key: PeerKey) -> bool {
        self.peers
            .get(&key)
            .is_some_and(|r| r.suspended_at.is_some())
    }

    /// Pieces `key` may have outstanding or unverified: two, plus one per
    /// two pieces it helped verify. Each round of verified pieces raises
    /// it by half, so an honest peer's pipeline opens up within a few
    /// round trips, while a corrupt one has little in flight at its first
    /// failure.
    pub fn piece_budget(&self, key: PeerKey) -> usize {
        INITIAL_PIECE_BUDGET + self.peers.get(&key).map_or(0, |r| r.passed as usize / 2)
    }

    #[cfg(test)]
    pub fn knows(&self, key: PeerKey) -> bool {
        self.peers.contains_key(&key)
    }

    /// The connection is gone.
    pub fn forget(&mut self, key: PeerKey) {
        self.peers.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(keys: &[PeerKey]) -> HashSet<PeerKey> {
        keys.iter().copied().collect()
    }

    fn with(keys: &[PeerKey]) -> Suspicion {
        let mut s = Suspicion::default();
        for &k in keys {
            s.add(k);
        }
        s
    }

    fn pieces(p: &[u32]) -> HashSet<u32> {
        p.iter().copied().collect()
    }

    fn none() -> HashMap<PeerKey, HashSet<u32>> {
        HashMap::new()
    }

    #[test]
    fn a_failure_already_in_flight_at_the_last_strike_adds_no_strike() {
        // 1 is honest and proven, 2 corrupt; both sent blocks of 5 and 6
        // before either was hashed.
        let mut s = with(&[1, 2]);
        let now = Instant::now();
        s.on_pass(0, &set(&[1]));
        let in_flight: HashMap<PeerKey, HashSet<u32>> =
            [(1, pieces(&[6])), (2, pieces(&[6]))].into_iter().collect();
        assert_eq!(
            s.on_fail(5, &set(&[1, 2]), &in_flight, now),
            vec![(2, Verdict::Suspend)]
        );
        let v = s.on_fail(6, &set(&[1, 2]), &none(), now);
        assert_eq!(v, vec![(2, Verdict::Suspend)], "no second strike for 6");
        assert!(!s.is_suspended(1), "the kept peer goes on");
        // Data sent after the strike is fresh evidence again.
        let v = s.on_fail(7, &set(&[1, 2]), &none(), now);
        assert!(v.contains(&(1, Verdict::Ban)) && v.contains(&(2, Verdict::Ban)));
    }

    #[test]
    fn the_in_flight_rule_protects_an_unproven_kept_peer_too() {
        // Neither has verified anything; 1 is kept (oldest).
        let mut s = with(&[1, 2]);
        let now = Instant::now();
        let in_flight: HashMap<PeerKey, HashSet<u32>> =
            [(1, pieces(&[6, 7])), (2, pieces(&[6, 7]))]
                .into_iter()
                .collect();
        s.on_fail(5, &set(&[1, 2]), &in_flight, now);
        for piece in [6, 7] {
            let v = s.on_fail(piece, &set(&[1, 2]), &none(), now);
            assert!(!v.iter().any(|&(_, v)| v == Verdict::Ban), "{v:?}");
        }
    }

    #[test]
    fn a_sole_sender_is_banned_even_for_a_piece_in_flight_at_its_strike() {
        let mut s = with(&[1, 2]);
        let now = Instant::now();
        let in_flight: HashMap<PeerKey, HashSet<u32>> = [(2, pieces(&[6]))].into_iter().collect();
        s.on_fail(5, &set(&[1, 2]), &in_flight, now);
        assert_eq!(
            s.on_fail(6, &set(&[2]), &none(), now),
            vec![(2, Verdict::Ban)]
        );
    }

    #[test]
    fn a_departed_contributor_is_neither_recreated_nor_kept() {
        let mut s = with(&[1, 2, 3]);
        let now = Instant::now();
        for p in 0..4 {
            s.on_pass(p, &set(&[1]));
        }
        s.forget(1);
        // 1 would be kept (most proven) if it were remembered.
        let v = s.on_fail(5, &set(&[1, 2, 3]), &none(), now);
        assert_eq!(v, vec![(3, Verdict::Suspend)], "2 keeps going");
        s.on_pass(6, &set(&[1, 2]));
        assert_eq!(s.on_fail(7, &set(&[1]), &none(), now), vec![]);
        assert!(!s.knows(1), "forgotten peers stay forgotten");
    }

    #[test]
    fn a_sole_contributor_is_banned_at_once() {
        let mut s = with(&[1, 2, 3, 7]);
        let now = Instant::now();
        assert_eq!(
            s.on_fail(3, &set(&[7]), &none(), now),
            vec![(7, Verdict::Ban)]
        );
    }

    #[test]
    fn a_shared_failure_suspends_all_but_the_most_proven_until_settled() {
        let mut s = with(&[1, 2, 3, 7]);
        let now = Instant::now();
        s.on_pass(0, &set(&[1]));
        s.on_pass(1, &set(&[1]));
        let v = s.on_fail(5, &set(&[1, 2, 3]), &none(), now);
        assert_eq!(v, vec![(2, Verdict::Suspend), (3, Verdict::Suspend)]);
        assert!(!s.is_suspended(1), "the proven peer refetches");
        assert!(s.is_suspended(2) && s.is_suspended(3));
        // Another piece passing settles nothing.
        assert!(s.on_pass(6, &set(&[1])).is_empty());
        assert_eq!(s.on_pass(5, &set(&[1])), vec![2, 3]);
        assert!(!s.is_suspended(2));
    }

    #[test]
    fn two_failures_without_a_success_between_ban() {
        let mut s = with(&[1, 2, 3, 7]);
        let now = Instant::now();
        s.on_pass(0, &set(&[1]));
        s.on_fail(5, &set(&[1, 2]), &none(), now);
        s.on_pass(5, &set(&[1]));
        // 2 has one strike; its next failed piece, even shared, bans it.
        let v = s.on_fail(9, &set(&[1, 2]), &none(), now);
        assert!(v.contains(&(2, Verdict::Ban)), "{v:?}");
        assert!(
            !v.iter().any(|(k, _)| *k == 1),
            "1 verified in between: {v:?}"
        );
    }

    #[test]
    fn a_verified_piece_clears_strikes() {
        let mut s = with(&[1, 2, 3, 7]);
        let now = Instant::now();
        s.on_fail(5, &set(&[1, 2]), &none(), now);
        s.on_pass(6, &set(&[2]));
        let v = s.on_fail(7, &set(&[1, 2]), &none(), now);
        assert!(!v.contains(&(2, Verdict::Ban)), "{v:?}");
        assert!(v.contains(&(1, Verdict::Ban)), "{v:?}");
    }

    #[test]
    fn a_suspension_nobody_settles_expires() {
        let mut s = with(&[1, 2, 3, 7]);
        let now = Instant::now();
        s.on_pass(0, &set(&[1]));
        s.on_fail(5, &set(&[1, 2]), &none(), now);
        assert!(s.expire(now + SUSPEND_LIMIT / 2).is_empty());
        assert_eq!(s.expire(now + SUSPEND_LIMIT), vec![2]);
        assert!(!s.is_suspended(2));
    }

    #[test]
    fn the_budget_grows_with_verified_pieces() {
        let mut s = with(&[1, 2, 3, 7]);
        assert_eq!(s.piece_budget(1), INITIAL_PIECE_BUDGET);
        for p in 0..6 {
            s.on_pass(p, &set(&[1]));
        }
        assert_eq!(s.piece_budget(1), INITIAL_PIECE_BUDGET + 3);
        s.forget(1);
        assert_eq!(s.piece_budget(1), INITIAL_PIECE_BUDGET);
    }
}
