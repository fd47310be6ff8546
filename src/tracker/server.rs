//! A small HTTP tracker on tiny_http with a fixed pool of worker threads:
//! `/announce` (compact or dictionary replies, `event=stopped` removes at
//! once, silent peers expire) and `/scrape`. A peer's address is the
//! request's source IP plus its announced port, so a client cannot announce
//! someone else. State is bounded: torrents, peers per torrent, reply size.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::config::TrackerArgs;
use crate::core::{InfoHash, PeerId};
use crate::wire::tracker::{
    self as codec, AnnounceReply, AnnounceRequest, Event, PeerEntry, ScrapeEntry,
};

pub const MAX_TORRENTS: usize = 10_000;
pub const MAX_PEERS_PER_TORRENT: usize = 5_000;
pub const DEFAULT_NUMWANT: usize = 50;
pub const MAX_NUMWANT: usize = 200;
const WORKERS: usize = 4;

#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Told to clients.
    pub interval: Duration,
    /// A peer that has not announced for this long is dropped.
    pub peer_timeout: Duration,
}

impl ServerOptions {
    pub fn with_interval(interval: Duration) -> ServerOptions {
        ServerOptions {
            interval,
            peer_timeout: interval * 2 + Duration::from_secs(10),
        }
    }
}

struct PeerRecord {
    peer_id: PeerId,
    left: u64,
    last_seen: Instant,
}

#[derive(Default)]
struct Swarm {
    peers: HashMap<SocketAddr, PeerRecord>,
    downloaded: u64,
}

/// The tracker's state, independent of HTTP (unit-testable).
pub struct Registry {
    torrents: HashMap<InfoHash, Swarm>,
    opts: ServerOptions,
    rng: u64,
}

impl Registry {
    pub fn new(opts: ServerOptions) -> Registry {
        Registry {
            torrents: HashMap::new(),
            opts,
            rng: Instant::now().elapsed().as_nanos() as u64 | 0x9E37_79B9,
        }
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.opts.peer_timeout;
        self.torrents.retain(|_, s| {
            s.peers
                .retain(|_, p| now.duration_since(p.last_seen) < timeout);
            !s.peers.is_empty() || s.downloaded > 0
        });
    }

    /// Applies an announce from `ip` and builds the reply bytes.
    pub fn announce(&mut self, req: &AnnounceRequest, ip: IpAddr, now: Instant) -> Vec<u8> {
        let addr = SocketAddr::new(ip, req.port);
        if !self.torrents.contains_key(&req.info_hash) && self.torrents.len() >= MAX_TORRENTS {
            self.expire(now);
            if self.torrents.len() >= MAX_TORRENTS {
                return codec::encode_failure("tracker is full");
            }
        }
        let timeout = self.opts.peer_timeout;
        let swarm = self.torrents.entry(req.info_hash).or_default();
        swarm
            .peers
            .retain(|_, p| now.duration_since(p.last_seen) < timeout);
        if req.event == Some(Event::Stopped) {
            swarm.peers.remove(&addr);
        } else {
            if !swarm.peers.contains_key(&addr) && swarm.peers.len() >= MAX_PEERS_PER_TORRENT {
                return codec::encode_failure("torrent is full");
            }
            if req.event == Some(Event::Completed) {
                swarm.downloaded += 1;
            }
            swarm.peers.insert(
                addr,
                PeerRecord {
                    peer_id: req.peer_id,
                    left: req.left,
                    last_seen: now,
                },
            );
        }
        let want = req
            .numwant
            .map(|n| n as usize)
            .unwrap_or(DEFAULT_NUMWANT)
            .min(MAX_NUMWANT);
        let mut others: Vec<PeerEntry> = swarm
            .peers
            .iter()
            .filter(|(a, _)| **a != addr)
            .map(|(a, p)| PeerEntry {
                addr: *a,
                peer_id: Some(p.peer_id),
            })
            .collect();
        // Partial Fisher–Yates: a random `want` of the others.
        for i in 0..others.len().min(want) {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            let j = i + (self.rng % (others.len() - i) as u64) as usize;
            others.swap(i, j);
        }
        others.truncate(want);
        let complete = swarm.peers.values().filter(|p| p.left == 0).count() as u64;
        let reply = AnnounceReply {
            interval: self.opts.interval.as_secs().max(1) as u32,
            min_interval: None,
            complete: Some(complete),
            incomplete: Some(swarm.peers.len() as u64 - complete),
            warning: None,
            peers: others,
        };
        reply.encode(req.compact, req.no_peer_id)
    }

    /// Scrape for `hashes`, or every torrent (bounded) when empty.
    pub fn scrape(&mut self, hashes: &[InfoHash], now: Instant) -> Vec<u8> {
        self.expire(now);
        let entry = |s: &Swarm| {
            let complete = s.peers.values().filter(|p| p.left == 0).count() as u64;
            ScrapeEntry {
                complete,
                incomplete: s.peers.len() as u64 - complete,
                downloaded: s.downloaded,
            }
        };
        let files: BTreeMap<InfoHash, ScrapeEntry> = if hashes.is_empty() {
            self.torrents
                .iter()
                .take(1000)
                .map(|(h, s)| (*h, entry(s)))
                .collect()
        } else {
            hashes
                .iter()
                .take(100)
                .map(|h| (*h, self.torrents.get(h).map(entry).unwrap_or_default()))
                .collect()
        };
        codec::encode_scrape(&files)
    }
}

pub struct TrackerServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl TrackerServer {
    pub fn start(addr: SocketAddr, opts: ServerOptions) -> std::io::Result<TrackerServer> {
        let server = Arc::new(tiny_http::Server::http(addr).map_err(std::io::Error::other)?);
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("tracker is not on an IP address"))?;
        let registry = Arc::new(Mutex::new(Registry::new(opts)));
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..WORKERS)
            .map(|i| {
                let (server, registry, stop) = (server.clone(), registry.clone(), stop.clone());
                std::thread::Builder::new()
                    .name(format!("tracker-{i}"))
                    .spawn(move || {
                        while !stop.load(Ordering::SeqCst) {
                            match server.recv_timeout(Duration::from_millis(500)) {
                                Ok(Some(req)) => handle(req, &registry),
                                Ok(None) => {}
                                Err(_) => break,
                            }
                        }
                    })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(TrackerServer {
            addr: bound,
            server,
            stop,
            workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn handle(req: tiny_http::Request, registry: &Mutex<Registry>) {
    let ip = req.remote_addr().map(|a| match a.ip() {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    });
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let now = Instant::now();
    let (status, body) = match (path, ip) {
        ("/announce", Some(ip)) => match AnnounceRequest::from_query(query) {
            Ok(a) => (200, registry.lock().announce(&a, ip, now)),
            Err(e) => (200, codec::encode_failure(&e.to_string())),
        },
        ("/scrape", _) => match codec::parse_query(query) {
            Some(params) => {
                let hashes: Vec<InfoHash> = params
                    .iter()
                    .filter(|(k, _)| k == "info_hash")
                    .filter_map(|(_, v)| <[u8; 20]>::try_from(v.as_slice()).ok())
                    .map(InfoHash)
                    .collect();
                (200, registry.lock().scrape(&hashes, now))
            }
            None => (200, codec::encode_failure("malformed query string")),
        },
        _ => (
            404,
            codec::encode_failure("not found: use /announce or /scrape"),
        ),
    };
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"text/plain"[..])
        .expect("static header is valid");
    let resp = tiny_http::Response::from_data(body)
        .with_status_code(status)
        .with_header(header);
    let _ = req.respond(resp);
}

/// `btnode tracker`: serve until SIGINT/SIGTERM.
pub fn run(args: &TrackerArgs) -> std::io::Result<()> {
    let opts = ServerOptions::with_interval(Duration::from_secs(args.interval.max(1)));
    let server = TrackerServer::start(args.listen, opts)?;
    let shown = match server.local_addr() {
        a if a.ip().is_unspecified() => SocketAddr::new([127, 0, 0, 1].into(), a.port()),
        a => a,
    };
    let mut out = std::io::stdout();
    writeln!(out, "tracker listening on http://{shown}/announce")?;
    out.flush()?;
    let signals = crate::node::signals::shutdown_on_signal()?;
    let _ = signals.recv();
    server.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(port: u16, left: u64, event: Option<Event>) -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([port as u8; 20]),
            port,
            uploaded: 0,
            downloaded: 0,
            left,
            event,
            numwant: None,
            compact: true,
            no_peer_id: false,
        }
    }

    fn peers(bytes: &[u8]) -> Vec<SocketAddr> {
        AnnounceReply::decode(bytes)
            .unwrap()
            .peers
            .into_iter()
            .map(|p| p.addr)
            .collect()
    }

    #[test]
    fn peers_see_each_other_not_themselves_and_stopped_removes() {
        let mut r = Registry::new(ServerOptions::with_interval(Duration::from_secs(60)));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t = Instant::now();
        assert!(peers(&r.announce(&req(1000, 5, Some(Event::Started)), ip, t)).is_empty());
        assert_eq!(
            peers(&r.announce(&req(2000, 0, None), ip, t)),
            vec![SocketAddr::new(ip, 1000)]
        );
        r.announce(&req(1000, 0, Some(Event::Stopped)), ip, t);
        assert!(peers(&r.announce(&req(2000, 0, None), ip, t)).is_empty());
    }

    #[test]
    fn silent_peers_expire() {
        let mut r = Registry::new(ServerOptions {
            interval: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(5),
        });
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t = Instant::now();
        r.announce(&req(1000, 5, None), ip, t);
        assert_eq!(peers(&r.announce(&req(2000, 5, None), ip, t)).len(), 1);
        let later = t + Duration::from_secs(6);
        r.announce(&req(2000, 5, None), ip, later - Duration::from_secs(1));
        assert!(peers(&r.announce(&req(2000, 5, None), ip, later)).is_empty());
    }

    #[test]
    fn scrape_counts_completed_events() {
        let mut r = Registry::new(ServerOptions::with_interval(Duration::from_secs(60)));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t = Instant::now();
        r.announce(&req(1000, 0, Some(Event::Completed)), ip, t);
        r.announce(&req(2000, 9, None), ip, t);
        let s = codec::decode_scrape(&r.scrape(&[InfoHash([1; 20])], t)).unwrap();
        let e = s[&InfoHash([1; 20])];
        assert_eq!((e.complete, e.incomplete, e.downloaded), (1, 1, 1));
    }
}
