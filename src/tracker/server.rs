//! A small tracker: HTTP `/announce` (compact or dictionary replies,
//! `event=stopped` removes at once, silent peers expire) and `/scrape`, and
//! the same over UDP (BEP 15, `udp_server`) on the same port.
//!
//! Owns the swarm registry and the HTTP front (`runtime::http` over the
//! bounded `runtime::listener`). A peer's address
//! is the request's source IP plus its announced port, so a client cannot
//! list someone else (`ip=` is ignored). State is bounded: torrents, peers
//! per torrent, peers in all, and reply sizes; empty torrents are forgotten.
//!
//! Threads: an accept thread and at most `max_connections` connection
//! threads (a quarter of them per source address), each serving one
//! request under one whole deadline, and one thread reading the UDP socket;
//! each takes the one registry lock for each announce or scrape (a periodic
//! sweep of expired peers runs under it too); no other lock exists, so
//! there is no lock order to get wrong.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::udp_server::UdpFront;
use crate::cli::TrackerArgs;
use crate::core::{InfoHash, PeerId};
use crate::runtime::http::{self, HttpError, Request, RequestLimits, Response};
use crate::runtime::listener::{Limits, Service};
use crate::wire::tracker::{
    self as codec, AnnounceReply, AnnounceRequest, Event, PeerEntry, ScrapeEntry,
};

/// Peers returned when the client does not say `numwant`.
pub const DEFAULT_NUMWANT: usize = 50;
/// Most peers returned whatever the client asks.
pub const MAX_NUMWANT: usize = 200;
/// Most torrents listed by a scrape without `info_hash`.
pub const MAX_SCRAPE_ALL: usize = 1000;

#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Told to clients as `interval`.
    pub interval: Duration,
    /// A peer that has not announced for this long is dropped; an empty
    /// torrent untouched for this long is forgotten.
    pub peer_timeout: Duration,
    /// HTTP connections (and so threads) served at once; a quarter of
    /// them per source address.
    pub max_connections: usize,
    /// Most torrents tracked; announces for a new one beyond it are refused.
    pub max_torrents: usize,
    /// Most peers listed per torrent; a newcomer beyond it still gets peers
    /// but is not listed (and is told so in `warning message`).
    pub max_peers_per_torrent: usize,
    /// Most peers listed over all torrents (memory bound: ~100 bytes each).
    pub max_peers_total: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions::with_interval(Duration::from_secs(60))
    }
}

impl ServerOptions {
    /// Defaults around `interval`: peers expire after two missed announces
    /// plus some slack for late ones.
    pub fn with_interval(interval: Duration) -> ServerOptions {
        ServerOptions {
            interval,
            peer_timeout: interval * 2 + Duration::from_secs(10),
            max_connections: 128,
            max_torrents: 10_000,
            max_peers_per_torrent: 5_000,
            max_peers_total: 1_000_000,
        }
    }
}

struct PeerRecord {
    peer_id: PeerId,
    left: u64,
    last_seen: Instant,
    /// Already counted in `downloaded`: a repeated `completed` is not.
    completed: bool,
}

struct Swarm {
    peers: HashMap<SocketAddr, PeerRecord>,
    /// `completed` events seen (BEP 48's `downloaded`).
    downloaded: u64,
    last_activity: Instant,
}

impl Swarm {
    /// Drops silent peers; returns how many went.
    fn expire(&mut self, now: Instant, timeout: Duration) -> usize {
        let before = self.peers.len();
        self.peers
            .retain(|_, p| now.saturating_duration_since(p.last_seen) < timeout);
        before - self.peers.len()
    }

    fn stats(&self) -> ScrapeEntry {
        let complete = self.peers.values().filter(|p| p.left == 0).count() as u64;
        ScrapeEntry {
            complete,
            incomplete: self.peers.len() as u64 - complete,
            downloaded: self.downloaded,
        }
    }
}

/// What an accepted announce gets back.
#[derive(Debug, Default)]
pub struct Announced {
    pub peers: Vec<PeerEntry>,
    pub stats: ScrapeEntry,
    /// Said to the client (HTTP `warning message`; UDP has no field for it).
    pub warning: Option<String>,
}

/// The tracker's state, independent of HTTP (unit-testable with any clock).
pub struct Registry {
    torrents: HashMap<InfoHash, Swarm>,
    /// Sum of the swarms' peer counts, kept in step with every change.
    total_peers: usize,
    last_sweep: Instant,
    opts: ServerOptions,
    rng: u64,
}

impl Registry {
    pub fn new(opts: ServerOptions, now: Instant) -> Registry {
        let mut seed = [0u8; 8];
        getrandom::getrandom(&mut seed).expect("the OS random source is available");
        Registry {
            torrents: HashMap::new(),
            total_peers: 0,
            last_sweep: now,
            opts,
            // xorshift must not start at 0.
            rng: u64::from_le_bytes(seed) | 1,
        }
    }

    /// Expires peers everywhere and forgets empty torrents that have been
    /// idle for a peer timeout, at most a few times per timeout: the cost is
    /// linear in the number of peers.
    fn sweep(&mut self, now: Instant, force: bool) {
        let timeout = self.opts.peer_timeout;
        if !force && now.saturating_duration_since(self.last_sweep) < timeout / 4 {
            return;
        }
        self.last_sweep = now;
        let mut removed = 0;
        self.torrents.retain(|_, s| {
            removed += s.expire(now, timeout);
            !s.peers.is_empty() || now.saturating_duration_since(s.last_activity) < timeout
        });
        self.total_peers -= removed;
    }

    fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Applies an announce from `ip` and builds the HTTP reply bytes.
    pub fn announce(&mut self, req: &AnnounceRequest, ip: IpAddr, now: Instant) -> Vec<u8> {
        match self.apply_announce(req, ip, now, false) {
            Ok(a) => self.reply(req, a.peers, a.stats, a.warning),
            Err(refusal) => codec::encode_failure(refusal),
        }
    }

    /// Applies an announce from `ip`: who else to tell it about (only peers
    /// of its own address family when `same_family`, as BEP 15 replies can
    /// hold one kind), or why it is refused.
    pub fn apply_announce(
        &mut self,
        req: &AnnounceRequest,
        ip: IpAddr,
        now: Instant,
        same_family: bool,
    ) -> Result<Announced, &'static str> {
        self.sweep(now, false);
        let addr = SocketAddr::new(ip, req.port);
        let timeout = self.opts.peer_timeout;
        if !self.torrents.contains_key(&req.info_hash) {
            if req.event == Some(Event::Stopped) {
                // Nothing to remove, and no reason to start tracking it.
                return Ok(Announced::default());
            }
            if self.torrents.len() >= self.opts.max_torrents {
                self.sweep(now, true);
                if self.torrents.len() >= self.opts.max_torrents {
                    return Err("tracker is full: too many torrents");
                }
            }
        }
        let room_in_tracker = self.total_peers < self.opts.max_peers_total;
        let swarm = self.torrents.entry(req.info_hash).or_insert(Swarm {
            peers: HashMap::new(),
            downloaded: 0,
            last_activity: now,
        });
        swarm.last_activity = now;
        let mut removed = swarm.expire(now, timeout);
        let mut added = 0;
        let mut warning = None;
        if req.event == Some(Event::Stopped) {
            removed += usize::from(swarm.peers.remove(&addr).is_some());
        } else {
            let completed_now = req.event == Some(Event::Completed);
            let room_for_newcomer =
                room_in_tracker && swarm.peers.len() < self.opts.max_peers_per_torrent;
            match swarm.peers.get_mut(&addr) {
                Some(p) => {
                    if completed_now && !p.completed {
                        swarm.downloaded += 1;
                    }
                    p.peer_id = req.peer_id;
                    p.left = req.left;
                    p.last_seen = now;
                    p.completed |= completed_now;
                }
                None if room_for_newcomer => {
                    swarm.downloaded += u64::from(completed_now);
                    swarm.peers.insert(
                        addr,
                        PeerRecord {
                            peer_id: req.peer_id,
                            left: req.left,
                            last_seen: now,
                            completed: completed_now,
                        },
                    );
                    added = 1;
                }
                None => {
                    swarm.downloaded += u64::from(completed_now);
                    warning = Some("swarm is full: you get peers but are not listed".into());
                }
            }
        }
        // A peer that leaves needs no peers.
        let want = match req.event {
            Some(Event::Stopped) => 0,
            _ => req
                .numwant
                .map_or(DEFAULT_NUMWANT, |n| n as usize)
                .min(MAX_NUMWANT),
        };
        let mut others: Vec<PeerEntry> = if want == 0 {
            Vec::new()
        } else {
            swarm
                .peers
                .iter()
                .filter(|(a, p)| **a != addr && p.peer_id != req.peer_id)
                .filter(|(a, _)| !same_family || a.is_ipv4() == addr.is_ipv4())
                .map(|(a, p)| PeerEntry {
                    addr: *a,
                    peer_id: Some(p.peer_id),
                })
                .collect()
        };
        let stats = swarm.stats();
        self.total_peers = self.total_peers + added - removed;

        // Partial Fisher–Yates: a random `want` of the others, so every
        // peer gets a different slice of a large swarm.
        for i in 0..others.len().min(want) {
            let j = i + (self.next_random() % (others.len() - i) as u64) as usize;
            others.swap(i, j);
        }
        others.truncate(want);
        Ok(Announced {
            peers: others,
            stats,
            warning,
        })
    }

    /// The announce interval told to clients, in seconds.
    pub fn interval_secs(&self) -> u32 {
        u32::try_from(self.opts.interval.as_secs().max(1)).unwrap_or(u32::MAX)
    }

    fn reply(
        &self,
        req: &AnnounceRequest,
        peers: Vec<PeerEntry>,
        stats: ScrapeEntry,
        warning: Option<String>,
    ) -> Vec<u8> {
        let reply = AnnounceReply {
            interval: self.interval_secs(),
            min_interval: None,
            complete: Some(stats.complete),
            incomplete: Some(stats.incomplete),
            warning,
            peers,
        };
        reply.encode(req.compact, req.no_peer_id)
    }

    /// Scrape for `hashes` (unknown ones read as zeros), or up to
    /// [`MAX_SCRAPE_ALL`] torrents when empty.
    pub fn scrape(&mut self, hashes: &[InfoHash], now: Instant) -> Vec<u8> {
        codec::encode_scrape(&self.scrape_entries(hashes, now))
    }

    /// The counts behind [`Registry::scrape`].
    pub fn scrape_entries(
        &mut self,
        hashes: &[InfoHash],
        now: Instant,
    ) -> BTreeMap<InfoHash, ScrapeEntry> {
        // Forced: counts must not include peers that have already expired.
        self.sweep(now, true);
        if hashes.is_empty() {
            self.torrents
                .iter()
                .take(MAX_SCRAPE_ALL)
                .map(|(h, s)| (*h, s.stats()))
                .collect()
        } else {
            hashes
                .iter()
                .map(|h| {
                    (
                        *h,
                        self.torrents.get(h).map(Swarm::stats).unwrap_or_default(),
                    )
                })
                .collect()
        }
    }

    /// Peers listed over all torrents.
    pub fn peer_count(&self) -> usize {
        self.total_peers
    }

    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }
}

/// A running tracker; [`TrackerServer::shutdown`] stops and joins it.
pub struct TrackerServer {
    addr: SocketAddr,
    http: Option<Service>,
    /// BEP 15 on the same port.
    udp: Option<UdpFront>,
}

/// One announce or scrape, headers and all, must arrive within this.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

impl TrackerServer {
    /// Binds `addr` for HTTP and UDP (port 0 picks a port free for both)
    /// and starts the bounded HTTP front and one UDP thread.
    pub fn start(addr: SocketAddr, opts: ServerOptions) -> std::io::Result<TrackerServer> {
        if opts.max_connections == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the tracker needs at least one connection",
            ));
        }
        let (listener, udp_socket) = bind_http_and_udp(addr)?;
        let bound = udp_socket.local_addr()?;
        let limits = Limits::new(opts.max_connections);
        let registry = Arc::new(Mutex::new(Registry::new(opts, Instant::now())));
        let request = RequestLimits {
            // A GET: no body to speak of.
            max_body: 4096,
            deadline: REQUEST_DEADLINE,
            ..RequestLimits::default()
        };
        let r = registry.clone();
        let service = http::serve(listener, "tracker", limits, request, move |req, peer| {
            handle(req, peer, &r)
        })?;
        let mut tracker = TrackerServer {
            addr: bound,
            http: Some(service),
            udp: None,
        };
        match UdpFront::start(udp_socket, registry) {
            Ok(front) => tracker.udp = Some(front),
            Err(e) => {
                tracker.shutdown();
                return Err(e);
            }
        }
        Ok(tracker)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking requests, closes open connections and joins the
    /// threads (bounded); the listening socket is closed with them.
    pub fn shutdown(mut self) {
        if let Some(udp) = self.udp.take() {
            udp.stop();
        }
        if let Some(http) = self.http.take() {
            http.stop();
        }
    }
}

/// A TCP listener and a UDP socket on the same address. With port 0 the
/// port TCP got may be taken for UDP: then try another, a bounded number
/// of times.
fn bind_http_and_udp(addr: SocketAddr) -> std::io::Result<(TcpListener, UdpSocket)> {
    let tries = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        match UdpSocket::bind(bound) {
            Ok(udp) => return Ok((listener, udp)),
            Err(e) => last = Some(e),
        }
    }
    let e = last.expect("at least one try");
    Err(std::io::Error::new(
        e.kind(),
        format!("cannot bind UDP on the tracker's port: {e}"),
    ))
}

fn handle(
    req: Result<Request, &HttpError>,
    peer: SocketAddr,
    registry: &Mutex<Registry>,
) -> Response {
    let ip = peer.ip().to_canonical();
    let now = Instant::now();
    // Bad requests get HTTP 200 with a `failure reason`, as trackers do, so
    // that clients show the reason instead of a bare status.
    let (status, body) = match req {
        Err(e) => (
            e.status().unwrap_or(400),
            codec::encode_failure(&e.to_string()),
        ),
        Ok(req) => match req.path() {
            "/announce" => match AnnounceRequest::from_query(req.query()) {
                Ok(a) => (200, registry.lock().announce(&a, ip, now)),
                Err(e) => (200, codec::encode_failure(&e.to_string())),
            },
            "/scrape" => match codec::parse_scrape_query(req.query()) {
                Ok(hashes) => (200, registry.lock().scrape(&hashes, now)),
                Err(e) => (200, codec::encode_failure(&e.to_string())),
            },
            _ => (
                404,
                codec::encode_failure("not found: use /announce or /scrape"),
            ),
        },
    };
    Response {
        status,
        content_type: "text/plain",
        body,
    }
}

/// `btnode tracker`: print where it listens, serve until SIGINT/SIGTERM.
pub fn run(args: &TrackerArgs) -> std::io::Result<()> {
    if args.interval == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--interval must be at least 1 second",
        ));
    }
    // Before binding, so a signal during start-up is not lost.
    let signals = crate::runtime::signals::shutdown_on_signal()?;
    let opts = ServerOptions::with_interval(Duration::from_secs(args.interval));
    let server = TrackerServer::start(args.listen, opts)?;
    // An unspecified bind address is not something a client can dial;
    // print loopback so the URL works as printed on this machine.
    let shown = match server.local_addr() {
        a if a.ip().is_unspecified() => SocketAddr::new([127, 0, 0, 1].into(), a.port()),
        a => a,
    };
    // One write for both lines, and a closed stdout (a parent that read
    // what it needed and went) is no reason to stop serving.
    let banner = format!(
        "tracker listening on http://{shown}/announce\ntracker listening on udp://{shown}/announce\n"
    );
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
        log::warn!("cannot print the banner: {e}");
    }
    drop(out);
    log::info!("tracker on {}", server.local_addr());
    let _ = signals.recv();
    server.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// A peer id unique to each port.
    fn id(port: u16) -> PeerId {
        let mut id = [b'-'; 20];
        id[..2].copy_from_slice(&port.to_be_bytes());
        PeerId(id)
    }

    fn req(port: u16, left: u64, event: Option<Event>) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([1; 20]),
            peer_id: id(port),
            port,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant: None,
            compact: true,
            no_peer_id: false,
            key: None,
        }
    }

    fn decode(bytes: &[u8]) -> AnnounceReply {
        AnnounceReply::decode(bytes).unwrap()
    }

    fn peers(bytes: &[u8]) -> Vec<SocketAddr> {
        decode(bytes).peers.into_iter().map(|p| p.addr).collect()
    }

    fn opts() -> ServerOptions {
        ServerOptions::with_interval(Duration::from_secs(60))
    }

    #[test]
    fn peers_see_each_other_not_themselves_and_stopped_removes() {
        let t = Instant::now();
        let mut r = Registry::new(opts(), t);
        assert!(peers(&r.announce(&req(1000, 5, Some(Event::Started)), LOCAL, t)).is_empty());
        assert_eq!(
            peers(&r.announce(&req(2000, 0, None), LOCAL, t)),
            vec![SocketAddr::new(LOCAL, 1000)]
        );
        assert_eq!(
            peers(&r.announce(&req(1000, 5, None), LOCAL, t)),
            vec![SocketAddr::new(LOCAL, 2000)]
        );
        let stopped = decode(&r.announce(&req(1000, 0, Some(Event::Stopped)), LOCAL, t));
        assert!(stopped.peers.is_empty());
        assert_eq!(r.peer_count(), 1);
        assert!(peers(&r.announce(&req(2000, 0, None), LOCAL, t)).is_empty());
        // A stop for a torrent nobody announced creates nothing.
        let mut other = req(3000, 0, Some(Event::Stopped));
        other.info_hash = InfoHash([2; 20]);
        r.announce(&other, LOCAL, t);
        assert_eq!(r.torrent_count(), 1);
    }

    #[test]
    fn the_same_peer_id_on_another_port_is_not_returned() {
        let t = Instant::now();
        let mut r = Registry::new(opts(), t);
        r.announce(&req(1000, 5, None), LOCAL, t);
        let mut again = req(1001, 5, None);
        again.peer_id = id(1000);
        assert!(peers(&r.announce(&again, LOCAL, t)).is_empty());
    }

    #[test]
    fn silent_peers_expire_and_empty_torrents_are_forgotten() {
        let t = Instant::now();
        let mut r = Registry::new(
            ServerOptions {
                peer_timeout: Duration::from_secs(5),
                ..opts()
            },
            t,
        );
        r.announce(&req(1000, 5, None), LOCAL, t);
        assert_eq!(peers(&r.announce(&req(2000, 5, None), LOCAL, t)).len(), 1);
        let later = t + Duration::from_secs(6);
        r.announce(&req(2000, 5, None), LOCAL, later - Duration::from_secs(1));
        assert!(peers(&r.announce(&req(2000, 5, None), LOCAL, later)).is_empty());
        assert_eq!(r.peer_count(), 1);

        let much_later = later + Duration::from_secs(11);
        let mut elsewhere = req(3000, 5, None);
        elsewhere.info_hash = InfoHash([2; 20]);
        r.announce(&elsewhere, LOCAL, much_later);
        assert_eq!((r.torrent_count(), r.peer_count()), (1, 1));
    }

    #[test]
    fn numwant_is_honoured_and_capped() {
        let t = Instant::now();
        let mut r = Registry::new(opts(), t);
        for port in 1..=300 {
            r.announce(&req(port, 1, None), LOCAL, t);
        }
        let mut asker = req(5000, 1, None);
        assert_eq!(peers(&r.announce(&asker, LOCAL, t)).len(), DEFAULT_NUMWANT);
        asker.numwant = Some(7);
        assert_eq!(peers(&r.announce(&asker, LOCAL, t)).len(), 7);
        asker.numwant = Some(0);
        assert!(peers(&r.announce(&asker, LOCAL, t)).is_empty());
        asker.numwant = Some(u32::MAX);
        let got = peers(&r.announce(&asker, LOCAL, t));
        assert_eq!(got.len(), MAX_NUMWANT);
        assert!(!got.contains(&SocketAddr::new(LOCAL, 5000)));
    }

    #[test]
    fn caps_bound_torrents_and_peers() {
        let t = Instant::now();
        let mut r = Registry::new(
            ServerOptions {
                max_torrents: 2,
                max_peers_per_torrent: 3,
                max_peers_total: 4,
                ..opts()
            },
            t,
        );
        for port in 1..=5 {
            r.announce(&req(port, 1, None), LOCAL, t);
        }
        assert_eq!(r.peer_count(), 3);
        let full = decode(&r.announce(&req(9, 1, None), LOCAL, t));
        assert_eq!(
            full.peers.len(),
            3,
            "a peer beyond the cap still gets peers"
        );
        assert!(full.warning.is_some());

        let mut second = req(1, 1, None);
        second.info_hash = InfoHash([2; 20]);
        r.announce(&second, LOCAL, t);
        second.port = 2;
        r.announce(&second, LOCAL, t);
        assert_eq!(r.peer_count(), 4, "the total cap holds across torrents");

        let mut third = req(1, 1, None);
        third.info_hash = InfoHash([3; 20]);
        assert_eq!(
            AnnounceReply::decode(&r.announce(&third, LOCAL, t)),
            Err(codec::TrackerWireError::Failure(
                "tracker is full: too many torrents".into()
            ))
        );
    }

    #[test]
    fn scrape_counts_completed_events_once_per_peer() {
        let t = Instant::now();
        let mut r = Registry::new(opts(), t);
        r.announce(&req(1000, 0, Some(Event::Completed)), LOCAL, t);
        r.announce(&req(1000, 0, Some(Event::Completed)), LOCAL, t);
        r.announce(&req(2000, 9, None), LOCAL, t);
        let unknown = InfoHash([7; 20]);
        let s = codec::decode_scrape(&r.scrape(&[InfoHash([1; 20]), unknown], t)).unwrap();
        let e = s[&InfoHash([1; 20])];
        assert_eq!((e.complete, e.incomplete, e.downloaded), (1, 1, 1));
        assert_eq!(s[&unknown], ScrapeEntry::default());
        let all = codec::decode_scrape(&r.scrape(&[], t)).unwrap();
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn dictionary_replies_carry_peer_ids_unless_asked_not_to() {
        let t = Instant::now();
        let mut r = Registry::new(opts(), t);
        r.announce(&req(1000, 1, None), LOCAL, t);
        let mut asker = req(2000, 1, None);
        asker.compact = false;
        let with_ids = decode(&r.announce(&asker, LOCAL, t));
        assert_eq!(with_ids.peers[0].peer_id, Some(id(1000)));
        asker.no_peer_id = true;
        let without = decode(&r.announce(&asker, LOCAL, t));
        assert_eq!(without.peers[0].peer_id, None);
    }
}
