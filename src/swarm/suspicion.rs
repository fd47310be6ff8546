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
}

#[derive(Debug, Default)]
pub struct Suspicion {
    peers: HashMap<PeerKey, Record>,
}

impl Suspicion {
    /// Piece `piece`, with blocks from `contributors`, failed its hash.
    pub fn on_fail(
        &mut self,
        piece: u32,
        contributors: &HashSet<PeerKey>,
        now: Instant,
    ) -> Vec<(PeerKey, Verdict)> {
        if contributors.len() == 1 {
            let key = *contributors.iter().next().expect("one");
            self.peers.entry(key).or_default().strikes += 1;
            return vec![(key, Verdict::Ban)];
        }
        // The most proven contributor keeps going (ties: fewest strikes,
        // then the oldest connection).
        let kept = contributors.iter().copied().min_by_key(|k| {
            let r = self.peers.get(k);
            (
                std::cmp::Reverse(r.map_or(0, |r| r.passed)),
                r.map_or(0, |r| r.strikes),
                *k,
            )
        });
        let mut verdicts = Vec::new();
        let mut sorted: Vec<PeerKey> = contributors.iter().copied().collect();
        sorted.sort_unstable();
        for key in sorted {
            let r = self.peers.entry(key).or_default();
            r.strikes += 1;
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
            let r = self.peers.entry(*key).or_default();
            r.strikes = 0;
            r.passed += 1;
        }
        let mut released = Vec::new();
        for (key, r) in &mut self.peers {
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

    #[test]
    fn a_sole_contributor_is_banned_at_once() {
        let mut s = Suspicion::default();
        let now = Instant::now();
        assert_eq!(s.on_fail(3, &set(&[7]), now), vec![(7, Verdict::Ban)]);
    }

    #[test]
    fn a_shared_failure_suspends_all_but_the_most_proven_until_settled() {
        let mut s = Suspicion::default();
        let now = Instant::now();
        s.on_pass(0, &set(&[1]));
        s.on_pass(1, &set(&[1]));
        let v = s.on_fail(5, &set(&[1, 2, 3]), now);
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
        let mut s = Suspicion::default();
        let now = Instant::now();
        s.on_pass(0, &set(&[1]));
        s.on_fail(5, &set(&[1, 2]), now);
        s.on_pass(5, &set(&[1]));
        // 2 has one strike; its next failed piece, even shared, bans it.
        let v = s.on_fail(9, &set(&[1, 2]), now);
        assert!(v.contains(&(2, Verdict::Ban)), "{v:?}");
        assert!(
            !v.iter().any(|(k, _)| *k == 1),
            "1 verified in between: {v:?}"
        );
    }

    #[test]
    fn a_verified_piece_clears_strikes() {
        let mut s = Suspicion::default();
        let now = Instant::now();
        s.on_fail(5, &set(&[1, 2]), now);
        s.on_pass(6, &set(&[2]));
        let v = s.on_fail(7, &set(&[1, 2]), now);
        assert!(!v.contains(&(2, Verdict::Ban)), "{v:?}");
        assert!(v.contains(&(1, Verdict::Ban)), "{v:?}");
    }

    #[test]
    fn a_suspension_nobody_settles_expires() {
        let mut s = Suspicion::default();
        let now = Instant::now();
        s.on_pass(0, &set(&[1]));
        s.on_fail(5, &set(&[1, 2]), now);
        assert!(s.expire(now + SUSPEND_LIMIT / 2).is_empty());
        assert_eq!(s.expire(now + SUSPEND_LIMIT), vec![2]);
        assert!(!s.is_suspended(2));
    }

    #[test]
    fn the_budget_grows_with_verified_pieces() {
        let mut s = Suspicion::default();
        assert_eq!(s.piece_budget(1), INITIAL_PIECE_BUDGET);
        for p in 0..6 {
            s.on_pass(p, &set(&[1]));
        }
        assert_eq!(s.piece_budget(1), INITIAL_PIECE_BUDGET + 3);
        s.forget(1);
        assert_eq!(s.piece_budget(1), INITIAL_PIECE_BUDGET);
    }
}
