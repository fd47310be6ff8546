//! `Swarm`: the registry of connection threads, dial and accept, the run
//! of a handshaken connection (a reader thread, this one, in
//! [`super::reader`] and a writer thread in [`super::writer`]), shutdown.
//! How many threads may run is [`super::budget`]'s.
//!
//! Anatomy of a downloaded block: the reader reads a piece header, asks the
//! swarm state whether to keep the block (`begin_block`), reads the payload
//! straight from the socket buffer into the mapped file, then reports it
//! (`finish_block`), which may queue a hash job and new requests; the
//! writer, woken, pulls those requests and sends them.
//!
//! Anatomy of an uploaded block: the reader queues the peer's request in the
//! state; the writer pulls it (`take_outgoing`), writes the 13-byte header
//! and the block straight from the map.
//!
//! Locks: `state`, `conns` and `refused` are each taken alone. An accepted
//! connection's listener `Slot` may be dropped while `conns` is held (a
//! thread that fails to spawn drops it), so the listener's own lock comes
//! after `conns`, never before.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

pub use super::budget::{
    dial_budget, handshake_spare, room_for_dial, room_for_incoming, spare_per_ip, ThreadCount,
};
use super::handshake::{self, HandshakeError};
use super::limiter::RateLimiter;
pub use super::writer::KEEPALIVE_INTERVAL;
use crate::core::{InfoHash, PeerId};
use crate::runtime::listener::{source_key, Slot};
use crate::storage::{HashQueue, PieceStore, StorageError};
use crate::swarm::picker::PeerKey;
use crate::swarm::torrent::{DropReason, Room, TorrentState};
use crate::wire::peer::{self, Handshake};

/// No message at all for this long drops the peer (keep-alives count).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(180);

/// Byte-rate caps over all of a torrent's peers; `None` is unlimited.
/// Shared (`Arc`) because a process's global limit re-splits them between
/// its torrents while they run (`node::limits`).
#[derive(Default)]
pub struct RateLimits {
    pub upload: Option<Arc<RateLimiter>>,
    pub download: Option<Arc<RateLimiter>>,
}

/// Everything connection threads share for one torrent.
pub struct Swarm {
    pub state: Mutex<TorrentState>,
    pub storage: Arc<dyn PieceStore>,
    pub info_hash: InfoHash,
    pub our_id: PeerId,
    pub max_frame: u32,
    /// This torrent's share of the process's connections: set at start
    /// and re-split as torrents come and go.
    max_peers: AtomicUsize,
    pub limits: RateLimits,
    /// Where a reader sends a piece whose last block it wrote.
    pub(super) hash_jobs: HashQueue,
    shutting_down: AtomicBool,
    /// Closed (dropped) at shutdown: wakes every writer.
    stop_tx: Mutex<Option<Sender<()>>>,
    stop_rx: Receiver<()>,
    conns: Mutex<Connections>,
    next_conn: AtomicU64,
    /// Addresses that answered as ourselves or on another torrent.
    refused: Mutex<Vec<SocketAddr>>,
    /// Writes that cannot go on (a full disk): the node stops on the first.
    pub(super) storage_failed_tx: Sender<StorageError>,
    storage_failed_rx: Receiver<StorageError>,
}

#[derive(Default)]
struct Connections {
    /// Live or starting connection threads, with a handle on the socket to
    /// close at shutdown: registered before connect (dials) or before the
    /// handshake (accepts), so no thread waits out a timeout at shutdown.
    threads: HashMap<u64, (Option<socket2::Socket>, JoinHandle<()>)>,
    /// Addresses being dialed or connected by us.
    dialed: std::collections::HashSet<SocketAddr>,
    /// Incoming threads (ids) that have not finished their handshake
    /// yet, with the peer's [`source_key`].
    handshaking: HashMap<u64, IpAddr>,
    /// Outgoing threads (ids) dialing or handshaking.
    dialing: std::collections::HashSet<u64>,
}

impl Swarm {
    pub fn new(
        state: TorrentState,
        storage: Arc<dyn PieceStore>,
        info_hash: InfoHash,
        our_id: PeerId,
        max_peers: usize,
        limits: RateLimits,
        hash_jobs: HashQueue,
    ) -> Arc<Swarm> {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let (storage_failed_tx, storage_failed_rx) = crossbeam_channel::bounded(1);
        let max_frame = peer::max_frame_len(state.geometry().num_pieces());
        Arc::new(Swarm {
            state: Mutex::new(state),
            storage,
            info_hash,
            our_id,
            max_frame,
            max_peers: AtomicUsize::new(max_peers.max(1)),
            limits,
            hash_jobs,
            shutting_down: AtomicBool::new(false),
            stop_tx: Mutex::new(Some(stop_tx)),
            stop_rx,
            conns: Mutex::new(Connections::default()),
            next_conn: AtomicU64::new(1),
            refused: Mutex::new(Vec::new()),
            storage_failed_tx,
            storage_failed_rx,
        })
    }

    /// How many peers this torrent may hold.
    pub fn max_peers(&self) -> usize {
        self.max_peers.load(Ordering::Relaxed)
    }

    /// A new share: takes effect for the next dial or handshake; peers
    /// past it are let go by eviction as newcomers arrive, not at once.
    pub fn set_max_peers(&self, n: usize) {
        self.max_peers.store(n.max(1), Ordering::Relaxed);
    }

    /// Yields the first storage failure (e.g. a full disk) of any connection;
    /// the node owns the decision to stop.
    pub fn storage_failures(&self) -> &Receiver<StorageError> {
        &self.storage_failed_rx
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Connection threads alive (including ones still handshaking).
    pub fn connection_count(&self) -> usize {
        self.conns.lock().threads.len()
    }

    /// How many more dials [`Swarm::dial`] would start now: room below
    /// `--max-peers` and below the [`dial_budget`] of pending dials.
    pub fn dial_room(&self) -> usize {
        let conns = self.conns.lock();
        let total = self.max_peers().saturating_sub(conns.threads.len());
        let pending = dial_budget(self.max_peers()).saturating_sub(conns.dialing.len());
        total.min(pending)
    }

    /// Addresses found not worth dialing again since the last call.
    pub fn take_refused(&self) -> Vec<SocketAddr> {
        std::mem::take(&mut *self.refused.lock())
    }

    pub fn is_dialed(&self, addr: &SocketAddr) -> bool {
        self.conns.lock().dialed.contains(addr)
    }

    /// Starts a thread that dials `addr`; false if at the peer limit.
    pub fn dial(self: &Arc<Self>, addr: SocketAddr) -> bool {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let mut conns = self.conns.lock();
        if self.is_shutting_down()
            || !room_for_dial(conns.threads.len(), conns.dialing.len(), self.max_peers())
            || !conns.dialed.insert(addr)
        {
            return false;
        }
        let swarm = self.clone();
        let handle = std::thread::Builder::new()
            .name(format!("peer-out-{addr}"))
            .spawn(move || {
                let _slot = SlotGuard {
                    swarm: &swarm,
                    id,
                    dialed: Some(addr),
                };
                let dialed = swarm.connect(id, addr).and_then(|mut stream| {
                    let theirs = handshake::dial(&mut stream, swarm.info_hash, swarm.our_id)?;
                    Ok((stream, theirs))
                });
                match dialed {
                    Ok((stream, theirs)) => swarm.run(id, stream, addr, theirs, true),
                    Err(e) => {
                        log::debug!("dial {addr}: {e}");
                        if is_permanent(&e) {
                            swarm.refused.lock().push(addr);
                        }
                    }
                }
            });
        match handle {
            Ok(h) => {
                conns.threads.insert(id, (None, h));
                conns.dialing.insert(id);
                true
            }
            Err(e) => {
                log::warn!("cannot start a connection thread: {e}");
                conns.dialed.remove(&addr);
                false
            }
        }
    }

    /// Takes an accepted connection; refuses it politely past the limit.
    /// Past `--max-peers` a few spare threads may still run handshakes, so
    /// a newcomer can take an idle peer's slot (decided in `run`); one
    /// address may hold only [`spare_per_ip`] of them. `slot` is the
    /// connection's place in the listener (its per-address count), held by
    /// the connection thread until it ends.
    pub fn accept(self: &Arc<Self>, stream: TcpStream, addr: SocketAddr, slot: Slot) {
        self.accept_inner(stream, addr, slot, None)
    }

    /// [`Swarm::accept`] for a connection whose handshake the router has
    /// already read (it chose this swarm by the handshake's info-hash).
    pub fn accept_handshaken(
        self: &Arc<Self>,
        stream: TcpStream,
        addr: SocketAddr,
        slot: Slot,
        theirs: Handshake,
    ) {
        self.accept_inner(stream, addr, slot, Some(theirs))
    }

    fn accept_inner(
        self: &Arc<Self>,
        mut stream: TcpStream,
        addr: SocketAddr,
        slot: Slot,
        read: Option<Handshake>,
    ) {
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let source = source_key(addr.ip());
        let mut conns = self.conns.lock();
        let count = ThreadCount {
            threads: conns.threads.len(),
            handshaking: conns.handshaking.len(),
            handshaking_from_ip: conns
                .handshaking
                .values()
                .filter(|&&ip| ip == source)
                .count(),
        };
        if self.is_shutting_down() || !room_for_incoming(count, self.max_peers()) {
            log::debug!("refusing {addr}: at the peer limit");
            let _ = stream.shutdown(Shutdown::Both);
            return;
        }
        let swarm = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("peer-in-{addr}"))
            .spawn(move || {
                // Dropped last: the swarm's count goes before the listener's.
                let _listener_slot = slot;
                let _slot = SlotGuard {
                    swarm: &swarm,
                    id,
                    dialed: None,
                };
                let registered = stream
                    .try_clone()
                    .is_ok_and(|c| swarm.register_socket(id, c.into()));
                if !registered {
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                let answered = match read {
                    Some(theirs) => {
                        handshake::answer_read(&mut stream, theirs, swarm.info_hash, swarm.our_id)
                    }
                    None => handshake::answer(&mut stream, swarm.info_hash, swarm.our_id),
                };
                match answered {
                    Ok(theirs) => swarm.run(id, stream, addr, theirs, false),
                    Err(e) => {
                        log::debug!("incoming {addr}: {e}");
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                }
            });
        match spawned {
            Ok(h) => {
                conns.threads.insert(id, (None, h));
                conns.handshaking.insert(id, source);
            }
            Err(e) => log::warn!("cannot start a connection thread: {e}"),
        }
    }

    /// Gives shutdown a handle on connection `id`'s socket. False if
    /// shutdown has begun: the caller must stop instead of going on.
    fn register_socket(&self, id: u64, socket: socket2::Socket) -> bool {
        let mut conns = self.conns.lock();
        match conns.threads.get_mut(&id) {
            Some(entry) if !self.is_shutting_down() => {
                entry.0 = Some(socket);
                true
            }
            _ => false,
        }
    }

    /// Connects to `addr` with the socket registered first, so shutdown
    /// can end the connect and the handshake after it.
    fn connect(&self, id: u64, addr: SocketAddr) -> Result<TcpStream, HandshakeError> {
        let stopping = || io::Error::other("shutting down");
        let socket = handshake::socket_for(addr)?;
        if !self.register_socket(id, socket.try_clone()?) {
            return Err(stopping().into());
        }
        let stream = handshake::connect(socket, addr)?;
        // Shutdown may have closed the socket before the connect began,
        // which a connect does not notice.
        if self.is_shutting_down() {
            return Err(stopping().into());
        }
        Ok(stream)
    }

    fn finished(&self, id: u64, dialed: Option<SocketAddr>) {
        let mut conns = self.conns.lock();
        // Dropping our own JoinHandle detaches this (ending) thread.
        conns.threads.remove(&id);
        conns.handshaking.remove(&id);
        conns.dialing.remove(&id);
        if let Some(addr) = dialed {
            conns.dialed.remove(&addr);
        }
    }

    /// Runs a handshaken connection until it ends.
    fn run(
        self: &Arc<Self>,
        id: u64,
        stream: TcpStream,
        addr: SocketAddr,
        theirs: Handshake,
        outgoing: bool,
    ) {
        {
            let mut conns = self.conns.lock();
            conns.handshaking.remove(&id);
            conns.dialing.remove(&id);
        }
        let (waker_tx, waker_rx) = crossbeam_channel::bounded(1);
        let key = {
            let mut state = self.state.lock();
            if state.is_banned(&theirs.peer_id)
                || !state.settle_duplicate(&theirs.peer_id, outgoing)
            {
                log::debug!("dropping {addr}: banned or duplicate");
                return;
            }
            match state.make_room(self.max_peers(), Instant::now()) {
                Room::Free => {}
                Room::Evicted(victim) => {
                    log::debug!("evicting idle {victim} to make room for {addr}")
                }
                Room::Full => {
                    log::debug!("dropping {addr}: every slot holds a busy or new peer");
                    return;
                }
            }
            state.register(
                addr,
                theirs.peer_id,
                theirs.supports_extensions(),
                outgoing,
                {
                    let tx = waker_tx.clone();
                    move || _ = tx.try_send(())
                },
            )
        };
        // At once: however the setup below fails (no file descriptor for a
        // clone, no thread for the writer), the peer is unregistered, so
        // its requested blocks go back to the pool and its slot is freed.
        let registered = Registered {
            swarm: self,
            key,
            stream: &stream,
            waker: &waker_tx,
        };
        log::debug!("connected to {addr} ({})", theirs.peer_id);
        let result = self
            .clone()
            .run_registered(id, key, &stream, addr, registered, waker_rx);
        match result {
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                log::debug!("{addr}: connection ended: closed by the peer")
            }
            // SO_RCVTIMEO expiring reads as EAGAIN on Linux.
            Err(e) if handshake::is_timeout(&e) => {
                log::debug!("{addr}: connection ended: nothing heard for {IDLE_TIMEOUT:?}")
            }
            Err(e) => log::debug!("{addr}: connection ended: {e}"),
            Ok(()) => {}
        }
    }

    fn run_registered(
        self: Arc<Self>,
        id: u64,
        key: PeerKey,
        stream: &TcpStream,
        addr: SocketAddr,
        registered: Registered<'_>,
        waker_rx: Receiver<()>,
    ) -> io::Result<()> {
        stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
        stream.set_write_timeout(Some(IDLE_TIMEOUT))?;
        let write_half = stream.try_clone()?;
        // The socket was registered before the handshake (see `connect`
        // and `accept`); shutdown may have begun since.
        if !self.register_socket(id, stream.try_clone()?.into()) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        let swarm = self.clone();
        let stop = self.stop_rx.clone();
        let closer = stream.try_clone()?;
        let writer = std::thread::Builder::new()
            .name(format!("peer-w-{addr}"))
            .spawn(move || {
                // However the writer ends, the socket closes, so the reader
                // ends too instead of waiting for the idle timeout.
                let _close = CloseOnDrop(closer);
                if let Err(e) = swarm.write_loop(key, write_half, waker_rx, stop) {
                    log::debug!("{addr}: writer ended: {e}");
                }
            })?;
        let result = self.read_loop(key, stream);
        // Unregisters and closes the socket, so the writer ends.
        drop(registered);
        let _ = writer.join();
        result
    }

    /// Stops every connection and joins its threads (bounded by `deadline`).
    pub fn shutdown(&self, deadline: Duration) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.stop_tx.lock().take();
        // Readers and writers asleep in a rate limit wake up and end.
        for l in [&self.limits.upload, &self.limits.download]
            .into_iter()
            .flatten()
        {
            l.close();
        }
        let threads: Vec<(Option<socket2::Socket>, JoinHandle<()>)> = {
            let mut conns = self.conns.lock();
            conns.threads.drain().map(|(_, v)| v).collect()
        };
        for (stream, _) in &threads {
            if let Some(s) = stream {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        let start = Instant::now();
        for (_, handle) in threads {
            // Every socket is closed, so threads end at once; past the
            // deadline (a bug) we stop waiting rather than hang the exit.
            while !handle.is_finished() && start.elapsed() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

/// Frees a connection's slot when its thread ends, even by a panic (a bug
/// must not leak a slot until restart).
struct SlotGuard<'a> {
    swarm: &'a Swarm,
    id: u64,
    dialed: Option<SocketAddr>,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.swarm.finished(self.id, self.dialed);
    }
}

struct CloseOnDrop(TcpStream);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// A registered peer's teardown, run when its reader stops (or panics):
/// the state forgets the peer (its blocks go back to the pool), the writer
/// is woken to notice and exit, and the socket closes.
struct Registered<'a> {
    swarm: &'a Swarm,
    key: PeerKey,
    stream: &'a TcpStream,
    waker: &'a Sender<()>,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.swarm.state.lock().unregister(self.key);
        let _ = self.waker.try_send(());
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

pub(super) fn drop_err(reason: DropReason) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_string())
}

/// Connections that failed the handshake are not worth a retry soon.
pub fn is_permanent(e: &HandshakeError) -> bool {
    matches!(e, HandshakeError::WrongInfoHash | HandshakeError::OurOwnId)
}
