//! Which blocks to ask for next: the piece picker.
//!
//! Piece states (disjoint): `Missing` (nothing requested), `Partial` (some
//! blocks requested or received), `Hashing` (all blocks received, SHA-1
//! pending), `Have` (verified). Block slots inside a partial piece: `Free`,
//! `Requested` by one or more peers (more than one only in endgame),
//! `Receiving` (one peer's data is being written; others' copies are
//! discarded), `Received`.
//!
//! Transitions: `pick` (Free → Requested, Missing → Partial), `begin_block`
//! (→ Receiving), `finish_block` (→ Received; all received → Hashing),
//! `abort_block`/`release` (peer lost, choked us, or a write failed: back to
//! Requested-by-others or Free), `hash_done` (Hashing → Have, or → Missing on
//! a bad hash).
//!
//! Choice: pieces already started first (to finish them), then rarest-first
//! among pieces the peer has, ties broken by a random permutation fixed at
//! start; when no free block is left anywhere, endgame: blocks already
//! requested from another peer are requested again (at most
//! [`ENDGAME_DUPLICATES`] peers per block).
//!
//! A piece that failed its hash after blocks came from several peers is
//! marked *exclusive*: it is then fetched from one peer only, so a second
//! failure names the culprit without blaming the honest peers that shared it.

use crate::core::Bitfield;

/// Identifies a connection in the swarm state.
pub type PeerKey = u64;

/// Most peers asked for the same block in endgame.
pub const ENDGAME_DUPLICATES: usize = 2;

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Block {
    pub piece: u32,
    /// Block number inside the piece (offset / BLOCK_SIZE).
    pub index: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    Free,
    Requested(Vec<PeerKey>),
    Receiving(PeerKey),
    Received,
}

#[derive(Clone, Debug)]
enum PieceState {
    Missing,
    Partial {
        slots: Vec<Slot>,
        received: u32,
        /// For exclusive pieces: the one peer allowed to serve it.
        owner: Option<PeerKey>,
    },
    Hashing,
    Have,
}

/// What to do with an arriving block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BlockArrival {
    /// Write it; these other peers were also asked for it (send them cancels).
    /// `first_of_piece`: no other block of the piece was written yet.
    Write {
        also_requested_from: Vec<PeerKey>,
        first_of_piece: bool,
    },
    /// Already received, being received, or not wanted: read and drop it.
    Discard,
}

pub struct PiecePicker {
    states: Vec<PieceState>,
    have: Bitfield,
    availability: Vec<u32>,
    blocks_per_piece: Vec<u32>,
    order: Vec<u32>,
    /// Pieces in `Partial`, in the order they were started.
    partial: Vec<u32>,
    /// Free slots in partial pieces plus all blocks of missing pieces.
    free_blocks: u64,
    exclusive: Vec<bool>,
}

impl PiecePicker {
    /// `block_counts[i]` is the number of blocks of piece `i`; `seed` fixes
    /// the random tie-breaking order.
    pub fn new(block_counts: Vec<u32>, seed: u64) -> PiecePicker {
        let n = block_counts.len();
        let mut order: Vec<u32> = (0..n as u32).collect();
        // Only tie-breaking: a seeded shuffle, so tests are deterministic.
        fastrand::Rng::with_seed(seed).shuffle(&mut order);
        PiecePicker {
            states: vec![PieceState::Missing; n],
            have: Bitfield::new(n),
            availability: vec![0; n],
            free_blocks: block_counts.iter().map(|&c| c as u64).sum(),
            blocks_per_piece: block_counts,
            order,
            partial: Vec::new(),
            exclusive: vec![false; n],
        }
    }

    pub fn have(&self) -> &Bitfield {
        &self.have
    }

    pub fn is_complete(&self) -> bool {
        self.have.is_complete()
    }

    pub fn in_endgame(&self) -> bool {
        self.free_blocks == 0 && !self.is_complete()
    }

    /// Marks a piece verified without downloading it (resume).
    pub fn mark_have(&mut self, piece: usize) {
        if let PieceState::Missing = self.states[piece] {
            self.free_blocks -= self.blocks_per_piece[piece] as u64;
        }
        self.partial.retain(|&p| p as usize != piece);
        self.states[piece] = PieceState::Have;
        self.have.set(piece);
    }

    pub fn add_availability(&mut self, bitfield: &Bitfield) {
        for i in bitfield.iter_ones() {
            self.availability[i] += 1;
        }
    }

    pub fn remove_availability(&mut self, bitfield: &Bitfield) {
        for i in bitfield.iter_ones() {
            self.availability[i] = self.availability[i].saturating_sub(1);
        }
    }

    pub fn add_have(&mut self, piece: usize) {
        self.availability[piece] += 1;
    }

    /// How many connected peers have `piece`.
    pub fn availability(&self, piece: usize) -> u32 {
        self.availability[piece]
    }

    /// Whether we still want piece `piece` (not verified, not being hashed).
    pub fn wants(&self, piece: usize) -> bool {
        matches!(
            self.states.get(piece),
            Some(PieceState::Missing | PieceState::Partial { .. })
        )
    }

    /// Appends up to `max` blocks for `peer` (which has `peer_has`) to `out`.
    pub fn pick(&mut self, peer: PeerKey, peer_has: &Bitfield, max: usize, out: &mut Vec<Block>) {
        let start_len = out.len();
        let room = |out: &Vec<Block>| out.len() - start_len < max;
        // 1. Finish started pieces.
        for pi in 0..self.partial.len() {
            if !room(out) {
                return;
            }
            let piece = self.partial[pi];
            if peer_has.get(piece as usize) {
                self.take_free(piece, peer, max - (out.len() - start_len), out);
            }
        }
        // 2. Start new pieces, rarest first.
        while room(out) {
            let Some(piece) = self.rarest_missing(peer_has) else {
                break;
            };
            let count = self.blocks_per_piece[piece as usize];
            self.states[piece as usize] = PieceState::Partial {
                slots: vec![Slot::Free; count as usize],
                received: 0,
                owner: None,
            };
            self.partial.push(piece);
            self.take_free(piece, peer, max - (out.len() - start_len), out);
        }
        // 3. Endgame: duplicate requests already out to others.
        if room(out) && self.free_blocks == 0 {
            for pi in 0..self.partial.len() {
                let piece = self.partial[pi];
                if !peer_has.get(piece as usize) || self.exclusive[piece as usize] {
                    continue;
                }
                if let PieceState::Partial { slots, .. } = &mut self.states[piece as usize] {
                    for (index, slot) in slots.iter_mut().enumerate() {
                        if out.len() - start_len >= max {
                            return;
                        }
                        if let Slot::Requested(peers) = slot {
                            if peers.len() < ENDGAME_DUPLICATES && !peers.contains(&peer) {
                                peers.push(peer);
                                out.push(Block {
                                    piece,
                                    index: index as u32,
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    fn take_free(&mut self, piece: u32, peer: PeerKey, max: usize, out: &mut Vec<Block>) {
        let PieceState::Partial { slots, owner, .. } = &mut self.states[piece as usize] else {
            return;
        };
        if self.exclusive[piece as usize] {
            match owner {
                Some(o) if *o != peer => return,
                _ => *owner = Some(peer),
            }
        }
        let mut taken = 0;
        for (index, slot) in slots.iter_mut().enumerate() {
            if taken == max {
                break;
            }
            if *slot == Slot::Free {
                *slot = Slot::Requested(vec![peer]);
                out.push(Block {
                    piece,
                    index: index as u32,
                });
                taken += 1;
            }
        }
        self.free_blocks -= taken as u64;
    }

    fn rarest_missing(&self, peer_has: &Bitfield) -> Option<u32> {
        let mut best: Option<(u32, u32)> = None;
        for &piece in &self.order {
            if !matches!(self.states[piece as usize], PieceState::Missing)
                || !peer_has.get(piece as usize)
            {
                continue;
            }
            let avail = self.availability[piece as usize];
            if best.is_none_or(|(_, a)| avail < a) {
                best = Some((piece, avail));
                if avail <= 1 {
                    break; // cannot get rarer than one holder
                }
            }
        }
        best.map(|(p, _)| p)
    }

    /// A block's data from `peer` is about to be read.
    pub fn begin_block(&mut self, peer: PeerKey, block: Block) -> BlockArrival {
        let Some(PieceState::Partial {
            slots, received, ..
        }) = self.states.get_mut(block.piece as usize)
        else {
            return BlockArrival::Discard;
        };
        let first_of_piece =
            *received == 0 && !slots.iter().any(|s| matches!(s, Slot::Receiving(_)));
        let Some(slot) = slots.get_mut(block.index as usize) else {
            return BlockArrival::Discard;
        };
        let others = match slot {
            Slot::Free => {
                self.free_blocks -= 1;
                vec![]
            }
            Slot::Requested(peers) => peers.iter().copied().filter(|&p| p != peer).collect(),
            Slot::Receiving(_) | Slot::Received => return BlockArrival::Discard,
        };
        *slot = Slot::Receiving(peer);
        BlockArrival::Write {
            also_requested_from: others,
            first_of_piece,
        }
    }

    /// The block's data is written. Returns true when its piece is complete
    /// and should be hashed.
    pub fn finish_block(&mut self, block: Block) -> bool {
        let Some(PieceState::Partial {
            slots, received, ..
        }) = self.states.get_mut(block.piece as usize)
        else {
            return false;
        };
        if !matches!(slots[block.index as usize], Slot::Receiving(_)) {
            return false;
        }
        slots[block.index as usize] = Slot::Received;
        *received += 1;
        if *received as usize == slots.len() {
            self.states[block.piece as usize] = PieceState::Hashing;
            self.partial.retain(|&p| p != block.piece);
            return true;
        }
        false
    }

    /// Writing the block failed (connection lost mid-block): free it.
    pub fn abort_block(&mut self, block: Block) {
        if let Some(PieceState::Partial { slots, .. }) = self.states.get_mut(block.piece as usize) {
            if matches!(slots[block.index as usize], Slot::Receiving(_)) {
                slots[block.index as usize] = Slot::Free;
                self.free_blocks += 1;
            }
        }
    }

    /// `peer` will not deliver `block` (lost, choked us, cancelled).
    pub fn release(&mut self, peer: PeerKey, block: Block) {
        if let Some(PieceState::Partial { slots, .. }) = self.states.get_mut(block.piece as usize) {
            let slot = &mut slots[block.index as usize];
            if let Slot::Requested(peers) = slot {
                peers.retain(|&p| p != peer);
                if peers.is_empty() {
                    *slot = Slot::Free;
                    self.free_blocks += 1;
                }
            }
        }
    }

    /// `peer` is gone or choked us: it no longer owns exclusive pieces.
    pub fn forget_peer(&mut self, peer: PeerKey) {
        for &piece in &self.partial {
            if let PieceState::Partial { owner, .. } = &mut self.states[piece as usize] {
                if *owner == Some(peer) {
                    *owner = None;
                }
            }
        }
    }

    /// Throws away the received blocks of a partial piece (they came partly
    /// from a peer found corrupt): they become Free again. Blocks being
    /// received or requested are left alone. False if the piece is not
    /// partial.
    pub fn reset_received(&mut self, piece: usize) -> bool {
        let Some(PieceState::Partial {
            slots, received, ..
        }) = self.states.get_mut(piece)
        else {
            return false;
        };
        for slot in slots.iter_mut() {
            if *slot == Slot::Received {
                *slot = Slot::Free;
                self.free_blocks += 1;
            }
        }
        *received = 0;
        true
    }

    /// Result of hashing a piece that was `Hashing`. `shared` says the
    /// blocks came from more than one peer; a failure then makes the piece
    /// exclusive (module doc).
    pub fn hash_done(&mut self, piece: usize, ok: bool, shared: bool) {
        if !matches!(self.states[piece], PieceState::Hashing) {
            return;
        }
        if ok {
            self.states[piece] = PieceState::Have;
            self.have.set(piece);
            self.exclusive[piece] = false;
        } else {
            self.exclusive[piece] = shared;
            self.states[piece] = PieceState::Missing;
            self.free_blocks += self.blocks_per_piece[piece] as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tie_break_order_is_a_permutation_fixed_by_the_seed() {
        let order = |seed| PiecePicker::new(vec![1; 64], seed).order;
        assert_eq!(order(7), order(7));
        assert_ne!(order(7), order(8));
        let mut sorted = order(7);
        sorted.sort();
        assert_eq!(sorted, (0..64).collect::<Vec<u32>>());
    }

    fn full(n: usize) -> Bitfield {
        Bitfield::full(n)
    }

    #[test]
    fn finishes_started_pieces_before_new_ones() {
        let mut p = PiecePicker::new(vec![4; 10], 7);
        p.add_availability(&full(10));
        let mut out = vec![];
        p.pick(1, &full(10), 2, &mut out);
        assert_eq!(out.len(), 2);
        let first = out[0].piece;
        assert!(out.iter().all(|b| b.piece == first));
        let mut more = vec![];
        p.pick(2, &full(10), 2, &mut more);
        assert!(
            more.iter().all(|b| b.piece == first),
            "same piece continued"
        );
    }

    #[test]
    fn reset_received_frees_only_received_blocks() {
        let mut p = PiecePicker::new(vec![3], 1);
        let mut out = vec![];
        p.pick(1, &full(1), 3, &mut out);
        for b in &out[..2] {
            assert!(matches!(p.begin_block(1, *b), BlockArrival::Write { .. }));
        }
        assert!(!p.finish_block(out[0]));
        // out[1] is still being received, out[2] still requested.
        assert!(p.reset_received(0));
        let mut again = vec![];
        p.pick(2, &full(1), 1, &mut again);
        assert_eq!(again, vec![out[0]], "only the received block is free again");
        assert!(!p.finish_block(out[1]));
        assert!(matches!(
            p.begin_block(1, out[2]),
            BlockArrival::Write { .. }
        ));
        assert!(!p.finish_block(out[2]));
        assert!(matches!(
            p.begin_block(2, out[0]),
            BlockArrival::Write { .. }
        ));
        assert!(p.finish_block(out[0]), "complete once refetched");
        assert!(!p.reset_received(0), "hashing, not partial");
    }

    #[test]
    fn picks_rarest_first() {
        let mut p = PiecePicker::new(vec![1; 5], 3);
        p.add_availability(&full(5));
        p.add_availability(&full(5));
        let mut rare = Bitfield::new(5);
        rare.set(3);
        p.add_availability(&rare); // piece 3 now has 3 holders, others 2
        let mut only_four = Bitfield::new(5);
        only_four.set(4);
        p.remove_availability(&only_four); // piece 4: 1 holder
        let mut out = vec![];
        p.pick(1, &full(5), 1, &mut out);
        assert_eq!(out, vec![Block { piece: 4, index: 0 }]);
        out.clear();
        p.pick(1, &full(5), 3, &mut out);
        assert!(!out.iter().any(|b| b.piece == 3), "most common comes last");
    }

    #[test]
    fn lost_peer_blocks_go_back_to_others() {
        let mut p = PiecePicker::new(vec![2], 1);
        let mut a = vec![];
        p.pick(1, &full(1), 10, &mut a);
        assert_eq!(a.len(), 2);
        let mut b = vec![];
        p.pick(2, &full(1), 10, &mut b);
        // Endgame duplicates once everything is requested.
        assert_eq!(b.len(), 2);
        for blk in &a {
            p.release(1, *blk);
        }
        // Still requested from peer 2, so no free blocks to hand out.
        let mut c = vec![];
        p.pick(3, &full(1), 10, &mut c);
        assert_eq!(c.len(), 2, "endgame again with peer 3");
        for blk in b.iter().chain(&c) {
            p.release(2, *blk);
            p.release(3, *blk);
        }
        let mut d = vec![];
        p.pick(4, &full(1), 10, &mut d);
        assert_eq!(d.len(), 2, "released blocks are free again");
        assert!(!p.in_endgame() || d.len() == 2);
    }

    #[test]
    fn duplicate_arrivals_are_discarded_and_hash_failure_refetches() {
        let mut p = PiecePicker::new(vec![1, 1], 1);
        let mut a = vec![];
        p.pick(1, &full(2), 2, &mut a);
        let mut b = vec![];
        p.pick(2, &full(2), 2, &mut b); // endgame duplicates
        assert_eq!(b.len(), 2);
        let blk = a[0];
        assert_eq!(
            p.begin_block(1, blk),
            BlockArrival::Write {
                also_requested_from: vec![2],
                first_of_piece: true,
            }
        );
        assert_eq!(p.begin_block(2, blk), BlockArrival::Discard);
        assert!(p.finish_block(blk));
        p.hash_done(blk.piece as usize, false, false);
        assert!(p.wants(blk.piece as usize));
        let mut again = vec![];
        p.pick(3, &full(2), 5, &mut again);
        assert!(again.contains(&blk));
        assert_eq!(
            p.begin_block(3, blk),
            BlockArrival::Write {
                also_requested_from: vec![],
                first_of_piece: true,
            }
        );
        assert!(p.finish_block(blk));
        p.hash_done(blk.piece as usize, true, false);
        assert!(p.have().get(blk.piece as usize));
        assert_eq!(p.begin_block(1, blk), BlockArrival::Discard);
    }

    #[test]
    fn a_piece_that_failed_with_several_senders_is_then_fetched_from_one_peer() {
        let mut p = PiecePicker::new(vec![2], 1);
        let mut a = vec![];
        p.pick(1, &full(1), 1, &mut a);
        let mut b = vec![];
        p.pick(2, &full(1), 1, &mut b);
        for (peer, blk) in [(1, a[0]), (2, b[0])] {
            assert!(matches!(
                p.begin_block(peer, blk),
                BlockArrival::Write { .. }
            ));
            p.finish_block(blk);
        }
        p.hash_done(0, false, true);
        let mut first = vec![];
        p.pick(1, &full(1), 1, &mut first);
        assert_eq!(first.len(), 1);
        let mut other = vec![];
        p.pick(2, &full(1), 5, &mut other);
        assert!(other.is_empty(), "peer 2 may not join an exclusive piece");
        p.pick(1, &full(1), 5, &mut first);
        assert_eq!(first.len(), 2, "the owner gets the rest");
        for blk in &first {
            p.release(1, *blk);
        }
        p.forget_peer(1);
        p.pick(2, &full(1), 5, &mut other);
        assert_eq!(other.len(), 2, "a lost owner hands the piece on");
    }

    #[test]
    fn aborted_block_is_free_again() {
        let mut p = PiecePicker::new(vec![1], 1);
        let mut a = vec![];
        p.pick(1, &full(1), 1, &mut a);
        assert!(matches!(p.begin_block(1, a[0]), BlockArrival::Write { .. }));
        p.abort_block(a[0]);
        let mut b = vec![];
        p.pick(2, &full(1), 1, &mut b);
        assert_eq!(b, a);
    }

    #[test]
    fn only_picks_what_the_peer_has() {
        let mut p = PiecePicker::new(vec![1; 4], 9);
        let mut has = Bitfield::new(4);
        has.set(2);
        let mut out = vec![];
        p.pick(1, &has, 10, &mut out);
        assert_eq!(out, vec![Block { piece: 2, index: 0 }]);
    }
}
