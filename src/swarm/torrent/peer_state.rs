//! One peer's state as the swarm sees it (bitfield, choke and interest
//! both ways, requests in flight, queued uploads, outbox, rates, exchange
//! bookkeeping), the smoothed [`Rate`], and the [`Wake`] that tells the
//! peer's writer there is something to send. Interest and choking change
//! here, each change queued as a message.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{DropReason, TorrentState, DEFAULT_PEER_REQQ, MIN_WINDOW};
use crate::core::{Bitfield, PeerId};
use crate::swarm::picker::{Block, PeerKey};
use crate::wire::peer::{BlockRequest, Message};

/// How the state tells a connection's writer there is something to send.
/// Must not block (the state's lock is held); a wake may be coalesced with
/// one still pending. Any `Fn() + Send` is one, e.g. a closure that
/// `try_send`s on the writer's channel.
pub trait Wake: Send {
    fn wake(&self);
}

impl<F: Fn() + Send> Wake for F {
    fn wake(&self) {
        self()
    }
}

/// Smoothed bytes per second, updated once per tick.
#[derive(Default, Clone, Copy, Debug)]
pub struct Rate {
    pub total: u64,
    last_total: u64,
    pub per_sec: f64,
}

impl Rate {
    pub(super) fn add(&mut self, n: u64) {
        self.total += n;
    }
    pub(super) fn tick(&mut self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64().max(0.001);
        let now = (self.total - self.last_total) as f64 / secs;
        self.per_sec = if self.per_sec == 0.0 {
            now
        } else {
            0.5 * self.per_sec + 0.5 * now
        };
        self.last_total = self.total;
    }
}

pub struct PeerState {
    pub addr: SocketAddr,
    /// We dialed this peer (used to settle duplicate connections).
    pub outgoing: bool,
    pub peer_id: PeerId,
    pub client: Option<String>,
    pub bitfield: Bitfield,
    /// Joined while we super-seeded: shown pieces a few at a time, never
    /// our whole bitfield.
    pub(super) super_seeded: bool,
    /// Pieces the peer has that we have not verified: interested iff > 0.
    pub(super) wanted_from: usize,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    pub(super) requested: HashSet<Block>,
    pub(super) uploads: VecDeque<BlockRequest>,
    pub(super) outbox: Vec<Message>,
    pub(super) waker: Box<dyn Wake>,
    pub(super) reqq: u32,
    pub(super) window: u32,
    pub down: Rate,
    pub up: Rate,
    pub(super) close: Option<DropReason>,
    /// Where the peer accepts connections: the address we dialed, or its
    /// IP plus the port its extension handshake gave. Only these are worth
    /// passing on in peer exchange.
    pub(super) listen_addr: Option<SocketAddr>,
    /// The peer's id for `ut_pex`, if it speaks peer exchange.
    pub(super) ut_pex: Option<u8>,
    /// Addresses our last peer exchange messages told it are connected.
    pub(super) pex_told: HashSet<SocketAddr>,
    pub(super) pex_due: Option<Instant>,
    pub(super) pex_heard: Option<Instant>,
    /// The peer's id for `ut_metadata`, if it speaks metadata exchange.
    pub(super) ut_metadata: Option<u8>,
    /// Metadata pieces served in the current one-second window, and when
    /// it began (the per-peer budget of `exchange`).
    pub(super) metadata_served: (Instant, u32),
    /// Pieces this peer delivered blocks of that await their hash verdict.
    pub(super) unsettled: HashSet<u32>,
    pub(super) connected_at: Instant,
    /// Last payload block either way (eviction keeps busy peers).
    pub(super) last_data: Option<Instant>,
    /// Since when the peer owes us blocks without sending one (the start
    /// of the wait, or its last block); `None` while nothing is owed.
    pub(super) owing_since: Option<Instant>,
    /// A peer whose requests timed out is not asked again before this.
    pub(super) snubbed_until: Option<Instant>,
}

impl PeerState {
    pub(super) fn new(
        addr: SocketAddr,
        peer_id: PeerId,
        outgoing: bool,
        num_pieces: usize,
        waker: Box<dyn Wake>,
    ) -> PeerState {
        PeerState {
            addr,
            outgoing,
            peer_id,
            client: None,
            bitfield: Bitfield::new(num_pieces),
            super_seeded: false,
            wanted_from: 0,
            am_choking: true,
            am_interested: false,
            peer_choking: true,
            peer_interested: false,
            requested: HashSet::new(),
            uploads: VecDeque::new(),
            outbox: Vec::new(),
            waker,
            reqq: DEFAULT_PEER_REQQ,
            window: MIN_WINDOW,
            down: Rate::default(),
            up: Rate::default(),
            close: None,
            listen_addr: outgoing.then_some(addr),
            ut_pex: None,
            pex_told: HashSet::new(),
            pex_due: None,
            pex_heard: None,
            ut_metadata: None,
            metadata_served: (Instant::now(), 0),
            unsettled: HashSet::new(),
            owing_since: None,
            snubbed_until: None,
            connected_at: Instant::now(),
            last_data: None,
        }
    }

    pub(super) fn wake(&self) {
        self.waker.wake();
    }

    /// Queues `m` for the writer and wakes it.
    pub(super) fn send(&mut self, m: Message) {
        self.outbox.push(m);
        self.wake();
    }
}

impl TorrentState {
    /// Tells `key` we are interested iff it has a piece we lack.
    pub(super) fn update_interest(&mut self, key: PeerKey) {
        if let Some(peer) = self.peers.get_mut(&key) {
            let want = peer.wanted_from > 0;
            if want != peer.am_interested {
                peer.am_interested = want;
                peer.send(if want {
                    Message::Interested
                } else {
                    Message::NotInterested
                });
            }
        }
    }

    pub(super) fn set_choke(&mut self, key: PeerKey, choke: bool) {
        if let Some(peer) = self.peers.get_mut(&key) {
            if peer.am_choking != choke {
                peer.am_choking = choke;
                if choke {
                    peer.uploads.clear();
                }
                peer.send(if choke {
                    Message::Choke
                } else {
                    Message::Unchoke
                });
            }
        }
    }
}
