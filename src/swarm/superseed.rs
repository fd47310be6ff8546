//! Super-seeding (BEP 16's idea, `--super-seed`): a seeder that shows each
//! peer only a few pieces at a time, chosen so that every piece leaves the
//! seeder about once and the leechers trade the rest among themselves.
//!
//! A seed's full bitfield lets every leecher ask it for whatever it picked;
//! picks made at the same time overlap, and the seeder's upload (the
//! bottleneck of every real swarm) carries the same piece several times.
//! Here each peer is offered `depth` pieces it lacks, as `have` messages;
//! when it announces one of them (it got it), it is offered the next. The
//! next is the piece offered least often so far, then the one fewest peers
//! have, so the first pass offers every piece once before any twice.
//!
//! Plain state, no I/O: the caller sends the `have` messages.

use std::collections::HashMap;

use crate::core::Bitfield;

use super::picker::PeerKey;

/// Pieces each peer is offered at once: enough to keep its requests
/// flowing while the last one is hashed and announced.
pub const DEFAULT_DEPTH: usize = 3;

pub struct SuperSeeding {
    depth: usize,
    /// How many peers each piece was offered to.
    offered: Vec<u32>,
    /// What each peer was offered.
    revealed: HashMap<PeerKey, Bitfield>,
}

impl SuperSeeding {
    pub fn new(num_pieces: usize, depth: usize) -> SuperSeeding {
        SuperSeeding {
            depth: depth.max(1),
            offered: vec![0; num_pieces],
            revealed: HashMap::new(),
        }
    }

    /// The pieces to offer `peer` now (it has `peer_has`), so that it holds
    /// `depth` offers of pieces it lacks; `availability(i)` is how many
    /// peers have piece `i`. Call on connect and whenever the peer's
    /// bitfield grows.
    pub fn top_up(
        &mut self,
        peer: PeerKey,
        peer_has: &Bitfield,
        availability: impl Fn(usize) -> u32,
    ) -> Vec<u32> {
        let n = self.offered.len();
        let revealed = self
            .revealed
            .entry(peer)
            .or_insert_with(|| Bitfield::new(n));
        let pending = revealed.iter_ones().filter(|&i| !peer_has.get(i)).count();
        let mut offers = Vec::new();
        for _ in pending..self.depth {
            // Spread peers over equal candidates: each starts its scan at
            // a different place.
            let start = (peer as usize).wrapping_mul(7919) % n.max(1);
            let best = (0..n)
                .map(|k| (start + k) % n)
                .filter(|&i| !peer_has.get(i) && !revealed.get(i))
                .min_by_key(|&i| (self.offered[i], availability(i)));
            let Some(i) = best else { break };
            revealed.set(i);
            self.offered[i] += 1;
            offers.push(i as u32);
        }
        offers
    }

    /// Whether `piece` was offered to `peer` (a request for another piece
    /// is still served: we have it, and refusing helps no one).
    pub fn was_offered(&self, peer: PeerKey, piece: usize) -> bool {
        self.revealed.get(&peer).is_some_and(|r| r.get(piece))
    }

    pub fn forget(&mut self, peer: PeerKey) {
        self.revealed.remove(&peer);
    }

    /// How many peers piece `i` was offered to.
    pub fn offered(&self, piece: usize) -> u32 {
        self.offered[piece]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(n: usize) -> Bitfield {
        Bitfield::new(n)
    }

    #[test]
    fn each_peer_gets_depth_distinct_pieces_and_no_piece_goes_twice_before_all_went_once() {
        let n = 24;
        let mut s = SuperSeeding::new(n, 3);
        let mut all = Vec::new();
        for peer in 1..=8 {
            let offers = s.top_up(peer, &none(n), |_| 0);
            assert_eq!(offers.len(), 3);
            all.extend(offers);
        }
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 24, "8 peers x 3 offers cover all 24 pieces once");
        assert!((0..n).all(|i| s.offered(i) == 1));
    }

    #[test]
    fn a_peer_is_offered_the_next_piece_when_it_announces_one() {
        let n = 10;
        let mut s = SuperSeeding::new(n, 2);
        let mut has = none(n);
        let first = s.top_up(1, &has, |_| 0);
        assert_eq!(first.len(), 2);
        assert!(s.top_up(1, &has, |_| 0).is_empty(), "still two pending");
        has.set(first[0] as usize);
        let next = s.top_up(1, &has, |_| 0);
        assert_eq!(next.len(), 1);
        assert!(!first.contains(&next[0]));
        assert!(s.was_offered(1, next[0] as usize));
    }

    #[test]
    fn pieces_a_peer_has_are_never_offered_and_rare_ones_go_first() {
        let n = 6;
        let mut s = SuperSeeding::new(n, 2);
        let mut has = none(n);
        has.set(0);
        has.set(1);
        // Pieces 4 and 5 are the rarest among the peers.
        let offers = s.top_up(1, &has, |i| if i >= 4 { 0 } else { 3 });
        let mut sorted = offers.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![4, 5]);
    }

    #[test]
    fn a_peer_lacking_nothing_unoffered_gets_nothing_and_forget_drops_it() {
        let n = 3;
        let mut s = SuperSeeding::new(n, 5);
        assert_eq!(s.top_up(1, &none(n), |_| 0).len(), 3, "only 3 pieces exist");
        assert!(s.top_up(1, &none(n), |_| 0).is_empty());
        s.forget(1);
        assert!(!s.was_offered(1, 0));
    }
}
