//! The tracker's state, independent of HTTP and UDP (unit-testable with any
//! clock and a seeded RNG): the peers of each torrent keyed by info-hash,
//! expiry of silent peers, forgetting of empty torrents, and a random
//! sample of peers for each reply.
//!
//! A peer's address is the request's source IP plus its announced port, so
//! a client cannot list someone else (`ip=` is ignored). State is bounded:
//! torrents, peers per torrent, peers in all, and reply sizes.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::core::{InfoHash, PeerId};
use crate::wire::tracker::{AnnounceReply, AnnounceRequest, Event, PeerEntry, ScrapeEntry};

/// Peers returned when the client does not say `numwant`.
pub const DEFAULT_NUMWANT: usize = 50;
/// Most peers returned whatever the client asks.
pub const MAX_NUMWANT: usize = 200;
/// Most torrents listed by a scrape without `info_hash`.
pub const MAX_SCRAPE_ALL: usize = 1000;

/// The tracker's options: the registry's bounds and timing, and how many
/// HTTP connections the front serves at once.
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

/// Which peers a reply may list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Families {
    /// IPv4 and IPv6 (HTTP: `peers` and `peers6`).
    Both,
    /// Only the announcer's own address family (a BEP 15 reply holds one).
    Own,
}

struct PeerRecord {
    peer_id: PeerId,
    left: u64,
    last_seen: Instant,
    /// Already counted in `downloaded`: a repeated `completed` is not.
    completed: bool,
}

/// The peers listed for one torrent.
struct TorrentPeers {
    peers: HashMap<SocketAddr, PeerRecord>,
    /// `completed` events seen (BEP 48's `downloaded`).
    downloaded: u64,
    last_activity: Instant,
}

impl TorrentPeers {
    fn new(now: Instant) -> TorrentPeers {
        TorrentPeers {
            peers: HashMap::new(),
            downloaded: 0,
            last_activity: now,
        }
    }

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

/// Every torrent's peers; one lock around it serves both fronts.
pub struct Registry {
    torrents: HashMap<InfoHash, TorrentPeers>,
    /// Sum of the torrents' peer counts, kept in step with every change.
    total_peers: usize,
    last_sweep: Instant,
    opts: ServerOptions,
    /// Picks which peers each reply lists.
    rng: fastrand::Rng,
}

impl Registry {
    pub fn new(opts: ServerOptions, now: Instant) -> Registry {
        Registry::with_rng(opts, now, fastrand::Rng::new())
    }

    /// With a given RNG (seeded in tests, so samples repeat).
    pub fn with_rng(opts: ServerOptions, now: Instant, rng: fastrand::Rng) -> Registry {
        Registry {
            torrents: HashMap::new(),
            total_peers: 0,
            last_sweep: now,
            opts,
            rng,
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
        self.torrents.retain(|_, t| {
            removed += t.expire(now, timeout);
            !t.peers.is_empty() || now.saturating_duration_since(t.last_activity) < timeout
        });
        self.total_peers -= removed;
    }

    /// Applies an announce from `ip`: the reply (whom else to tell it
    /// about, of the `families` asked for, and the torrent's counts), or
    /// why it is refused.
    pub fn announce(
        &mut self,
        req: &AnnounceRequest,
        ip: IpAddr,
        now: Instant,
        families: Families,
    ) -> Result<AnnounceReply, &'static str> {
        self.sweep(now, false);
        let addr = SocketAddr::new(ip, req.port);
        let timeout = self.opts.peer_timeout;
        if !self.torrents.contains_key(&req.info_hash) {
            if req.event == Some(Event::Stopped) {
                // Nothing to remove, and no reason to start tracking it.
                return Ok(self.reply(Vec::new(), ScrapeEntry::default(), None));
            }
            if self.torrents.len() >= self.opts.max_torrents {
                self.sweep(now, true);
                if self.torrents.len() >= self.opts.max_torrents {
                    return Err("tracker is full: too many torrents");
                }
            }
        }
        let room_in_tracker = self.total_peers < self.opts.max_peers_total;
        let torrent = self
            .torrents
            .entry(req.info_hash)
            .or_insert_with(|| TorrentPeers::new(now));
        torrent.last_activity = now;
        let mut removed = torrent.expire(now, timeout);
        let mut added = 0;
        let mut warning = None;
        if req.event == Some(Event::Stopped) {
            removed += usize::from(torrent.peers.remove(&addr).is_some());
        } else {
            let completed_now = req.event == Some(Event::Completed);
            let room_for_newcomer =
                room_in_tracker && torrent.peers.len() < self.opts.max_peers_per_torrent;
            match torrent.peers.get_mut(&addr) {
                Some(p) => {
                    if completed_now && !p.completed {
                        torrent.downloaded += 1;
                    }
                    p.peer_id = req.peer_id;
                    p.left = req.left;
                    p.last_seen = now;
                    p.completed |= completed_now;
                }
                None if room_for_newcomer => {
                    torrent.downloaded += u64::from(completed_now);
                    torrent.peers.insert(
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
                    torrent.downloaded += u64::from(completed_now);
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
            torrent
                .peers
                .iter()
                .filter(|(a, p)| **a != addr && p.peer_id != req.peer_id)
                .filter(|(a, _)| families == Families::Both || a.is_ipv4() == addr.is_ipv4())
                .map(|(a, p)| PeerEntry {
                    addr: *a,
                    peer_id: Some(p.peer_id),
                })
                .collect()
        };
        let stats = torrent.stats();
        self.total_peers = self.total_peers + added - removed;

        // Partial Fisher–Yates: a random `want` of the others, so every
        // peer gets a different slice of a large swarm.
        for i in 0..others.len().min(want) {
            let j = self.rng.usize(i..others.len());
            others.swap(i, j);
        }
        others.truncate(want);
        Ok(self.reply(others, stats, warning))
    }

    /// The announce interval told to clients, in seconds.
    pub fn interval_secs(&self) -> u32 {
        u32::try_from(self.opts.interval.as_secs().max(1)).unwrap_or(u32::MAX)
    }

    fn reply(
        &self,
        peers: Vec<PeerEntry>,
        stats: ScrapeEntry,
        warning: Option<String>,
    ) -> AnnounceReply {
        AnnounceReply {
            interval: self.interval_secs(),
            min_interval: None,
            complete: Some(stats.complete),
            incomplete: Some(stats.incomplete),
            warning,
            peers,
        }
    }

    /// The counts for `hashes` (unknown ones read as zeros), or for up to
    /// [`MAX_SCRAPE_ALL`] torrents when empty.
    pub fn scrape(&mut self, hashes: &[InfoHash], now: Instant) -> BTreeMap<InfoHash, ScrapeEntry> {
        // Forced: counts must not include peers that have already expired.
        self.sweep(now, true);
        if hashes.is_empty() {
            self.torrents
                .iter()
                .take(MAX_SCRAPE_ALL)
                .map(|(h, t)| (*h, t.stats()))
                .collect()
        } else {
            hashes
                .iter()
                .map(|h| {
                    let stats = self.torrents.get(h).map(TorrentPeers::stats);
                    (*h, stats.unwrap_or_default())
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
        }
    }

    fn opts() -> ServerOptions {
        ServerOptions::with_interval(Duration::from_secs(60))
    }

    fn registry(opts: ServerOptions, now: Instant) -> Registry {
        Registry::with_rng(opts, now, fastrand::Rng::with_seed(11))
    }

    /// An accepted announce from loopback, both families.
    fn announce(r: &mut Registry, req: &AnnounceRequest, now: Instant) -> AnnounceReply {
        r.announce(req, LOCAL, now, Families::Both).unwrap()
    }

    fn peers(reply: AnnounceReply) -> Vec<SocketAddr> {
        reply.peers.into_iter().map(|p| p.addr).collect()
    }

    #[test]
    fn peers_see_each_other_not_themselves_and_stopped_removes() {
        let t = Instant::now();
        let mut r = registry(opts(), t);
        assert!(peers(announce(&mut r, &req(1000, 5, Some(Event::Started)), t)).is_empty());
        assert_eq!(
            peers(announce(&mut r, &req(2000, 0, None), t)),
            vec![SocketAddr::new(LOCAL, 1000)]
        );
        assert_eq!(
            peers(announce(&mut r, &req(1000, 5, None), t)),
            vec![SocketAddr::new(LOCAL, 2000)]
        );
        let stopped = announce(&mut r, &req(1000, 0, Some(Event::Stopped)), t);
        assert!(stopped.peers.is_empty());
        assert_eq!(r.peer_count(), 1);
        assert!(peers(announce(&mut r, &req(2000, 0, None), t)).is_empty());
        // A stop for a torrent nobody announced creates nothing, and is
        // answered with zero counts.
        let mut other = req(3000, 0, Some(Event::Stopped));
        other.info_hash = InfoHash([2; 20]);
        let reply = announce(&mut r, &other, t);
        assert_eq!(r.torrent_count(), 1);
        assert_eq!(
            (reply.interval, reply.complete, reply.incomplete),
            (60, Some(0), Some(0))
        );
    }

    #[test]
    fn the_same_peer_id_on_another_port_is_not_returned() {
        let t = Instant::now();
        let mut r = registry(opts(), t);
        announce(&mut r, &req(1000, 5, None), t);
        let mut again = req(1001, 5, None);
        again.peer_id = id(1000);
        assert!(peers(announce(&mut r, &again, t)).is_empty());
    }

    #[test]
    fn silent_peers_expire_and_empty_torrents_are_forgotten() {
        let t = Instant::now();
        let mut r = registry(
            ServerOptions {
                peer_timeout: Duration::from_secs(5),
                ..opts()
            },
            t,
        );
        announce(&mut r, &req(1000, 5, None), t);
        assert_eq!(peers(announce(&mut r, &req(2000, 5, None), t)).len(), 1);
        let later = t + Duration::from_secs(6);
        announce(&mut r, &req(2000, 5, None), later - Duration::from_secs(1));
        assert!(peers(announce(&mut r, &req(2000, 5, None), later)).is_empty());
        assert_eq!(r.peer_count(), 1);

        let much_later = later + Duration::from_secs(11);
        let mut elsewhere = req(3000, 5, None);
        elsewhere.info_hash = InfoHash([2; 20]);
        announce(&mut r, &elsewhere, much_later);
        assert_eq!((r.torrent_count(), r.peer_count()), (1, 1));
    }

    #[test]
    fn numwant_is_honoured_and_capped() {
        let t = Instant::now();
        let mut r = registry(opts(), t);
        for port in 1..=300 {
            announce(&mut r, &req(port, 1, None), t);
        }
        let mut asker = req(5000, 1, None);
        assert_eq!(peers(announce(&mut r, &asker, t)).len(), DEFAULT_NUMWANT);
        asker.numwant = Some(7);
        assert_eq!(peers(announce(&mut r, &asker, t)).len(), 7);
        asker.numwant = Some(0);
        assert!(peers(announce(&mut r, &asker, t)).is_empty());
        asker.numwant = Some(u32::MAX);
        let got = peers(announce(&mut r, &asker, t));
        assert_eq!(got.len(), MAX_NUMWANT);
        assert!(!got.contains(&SocketAddr::new(LOCAL, 5000)));
    }

    /// A sample has no repeats, and successive askers get different
    /// slices of a large swarm (the odds of the same 10 of 100 twice are
    /// about 1e-13; the map's own order is not seeded, so a seed alone
    /// does not fix the sample).
    #[test]
    fn replies_sample_the_swarm_at_random() {
        let t = Instant::now();
        let mut r = registry(opts(), t);
        for port in 1..=100 {
            announce(&mut r, &req(port, 1, None), t);
        }
        let mut asker = req(5000, 1, None);
        asker.numwant = Some(10);
        let first = peers(announce(&mut r, &asker, t));
        let second = peers(announce(&mut r, &asker, t));
        assert_eq!((first.len(), second.len()), (10, 10));
        let distinct: std::collections::HashSet<_> = first.iter().collect();
        assert_eq!(distinct.len(), 10);
        assert_ne!(first, second, "another slice for the next announce");
    }

    #[test]
    fn own_family_lists_only_peers_of_the_announcers_family() {
        let t = Instant::now();
        let mut r = registry(opts(), t);
        let v6: IpAddr = "::1".parse().unwrap();
        r.announce(&req(1000, 1, None), v6, t, Families::Both)
            .unwrap();
        announce(&mut r, &req(2000, 1, None), t);
        let own = r.announce(&req(3000, 1, None), LOCAL, t, Families::Own);
        assert_eq!(peers(own.unwrap()), vec![SocketAddr::new(LOCAL, 2000)]);
        let both = announce(&mut r, &req(3000, 1, None), t);
        assert_eq!(both.peers.len(), 2);
    }

    #[test]
    fn caps_bound_torrents_and_peers() {
        let t = Instant::now();
        let mut r = registry(
            ServerOptions {
                max_torrents: 2,
                max_peers_per_torrent: 3,
                max_peers_total: 4,
                ..opts()
            },
            t,
        );
        for port in 1..=5 {
            announce(&mut r, &req(port, 1, None), t);
        }
        assert_eq!(r.peer_count(), 3);
        let full = announce(&mut r, &req(9, 1, None), t);
        assert_eq!(
            full.peers.len(),
            3,
            "a peer beyond the cap still gets peers"
        );
        assert!(full.warning.is_some());

        let mut second = req(1, 1, None);
        second.info_hash = InfoHash([2; 20]);
        announce(&mut r, &second, t);
        second.port = 2;
        announce(&mut r, &second, t);
        assert_eq!(r.peer_count(), 4, "the total cap holds across torrents");

        let mut third = req(1, 1, None);
        third.info_hash = InfoHash([3; 20]);
        assert_eq!(
            r.announce(&third, LOCAL, t, Families::Both),
            Err("tracker is full: too many torrents")
        );
    }

    #[test]
    fn scrape_counts_completed_events_once_per_peer() {
        let t = Instant::now();
        let mut r = registry(opts(), t);
        announce(&mut r, &req(1000, 0, Some(Event::Completed)), t);
        announce(&mut r, &req(1000, 0, Some(Event::Completed)), t);
        announce(&mut r, &req(2000, 9, None), t);
        let unknown = InfoHash([7; 20]);
        let s = r.scrape(&[InfoHash([1; 20]), unknown], t);
        let e = s[&InfoHash([1; 20])];
        assert_eq!((e.complete, e.incomplete, e.downloaded), (1, 1, 1));
        assert_eq!(s[&unknown], ScrapeEntry::default());
        assert_eq!(r.scrape(&[], t).len(), 1);
    }
}
