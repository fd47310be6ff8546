//! The running overlay node: a listener (`runtime::listener`: bounded
//! connection threads in total and per source address, one request and one
//! reply per connection under one whole deadline), and three background loops:
//! gossip (push–pull deltas to a random fanout, at once on news), health
//! (ping stale members, drop dead ones and withdraw their providers) and
//! discovery (BFS over member lists while we know few nodes).
//!
//! Lock order: `members` before `store` where both are needed; neither is
//! held across network I/O. Today no code path holds both: each guard is
//! taken for one statement or one short block, and never in an `if let` /
//! `match` scrutinee (edition 2021 keeps such a guard alive to the end of
//! the block). Test builds check this with parking_lot's deadlock detection
//! (`runtime::deadlock`) and `tests::announce_withdraw_and_exchange_never_deadlock`.

use std::io::{BufReader, BufWriter};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};

use super::membership::{Members, SyncPlan};
use super::store::{Entry, ProviderMeta, Store};
use super::wire::{self, FrameError, Message, MAX_ENTRIES, MAX_LIMIT, MAX_MEMBERS, MAX_TTL};
use super::OverlayConfig;
use crate::core::{InfoHash, PeerId};
use crate::runtime::listener::{self, Deadline, Limits, Service, Timed};

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

#[derive(Default)]
pub struct Counters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages: AtomicU64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Inner {
    cfg: OverlayConfig,
    port: u16,
    store: RwLock<Store>,
    members: Mutex<Members>,
    counters: Counters,
    stop: AtomicBool,
    push: Sender<()>,
}

pub struct Overlay {
    inner: Arc<Inner>,
    addr: SocketAddr,
    // Behind mutexes so `shutdown` works through a shared `Arc<Overlay>`;
    // each is taken alone, only by `shutdown`.
    stop_tx: Mutex<Option<Sender<()>>>,
    listener: Mutex<Option<Service>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
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
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let seed = now_ms() ^ ((addr.port() as u64) << 32);
        let mut members = Members::new(cfg.health_interval * 3, seed);
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
            cfg,
        });
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
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
        threads.push(spawn("overlay-health", Box::new(move || i.health_loop(s)))?);
        Ok(Overlay {
            inner,
            addr,
            stop_tx: Mutex::new(Some(stop_tx)),
            listener: Mutex::new(Some(service)),
            threads: Mutex::new(threads),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Announces our own presence as a provider: straight to a fanout of
    /// members (each binds it to our source address), then by gossip.
    pub fn announce(&self, info_hash: InfoHash, peer_id: PeerId, peer_port: u16, left: u64) {
        let msg = Message::Announce {
            info_hash: info_hash.to_hex(),
            peer_id: crate::core::ids::to_hex(&peer_id.0),
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
                peer_id: crate::core::ids::to_hex(&peer_id.0),
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
            info_hash: info_hash.to_hex(),
            port: peer_port,
        };
        self.inner.send_to_fanout(&msg);
    }

    /// Providers of `info_hash`: the local store, then up to three members
    /// in parallel; merged, newest first, at most `limit`.
    pub fn lookup(&self, info_hash: InfoHash, limit: usize) -> Vec<ProviderMeta> {
        self.inner.lookup(info_hash, limit)
    }

    pub fn member_count(&self) -> usize {
        self.inner.members.lock().len()
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
        let end = Instant::now() + SHUTDOWN_GRACE;
        for t in threads {
            // Each loop checks the stop flag before every request, so this
            // is at most one request timeout; the bound is for the rest.
            while !t.is_finished() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            if t.is_finished() {
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

/// Why a request to an overlay node got no reply, by what the user can do
/// about it (`btnode lookup` and `health` print these).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Nothing listens there, or the host is unreachable.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// Connected, but no whole reply came within the deadline.
    #[error("no answer within {0:?} (the node is busy or stuck, or is not an overlay node)")]
    TimedOut(Duration),
    /// The other side closed (or reset) the connection before a whole reply.
    #[error(
        "the node closed the connection without answering (busy, shutting down, \
         or not an overlay node)"
    )]
    Closed,
    /// Bytes came back that are not an overlay frame.
    #[error("not an overlay node: it answered something that is not an overlay message ({0})")]
    NotOverlay(FrameError),
    #[error("i/o: {0}")]
    Io(std::io::Error),
}

impl RequestError {
    fn from_io(e: std::io::Error, timeout: Duration) -> RequestError {
        use std::io::ErrorKind::*;
        match e.kind() {
            WouldBlock | TimedOut => RequestError::TimedOut(timeout),
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => {
                RequestError::Closed
            }
            _ => RequestError::Io(e),
        }
    }

    fn from_frame(e: FrameError, timeout: Duration) -> RequestError {
        match e {
            FrameError::Io(e) => RequestError::from_io(e, timeout),
            other => RequestError::NotOverlay(other),
        }
    }
}

/// One request and its reply over a fresh connection, all within `timeout`
/// after the connection is made (one deadline for the write and the read).
pub fn request(
    addr: SocketAddr,
    msg: &Message,
    timeout: Duration,
    counters: Option<&Counters>,
) -> Result<Message, RequestError> {
    let stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            RequestError::TimedOut(timeout)
        }
        _ => RequestError::Connect(e),
    })?;
    // One deadline for writing the request and reading the reply: a node
    // that opens its receive window a little at a time, or trickles its
    // reply, cannot hold us longer.
    let deadline = Deadline::after(timeout);
    let io = |e| RequestError::from_io(e, timeout);
    stream.set_nodelay(true).map_err(io)?;
    let sent =
        wire::write_frame(&mut BufWriter::new(Timed::new(&stream, deadline)), msg).map_err(io)?;
    let mut reader = BufReader::new(Timed::new(&stream, deadline));
    let (reply, got) =
        wire::read_frame(&mut reader).map_err(|e| RequestError::from_frame(e, timeout))?;
    if let Some(c) = counters {
        c.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
        c.bytes_in.fetch_add(got as u64, Ordering::Relaxed);
        c.messages.fetch_add(1, Ordering::Relaxed);
    }
    Ok(reply)
}

fn parse_entries(entries: Vec<Entry>) -> Vec<(InfoHash, ProviderMeta)> {
    entries
        .into_iter()
        .filter_map(|e| Some((InfoHash::from_hex(&e.info_hash)?, e.meta)))
        .collect()
}

impl Inner {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn signal_push(&self) {
        if self.cfg.push {
            let _ = self.push.try_send(());
        }
    }

    fn learn_me(&self, observed: SocketAddr) {
        let mut m = self.members.lock();
        if m.me().is_none() {
            m.set_me(SocketAddr::new(observed.ip(), self.port));
        }
    }

    /// Sends `msg` to a fanout of members in parallel, so silent members
    /// cost one request timeout in all, not one each (the withdraw at
    /// shutdown waits on this).
    fn send_to_fanout(&self, msg: &Message) {
        let targets = self.members.lock().sample(self.cfg.fanout);
        std::thread::scope(|s| {
            for t in targets {
                s.spawn(move || {
                    match request(t, msg, self.cfg.rpc_timeout, Some(&self.counters)) {
                        Ok(Message::Ok { observed }) => {
                            self.learn_me(observed);
                            self.members.lock().heard(t, Instant::now());
                        }
                        Ok(_) => {}
                        Err(e) => {
                            log::debug!("overlay: {t}: {e}");
                            self.member_failed(t);
                        }
                    }
                });
            }
        });
    }

    fn member_failed(&self, addr: SocketAddr) {
        if self.members.lock().failed(addr, Instant::now()) {
            let n = self
                .store
                .write()
                .withdraw_where(now_ms(), |_, m| m.overlay == Some(addr));
            log::info!("overlay: member {addr} is dead; withdrew {n} of its providers");
            if n > 0 {
                self.signal_push();
            }
        }
    }

    fn merge_all(&self, entries: Vec<(InfoHash, ProviderMeta)>) -> bool {
        let now = now_ms();
        let mut store = self.store.write();
        let mut changed = false;
        for (h, m) in entries {
            changed |= store.merge(h, m, now);
        }
        changed
    }

    fn add_members(&self, list: &[SocketAddr]) {
        let now = Instant::now();
        let mut m = self.members.lock();
        for a in list.iter().take(MAX_MEMBERS) {
            m.add(*a, now);
        }
    }

    fn lookup(&self, info_hash: InfoHash, limit: usize) -> Vec<ProviderMeta> {
        let limit = limit.clamp(1, MAX_LIMIT);
        let local = self.store.read().providers(&info_hash, now_ms(), limit);
        if local.len() >= limit {
            return local;
        }
        let asked = self.members.lock().sample(LOOKUP_FANOUT);
        let msg = Message::Lookup {
            info_hash: info_hash.to_hex(),
            limit,
            local_only: true,
        };
        let replies: Vec<Vec<ProviderMeta>> = std::thread::scope(|s| {
            let handles: Vec<_> = asked
                .iter()
                .map(|&a| {
                    let msg = &msg;
                    s.spawn(move || {
                        match request(a, msg, self.cfg.rpc_timeout, Some(&self.counters)) {
                            Ok(Message::Providers { providers, .. }) => providers,
                            _ => vec![],
                        }
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let found: Vec<(InfoHash, ProviderMeta)> = replies
            .into_iter()
            .flatten()
            .map(|p| (info_hash, p))
            .collect();
        if self.merge_all(found) {
            self.signal_push();
        }
        self.store.read().providers(&info_hash, now_ms(), limit)
    }

    /// One request and its reply, all under [`REQUEST_DEADLINE`].
    fn serve(&self, stream: &TcpStream, from: SocketAddr) -> Result<(), FrameError> {
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
        let reply = self.handle(msg, from);
        let sent = wire::write_frame(&mut io, &reply)?;
        self.counters
            .bytes_out
            .fetch_add(sent as u64, Ordering::Relaxed);
        Ok(())
    }

    fn handle(&self, msg: Message, from: SocketAddr) -> Message {
        let now = Instant::now();
        match msg {
            Message::Announce {
                info_hash,
                peer_id,
                port,
                left,
                overlay_port,
            } => {
                let Ok(h) = wire::parse_info_hash(&info_hash) else {
                    return error("bad info_hash");
                };
                let overlay = overlay_port.map(|p| SocketAddr::new(from.ip(), p));
                if let Some(o) = overlay {
                    self.members.lock().heard(o, now);
                }
                let meta = ProviderMeta {
                    // Bound to the source address: nobody announces others.
                    addr: SocketAddr::new(from.ip(), port),
                    peer_id: peer_id.to_ascii_lowercase(),
                    left,
                    last_seen: now_ms(),
                    gone: false,
                    overlay,
                };
                if self.merge_all(vec![(h, meta)]) {
                    self.signal_push();
                }
                Message::Ok { observed: from }
            }
            Message::Withdraw { info_hash, port } => {
                let Ok(h) = wire::parse_info_hash(&info_hash) else {
                    return error("bad info_hash");
                };
                let addr = SocketAddr::new(from.ip(), port);
                let n = self
                    .store
                    .write()
                    .withdraw_where(now_ms(), |ih, m| *ih == h && m.addr == addr);
                if n > 0 {
                    self.signal_push();
                }
                Message::Ok { observed: from }
            }
            Message::Lookup {
                info_hash,
                limit,
                local_only,
            } => {
                let Ok(h) = wire::parse_info_hash(&info_hash) else {
                    return error("bad info_hash");
                };
                let limit = limit.clamp(1, MAX_LIMIT);
                let providers = if local_only {
                    self.store.read().providers(&h, now_ms(), limit)
                } else {
                    self.lookup(h, limit)
                };
                Message::Providers {
                    info_hash,
                    providers,
                }
            }
            Message::Sync {
                overlay_port,
                digest: theirs,
                entries,
                members,
                full,
            } => {
                let peer = SocketAddr::new(from.ip(), overlay_port);
                self.members.lock().heard(peer, now);
                self.add_members(&members);
                let changed = self.merge_all(parse_entries(entries));
                let (seq, digest) = {
                    let store = self.store.read();
                    (store.seq(), store.digest(now_ms()))
                };
                // Equal digests: the sender already holds all we hold, so
                // the reply carries nothing; steady state stays this small.
                let reply_entries = if digest == theirs && !full {
                    vec![]
                } else {
                    let since = if full {
                        0
                    } else {
                        self.members.lock().sent_seq(&peer)
                    };
                    self.store.read().changed_since(since, MAX_ENTRIES)
                };
                let sent = !reply_entries.is_empty();
                self.members
                    .lock()
                    .synced(&peer, seq, digest == theirs, sent || full);
                if changed {
                    self.signal_push();
                }
                let sample = self.members.lock().sample(16);
                Message::SyncReply {
                    digest,
                    entries: reply_entries,
                    members: sample,
                }
            }
            Message::Members { ttl } => {
                let _ = ttl.min(MAX_TTL);
                Message::MemberList {
                    members: self.members.lock().sample(MAX_MEMBERS),
                }
            }
            Message::Ping { overlay_port } => {
                if let Some(p) = overlay_port {
                    self.members
                        .lock()
                        .heard(SocketAddr::new(from.ip(), p), now);
                }
                Message::Pong { observed: from }
            }
            Message::Stats => Message::StatsReply {
                members: self.members.lock().len(),
                providers: self.store.read().len(),
                bytes_in: self.counters.bytes_in.load(Ordering::Relaxed),
                bytes_out: self.counters.bytes_out.load(Ordering::Relaxed),
                messages: self.counters.messages.load(Ordering::Relaxed),
            },
            _ => error("unexpected message type"),
        }
    }

    /// Push–pull with `peer`. A push sends what changed since we last
    /// synced with it. A periodic round first sends only our digest; only if
    /// the digests then differ does a second exchange carry entries (what
    /// changed since the last sync, or everything when that did not help,
    /// see membership::SyncPlan). So a converged overlay exchanges digests
    /// only, whatever the number of providers.
    fn sync_with(&self, peer: SocketAddr, pushed: bool) {
        // A push sends entries at once; a periodic round only if needed.
        if pushed || self.exchange(peer, false) == Some(false) {
            self.exchange(peer, true);
        }
    }

    /// One Sync request; returns whether the digests agreed afterwards
    /// (`None` when the peer did not answer).
    fn exchange(&self, peer: SocketAddr, with_entries: bool) -> Option<bool> {
        // A push's second exchange must not start after shutdown began.
        if self.stopped() {
            return None;
        }
        // Everything needed from `members` first: taking it again while
        // `store` is held would invert the order (announce holds members,
        // then waits for store).
        let (plan, sent_seq) = {
            let m = self.members.lock();
            (m.sync_plan(&peer), m.sent_seq(&peer))
        };
        let (seq, entries, digest) = {
            let store = self.store.read();
            let entries = match (with_entries, plan) {
                (false, _) => vec![],
                (true, SyncPlan::Full) => store.changed_since(0, MAX_ENTRIES),
                (true, SyncPlan::Since(s)) => store.changed_since(s, MAX_ENTRIES),
                (true, SyncPlan::DigestOnly) => store.changed_since(sent_seq, MAX_ENTRIES),
            };
            (store.seq(), entries, store.digest(now_ms()))
        };
        let sent = !entries.is_empty();
        let members = self.members.lock().sample(16);
        let msg = Message::Sync {
            overlay_port: self.port,
            digest,
            entries,
            members,
            full: with_entries && plan == SyncPlan::Full,
        };
        match request(peer, &msg, self.cfg.gossip_timeout, Some(&self.counters)) {
            Ok(Message::SyncReply {
                digest: theirs,
                entries,
                members,
            }) => {
                self.members.lock().heard(peer, Instant::now());
                self.add_members(&members);
                let changed = self.merge_all(parse_entries(entries));
                let ours = self.store.read().digest(now_ms());
                let agree = ours == theirs;
                self.members.lock().synced(&peer, seq, agree, sent);
                if changed {
                    self.signal_push();
                }
                Some(agree)
            }
            Ok(other) => {
                log::debug!("overlay: {peer} answered sync with {other:?}");
                None
            }
            Err(e) => {
                log::debug!("overlay: sync with {peer}: {e}");
                self.member_failed(peer);
                None
            }
        }
    }

    /// Bootstraps, then BFS over member lists while we know few members.
    fn discover(&self) {
        let bootstraps: Vec<SocketAddr> = self
            .cfg
            .bootstrap
            .iter()
            .flat_map(|b| super::resolve_bootstrap(b, self.cfg.dns))
            .collect();
        let now = Instant::now();
        {
            let mut m = self.members.lock();
            for b in &bootstraps {
                m.add(*b, now);
            }
        }
        let mut frontier = bootstraps;
        let mut seen: std::collections::HashSet<SocketAddr> = frontier.iter().copied().collect();
        for depth in 0..MAX_TTL {
            if frontier.is_empty() || self.stopped() {
                break;
            }
            let mut next = Vec::new();
            for peer in frontier.iter().take(8) {
                // Before every request, not once per depth: 8 silent peers
                // would otherwise hold shutdown for 16 request timeouts.
                if self.stopped() {
                    return;
                }
                let ping = Message::Ping {
                    overlay_port: Some(self.port),
                };
                if let Ok(Message::Pong { observed }) =
                    request(*peer, &ping, self.cfg.rpc_timeout, Some(&self.counters))
                {
                    self.learn_me(observed);
                    self.members.lock().heard(*peer, Instant::now());
                }
                if self.stopped() {
                    return;
                }
                let ask = Message::Members {
                    ttl: MAX_TTL - depth,
                };
                if let Ok(Message::MemberList { members }) =
                    request(*peer, &ask, self.cfg.rpc_timeout, Some(&self.counters))
                {
                    self.add_members(&members);
                    next.extend(members.into_iter().filter(|a| seen.insert(*a)));
                }
            }
            frontier = next;
        }
    }

    fn gossip_loop(self: Arc<Self>, stop: Receiver<()>, push: Receiver<()>) {
        self.discover();
        let mut next_round = Instant::now() + self.cfg.gossip_interval;
        loop {
            let wait = next_round.saturating_duration_since(Instant::now());
            let pushed = crossbeam_channel::select! {
                recv(stop) -> _ => return,
                recv(push) -> _ => true,
                default(wait) => false,
            };
            if self.stopped() {
                return;
            }
            if !pushed {
                next_round = Instant::now() + self.cfg.gossip_interval;
                if self.members.lock().len() < self.cfg.fanout * 2 {
                    self.discover();
                }
            }
            // A push goes wider than a periodic round: with fanout F a rumor
            // that stops where it is already known misses about e^-F of the
            // nodes, so pushes use F + log2(members) to reach all of them
            // without waiting for the next round.
            let targets = {
                let mut m = self.members.lock();
                let n = if pushed {
                    self.cfg.fanout + (usize::BITS - m.len().leading_zeros()) as usize
                } else {
                    self.cfg.fanout
                };
                m.sample(n)
            };
            for t in targets {
                if self.stopped() {
                    return;
                }
                self.sync_with(t, pushed);
            }
            self.store.write().expire(now_ms());
        }
    }

    fn health_loop(self: Arc<Self>, stop: Receiver<()>) {
        loop {
            crossbeam_channel::select! {
                recv(stop) -> _ => return,
                default(self.cfg.health_interval) => {}
            }
            if self.stopped() {
                return;
            }
            let stale = self
                .members
                .lock()
                .stale(Instant::now(), self.cfg.health_interval, 16);
            let ping = Message::Ping {
                overlay_port: Some(self.port),
            };
            for m in stale {
                if self.stopped() {
                    return;
                }
                match request(m, &ping, self.cfg.rpc_timeout, Some(&self.counters)) {
                    Ok(Message::Pong { observed }) => {
                        self.learn_me(observed);
                        self.members.lock().heard(m, Instant::now());
                    }
                    _ => self.member_failed(m),
                }
            }
        }
    }
}

fn error(message: &str) -> Message {
    Message::Error {
        message: message.to_string(),
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

    /// A member that opens its receive window a little at a time must not
    /// hold a sender past the request's deadline: the write counts too.
    #[test]
    fn a_trickling_reader_cannot_stretch_a_request_past_its_deadline() {
        use socket2::{Domain, Socket, Type};
        const TIMEOUT: Duration = Duration::from_millis(500);
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        // Small, so the frame below is far larger than what the kernel
        // buffers on both sides take at once.
        sock.set_recv_buffer_size(4096).unwrap();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        sock.bind(&bind.into()).unwrap();
        sock.listen(1).unwrap();
        let listener: TcpListener = sock.into();
        let addr = listener.local_addr().unwrap();
        // Reads 4 KiB every 5 ms (enough to keep each write moving well
        // inside any per-write timeout, far too slow for the frame to fit
        // in the deadline), for at most 4 s.
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let end = Instant::now() + Duration::from_secs(4);
            let mut buf = [0u8; 4096];
            while Instant::now() < end {
                match std::io::Read::read(&mut s, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        let entry = Entry {
            info_hash: "00".repeat(20),
            meta: ProviderMeta {
                addr: "127.0.0.1:1".parse().unwrap(),
                peer_id: "a".repeat(2000),
                left: 0,
                last_seen: 0,
                gone: false,
                overlay: None,
            },
        };
        let msg = Message::Sync {
            overlay_port: 1,
            digest: 0,
            entries: vec![entry; MAX_ENTRIES],
            members: vec![],
            full: true,
        };
        let start = Instant::now();
        let result = request(addr, &msg, TIMEOUT, None);
        let took = start.elapsed();
        assert!(
            matches!(result, Err(RequestError::TimedOut(_))),
            "got {result:?}"
        );
        assert!(took < TIMEOUT * 3, "the request took {took:?}");
        server.join().unwrap();
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
                    node.inner.exchange(peer_addr, true);
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
