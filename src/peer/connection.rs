//! One peer connection: a reader thread (this one) and a writer thread.
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
use std::io::{self, BufReader, IoSlice, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::handshake::{self, HandshakeError};
use super::limiter::RateLimiter;
use crate::core::{InfoHash, PeerId};
use crate::runtime::listener::{source_key, Slot};
use crate::storage::{HashJob, HashPurpose, Storage, StorageError};
use crate::swarm::picker::PeerKey;
use crate::swarm::torrent::{DropReason, Room, TorrentState};
use crate::wire::peer::{self, decode_body, id, Handshake, Message};

/// No message at all for this long drops the peer (keep-alives count).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(180);
/// We send a keep-alive after this long without sending anything.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// Blocks a writer sends per pull from the state.
const UPLOAD_BATCH: usize = 32;
const SOCKET_BUFFER: usize = 256 * 1024;

/// Connection threads allowed past `--max-peers`, for handshakes only: a
/// newcomer must complete its handshake before it may evict an idle peer
/// (see `swarm::eviction`), and it needs a thread to do so.
pub fn handshake_spare(max_peers: usize) -> usize {
    (max_peers / 4).max(4)
}

/// Of the spare handshake threads, how many one source address may hold:
/// half, so raw connections from one address that never handshake cannot
/// keep every other newcomer from reaching eviction.
pub fn spare_per_ip(max_peers: usize) -> usize {
    (handshake_spare(max_peers) / 2).max(1)
}

/// Outgoing connections that may be dialing or handshaking at once. Fewer
/// than `--max-peers`, so dials to addresses that hang (a connect timeout
/// plus a handshake timeout each) never hold every thread below the limit;
/// incoming handshakes do not count them either (see
/// [`room_for_incoming`]).
pub fn dial_budget(max_peers: usize) -> usize {
    max_peers.saturating_sub((max_peers / 4).max(1)).max(1)
}

/// Whether [`Swarm::dial`] may start another dial: below `--max-peers` in
/// all and below [`dial_budget`] pending.
pub fn room_for_dial(threads: usize, dialing: usize, max_peers: usize) -> bool {
    threads < max_peers && dialing < dial_budget(max_peers)
}

/// Connection threads now, as the accept decision sees them.
#[derive(Debug, Clone, Copy)]
pub struct ThreadCount {
    /// All connection threads, handshaking or not, both directions.
    pub threads: usize,
    /// Incoming ones still in their handshake (pending dials have their
    /// own budget, [`dial_budget`], and do not count).
    pub handshaking: usize,
    /// Of those, the ones from the newcomer's source ([`source_key`]).
    pub handshaking_from_ip: usize,
}

/// Whether an accepted connection gets a thread: below `--max-peers`
/// always; past it only a spare handshake thread, and only
/// [`spare_per_ip`] of those per address.
pub fn room_for_incoming(n: ThreadCount, max_peers: usize) -> bool {
    let spare = handshake_spare(max_peers);
    n.threads < max_peers
        || (n.handshaking < spare
            && n.threads < max_peers + spare
            && n.handshaking_from_ip < spare_per_ip(max_peers))
}

/// Byte-rate caps over all of a torrent's peers; `None` is unlimited.
#[derive(Default)]
pub struct RateLimits {
    pub upload: Option<RateLimiter>,
    pub download: Option<RateLimiter>,
}

/// Everything connection threads share for one torrent.
pub struct Swarm {
    pub state: Mutex<TorrentState>,
    pub storage: Arc<Storage>,
    pub info_hash: InfoHash,
    pub our_id: PeerId,
    pub max_frame: u32,
    pub max_peers: usize,
    pub limits: RateLimits,
    /// Where a reader sends a piece whose last block it wrote.
    hash_jobs: Sender<HashJob>,
    shutting_down: AtomicBool,
    /// Closed (dropped) at shutdown: wakes every writer.
    stop_tx: Mutex<Option<Sender<()>>>,
    stop_rx: Receiver<()>,
    conns: Mutex<Connections>,
    next_conn: AtomicU64,
    /// Addresses that answered as ourselves or on another torrent.
    refused: Mutex<Vec<SocketAddr>>,
    /// Writes that cannot go on (a full disk): the node stops on the first.
    storage_failed_tx: Sender<StorageError>,
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
        storage: Arc<Storage>,
        info_hash: InfoHash,
        our_id: PeerId,
        max_peers: usize,
        limits: RateLimits,
        hash_jobs: Sender<HashJob>,
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
            max_peers,
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
        let total = self.max_peers.saturating_sub(conns.threads.len());
        let pending = dial_budget(self.max_peers).saturating_sub(conns.dialing.len());
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
            || !room_for_dial(conns.threads.len(), conns.dialing.len(), self.max_peers)
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
    pub fn accept(self: &Arc<Self>, mut stream: TcpStream, addr: SocketAddr, slot: Slot) {
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
        if self.is_shutting_down() || !room_for_incoming(count, self.max_peers) {
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
                match handshake::answer(&mut stream, swarm.info_hash, swarm.our_id) {
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
            match state.make_room(self.max_peers, Instant::now()) {
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

    fn read_loop(&self, key: PeerKey, stream: &TcpStream) -> io::Result<()> {
        let mut r = BufReader::with_capacity(SOCKET_BUFFER, stream);
        let mut body = Vec::new();
        loop {
            let mut len = [0u8; 4];
            r.read_exact(&mut len)?;
            let len = u32::from_be_bytes(len);
            if len == 0 {
                continue;
            }
            if len > self.max_frame {
                return Err(protocol(format!("frame of {len} bytes")));
            }
            let mut msg_id = [0u8; 1];
            r.read_exact(&mut msg_id)?;
            if msg_id[0] == id::PIECE {
                if len < 9 {
                    return Err(protocol("short piece message".into()));
                }
                let mut hdr = [0u8; 8];
                r.read_exact(&mut hdr)?;
                let index = u32::from_be_bytes(hdr[..4].try_into().unwrap());
                let begin = u32::from_be_bytes(hdr[4..].try_into().unwrap());
                let data_len = len - 9;
                // Throttling here, before the payload is read, lets TCP's
                // own flow control slow the sender down.
                if let Some(l) = &self.limits.download {
                    if !l.acquire(data_len) {
                        return Err(io::Error::other("shutting down"));
                    }
                }
                let decision = self.state.lock().begin_block(key, index, begin, data_len);
                match decision.map_err(drop_err)? {
                    Some((block, first_of_piece)) => {
                        if first_of_piece {
                            let piece_len = self.state.lock().geometry().piece_len(index as usize);
                            if let Err(e) = self.storage.prepare_piece(index as usize, piece_len) {
                                // Our fault, not the peer's: keep it, drop the
                                // block, and let the node stop.
                                self.state.lock().abort_block(block);
                                let _ = self.storage_failed_tx.try_send(e);
                                io::copy(&mut (&mut r).take(data_len as u64), &mut io::sink())?;
                                continue;
                            }
                        }
                        // SAFETY: begin_block gave this thread the block.
                        let written = unsafe {
                            self.storage
                                .recv_block(index as usize, begin, data_len, &mut r)
                        };
                        match written {
                            Ok(()) => {
                                let ready = self.state.lock().finish_block(key, block);
                                if let Some(p) = ready {
                                    let _ = self.hash_jobs.send(HashJob {
                                        piece: p.piece as usize,
                                        purpose: HashPurpose::Download,
                                    });
                                }
                            }
                            Err(e) => {
                                self.state.lock().abort_block(block);
                                return Err(e);
                            }
                        }
                    }
                    None => {
                        io::copy(&mut (&mut r).take(data_len as u64), &mut io::sink())?;
                    }
                }
            } else {
                body.resize(len as usize - 1, 0);
                r.read_exact(&mut body)?;
                let msg = decode_body(msg_id[0], &body).map_err(|e| protocol(e.to_string()))?;
                self.state.lock().on_message(key, msg).map_err(drop_err)?;
            }
        }
    }

    fn write_loop(
        &self,
        key: PeerKey,
        stream: TcpStream,
        waker: Receiver<()>,
        stop: Receiver<()>,
    ) -> io::Result<()> {
        let mut control = Vec::with_capacity(1024);
        let mut uploaded = 0u64;
        let mut last_sent = Instant::now();
        let result = (|| loop {
            let out = self.state.lock().take_outgoing(key, uploaded, UPLOAD_BATCH);
            uploaded = 0;
            match out.close {
                // The reader ended and unregistered: a normal close.
                Some(DropReason::Closed) => return Ok(()),
                Some(reason) => return Err(drop_err(reason)),
                None => {}
            }
            if !out.messages.is_empty() || !out.uploads.is_empty() {
                control.clear();
                for m in &out.messages {
                    m.encode(&mut control);
                }
                if let Some(l) = &self.limits.upload {
                    if !l.acquire(out.uploads.iter().map(|r| r.length).sum()) {
                        return Ok(());
                    }
                }
                let headers: Vec<[u8; peer::PIECE_HEADER_LEN]> = out
                    .uploads
                    .iter()
                    .map(|r| peer::piece_header(r.index, r.begin, r.length))
                    .collect();
                // One gathered write: control messages, then each block's
                // header and its bytes straight from the map (no copy).
                let mut slices = vec![IoSlice::new(&control)];
                for (r, h) in out.uploads.iter().zip(&headers) {
                    slices.push(IoSlice::new(h));
                    // SAFETY: only verified pieces are served; nothing writes them.
                    let block = unsafe {
                        self.storage
                            .block_slices(r.index as usize, r.begin, r.length)
                    };
                    slices.extend(block.into_iter().map(IoSlice::new));
                    uploaded += r.length as u64;
                }
                write_all_vectored(&stream, &mut slices)?;
                last_sent = Instant::now();
                continue;
            }
            let idle = KEEPALIVE_INTERVAL.saturating_sub(last_sent.elapsed());
            crossbeam_channel::select! {
                recv(waker) -> _ => {}
                recv(stop) -> _ => return Ok(()),
                default(idle) => {
                    let mut ka = Vec::new();
                    Message::KeepAlive.encode(&mut ka);
                    (&stream).write_all(&ka)?;
                    last_sent = Instant::now();
                }
            }
        })();
        let _ = stream.shutdown(Shutdown::Both);
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

/// `write_all` for a gather list (std's is unstable).
fn write_all_vectored(mut stream: &TcpStream, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match stream.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn protocol(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn drop_err(reason: DropReason) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.to_string())
}

/// Connections that failed the handshake are not worth a retry soon.
pub fn is_permanent(e: &HandshakeError) -> bool {
    matches!(e, HandshakeError::WrongInfoHash | HandshakeError::OurOwnId)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(threads: usize, handshaking: usize, from_ip: usize) -> ThreadCount {
        ThreadCount {
            threads,
            handshaking,
            handshaking_from_ip: from_ip,
        }
    }

    #[test]
    fn below_max_peers_every_connection_gets_a_thread() {
        assert!(room_for_incoming(count(49, 49, 49), 50));
    }

    #[test]
    fn past_max_peers_only_spare_handshake_threads_and_half_per_address() {
        let (max, spare) = (50, handshake_spare(50));
        assert_eq!((spare, spare_per_ip(50)), (12, 6));
        assert!(room_for_incoming(count(max, 0, 0), max));
        assert!(room_for_incoming(count(max + 5, 5, 5), max));
        assert!(
            !room_for_incoming(count(max + 6, 6, 6), max),
            "one address holds half the spare threads"
        );
        assert!(room_for_incoming(count(max + 6, 6, 0), max), "another may");
        assert!(!room_for_incoming(count(max + spare, spare, 0), max));
        // Threads past the spare ones (handshaken, not yet dropped) also stop it.
        assert!(!room_for_incoming(count(max + spare, 0, 0), max));
    }

    #[test]
    fn tiny_limits_still_leave_a_spare_thread_per_address() {
        assert_eq!(spare_per_ip(1), 2);
        assert!(room_for_incoming(count(1, 0, 0), 1));
        assert!(room_for_incoming(count(2, 1, 1), 1));
        assert!(!room_for_incoming(count(3, 2, 2), 1));
    }

    #[test]
    fn pending_dials_leave_threads_below_the_limit_for_incoming() {
        for max in [1, 2, 4, 8, 50] {
            let budget = dial_budget(max);
            assert!(budget >= 1 && (max == 1 || budget < max), "{max}: {budget}");
            assert!(room_for_dial(budget - 1, budget - 1, max));
            assert!(!room_for_dial(budget, budget, max), "{max}");
            // Dials hanging in their handshake do not count against the
            // spare handshake threads.
            assert!(room_for_incoming(count(budget, 0, 0), max), "{max}");
        }
        assert!(!room_for_dial(4, 0, 4), "never past --max-peers");
    }
}
