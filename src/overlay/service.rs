//! The running overlay node ([`Overlay`]): its state, its threads and their
//! stop. The pieces are in rooms of their own: [`super::rpc`] (one request
//! and its reply, client side), [`super::handler`] (the answer to one
//! request, no sockets), [`super::gossip`] (digests, fanout, push) and
//! [`super::health`] (discovery, pings, dropping dead members). Here: the
//! listener (`runtime::listener`: bounded connection threads in total and
//! per source address, one request and one reply per connection under one
//! whole deadline), the gossip and health threads, and the public API.
//!
//! With a swarm key (`OverlayConfig::keys`) every request is opened, and
//! checked fresh by `replay`, before a byte of it is parsed; one that
//! fails is counted and its connection closed unanswered (`serve_sealed`).
//!
//! Lock order: `members` before `store` where both are needed; neither is
//! held across network I/O. `replay` is taken alone, for one check. Today no code path holds both: each guard is
//! taken for one statement or one short block, and never in an `if let` /
//! `match` scrutinee (edition 2021 keeps such a guard alive to the end of
//! the block). Test builds check this with parking_lot's deadlock detection
//! (`runtime::deadlock`) and `tests::announce_withdraw_and_exchange_never_deadlock`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Mutex, RwLock};

use super::handler::{Answer, Handler};
use super::membership::Members;
pub use super::rpc::{request, request_from, request_with, Counters, RequestError};
use super::store::{ProviderMeta, Store};
use super::OverlayConfig;
use crate::core::lww::now_ms;
use crate::core::{InfoHash, PeerId};
use crate::runtime::listener::{self, Deadline, Limits, Service, Timed};
use crate::wire::overlay::{self as wire, FrameError, Message};
use crate::wire::sealed::{self, Context, Keyring, ReplayGuard};

/// Most connection threads serving requests at once; more are refused.
pub const MAX_CONNECTIONS: usize = 128;
/// Most of them from one source address (its oldest is displaced past it),
/// so one source never shuts out the others.
pub const MAX_CONNECTIONS_PER_IP: usize = MAX_CONNECTIONS / 4;
/// One request's whole time: reading it, answering it (a forwarded lookup
/// takes up to the RPC timeout) and writing the reply. A client that sends
/// a byte at a time cannot stretch it.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(3);
/// How long [`Overlay::shutdown`] waits for its background loops.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// Peers asked in parallel by a lookup.
pub const LOOKUP_FANOUT: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// What the listener's connection threads and the two loops share.
pub(super) struct Inner {
    pub(super) cfg: OverlayConfig,
    /// Our overlay port (the one bound).
    pub(super) port: u16,
    pub(super) store: RwLock<Store>,
    pub(super) members: Mutex<Members>,
    pub(super) counters: Counters,
    pub(super) stop: AtomicBool,
    /// Wakes the gossip loop for a push round (bounded 1: news coalesces).
    pub(super) push: Sender<()>,
    /// Wakes the health loop for an out-of-turn ping (bounded 1).
    pub(super) probe: Sender<()>,
    /// Freshness of sealed requests (with a swarm key); taken alone, for
    /// one check.
    pub(super) replay: Mutex<ReplayGuard>,
}

pub struct Overlay {
    inner: Arc<Inner>,
    addr: SocketAddr,
    // Behind mutexes so `shutdown` works through a shared `Arc<Overlay>`;
    // each is taken alone, only by `shutdown`.
    stop_tx: Mutex<Option<Sender<()>>>,
    listener: Mutex<Option<Service>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Disconnected once every background loop has returned (each holds a
    /// sender), so `shutdown` waits on it rather than polling the threads.
    loops_done: Mutex<Option<Receiver<()>>>,
}

impl Overlay {
    pub fn start(cfg: OverlayConfig) -> Result<Overlay, OverlayError> {
        let bind = SocketAddr::new(cfg.bind, cfg.port);
        let listener = crate::runtime::ports::bind_or_fallback(cfg.port, cfg.port_chosen, |port| {
            TcpListener::bind(SocketAddr::new(cfg.bind, port))
        })
        .map_err(|source| OverlayError::Bind { addr: bind, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| OverlayError::Bind { addr: bind, source })?;
        crate::runtime::ports::warn_if_moved("overlay", cfg.port, addr);
        let (push_tx, push_rx) = crossbeam_channel::bounded(1);
        let (probe_tx, probe_rx) = crossbeam_channel::bounded(1);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
        let mut members = Members::new(cfg.health_interval * 3, fastrand::u64(..));
        if !cfg.bind.is_unspecified() {
            members.set_me(addr);
        }
        let inner = Arc::new(Inner {
            port: addr.port(),
            store: RwLock::new(Store::new(cfg.provider_ttl.as_millis() as u64)),
            members: Mutex::new(members),
            counters: Counters::default(),
            stop: AtomicBool::new(false),
            push: push_tx,
            probe: probe_tx,
            replay: Mutex::new(ReplayGuard::default()),
            cfg,
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            let done = done_tx.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    let _done = done;
                    f()
                })
                .map_err(OverlayError::Thread)
        };
        let mut threads = Vec::new();
        let i = inner.clone();
        let service = Service::start(
            listener,
            listener::Options {
                name: "overlay".into(),
                limits: Limits {
                    total: MAX_CONNECTIONS,
                    per_ip: MAX_CONNECTIONS_PER_IP,
                    displace: true,
                },
                stop_grace: Duration::from_secs(2),
            },
            move |stream, from| {
                if let Err(e) = i.serve(&stream, from) {
                    log::debug!("overlay: request from {from}: {e}");
                }
            },
        )
        .map_err(OverlayError::Thread)?;
        let (i, s) = (inner.clone(), stop_rx.clone());
        threads.push(spawn(
            "overlay-gossip",
            Box::new(move || i.gossip_loop(s, push_rx)),
        )?);
        let (i, s) = (inner.clone(), stop_rx);
        threads.push(spawn(
            "overlay-health",
            Box::new(move || i.health_loop(s, probe_rx)),
        )?);
        drop(done_tx);
        Ok(Overlay {
            inner,
            addr,
            stop_tx: Mutex::new(Some(stop_tx)),
            listener: Mutex::new(Some(service)),
            threads: Mutex::new(threads),
            loops_done: Mutex::new(Some(done_rx)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Announces our own presence as a provider: straight to a fanout of
    /// members (each binds it to our source address), then by gossip.
    pub fn announce(&self, info_hash: InfoHash, peer_id: PeerId, peer_port: u16, left: u64) {
        let msg = Message::Announce {
            info_hash,
            peer_id,
            port: peer_port,
            left,
            overlay_port: Some(self.inner.port),
        };
        // Our own store too, when we know our address. `me` is bound first:
        // a guard in the `if let` scrutinee would live through the block and
        // hold `members` while waiting for `store` (issue 10's deadlock).
        let me = self.inner.members.lock().me();
        if let Some(me) = me {
            let meta = ProviderMeta {
                addr: SocketAddr::new(me.ip(), peer_port),
                peer_id,
                left,
                last_seen: now_ms(),
                gone: false,
                overlay: Some(me),
            };
            self.inner.store.write().merge(info_hash, meta, now_ms());
        }
        self.inner.send_to_fanout(&msg);
    }

    /// Withdraws our presence (event "stopped").
    pub fn withdraw(&self, info_hash: InfoHash, peer_port: u16) {
        let me = self.inner.members.lock().me();
        if let Some(me) = me {
            let addr = SocketAddr::new(me.ip(), peer_port);
            self.inner
                .store
                .write()
                .withdraw_where(now_ms(), |h, m| *h == info_hash && m.addr == addr);
        }
        let msg = Message::Withdraw {
            info_hash,
            port: peer_port,
        };
        self.inner.send_to_fanout(&msg);
    }

    /// Providers of `info_hash`: the local store, then up to three members
    /// in parallel; merged, newest first, at most `limit`.
    pub fn lookup(&self, info_hash: InfoHash, limit: usize) -> Vec<ProviderMeta> {
        let (providers, merged) = self.inner.with_handler(|h| h.lookup(info_hash, limit));
        if merged.changed {
            self.inner.signal_push();
        }
        if merged.probe {
            self.inner.signal_probe();
        }
        providers
    }

    pub fn member_count(&self) -> usize {
        self.inner.members.lock().len()
    }

    /// Bytes of overlay requests served in and replies sent out.
    pub fn served_bytes(&self) -> (u64, u64) {
        (
            self.inner.counters.bytes_in.load(Ordering::Relaxed),
            self.inner.counters.bytes_out.load(Ordering::Relaxed),
        )
    }

    /// Frames dropped because they did not open under the swarm key, were
    /// stale or replayed (always 0 without a key).
    pub fn auth_failures(&self) -> u64 {
        self.inner.counters.auth_failures.load(Ordering::Relaxed)
    }

    /// Stops and joins every overlay thread, waiting at most
    /// [`SHUTDOWN_GRACE`] for the background loops (a thread still inside
    /// a request past it is logged and left to end with the process);
    /// callable through a shared `Arc` (a second call does nothing).
    pub fn shutdown(&self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        self.stop_tx.lock().take();
        let listener = self.listener.lock().take();
        if let Some(l) = listener {
            l.stop();
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        let done = self.loops_done.lock().take();
        // Each loop checks the stop flag before every request, so this is
        // at most one request timeout; the bound is for the rest.
        let end = Instant::now() + SHUTDOWN_GRACE;
        let all_done = match done {
            Some(done) => loop {
                match done.recv_deadline(end) {
                    Ok(()) => continue,
                    Err(RecvTimeoutError::Disconnected) => break true,
                    Err(RecvTimeoutError::Timeout) => break false,
                }
            },
            None => true,
        };
        for t in threads {
            // Past the sender's drop a loop has returned: the join is at once.
            if all_done || t.is_finished() {
                let _ = t.join();
            } else {
                let name = t.thread().name().unwrap_or("overlay").to_string();
                log::warn!("overlay: {name} still busy at shutdown; not waiting for it");
            }
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
    }
}

impl Inner {
    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// One request of ours to a member: from our bound address, counted,
    /// sealed with the swarm key if we have one.
    pub(super) fn request(
        &self,
        addr: SocketAddr,
        msg: &Message,
        timeout: Duration,
    ) -> Result<Message, RequestError> {
        request_from(
            Some(self.cfg.bind),
            addr,
            msg,
            timeout,
            Some(&self.counters),
            self.cfg.keys.as_deref(),
        )
    }

    /// Runs `f` with a [`Handler`] over our state whose forwarded lookups
    /// ask members over the network.
    pub(super) fn with_handler<R>(&self, f: impl FnOnce(&Handler) -> R) -> R {
        let ask = |h: InfoHash, limit: usize| self.ask_members(h, limit);
        f(&Handler {
            store: &self.store,
            members: &self.members,
            counters: &self.counters,
            ask_members: &ask,
            origin_bound: self.cfg.keys.is_some(),
        })
    }

    /// One request and its reply, all under [`REQUEST_DEADLINE`].
    fn serve(&self, stream: &TcpStream, from: SocketAddr) -> Result<(), FrameError> {
        if let Some(keys) = self.cfg.keys.clone() {
            return self.serve_sealed(stream, from, &keys);
        }
        let mut io = Timed::new(stream, Deadline::after(REQUEST_DEADLINE));
        let (msg, got) = match wire::read_frame(&mut io) {
            Ok(x) => x,
            Err(e) => {
                let reply = Message::Error {
                    message: e.to_string(),
                };
                // Best effort: tell a broken client why, then close.
                let _ = wire::write_frame(&mut io, &reply);
                return Err(e);
            }
        };
        self.counters
            .bytes_in
            .fetch_add(got as u64, Ordering::Relaxed);
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        let answer = self.with_handler(|h| h.handle(msg, from));
        if answer.news {
            self.signal_push();
        }
        if answer.probe {
            self.signal_probe();
        }
        let sent = wire::write_frame(&mut io, &answer.reply)?;
        self.counters
            .bytes_out
            .fetch_add(sent as u64, Ordering::Relaxed);
        Ok(())
    }

    /// [`Inner::serve`] in a keyed overlay: the request must open under a
    /// key of the ring and be fresh (timestamp window, nonce not seen),
    /// all before a byte of it is parsed; otherwise it is counted and the
    /// connection closed unanswered (a stranger learns nothing, not even
    /// why). The reply is sealed and bound to the request's nonce.
    fn serve_sealed(
        &self,
        stream: &TcpStream,
        from: SocketAddr,
        keys: &Keyring,
    ) -> Result<(), FrameError> {
        use std::io::Write;
        let mut io = Timed::new(stream, Deadline::after(REQUEST_DEADLINE));
        let body = wire::read_raw_frame(&mut io)?;
        let fail = |e: FrameError| {
            self.counters.auth_failures.fetch_add(1, Ordering::Relaxed);
            e
        };
        let ctx = Context::request(sealed::OVERLAY_REQUEST);
        let opened = wire::open_sealed(&body, keys, &ctx).map_err(fail)?;
        let fresh = self
            .replay
            .lock()
            .check(opened.timestamp_ms, opened.nonce, now_ms());
        fresh.map_err(|e| fail(e.into()))?;
        self.counters
            .bytes_in
            .fetch_add(4 + body.len() as u64, Ordering::Relaxed);
        self.counters.messages.fetch_add(1, Ordering::Relaxed);
        let answer = match Message::decode_body(opened.payload) {
            Ok(msg) => self.with_handler(|h| h.handle(msg, from)),
            Err(e) => Answer {
                reply: Message::Error {
                    message: e.to_string(),
                },
                news: false,
                probe: false,
            },
        };
        if answer.news {
            self.signal_push();
        }
        if answer.probe {
            self.signal_probe();
        }
        let reply = answer.reply;
        let reply_ctx = Context::reply(sealed::OVERLAY_REPLY, opened.nonce);
        let bytes = wire::encode_sealed(&reply, keys, &reply_ctx, now_ms(), sealed::fresh_nonce());
        io.write_all(&bytes)?;
        io.flush()?;
        self.counters
            .bytes_out
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;
    use std::sync::atomic::AtomicU64;

    fn quiet_config() -> OverlayConfig {
        let mut c = OverlayConfig::with_defaults(IpAddr::from([127, 0, 0, 1]), 0, vec![]);
        // No background rounds: the test drives `exchange` itself.
        c.gossip_interval = Duration::from_secs(600);
        c.health_interval = Duration::from_secs(600);
        c.push = false;
        c
    }

    /// The ABBA of issue 10: `announce`/`withdraw` held `members` while
    /// waiting for `store.write()`, and a push `exchange` to an in-sync
    /// member held `store.read()` while waiting for `members`. Runs both
    /// concurrently for a bounded time; a lock cycle (parking_lot's
    /// detection, on in test builds) or a stall fails the test.
    #[test]
    fn announce_withdraw_and_exchange_never_deadlock() {
        const RUN: Duration = Duration::from_secs(3);
        const MAX_OPS: u64 = 200_000;
        let peer = Overlay::start(quiet_config()).unwrap();
        let node = Arc::new(Overlay::start(quiet_config()).unwrap());
        let peer_addr = peer.local_addr();
        node.inner.members.lock().add(peer_addr, Instant::now());
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicU64::new(0));
        let mut workers = Vec::new();
        for i in 0..2u8 {
            let (node, stop, ops) = (node.clone(), stop.clone(), ops.clone());
            workers.push(std::thread::spawn(move || {
                let hash = InfoHash([i + 1; 20]);
                let port = 7000 + u16::from(i);
                while !stop.load(Ordering::SeqCst) && ops.load(Ordering::SeqCst) < MAX_OPS {
                    node.announce(hash, PeerId([i; 20]), port, 0);
                    node.withdraw(hash, port);
                    ops.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        {
            let (node, stop, ops) = (node.clone(), stop.clone(), ops.clone());
            workers.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) && ops.load(Ordering::SeqCst) < MAX_OPS {
                    // Keep the member in sync so the push takes the
                    // DigestOnly path (the one that locked members inside).
                    let seq = node.inner.store.read().seq();
                    node.inner
                        .members
                        .lock()
                        .synced(&peer_addr, seq, true, false);
                    node.inner
                        .exchange(peer_addr, crate::overlay::gossip::Carry::Entries);
                    ops.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        let start = Instant::now();
        let (mut last, mut last_change) = (0, Instant::now());
        let mut cycles = Vec::new();
        while start.elapsed() < RUN && ops.load(Ordering::SeqCst) < MAX_OPS {
            std::thread::sleep(Duration::from_millis(50));
            cycles = crate::runtime::deadlock::cycles();
            if !cycles.is_empty() {
                break;
            }
            let now = ops.load(Ordering::SeqCst);
            if now != last {
                (last, last_change) = (now, Instant::now());
            } else if last_change.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        stop.store(true, Ordering::SeqCst);
        assert!(cycles.is_empty(), "lock cycle:\n{}", cycles.join("\n"));
        assert!(
            last_change.elapsed() <= Duration::from_secs(2),
            "no progress for 2 s after {last} operations: threads are stuck"
        );
        assert!(ops.load(Ordering::SeqCst) > 100, "too few operations ran");
        for w in workers {
            w.join().unwrap();
        }
        peer.shutdown();
    }
}
