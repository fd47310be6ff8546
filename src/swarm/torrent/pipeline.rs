//! The download pipeline: topping up each peer's requests (`fill`), blocks
//! arriving (`begin_block`, `finish_block`, `abort_block`), and a piece's
//! hash verdict (`on_hash_result`: HAVE to every peer, or blame through
//! `suspicion`). A complete piece leaves as a [`PieceReady`]; hashing it is
//! the caller's job, so no channel into storage is held here.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::{DropReason, HashOutcome, HashVerdict, PieceReady, TorrentState};
use crate::core::BLOCK_SIZE;
use crate::swarm::picker::{Block, BlockArrival, PeerKey};
use crate::swarm::suspicion::Verdict;
use crate::wire::peer::{BlockRequest, Message};

impl TorrentState {
    /// Tops up the request pipeline of `key`.
    pub(super) fn fill(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        if peer.peer_choking
            || !peer.am_interested
            || peer.close.is_some()
            || self.suspicion.is_suspended(key)
            || peer.snubbed_until.is_some_and(|t| Instant::now() < t)
        {
            return;
        }
        // Blocks of at most `piece_budget` pieces outstanding or awaiting
        // their hash (see `suspicion`): counted in whole pieces' blocks.
        let per_piece = self.geometry.blocks_in(0) as usize;
        let budget = self.suspicion.piece_budget(key) * per_piece;
        let limit = (peer.window.min(peer.reqq) as usize)
            .min(budget.saturating_sub(peer.unsettled.len() * per_piece));
        // Top up in batches: one wake-up and one write per batch of
        // requests, not per block.
        let batch = (limit / 8).clamp(1, 16);
        if peer.requested.len() + batch > limit {
            return;
        }
        let mut blocks = Vec::new();
        self.picker.pick(
            key,
            &peer.bitfield,
            limit - peer.requested.len(),
            &mut blocks,
        );
        if blocks.is_empty() {
            return;
        }
        if peer.requested.is_empty() {
            peer.owing_since = Some(Instant::now());
        }
        for b in blocks {
            peer.requested.insert(b);
            peer.outbox.push(Message::Request(BlockRequest {
                index: b.piece,
                begin: b.index * BLOCK_SIZE,
                length: self.geometry.block_len(b.piece as usize, b.index),
            }));
        }
        peer.wake();
    }

    pub(super) fn fill_all(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill(k);
        }
    }

    /// A piece message header arrived: may its payload be written?
    /// `Some((block, first_of_piece))` gives the writer exclusive access to
    /// that block until `finish_block` or `abort_block`.
    pub fn begin_block(
        &mut self,
        key: PeerKey,
        index: u32,
        begin: u32,
        len: u32,
    ) -> Result<Option<(Block, bool)>, DropReason> {
        let block = self
            .geometry
            .validate(index)
            .filter(|&p| begin.is_multiple_of(BLOCK_SIZE) && begin < self.geometry.len_of(p))
            .map(|p| Block {
                piece: p.get(),
                index: begin / BLOCK_SIZE,
            })
            .filter(|&b| self.block_len(b) == len);
        let Some(block) = block else {
            // Not a block we would ever ask for: the peer is broken.
            return Err(DropReason::Protocol(
                "piece message for a block we never request",
            ));
        };
        let suspended = self.suspicion.is_suspended(key);
        let peer = self.peer_mut(key)?;
        peer.requested.remove(&block);
        if suspended || peer.close.is_some() {
            // A suspect's or a dropped peer's data still in flight: its
            // requests were released when it fell under suspicion.
            self.stats.wasted += len as u64;
            return Ok(None);
        }
        match self.picker.begin_block(key, block) {
            BlockArrival::Write {
                also_requested_from,
                first_of_piece,
            } => {
                for other in also_requested_from {
                    if let Some(o) = self.peers.get_mut(&other) {
                        if o.requested.remove(&block) {
                            o.send(Message::Cancel(BlockRequest {
                                index,
                                begin,
                                length: len,
                            }));
                        }
                    }
                    self.picker.release(other, block);
                }
                Ok(Some((block, first_of_piece)))
            }
            BlockArrival::Discard => {
                self.stats.wasted += len as u64;
                self.fill(key);
                Ok(None)
            }
        }
    }

    /// The block is on disk: count it and ask this peer for more. The last
    /// block of a piece makes it ready to hash: the caller queues the job.
    #[must_use = "a ready piece must be handed to the hash pool"]
    pub fn finish_block(&mut self, key: PeerKey, block: Block) -> Option<PieceReady> {
        let len = self.block_len(block) as u64;
        self.stats.downloaded += len;
        if let Some(peer) = self.peers.get_mut(&key) {
            peer.down.add(len);
            peer.unsettled.insert(block.piece);
            peer.last_data = Some(Instant::now());
            peer.owing_since = (!peer.requested.is_empty()).then(Instant::now);
        }
        self.contributors
            .entry(block.piece)
            .or_default()
            .insert(key);
        let ready = self
            .picker
            .finish_block(block)
            .then_some(PieceReady { piece: block.piece });
        self.fill(key);
        ready
    }

    /// Reading the block's payload failed half-way.
    pub fn abort_block(&mut self, block: Block) {
        self.picker.abort_block(block);
    }

    /// Applies a download hash result: HAVE to every peer on success. On
    /// failure the piece is fetched again and `suspicion` names whom to
    /// blame: a sole sender, or a peer with a second strike, is dropped and
    /// banned; the other contributors of a shared failure are suspended
    /// until it is settled, and the piece is refetched from a single peer
    /// (see the picker) so the next failure has one culprit.
    pub fn on_hash_result(&mut self, r: HashVerdict) -> HashOutcome {
        let mut outcome = HashOutcome::default();
        let piece = r.piece;
        let senders = self.contributors.remove(&piece).unwrap_or_default();
        // Live senders and the other pieces each has awaiting a verdict;
        // senders already gone are not passed to `suspicion` (they would
        // be remembered again, or chosen to keep going).
        let mut unsettled: HashMap<PeerKey, HashSet<u32>> = HashMap::new();
        for k in &senders {
            if let Some(p) = self.peers.get_mut(k) {
                p.unsettled.remove(&piece);
                unsettled.insert(*k, p.unsettled.clone());
            }
        }
        let live: HashSet<PeerKey> = unsettled.keys().copied().collect();
        let was_complete = self.is_complete();
        self.picker
            .hash_done(piece as usize, r.ok, senders.len() > 1);
        if r.ok {
            self.stats.pieces_downloaded += 1;
            self.suspicion.on_pass(piece, &live);
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                let peer = self.peers.get_mut(&k).expect("key from map");
                peer.send(Message::Have(piece));
                if peer.bitfield.get(piece as usize) {
                    peer.wanted_from = peer.wanted_from.saturating_sub(1);
                }
                self.update_interest(k);
            }
            // Released suspects, and contributors whose piece budget had
            // stopped their requests, may ask for more now.
            self.fill_all();
            outcome.completed = !was_complete && self.is_complete();
        } else {
            self.stats.hash_failures += 1;
            self.stats.wasted += self.geometry.piece_len(piece as usize) as u64;
            // All senders, gone or not, count for "sole sender": one that
            // left does not make its co-contributor the only suspect.
            let verdicts = self
                .suspicion
                .on_fail(piece, &senders, &unsettled, Instant::now());
            for (key, verdict) in verdicts {
                let Some(peer) = self.peers.get_mut(&key) else {
                    continue;
                };
                if verdict == Verdict::Ban {
                    peer.close = Some(DropReason::BadData);
                    self.banned_ids.insert(peer.peer_id);
                    outcome.banned.push(peer.addr);
                    peer.wake();
                }
                self.distrust(key);
            }
            self.fill_all();
        }
        outcome
    }

    /// `key` is banned or suspended: its outstanding requests go back to
    /// the pool, and the pieces it partly delivered lose their received
    /// blocks, so its data cannot spoil a piece completed by others.
    fn distrust(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.get_mut(&key) else {
            return;
        };
        let requested: Vec<Block> = peer.requested.drain().collect();
        for b in requested {
            self.picker.release(key, b);
        }
        self.picker.forget_peer(key);
        let tainted: Vec<u32> = self
            .contributors
            .iter()
            .filter(|(_, senders)| senders.contains(&key))
            .map(|(&piece, _)| piece)
            .collect();
        for piece in tainted {
            if self.picker.reset_received(piece as usize) {
                let senders = self.contributors.remove(&piece).unwrap_or_default();
                for k in senders {
                    if let Some(p) = self.peers.get_mut(&k) {
                        p.unsettled.remove(&piece);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{add_peer, state};
    use super::*;

    /// Only the last block of a piece makes it ready to hash, once; the
    /// verdict comes back as a plain (piece, ok).
    #[test]
    fn only_the_last_block_of_a_piece_makes_it_ready() {
        let mut s = state(2, 2 * BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1);
        s.on_message(a, Message::Bitfield(vec![0xc0])).unwrap();
        s.on_message(a, Message::Unchoke).unwrap();
        let (b0, first) = s.begin_block(a, 1, 0, BLOCK_SIZE).unwrap().unwrap();
        assert!(first);
        assert_eq!(s.finish_block(a, b0), None);
        let (b1, first) = s
            .begin_block(a, 1, BLOCK_SIZE, BLOCK_SIZE)
            .unwrap()
            .unwrap();
        assert!(!first);
        assert_eq!(s.finish_block(a, b1), Some(PieceReady { piece: 1 }));
        let outcome = s.on_hash_result(HashVerdict { piece: 1, ok: true });
        assert_eq!(outcome, HashOutcome::default(), "piece 0 is still missing");
        assert!(s.have().get(1));
    }

    #[test]
    fn a_block_outside_the_torrent_drops_the_peer() {
        let mut s = state(2, BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1);
        for (index, begin, len) in [(2, 0, BLOCK_SIZE), (0, 1, BLOCK_SIZE), (0, 0, 1)] {
            assert!(
                s.begin_block(a, index, begin, len).is_err(),
                "{index} {begin} {len}"
            );
        }
    }
}
