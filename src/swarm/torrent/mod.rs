//! The state of one torrent's swarm, owned behind one mutex by the node.
//!
//! Connection threads call in with what they read (`on_message`,
//! `begin_block`/`finish_block`) and pull what to send (`take_outgoing`);
//! the node loop applies hash results and runs the periodic tick (rates,
//! rechoke). Every method is short and does no I/O: writes to disk happen
//! outside the lock, between `begin_block` and `finish_block`, which is what
//! gives a writer exclusive access to its block (the access rules are in the `storage` module doc).
//!
//! Lock order: this state's mutex is the only lock a connection thread takes
//! besides the rate limiters, which are never taken while holding it.
//!
//! This file holds the state, its public API and the message dispatch; the
//! rest is split by concern, each an `impl TorrentState` of its own:
//! [`peer_state`] (one peer's state, rates, interest and choking),
//! [`pipeline`] (requests, blocks arriving, hash verdicts), [`exchange`]
//! (BEP 10 handshake fields and BEP 11 peer exchange: what each peer was
//! told, what peers told us) and [`stats`] (counters and summaries).
//!
//! Nothing here reaches storage: a complete piece comes back from
//! `finish_block` as a [`PieceReady`] for the caller to hash, and its
//! verdict goes in as a [`HashVerdict`]. Writers are woken through [`Wake`].

mod exchange;
mod peer_state;
mod pipeline;
mod stats;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Instant;

use super::choker::{Candidate, Choker, RECHOKE_INTERVAL};
use super::eviction::{self, PeerActivity};
use super::picker::{Block, PeerKey, PiecePicker};
use super::superseed::{self, SuperSeeding};
use super::suspicion::Suspicion;
use crate::core::{Bitfield, PeerId, PieceGeometry, BLOCK_SIZE};
use crate::wire::peer::{BlockRequest, Message};

pub use exchange::{PEX_INTERVAL, PEX_MIN_GAP};
pub use peer_state::{PeerState, Rate, Wake};
pub use stats::{PeerSummary, Stats};

/// Requests a peer may queue with us before it is dropped (a request storm).
pub const MAX_QUEUED_UPLOADS: usize = 2048;
/// Advertised in our extension handshake.
pub const OUR_REQQ: u32 = 2048;
/// Outstanding requests to a peer whose limit we do not know.
pub const DEFAULT_PEER_REQQ: u32 = 250;
pub const MIN_WINDOW: u32 = 128;
pub const MAX_WINDOW: u32 = 1024;
/// A peer that owes us blocks and sends none for this long will not: its
/// requests go back to the pool for the others (a request it dropped, or
/// a writer that stopped, must not hold the last blocks of a piece forever
/// in the endgame, where each block is asked of two peers at most), and it
/// is not asked again for [`SNUB_PAUSE`].
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
pub const SNUB_PAUSE: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a peer must be disconnected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
    #[error("too many queued requests")]
    RequestStorm,
    #[error("sent data that failed the hash check")]
    BadData,
    #[error("both sides are seeds")]
    BothSeeds,
    #[error("evicted: idle while every slot was taken")]
    Evicted,
    /// The connection is no longer registered: its reader ended. What a
    /// writer sees on every normal close; not a fault of the peer.
    #[error("connection closed")]
    Closed,
}

/// A piece whose last block is on disk: the caller hands it to the hash
/// pool, and brings the verdict back through [`TorrentState::on_hash_result`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceReady {
    pub piece: u32,
}

/// The hash check of a downloaded piece (see [`PieceReady`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashVerdict {
    pub piece: u32,
    pub ok: bool,
}

/// What a connection's writer should send now.
#[derive(Debug, Default)]
pub struct Outgoing {
    pub messages: Vec<Message>,
    pub uploads: Vec<BlockRequest>,
    pub close: Option<DropReason>,
}

/// Whether a newcomer that completed its handshake may join.
#[derive(Debug, PartialEq, Eq)]
pub enum Room {
    /// A slot is free.
    Free,
    /// This idle peer was told to close to make room.
    Evicted(SocketAddr),
    /// Every slot holds a peer worth keeping: refuse the newcomer.
    Full,
}

/// What the node must do after a hash result.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HashOutcome {
    /// The last piece was verified: the torrent is complete.
    pub completed: bool,
    pub banned: Vec<SocketAddr>,
}

pub struct TorrentState {
    geometry: PieceGeometry,
    pub our_id: PeerId,
    picker: PiecePicker,
    peers: HashMap<PeerKey, PeerState>,
    next_key: PeerKey,
    choker: Choker,
    last_rechoke: Instant,
    last_tick: Instant,
    /// Who delivered blocks of each piece being downloaded.
    contributors: HashMap<u32, HashSet<PeerKey>>,
    banned_ids: HashSet<PeerId>,
    /// Blame for failed pieces, suspensions, unverified-piece budgets.
    suspicion: Suspicion,
    pub stats: Stats,
    pub listen_port: u16,
    /// Peer exchange (BEP 11) on; off for private torrents (BEP 27).
    pub pex_enabled: bool,
    /// Addresses peers told us about, for the node to dial.
    pex_learned: Vec<SocketAddr>,
    /// `--super-seed`: once complete, show each new peer a few pieces at a
    /// time instead of the whole bitfield (`swarm::superseed`).
    pub super_seed: bool,
    super_seeding: Option<SuperSeeding>,
    /// The bencoded info dictionary, served to peers that ask (BEP 9);
    /// `None`: not offered (a private torrent's stays with its `.torrent`).
    /// Set before the first peer registers: our handshake advertises it.
    pub metadata: Option<std::sync::Arc<[u8]>>,
}

impl TorrentState {
    pub fn new(
        geometry: PieceGeometry,
        our_id: PeerId,
        upload_slots: usize,
        seed: u64,
    ) -> TorrentState {
        let counts = (0..geometry.num_pieces())
            .map(|p| geometry.blocks_in(p))
            .collect();
        let now = Instant::now();
        TorrentState {
            picker: PiecePicker::new(counts, seed),
            geometry,
            our_id,
            peers: HashMap::new(),
            next_key: 1,
            choker: Choker::new(upload_slots, seed.rotate_left(17)),
            last_rechoke: now,
            last_tick: now,
            contributors: HashMap::new(),
            banned_ids: HashSet::new(),
            suspicion: Suspicion::default(),
            stats: Stats::default(),
            listen_port: 0,
            pex_enabled: true,
            pex_learned: Vec::new(),
            super_seed: false,
            super_seeding: None,
            metadata: None,
        }
    }

    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }

    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    pub fn left(&self) -> u64 {
        self.geometry.left(self.picker.have())
    }

    /// The torrent's piece and block sizes.
    pub fn geometry(&self) -> &PieceGeometry {
        &self.geometry
    }

    fn block_len(&self, block: Block) -> u32 {
        self.geometry.block_len(block.piece as usize, block.index)
    }

    pub fn num_peers(&self) -> usize {
        self.peers.len()
    }

    pub fn peer_addrs(&self) -> Vec<SocketAddr> {
        self.peers.values().map(|p| p.addr).collect()
    }

    /// Makes room for one newcomer among `max` slots: peers already told to
    /// close do not count; when all are taken, the least useful one (see
    /// `eviction`) is told to close.
    pub fn make_room(&mut self, max: usize, now: Instant) -> Room {
        let live: Vec<PeerActivity> = self
            .peers
            .iter()
            .filter(|(_, p)| p.close.is_none())
            .map(|(&key, p)| PeerActivity {
                key,
                connected_at: p.connected_at,
                last_data: p.last_data,
                interested: p.peer_interested || p.am_interested,
                announced: p.bitfield.count() > 0,
            })
            .collect();
        if live.len() < max {
            return Room::Free;
        }
        let Some(victim) = eviction::choose_victim(&live, now) else {
            return Room::Full;
        };
        let peer = self.peers.get_mut(&victim).expect("key from map");
        peer.close = Some(DropReason::Evicted);
        peer.wake();
        Room::Evicted(peer.addr)
    }

    /// When a second connection to the same peer appears, both sides keep
    /// the one dialed by the peer with the lower id. Returns true if the new
    /// connection should proceed (an existing duplicate is told to close),
    /// false if the new one should be dropped.
    pub fn settle_duplicate(&mut self, id: &PeerId, new_outgoing: bool) -> bool {
        let keep_outgoing = self.our_id < *id;
        let Some(existing) = self.peers.values_mut().find(|p| p.peer_id == *id) else {
            return true;
        };
        if existing.outgoing == keep_outgoing || new_outgoing != keep_outgoing {
            return false;
        }
        existing.close = Some(DropReason::Protocol("duplicate connection"));
        existing.wake();
        true
    }

    pub fn is_banned(&self, id: &PeerId) -> bool {
        self.banned_ids.contains(id)
    }

    /// A piece found valid on disk at start.
    pub fn resume_piece(&mut self, piece: usize) {
        self.picker.mark_have(piece);
        self.stats.pieces_resumed += 1;
    }

    /// A handshaken connection joins. Queues our extension handshake (if the
    /// peer speaks BEP 10) and bitfield.
    pub fn register(
        &mut self,
        addr: SocketAddr,
        peer_id: PeerId,
        extensions: bool,
        outgoing: bool,
        waker: impl Wake + 'static,
    ) -> PeerKey {
        let key = self.next_key;
        self.next_key += 1;
        let mut peer = PeerState::new(
            addr,
            peer_id,
            outgoing,
            self.geometry.num_pieces(),
            Box::new(waker),
        );
        if extensions {
            peer.send(Message::ExtendedHandshake(self.our_handshake(addr)));
        }
        let super_seeding = self.super_seed && self.is_complete();
        if super_seeding && self.super_seeding.is_none() {
            let n = self.geometry.num_pieces();
            self.super_seeding = Some(SuperSeeding::new(n, superseed::DEFAULT_DEPTH));
        }
        peer.super_seeded = super_seeding;
        if self.have().count() > 0 && !super_seeding {
            peer.send(Message::Bitfield(self.have().as_bytes().to_vec()));
        }
        self.peers.insert(key, peer);
        self.suspicion.add(key);
        if super_seeding {
            self.offer_pieces(key);
        }
        key
    }

    /// Super-seeding: tops up the pieces `key` is shown (as `have`s) to the
    /// policy's depth. Peers that saw our whole bitfield are left alone.
    fn offer_pieces(&mut self, key: PeerKey) {
        let (Some(ss), Some(peer)) = (self.super_seeding.as_mut(), self.peers.get_mut(&key)) else {
            return;
        };
        if !peer.super_seeded {
            return;
        }
        let picker = &self.picker;
        for piece in ss.top_up(key, &peer.bitfield, |i| picker.availability(i)) {
            peer.send(Message::Have(piece));
        }
    }

    /// The connection is gone: its requests go back to the pool at once and
    /// are offered to the other peers.
    pub fn unregister(&mut self, key: PeerKey) {
        let Some(peer) = self.peers.remove(&key) else {
            return;
        };
        self.picker.remove_availability(&peer.bitfield);
        for block in peer.requested {
            self.picker.release(key, block);
        }
        self.picker.forget_peer(key);
        self.suspicion.forget(key);
        if let Some(ss) = self.super_seeding.as_mut() {
            ss.forget(key);
        }
        self.fill_all();
    }

    /// Handles every message except piece data.
    pub fn on_message(&mut self, key: PeerKey, msg: Message) -> Result<(), DropReason> {
        let n = self.geometry.num_pieces();
        match msg {
            Message::KeepAlive | Message::Port(_) | Message::Unknown(_) => {}
            Message::Choke => {
                let peer = self.peer_mut(key)?;
                peer.peer_choking = true;
                // Without the fast extension a choke discards our requests.
                let lost: Vec<Block> = peer.requested.drain().collect();
                peer.owing_since = None;
                for b in lost {
                    self.picker.release(key, b);
                }
                self.picker.forget_peer(key);
                self.fill_all();
            }
            Message::Unchoke => {
                self.peer_mut(key)?.peer_choking = false;
                self.fill(key);
            }
            Message::Interested => {
                self.peer_mut(key)?.peer_interested = true;
                let unchoked = self.peers.values().filter(|p| !p.am_choking).count();
                if self.choker.has_free_slot(unchoked) {
                    self.set_choke(key, false);
                }
            }
            Message::NotInterested => {
                let peer = self.peer_mut(key)?;
                peer.peer_interested = false;
            }
            Message::Have(i) => {
                let i = self
                    .geometry
                    .validate(i)
                    .ok_or(DropReason::Protocol("have for a piece that does not exist"))?
                    .as_usize();
                let we_want = !self.have().get(i);
                let peer = self.peer_mut(key)?;
                if peer.bitfield.set(i) {
                    if we_want {
                        peer.wanted_from += 1;
                    }
                    self.picker.add_have(i);
                    self.update_interest(key);
                    self.fill(key);
                    self.offer_pieces(key);
                }
                self.check_both_seeds(key)?;
            }
            Message::Bitfield(bytes) => {
                let bf = Bitfield::from_bytes(&bytes, n)
                    .ok_or(DropReason::Protocol("bitfield of the wrong size"))?;
                // BEP 3 puts the bitfield first, but real clients (aria2)
                // send it after HAVEs or the extension handshake: merge it.
                let peer = self.peer_mut(key)?;
                let mut merged = bf;
                for i in peer.bitfield.iter_ones() {
                    merged.set(i);
                }
                let old = std::mem::replace(&mut peer.bitfield, merged.clone());
                let wanted = merged
                    .iter_ones()
                    .filter(|&i| !self.picker.have().get(i))
                    .count();
                let peer = self.peer_mut(key)?;
                peer.wanted_from = wanted;
                self.picker.remove_availability(&old);
                self.picker.add_availability(&merged);
                self.update_interest(key);
                self.fill(key);
                self.offer_pieces(key);
                self.check_both_seeds(key)?;
            }
            Message::Request(r) => {
                if !self.valid_request(&r) {
                    return Err(DropReason::Protocol("request outside the torrent"));
                }
                let have = self.have().get(r.index as usize);
                let peer = self.peer_mut(key)?;
                // Requests while choked or for pieces we lack are ignored.
                if !peer.am_choking && have {
                    if peer.uploads.len() >= MAX_QUEUED_UPLOADS {
                        return Err(DropReason::RequestStorm);
                    }
                    peer.uploads.push_back(r);
                    peer.wake();
                }
            }
            Message::Cancel(r) => {
                let peer = self.peer_mut(key)?;
                peer.uploads.retain(|q| *q != r);
            }
            Message::Piece { index, begin, data } => {
                // Only used by tests and slow paths: the reader normally
                // streams blocks through begin_block/finish_block.
                let _ = (index, begin, data);
                return Err(DropReason::Protocol("piece data must be streamed"));
            }
            Message::ExtendedHandshake(hs) => self.on_extended_handshake(key, hs)?,
            m @ (Message::Pex { .. } | Message::Metadata { .. } | Message::Extended { .. }) => {
                self.on_extension(key, m)?
            }
        }
        Ok(())
    }

    fn check_both_seeds(&mut self, key: PeerKey) -> Result<(), DropReason> {
        let complete = self.is_complete();
        let peer = self.peer_mut(key)?;
        if complete && peer.bitfield.is_complete() {
            return Err(DropReason::BothSeeds);
        }
        Ok(())
    }

    fn valid_request(&self, r: &BlockRequest) -> bool {
        self.geometry
            .validate(r.index)
            .is_some_and(|piece| self.geometry.contains(piece, r.begin, r.length))
    }

    fn peer_mut(&mut self, key: PeerKey) -> Result<&mut PeerState, DropReason> {
        self.peers
            .get_mut(&key)
            .ok_or(DropReason::Protocol("unknown connection"))
    }

    /// What `key`'s writer should send; `uploaded` is what it sent since
    /// the last call.
    pub fn take_outgoing(&mut self, key: PeerKey, uploaded: u64, max_uploads: usize) -> Outgoing {
        self.stats.uploaded += uploaded;
        let Some(peer) = self.peers.get_mut(&key) else {
            return Outgoing {
                close: Some(DropReason::Closed),
                ..Outgoing::default()
            };
        };
        peer.up.add(uploaded);
        if uploaded > 0 {
            peer.last_data = Some(Instant::now());
        }
        let mut out = Outgoing {
            messages: std::mem::take(&mut peer.outbox),
            close: peer.close.clone(),
            ..Outgoing::default()
        };
        if !peer.am_choking {
            let n = peer.uploads.len().min(max_uploads);
            out.uploads.extend(peer.uploads.drain(..n));
        }
        out
    }

    /// Whether `key` still has queued uploads (the writer loops while so).
    pub fn has_pending(&self, key: PeerKey) -> bool {
        self.peers
            .get(&key)
            .is_some_and(|p| !p.outbox.is_empty() || (!p.am_choking && !p.uploads.is_empty()))
    }

    /// Once a second: rates, pipeline windows, and every 10 s a rechoke.
    pub fn tick(&mut self, now: Instant) {
        self.suspicion.expire(now);
        let elapsed = now.duration_since(self.last_tick);
        self.last_tick = now;
        for peer in self.peers.values_mut() {
            peer.down.tick(elapsed);
            peer.up.tick(elapsed);
            // Keep about half a second of data in flight.
            let want = (peer.down.per_sec * 0.5 / BLOCK_SIZE as f64) as u32;
            peer.window = want.clamp(MIN_WINDOW, MAX_WINDOW);
        }
        if now.duration_since(self.last_rechoke) >= RECHOKE_INTERVAL {
            self.last_rechoke = now;
            self.rechoke(now);
        }
        self.send_pex(now);
        self.release_overdue(now);
        self.fill_all();
    }

    /// Takes back the requests of peers that owe blocks past
    /// [`REQUEST_TIMEOUT`] (cancelled, so a late answer is not sent).
    fn release_overdue(&mut self, now: Instant) {
        let overdue: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.owing_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= REQUEST_TIMEOUT)
            })
            .map(|(&k, _)| k)
            .collect();
        for key in overdue {
            let peer = self.peers.get_mut(&key).expect("key from map");
            peer.owing_since = None;
            peer.snubbed_until = Some(now + SNUB_PAUSE);
            let owed: Vec<Block> = peer.requested.drain().collect();
            for b in &owed {
                peer.send(Message::Cancel(BlockRequest {
                    index: b.piece,
                    begin: b.index * BLOCK_SIZE,
                    length: self.geometry.block_len(b.piece as usize, b.index),
                }));
            }
            for b in owed {
                self.picker.release(key, b);
            }
            self.picker.forget_peer(key);
        }
    }

    fn rechoke(&mut self, now: Instant) {
        let seeding = self.is_complete();
        let cands: Vec<Candidate> = self
            .peers
            .iter()
            .map(|(&key, p)| Candidate {
                key,
                interested: p.peer_interested,
                rate: if seeding {
                    p.up.per_sec
                } else {
                    p.down.per_sec
                },
            })
            .collect();
        let unchoke = self.choker.rechoke(&cands, now);
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.set_choke(k, !unchoke.contains(&k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    pub(super) fn state(pieces: usize, piece_len: u64) -> TorrentState {
        let geometry = PieceGeometry::new(pieces as u64 * piece_len, piece_len).unwrap();
        TorrentState::new(geometry, PeerId([0; 20]), 4, 42)
    }

    /// Counts the wakes a connection's writer would get.
    pub(super) fn waker() -> (impl Wake, Arc<AtomicUsize>) {
        let n = Arc::new(AtomicUsize::new(0));
        let m = n.clone();
        (move || _ = m.fetch_add(1, Ordering::Relaxed), n)
    }

    pub(super) fn add_peer(s: &mut TorrentState, port: u16) -> (PeerKey, Arc<AtomicUsize>) {
        let (wtx, wrx) = waker();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut id = [0u8; 20];
        id[..2].copy_from_slice(&port.to_be_bytes());
        (s.register(addr, PeerId(id), false, true, wtx), wrx)
    }

    fn requests(out: &Outgoing) -> Vec<BlockRequest> {
        out.messages
            .iter()
            .filter_map(|m| match m {
                Message::Request(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn seeder_bitfield_makes_us_interested_then_unchoke_fills_the_pipeline() {
        let mut s = state(4, 2 * BLOCK_SIZE as u64);
        let (k, _w) = add_peer(&mut s, 1);
        s.on_message(k, Message::Bitfield(vec![0xf0])).unwrap();
        let out = s.take_outgoing(k, 0, 10);
        assert_eq!(out.messages, vec![Message::Interested]);
        s.on_message(k, Message::Unchoke).unwrap();
        let out = s.take_outgoing(k, 0, 10);
        assert_eq!(
            requests(&out).len(),
            4,
            "an unproven peer gets the blocks of two pieces (its budget)"
        );
    }

    #[test]
    fn choke_returns_blocks_to_other_peers_at_once() {
        let mut s = state(1, 2 * BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1);
        let (b, _wb) = add_peer(&mut s, 2);
        for k in [a, b] {
            s.on_message(k, Message::Bitfield(vec![0x80])).unwrap();
        }
        s.on_message(a, Message::Unchoke).unwrap();
        assert_eq!(requests(&s.take_outgoing(a, 0, 0)).len(), 2);
        s.on_message(b, Message::Unchoke).unwrap();
        s.take_outgoing(b, 0, 0); // endgame duplicates, if any
        s.unregister(a);
        s.on_message(b, Message::Choke).unwrap();
        s.on_message(b, Message::Unchoke).unwrap();
        let out = s.take_outgoing(b, 0, 0);
        assert_eq!(
            requests(&out).len(),
            2,
            "blocks of the lost peer are re-requested"
        );
    }

    #[test]
    fn complete_piece_is_hashed_and_have_broadcast_once() {
        let mut s = state(1, BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1);
        let (b, _wb) = add_peer(&mut s, 2);
        s.on_message(a, Message::Bitfield(vec![0x80])).unwrap();
        s.on_message(a, Message::Unchoke).unwrap();
        let (block, _) = s.begin_block(a, 0, 0, BLOCK_SIZE).unwrap().unwrap();
        assert_eq!(s.finish_block(a, block), Some(PieceReady { piece: 0 }));
        let outcome = s.on_hash_result(HashVerdict { piece: 0, ok: true });
        assert!(outcome.completed);
        let haves = |o: Outgoing| {
            o.messages
                .iter()
                .filter(|m| matches!(m, Message::Have(0)))
                .count()
        };
        assert_eq!(haves(s.take_outgoing(b, 0, 0)), 1);
        assert_eq!(haves(s.take_outgoing(b, 0, 0)), 0);
        // A duplicate of the verified block is discarded.
        assert_eq!(s.begin_block(a, 0, 0, BLOCK_SIZE), Ok(None));
    }

    #[test]
    fn have_for_a_piece_being_hashed_is_counted_once() {
        let mut s = state(2, BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1);
        let (b, _wb) = add_peer(&mut s, 2);
        s.on_message(a, Message::Bitfield(vec![0xc0])).unwrap();
        s.on_message(a, Message::Unchoke).unwrap();
        let (block, _) = s.begin_block(a, 0, 0, BLOCK_SIZE).unwrap().unwrap();
        let _ = s.finish_block(a, block); // piece 0 is now being hashed
        s.on_message(b, Message::Have(0)).unwrap();
        s.on_hash_result(HashVerdict { piece: 0, ok: true });
        let out = s.take_outgoing(b, 0, 0);
        assert!(out.messages.contains(&Message::Interested));
        assert!(
            out.messages.contains(&Message::NotInterested),
            "nothing left to want from b"
        );
    }

    #[test]
    fn sole_sender_of_a_bad_piece_is_dropped_and_banned() {
        let mut s = state(2, BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1);
        s.on_message(a, Message::Bitfield(vec![0xc0])).unwrap();
        s.on_message(a, Message::Unchoke).unwrap();
        let (block, _) = s.begin_block(a, 1, 0, BLOCK_SIZE).unwrap().unwrap();
        let _ = s.finish_block(a, block);
        let outcome = s.on_hash_result(HashVerdict {
            piece: 1,
            ok: false,
        });
        assert_eq!(outcome.banned.len(), 1);
        assert_eq!(s.take_outgoing(a, 0, 0).close, Some(DropReason::BadData));
        let mut id = [0u8; 20];
        id[..2].copy_from_slice(&1u16.to_be_bytes());
        assert!(s.is_banned(&PeerId(id)));
        assert_eq!(s.stats.hash_failures, 1);
    }

    /// Two pieces shared by an honest and a corrupt peer are both queued
    /// for hashing before the first verdict: the second failure is not
    /// fresh evidence against either (the review's reproduction).
    #[test]
    fn two_shared_failures_in_flight_do_not_ban_the_honest_peer() {
        let mut s = state(4, 2 * BLOCK_SIZE as u64);
        let (honest, _wa) = add_peer(&mut s, 1);
        let (corrupt, _wb) = add_peer(&mut s, 2);
        for k in [honest, corrupt] {
            s.on_message(k, Message::Bitfield(vec![0xf0])).unwrap();
            s.on_message(k, Message::Unchoke).unwrap();
        }
        // Pieces 0 and 1 each get one block from each peer; both are
        // complete and queued for hashing before the first verdict.
        for piece in 0..2u32 {
            let (b0, _) = s
                .begin_block(honest, piece, 0, BLOCK_SIZE)
                .unwrap()
                .unwrap();
            let _ = s.finish_block(honest, b0);
            let (b1, _) = s
                .begin_block(corrupt, piece, BLOCK_SIZE, BLOCK_SIZE)
                .unwrap()
                .unwrap();
            let _ = s.finish_block(corrupt, b1);
        }
        let mut banned = vec![];
        for piece in 0..2 {
            banned.extend(s.on_hash_result(HashVerdict { piece, ok: false }).banned);
        }
        let honest_addr = s.peers[&honest].addr;
        assert!(
            !banned.contains(&honest_addr),
            "the honest peer was banned for the corrupt peer's blocks: {banned:?}"
        );
        assert!(s.suspicion.is_suspended(corrupt), "the other is suspended");
        assert!(!s.suspicion.is_suspended(honest), "one keeps going");
    }

    /// A contributor that disconnected before its piece's verdict is not
    /// remembered again, and cannot be the one kept (which would suspend
    /// every live contributor).
    #[test]
    fn a_departed_contributor_is_neither_kept_nor_remembered() {
        let mut s = state(3, 3 * BLOCK_SIZE as u64);
        let keys: Vec<PeerKey> = (1..=3).map(|p| add_peer(&mut s, p).0).collect();
        for &k in &keys {
            s.on_message(k, Message::Bitfield(vec![0xe0])).unwrap();
            s.on_message(k, Message::Unchoke).unwrap();
        }
        for (i, &k) in keys.iter().enumerate() {
            let begin = i as u32 * BLOCK_SIZE;
            let (b, _) = s.begin_block(k, 0, begin, BLOCK_SIZE).unwrap().unwrap();
            let _ = s.finish_block(k, b);
        }
        // The oldest connection, which would win every tie, leaves.
        s.unregister(keys[0]);
        s.on_hash_result(HashVerdict {
            piece: 0,
            ok: false,
        });
        let live_suspended = keys[1..]
            .iter()
            .filter(|&&k| s.suspicion.is_suspended(k))
            .count();
        assert_eq!(live_suspended, 1, "one live contributor keeps going");
        assert!(
            !s.suspicion.knows(keys[0]),
            "the departed peer was recreated"
        );
        s.on_hash_result(HashVerdict { piece: 1, ok: true });
        assert!(
            !s.suspicion.knows(keys[0]),
            "the departed peer was recreated"
        );
    }

    #[test]
    fn a_shared_bad_piece_suspends_a_contributor_and_discards_its_data() {
        let mut s = state(3, 2 * BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1);
        let (b, _wb) = add_peer(&mut s, 2);
        for k in [a, b] {
            s.on_message(k, Message::Bitfield(vec![0xe0])).unwrap();
            s.on_message(k, Message::Unchoke).unwrap();
        }
        // Piece 0: one block from each.
        let (b0, _) = s.begin_block(a, 0, 0, BLOCK_SIZE).unwrap().unwrap();
        let _ = s.finish_block(a, b0);
        let (b1, _) = s
            .begin_block(b, 0, BLOCK_SIZE, BLOCK_SIZE)
            .unwrap()
            .unwrap();
        let _ = s.finish_block(b, b1);
        let outcome = s.on_hash_result(HashVerdict {
            piece: 0,
            ok: false,
        });
        assert!(outcome.banned.is_empty(), "shared: nobody is banned yet");
        let suspended: Vec<PeerKey> = [a, b]
            .into_iter()
            .filter(|&k| s.suspicion.is_suspended(k))
            .collect();
        assert_eq!(suspended.len(), 1, "one suspect keeps going to refetch");
        let sus = suspended[0];
        // Its data in flight is discarded, and it gets no new requests.
        assert_eq!(s.begin_block(sus, 1, 0, BLOCK_SIZE), Ok(None));
        s.take_outgoing(sus, 0, 0);
        s.tick(Instant::now());
        assert!(requests(&s.take_outgoing(sus, 0, 0)).is_empty());
        assert!(
            s.peers[&sus].requested.is_empty(),
            "its requests were released"
        );
    }

    #[test]
    fn a_full_swarm_evicts_an_idle_peer_past_its_grace_for_a_newcomer() {
        let mut s = state(1, BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1);
        let (b, _wb) = add_peer(&mut s, 2);
        let now = Instant::now();
        assert_eq!(s.make_room(3, now), Room::Free);
        assert_eq!(
            s.make_room(2, now),
            Room::Full,
            "both in their grace period"
        );
        // b is busy: it just sent us data.
        s.peers.get_mut(&b).unwrap().last_data = Some(now + eviction::GRACE);
        let later = now + eviction::GRACE + Duration::from_secs(1);
        assert_eq!(s.make_room(2, later), Room::Evicted(s.peers[&a].addr));
        assert_eq!(s.take_outgoing(a, 0, 0).close, Some(DropReason::Evicted));
        assert_eq!(
            s.make_room(2, later),
            Room::Free,
            "a closing peer frees its slot"
        );
    }

    #[test]
    fn a_writer_of_an_unregistered_peer_sees_a_normal_close() {
        let mut s = state(1, BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1);
        s.unregister(a);
        assert_eq!(s.take_outgoing(a, 0, 0).close, Some(DropReason::Closed));
    }

    #[test]
    fn requests_are_served_only_when_unchoked_and_bounded() {
        let mut s = state(1, BLOCK_SIZE as u64);
        s.resume_piece(0);
        let (a, _wa) = add_peer(&mut s, 1);
        let r = BlockRequest {
            index: 0,
            begin: 0,
            length: BLOCK_SIZE,
        };
        s.on_message(a, Message::Request(r)).unwrap();
        assert!(
            s.take_outgoing(a, 0, 10).uploads.is_empty(),
            "choked: ignored"
        );
        s.on_message(a, Message::Interested).unwrap();
        s.on_message(a, Message::Request(r)).unwrap();
        assert_eq!(s.take_outgoing(a, 0, 10).uploads, vec![r]);
        let bad = BlockRequest {
            index: 0,
            begin: 1,
            length: BLOCK_SIZE,
        };
        assert!(s.on_message(a, Message::Request(bad)).is_err());
        for _ in 0..MAX_QUEUED_UPLOADS {
            s.on_message(a, Message::Request(r)).unwrap();
        }
        assert_eq!(
            s.on_message(a, Message::Request(r)),
            Err(DropReason::RequestStorm)
        );
    }

    #[test]
    fn have_out_of_range_and_bad_bitfield_drop_the_peer() {
        let mut s = state(3, BLOCK_SIZE as u64);
        let (a, _wa) = add_peer(&mut s, 1);
        assert!(s.on_message(a, Message::Have(3)).is_err());
        let (b, _wb) = add_peer(&mut s, 2);
        assert!(s.on_message(b, Message::Bitfield(vec![0xff])).is_err());
    }

    #[test]
    fn a_super_seeding_seed_shows_each_peer_a_few_pieces_then_the_next_as_it_gets_one() {
        let mut s = state(12, BLOCK_SIZE as u64);
        for p in 0..12 {
            s.resume_piece(p);
        }
        s.super_seed = true;
        let haves = |s: &mut TorrentState, k| -> (Vec<u32>, bool) {
            let out = s.take_outgoing(k, 0, 0);
            let bitfield = out
                .messages
                .iter()
                .any(|m| matches!(m, Message::Bitfield(_)));
            let haves = out
                .messages
                .iter()
                .filter_map(|m| match m {
                    Message::Have(i) => Some(*i),
                    _ => None,
                })
                .collect();
            (haves, bitfield)
        };
        let (a, _) = add_peer(&mut s, 1);
        let (b, _) = add_peer(&mut s, 2);
        let (shown_a, bitfield_a) = haves(&mut s, a);
        let (shown_b, _) = haves(&mut s, b);
        assert!(!bitfield_a, "no whole bitfield while super-seeding");
        assert_eq!(shown_a.len(), superseed::DEFAULT_DEPTH);
        assert!(
            shown_a.iter().all(|p| !shown_b.contains(p)),
            "two peers are shown different pieces: {shown_a:?} {shown_b:?}"
        );
        // a got one of its pieces: it is shown one more, new to both.
        s.on_message(a, Message::Have(shown_a[0])).unwrap();
        let (next, _) = haves(&mut s, a);
        assert_eq!(next.len(), 1);
        assert!(!shown_a.contains(&next[0]) && !shown_b.contains(&next[0]));
        // Without the flag a seed sends its bitfield as before.
        let mut plain = state(12, BLOCK_SIZE as u64);
        for p in 0..12 {
            plain.resume_piece(p);
        }
        let (c, _) = add_peer(&mut plain, 3);
        assert!(haves(&mut plain, c).1);
    }

    #[test]
    fn requests_a_peer_sits_on_past_the_timeout_go_to_another_peer() {
        let mut s = state(4, BLOCK_SIZE as u64);
        let (a, _) = add_peer(&mut s, 1);
        let (b, _) = add_peer(&mut s, 2);
        for k in [a, b] {
            s.on_message(k, Message::Bitfield(vec![0xf0])).unwrap();
        }
        s.on_message(a, Message::Unchoke).unwrap();
        let asked_a = requests(&s.take_outgoing(a, 0, 10));
        assert!(!asked_a.is_empty());
        // a sends nothing for longer than the timeout.
        s.tick(Instant::now() + REQUEST_TIMEOUT + Duration::from_secs(1));
        let out_a = s.take_outgoing(a, 0, 10);
        let cancelled = out_a
            .messages
            .iter()
            .filter(|m| matches!(m, Message::Cancel(_)))
            .count();
        assert_eq!(cancelled, asked_a.len(), "a's requests are cancelled");
        assert!(requests(&out_a).is_empty(), "a is not asked again at once");
        // b unchokes: the blocks a sat on are asked of b first.
        s.on_message(b, Message::Unchoke).unwrap();
        let asked_b = requests(&s.take_outgoing(b, 0, 10));
        for r in &asked_a {
            assert!(asked_b.contains(r), "{r:?} not asked of b: {asked_b:?}");
        }
    }
}
