//! `btnode -t 'magnet:?…'`: find peers by the info-hash alone (overlay
//! lookups, the link's `tr` trackers, its `x.pe` peers and `--peer`), fetch
//! the info dictionary from them (BEP 9, the policy in
//! `swarm::metadata`), verify it, save it as a `.torrent` next to the data,
//! then run the torrent as if that file had been given.
//!
//! Threads while fetching: this one (discovery, dials, progress), one per
//! peer connection (blocking std::net, whole deadline per connection), and
//! one for the trackers. Connection threads share only the fetch policy's
//! mutex, never held across I/O.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use super::candidates::Candidates;
use super::status::{self, Status};
use super::{
    resolve_all, run_in_session, DiscoveryMode, NodeConfig, NodeError, Publish, Services, Shared,
};
use crate::core::bencode::{self, Value};
use crate::core::{InfoHash, Magnet, Metainfo, PeerId};
use crate::peer::handshake;
use crate::swarm::metadata::{FetchPeer, MetadataFetch, Outcome};
use crate::swarm::torrent::Stats;
use crate::tracker::client::{self as tracker, AnnounceRequest, Event};
use crate::wire::metadata::{MetadataMessage, OUR_UT_METADATA_ID};
use crate::wire::peer::{decode_frame, ExtendedHandshake, Message};

/// Peers fetched from at once.
pub const MAX_FETCH_CONNECTIONS: usize = 8;
/// One connection's whole life while fetching: connect, handshakes, and
/// every piece it is asked for.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(60);
/// A peer that sends no extension handshake this long after ours is useless.
const EXTENDED_HANDSHAKE_WAIT: Duration = Duration::from_secs(10);
/// Largest frame read while fetching: a bitfield of a million pieces fits.
const FETCH_FRAME_LIMIT: u32 = 1 << 20;
const OVERLAY_LOOKUP_EVERY: Duration = Duration::from_secs(2);
/// Tracker rounds while fetching: soon after start (the seeder may announce
/// a moment after us), then doubling up to the last.
const TRACKER_FIRST_WAIT: Duration = Duration::from_secs(2);
const TRACKER_LONGEST_WAIT: Duration = Duration::from_secs(30);
const TRACKER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the verified metainfo of `info_hash` is saved: the data folder,
/// named by the info-hash (so no torrent's own files can collide with it).
pub fn saved_torrent_path(data_dir: &Path, info_hash: InfoHash) -> PathBuf {
    data_dir.join(format!("{}.torrent", info_hash.to_hex()))
}

/// Runs the torrent of a magnet link until shutdown (or completion):
/// the metadata first (from a `.torrent` saved by an earlier run, else
/// from peers), then the download on the same services.
pub fn run_magnet(
    config: &NodeConfig,
    link: &str,
    shutdown: Receiver<()>,
) -> Result<(), NodeError> {
    let magnet = Magnet::parse(link).map_err(|e| NodeError(e.to_string()))?;
    let mode = discovery_mode(config, &magnet);
    let services = Services::start(config, mode != DiscoveryMode::Tracker)?;
    let result = match fetch_or_load(config, &magnet, mode, &services, &shutdown) {
        Ok(Some(meta)) => {
            // The link's peers are the download's direct peers too.
            let mut config = config.clone();
            config.direct_peers.extend(magnet.peers.iter().cloned());
            run_in_session(&config, meta, &services.shared, shutdown)
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    services.stop();
    result
}

/// The state a torrent shows while its metadata is fetched.
pub const FETCHING_STATE: &str = "fetching metadata";

/// As for a torrent: the flag, else the overlay alone for a link without
/// trackers and both for one with.
pub fn discovery_mode(config: &NodeConfig, magnet: &Magnet) -> DiscoveryMode {
    super::discovery_mode_with(config, !magnet.trackers.is_empty())
}

fn fetch_or_load(
    config: &NodeConfig,
    magnet: &Magnet,
    mode: DiscoveryMode,
    services: &Services,
    shutdown: &Receiver<()>,
) -> Result<Option<Metainfo>, NodeError> {
    let saved = saved_torrent_path(&config.data_dir, magnet.info_hash);
    if let Ok(meta) = crate::storage::torrent_file::read(&saved) {
        if meta.info_hash == magnet.info_hash {
            log::info!("metadata of {} from {}", magnet.info_hash, saved.display());
            return Ok(Some(meta));
        }
    }
    let Some(info) = fetch_metadata(config, magnet, mode, &services.shared, shutdown)? else {
        return Ok(None);
    };
    let meta = Metainfo::from_info_dict(&info, &magnet.trackers).map_err(|e| {
        NodeError(format!(
            "the metadata peers sent is not a valid torrent: {e}"
        ))
    })?;
    let bytes = torrent_file_bytes(&info, &magnet.trackers);
    let written =
        std::fs::create_dir_all(&config.data_dir).and_then(|()| write_atomically(&saved, &bytes));
    match written {
        Ok(()) => log::info!("saved the metadata as {}", saved.display()),
        Err(e) => log::warn!("cannot save the metadata as {}: {e}", saved.display()),
    }
    Ok(Some(meta))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("torrent.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// A `.torrent` around `info` (kept byte for byte, so the info-hash is
/// the link's) with the link's trackers.
pub fn torrent_file_bytes(info: &[u8], trackers: &[String]) -> Vec<u8> {
    let mut d: Vec<(&str, Value)> = Vec::new();
    if let Some(first) = trackers.first() {
        d.push(("announce", Value::bytes(first.as_bytes())));
        let tiers = trackers
            .iter()
            .map(|t| Value::List(vec![Value::bytes(t.as_bytes())]))
            .collect();
        d.push(("announce-list", Value::List(tiers)));
    }
    // Keys sort `announce`, `announce-list`, `info`: the info goes last,
    // spliced in raw before the dictionary's end.
    let mut out = bencode::encode(&Value::dict(d));
    out.pop();
    out.extend_from_slice(b"4:info");
    out.extend_from_slice(info);
    out.push(b'e');
    out
}

/// What the fetch's connection threads share.
struct FetchShared {
    fetch: Mutex<MetadataFetch>,
    stop: AtomicBool,
    info_hash: InfoHash,
    our_id: PeerId,
}

enum ConnEvent {
    Ended(FetchPeer),
    /// Peers proven to have sent metadata that does not verify.
    Liars(Vec<FetchPeer>),
    Done(Vec<u8>),
}

/// Fetches and verifies the info dictionary on a process's `shared`
/// services (a daemon's, or those `run_magnet` started); `None` on
/// shutdown. Its progress goes where a torrent's status goes.
pub fn fetch_metadata(
    config: &NodeConfig,
    magnet: &Magnet,
    mode: DiscoveryMode,
    services: &Shared,
    shutdown: &Receiver<()>,
) -> Result<Option<Vec<u8>>, NodeError> {
    let shared = Arc::new(FetchShared {
        fetch: Mutex::new(MetadataFetch::new(magnet.info_hash)),
        stop: AtomicBool::new(false),
        info_hash: magnet.info_hash,
        our_id: PeerId::generate(),
    });
    let name = magnet
        .name
        .clone()
        .unwrap_or_else(|| magnet.info_hash.to_hex());
    log::info!(
        "{name}: fetching metadata for info-hash {}",
        magnet.info_hash
    );
    let (events_tx, events) = crossbeam_channel::unbounded::<ConnEvent>();
    let (addrs_tx, addrs) = crossbeam_channel::unbounded::<Vec<SocketAddr>>();
    let listen_port = services.listen_port;
    if mode != DiscoveryMode::Overlay && !magnet.trackers.is_empty() {
        start_trackers(
            magnet.trackers.clone(),
            magnet.info_hash,
            shared.our_id,
            listen_port,
            addrs_tx.clone(),
            shared.clone(),
        );
    }
    let overlay = services.overlay.clone();
    let mut candidates = Candidates::default();
    let mut direct = resolve_all(&magnet.peers);
    direct.extend(resolve_all(&config.direct_peers));
    candidates.add(direct, Instant::now());
    let mut live: Vec<(FetchPeer, SocketAddr)> = Vec::new();
    // Every connection's address, for blame that comes after it ended.
    let mut dialed: std::collections::HashMap<FetchPeer, SocketAddr> = Default::default();
    let mut next_key: FetchPeer = 1;
    let mut last_lookup: Option<Instant> = None;
    let mut ticks = 0u64;
    let ticker = crossbeam_channel::tick(Duration::from_secs(1));
    let result = loop {
        let now = Instant::now();
        if let Some(o) = &overlay {
            if last_lookup.is_none_or(|t| now.duration_since(t) >= OVERLAY_LOOKUP_EVERY) {
                last_lookup = Some(now);
                let found: Vec<SocketAddr> = o
                    .lookup(magnet.info_hash, 50)
                    .iter()
                    .map(|p| p.addr)
                    .filter(|a| a.port() != listen_port || !super::discovery::is_own_ip(a))
                    .collect();
                candidates.add(found, now);
            }
        }
        let connected: Vec<SocketAddr> = live.iter().map(|l| l.1).collect();
        let room = MAX_FETCH_CONNECTIONS.saturating_sub(live.len());
        for addr in candidates.due(now, room, |a| connected.contains(a)) {
            let key = next_key;
            next_key += 1;
            live.push((key, addr));
            dialed.insert(key, addr);
            let (shared, events) = (shared.clone(), events_tx.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("metadata-{addr}"))
                .spawn(move || {
                    match fetch_from(key, addr, &shared, &events) {
                        Ok(()) => {}
                        Err(e) => log::debug!("metadata from {addr}: {e}"),
                    }
                    shared.fetch.lock().remove_peer(key);
                    let _ = events.send(ConnEvent::Ended(key));
                });
            if let Err(e) = spawned {
                log::warn!("cannot start a metadata connection: {e}");
                live.retain(|l| l.0 != key);
            }
        }
        crossbeam_channel::select! {
            recv(shutdown) -> _ => break None,
            recv(events) -> event => match event {
                Ok(ConnEvent::Ended(key)) => live.retain(|l| l.0 != key),
                Ok(ConnEvent::Liars(keys)) => {
                    for addr in keys.iter().filter_map(|k| dialed.get(k)) {
                        log::warn!("banning {addr}: its metadata did not match the info-hash");
                        candidates.ban(*addr);
                    }
                }
                Ok(ConnEvent::Done(info)) => break Some(info),
                Err(_) => break None,
            },
            recv(addrs) -> found => {
                if let Ok(found) = found {
                    candidates.add(found, Instant::now());
                }
            },
            recv(ticker) -> _ => {
                ticks += 1;
                let expired = shared.fetch.lock().expire(Instant::now());
                for key in expired {
                    if let Some((_, addr)) = live.iter().find(|l| l.0 == key) {
                        log::info!("{addr} did not answer a metadata request in time");
                    }
                }
                let peers = shared.fetch.lock().num_peers();
                let shown = Fetching {
                    name: &name,
                    info_hash: magnet.info_hash,
                    peer_port: listen_port,
                    overlay_port: overlay.as_ref().map(|o| o.local_addr().port()),
                    peers,
                    known_peers: candidates.len(),
                };
                show_fetching(config, &shown, ticks, services.publish.as_ref());
            },
        }
    };
    shared.stop.store(true, Ordering::Relaxed);
    // Connection threads end within a second of `stop` once their socket
    // is open (connect and the handshake have deadlines of their own), the
    // tracker thread after the announce in progress (10 s at most); they
    // are not waited for, so the download starts at once.
    if config.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        eprintln!();
    }
    if let Some(info) = &result {
        log::info!("{name}: metadata verified ({} bytes)", info.len());
    }
    Ok(result)
}

/// What the fetch shows each second.
struct Fetching<'a> {
    name: &'a str,
    info_hash: InfoHash,
    peer_port: u16,
    overlay_port: Option<u16>,
    /// Peers taking part in the fetch (they offer the metadata).
    peers: usize,
    /// Addresses known, tried or not.
    known_peers: usize,
}

/// "fetching metadata (n peers)" on the terminal or in the log, and a
/// status file saying so.
fn show_fetching(config: &NodeConfig, f: &Fetching<'_>, ticks: u64, publish: Option<&Publish>) {
    let line = format!("{FETCHING_STATE} ({} peers)", f.peers);
    if config.progress && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let mut err = std::io::stderr();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    } else if ticks % 5 == 1 {
        log::info!("{} {line}", f.name);
    }
    if config.status_file.is_some() || publish.is_some() {
        let st = Status {
            info_hash: f.info_hash.to_hex(),
            name: f.name.to_string(),
            state: FETCHING_STATE,
            peer_port: f.peer_port,
            overlay_port: f.overlay_port,
            pieces_total: 0,
            pieces_have: 0,
            complete: false,
            left: 0,
            total_length: 0,
            stats: Stats::default(),
            down_rate: 0.0,
            up_rate: 0.0,
            peers: Vec::new(),
            known_peers: f.known_peers,
            piece_map: String::new(),
        };
        if let Some(path) = &config.status_file {
            status::write_status(path, &st);
        }
        if let Some(publish) = publish {
            publish(&st);
        }
    }
}

/// Announces to every tracker of the link, [`TRACKER_FIRST_WAIT`] apart
/// and doubling up to [`TRACKER_LONGEST_WAIT`], until the fetch stops,
/// sending the peers found.
fn start_trackers(
    urls: Vec<String>,
    info_hash: InfoHash,
    peer_id: PeerId,
    port: u16,
    found: Sender<Vec<SocketAddr>>,
    shared: Arc<FetchShared>,
) {
    let spawned = std::thread::Builder::new()
        .name("metadata-trackers".into())
        .spawn(move || {
            let mut due = Instant::now();
            let mut wait = TRACKER_FIRST_WAIT;
            while !shared.stop.load(Ordering::Relaxed) {
                if Instant::now() >= due {
                    due = Instant::now() + wait;
                    wait = (wait * 2).min(TRACKER_LONGEST_WAIT);
                    for url in &urls {
                        let req = AnnounceRequest {
                            info_hash,
                            peer_id,
                            port,
                            uploaded: 0,
                            downloaded: 0,
                            // Unknown until the metadata is in; not a seed.
                            left: 1,
                            event: Some(Event::Started),
                            numwant: Some(50),
                        };
                        match tracker::announce(url, &req, TRACKER_TIMEOUT) {
                            Ok(reply) => {
                                let _ = found.send(reply.peers);
                            }
                            Err(e) => log::info!("tracker {url}: {e}"),
                        }
                        if shared.stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the tracker thread: {e}");
    }
}

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Handshake(#[from] handshake::HandshakeError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the peer does not speak the extension protocol")]
    NoExtensions,
    #[error("no extension handshake within {0:?}")]
    NoExtendedHandshake(Duration),
    #[error("protocol: {0}")]
    Wire(#[from] crate::wire::peer::WireError),
    #[error("refused: {0}")]
    Refused(#[from] crate::swarm::metadata::Refusal),
    #[error("connection closed")]
    Closed,
    #[error("whole deadline of {0:?} passed")]
    Deadline(Duration),
}

/// One connection: handshakes, then requests as the policy says and
/// answers fed back to it, until the fetch ends, the policy drops this
/// peer, or [`CONNECTION_DEADLINE`].
fn fetch_from(
    key: FetchPeer,
    addr: SocketAddr,
    shared: &FetchShared,
    events: &Sender<ConnEvent>,
) -> Result<(), FetchError> {
    let started = Instant::now();
    let deadline = started + CONNECTION_DEADLINE;
    let socket = handshake::socket_for(addr)?;
    let mut stream = handshake::connect(socket, addr)?;
    let theirs = handshake::dial(&mut stream, shared.info_hash, shared.our_id)?;
    if !theirs.supports_extensions() {
        return Err(FetchError::NoExtensions);
    }
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let ours = ExtendedHandshake {
        client: Some(format!("btnode {}", env!("CARGO_PKG_VERSION"))),
        ut_metadata: Some(OUR_UT_METADATA_ID),
        ..ExtendedHandshake::default()
    };
    send(&mut stream, &Message::ExtendedHandshake(ours))?;
    let mut their_id: Option<u8> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(FetchError::Deadline(CONNECTION_DEADLINE));
        }
        if their_id.is_none() && now.duration_since(started) >= EXTENDED_HANDSHAKE_WAIT {
            return Err(FetchError::NoExtendedHandshake(EXTENDED_HANDSHAKE_WAIT));
        }
        if let Some(id) = their_id {
            let requests = {
                let mut fetch = shared.fetch.lock();
                if !fetch.has_peer(key) {
                    // Dropped by the policy (timed out, banned): done here.
                    return Ok(());
                }
                let mut pieces = Vec::new();
                while let Some(p) = fetch.next_request(key, now) {
                    pieces.push(p);
                }
                pieces
            };
            for piece in requests {
                let msg = MetadataMessage::Request { piece };
                send(&mut stream, &Message::Metadata { ext_id: id, msg })?;
            }
        }
        // Whole frames first; then read more, waking each second.
        while let Some((msg, used)) = decode_frame(&buf, FETCH_FRAME_LIMIT)? {
            buf.drain(..used);
            if handle(key, msg, &mut their_id, &mut stream, shared, events)? {
                return Ok(());
            }
        }
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1))
            .max(Duration::from_millis(1));
        stream.set_read_timeout(Some(wait))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Err(FetchError::Closed),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if handshake::is_timeout(&e) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn send(stream: &mut TcpStream, msg: &Message) -> std::io::Result<()> {
    let mut out = Vec::new();
    msg.encode(&mut out);
    stream.write_all(&out)
}

/// One message from the peer; `Ok(true)` when this connection is done.
fn handle(
    key: FetchPeer,
    msg: Message,
    their_id: &mut Option<u8>,
    stream: &mut TcpStream,
    shared: &FetchShared,
    events: &Sender<ConnEvent>,
) -> Result<bool, FetchError> {
    match msg {
        // A second handshake (BEP 10 allows updates) changes nothing here.
        Message::ExtendedHandshake(hs) if their_id.is_none() => {
            let speaks = hs.ut_metadata.is_some();
            let added = shared.fetch.lock().add_peer(key, speaks, hs.metadata_size);
            added?;
            *their_id = hs.ut_metadata;
        }
        Message::Metadata { msg, .. } => match msg {
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                let outcome = shared.fetch.lock().on_data(key, piece, total_size, data)?;
                match outcome {
                    Outcome::Stored | Outcome::Ignored => {}
                    Outcome::Done { info, liars } => {
                        if !liars.is_empty() {
                            let _ = events.send(ConnEvent::Liars(liars));
                        }
                        let _ = events.send(ConnEvent::Done(info));
                        return Ok(true);
                    }
                    Outcome::HashFailed { banned } => {
                        log::warn!(
                            "assembled metadata does not match the info-hash; fetching again"
                        );
                        let me = banned.contains(&key);
                        if !banned.is_empty() {
                            let _ = events.send(ConnEvent::Liars(banned));
                        }
                        return Ok(me);
                    }
                }
            }
            MetadataMessage::Reject { piece } => {
                let rejected = shared.fetch.lock().on_reject(key, piece, Instant::now());
                rejected?;
            }
            // We have nothing to serve yet.
            MetadataMessage::Request { piece } => {
                if let Some(id) = *their_id {
                    let msg = MetadataMessage::Reject { piece };
                    send(stream, &Message::Metadata { ext_id: id, msg })?;
                }
            }
        },
        _ => {}
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_saved_torrent_keeps_the_info_and_the_trackers() {
        let info = bencode::encode(&Value::dict([
            ("length", Value::Int(5)),
            ("name", Value::bytes("a.bin")),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(vec![1; 20])),
        ]));
        let from_info = Metainfo::from_info_dict(&info, &[]).unwrap();
        let trackers = ["http://t/a".to_string(), "udp://u:1".into()];
        for t in [&trackers[..], &[]] {
            let bytes = torrent_file_bytes(&info, t);
            let meta = Metainfo::from_bytes(&bytes).unwrap();
            assert_eq!(meta.info_hash, from_info.info_hash);
            assert_eq!(meta.tracker_urls(), t);
            assert!(bencode::Doc::parse(&bytes).is_ok(), "one whole dictionary");
        }
    }
}
