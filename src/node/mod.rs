//! Composition root: builds the subsystems for one torrent, wires their
//! channels, runs the node loop (hash results, discovered peers, a one
//! second tick), and shuts everything down in order on a signal or, with
//! `--exit-on-complete`, on completion.
//!
//! Threads: one listener, two per peer connection (reader, writer), one
//! SHA-1 worker per core, the announcer, the signal thread, and this loop.

pub mod announcer;
pub mod candidates;
pub mod config;
pub mod discovery;
pub mod limits;
pub mod magnet;
pub mod status;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::core::{Bitfield, Metainfo, PeerId};
use crate::overlay::Overlay;
use crate::peer::listener::Listener;
use crate::peer::router::Router;
use crate::peer::Swarm;
use crate::runtime::signals;
use crate::storage::hasher::{self, HashPool, PieceHashes};
use crate::storage::resume::{self, ResumeData};
use crate::storage::{HashJob, HashPurpose, HashResult, PieceStore, Storage};
use crate::swarm::torrent::{HashOutcome, HashVerdict, TorrentState};
use announcer::{AnnounceCommand, AnnounceStats, Announcer, AnnouncerConfig};
use candidates::Candidates;
pub use config::{DiscoveryMode, NodeConfig, NodeError};
use discovery::OverlayDiscovery;
use limits::ProcessLimits;
use status::{Progress, Status};

/// How long shutdown waits for connection threads.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(3);
/// Hybrid mode asks the tracker too as soon as an overlay lookup round has
/// found fewer than `HYBRID_MIN_PEERS` providers, and at the latest this
/// long after start if no round has answered.
const HYBRID_GRACE: Duration = Duration::from_secs(5);
const HYBRID_MIN_PEERS: usize = 3;
/// How often fast-resume data is brought up to date (flush, then record).
const RESUME_INTERVAL: Duration = Duration::from_secs(5);

pub fn run(config: NodeConfig) -> Result<(), NodeError> {
    let shutdown = signals::shutdown_on_signal()
        .map_err(|e| NodeError(format!("cannot install signal handlers: {e}")))?;
    match config.torrent.clone() {
        None => run_overlay_only(&config, shutdown),
        Some(path) if path.to_str().is_some_and(crate::core::Magnet::is_magnet) => {
            let link = path.to_str().unwrap_or_default();
            magnet::run_magnet(&config, link, shutdown)
        }
        Some(path) => {
            let meta = crate::storage::torrent_file::read(&path)
                .map_err(|e| NodeError(format!("{}: {e}", path.display())))?;
            run_torrent(&config, meta, shutdown)
        }
    }
}

/// `btnode -b HOST:PORT` (no torrent): an overlay-only node until shutdown.
fn run_overlay_only(config: &NodeConfig, shutdown: Receiver<()>) -> Result<(), NodeError> {
    use std::io::Write;
    let overlay = Overlay::start(config.overlay.clone()).map_err(|e| NodeError(e.to_string()))?;
    let mut shown = overlay.local_addr();
    if shown.ip().is_unspecified() {
        shown.set_ip(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "overlay listening on {shown}");
    let _ = out.flush();
    log::info!("overlay-only node on {shown}");
    let _registration = config
        .dns_registration
        .as_ref()
        .and_then(|r| crate::dns::register_self(r, overlay.local_addr()));
    let _ = shutdown.recv();
    overlay.shutdown();
    Ok(())
}

fn failed(what: &str) -> impl Fn(std::io::Error) -> NodeError + '_ {
    move |e| NodeError(format!("{what}: {e}"))
}

/// What the torrents of one process share: the peer listener (through its
/// router), the SHA-1 workers and the overlay node; and where one torrent
/// publishes its status each second.
#[derive(Clone)]
pub struct Shared {
    pub router: Arc<Router>,
    pub pool: Arc<HashPool>,
    pub overlay: Option<Arc<Overlay>>,
    /// The global peer and rate limits, split between the torrents.
    pub limits: Arc<ProcessLimits>,
    /// Every torrent's tracker announces, counted together.
    pub announce_stats: Arc<AnnounceStats>,
    /// The shared peer listener's port, announced for every torrent.
    pub listen_port: u16,
    pub publish: Option<Publish>,
}

/// Receives a torrent's status every second and at its end.
pub type Publish = Arc<dyn Fn(&Status) + Send + Sync>;

/// Which discovery a torrent uses: the flag, else the overlay alone for a
/// torrent without trackers and both for one with.
pub fn discovery_mode(config: &NodeConfig, meta: &Metainfo) -> DiscoveryMode {
    discovery_mode_with(config, !meta.trackers.is_empty())
}

/// The same rule for a torrent known so far by whether it names trackers
/// (a magnet link's `tr`).
pub(crate) fn discovery_mode_with(config: &NodeConfig, has_trackers: bool) -> DiscoveryMode {
    config.discovery_mode.unwrap_or(if has_trackers {
        DiscoveryMode::Hybrid
    } else {
        DiscoveryMode::Overlay
    })
}

/// Downloads and seeds one torrent until shutdown (or completion): a
/// process holding one torrent, with a listener, hash pool and overlay of
/// its own.
pub fn run_torrent(
    config: &NodeConfig,
    meta: Metainfo,
    shutdown: Receiver<()>,
) -> Result<(), NodeError> {
    let with_overlay = discovery_mode(config, &meta) != DiscoveryMode::Tracker;
    let services = Services::start(config, with_overlay)?;
    let result = run_in_session(config, meta, &services.shared, shutdown);
    services.stop();
    result
}

/// The resources a process's torrents share, started once: the routed
/// peer listener, the hash pool, the overlay (and its DNS registration).
pub struct Services {
    pub shared: Shared,
    listener: Listener,
    _dns_registration: Option<crate::dns::client::Registration>,
}

impl Services {
    pub fn start(config: &NodeConfig, with_overlay: bool) -> Result<Services, NodeError> {
        let (listener, listen_addr) = crate::runtime::ports::bind_or_fallback(
            config.peer_port,
            config.peer_port_chosen,
            |port| Listener::bind(config.bind, port),
        )
        .map_err(failed("peerwire listener"))?;
        crate::runtime::ports::warn_if_moved("peerwire", config.peer_port, listen_addr);
        log::info!("peerwire listening on {listen_addr}");
        let router = Router::new();
        let listener = Listener::start_routed(listener, router.clone(), config.max_peers)
            .map_err(failed("peerwire listener"))?;
        let overlay = if with_overlay {
            let overlay = Overlay::start(config.overlay.clone())
                .map_err(|e| NodeError(format!("overlay: {e}")))?;
            log::info!("overlay listening on {}", overlay.local_addr());
            Some(Arc::new(overlay))
        } else {
            None
        };
        let dns_registration = overlay.as_ref().and_then(|o| {
            let registration = config.dns_registration.as_ref()?;
            crate::dns::register_self(registration, o.local_addr())
        });
        Ok(Services {
            shared: Shared {
                router,
                pool: Arc::new(HashPool::shared(hasher::default_threads())),
                overlay,
                limits: Arc::new(ProcessLimits::new(
                    config.max_peers,
                    config.upload_rate_limit,
                    config.download_rate_limit,
                )),
                announce_stats: Arc::default(),
                listen_port: listen_addr.port(),
                publish: None,
            },
            listener,
            _dns_registration: dns_registration,
        })
    }

    /// Call after every torrent's loop has ended: stops the listener, the
    /// overlay (even if something still holds its `Arc`) and the pool.
    pub fn stop(self) {
        let Services {
            shared,
            listener,
            _dns_registration,
        } = self;
        listener.stop();
        if let Some(o) = &shared.overlay {
            o.shutdown();
        }
        drop(_dns_registration);
        if let Ok(pool) = Arc::try_unwrap(shared.pool) {
            pool.shutdown();
        }
    }
}

/// Runs one torrent on resources `shared` with other torrents, until
/// `shutdown` (or completion with `--exit-on-complete`); the swarm is
/// routed incoming peers while it runs.
pub fn run_in_session(
    config: &NodeConfig,
    meta: Metainfo,
    shared: &Shared,
    shutdown: Receiver<()>,
) -> Result<(), NodeError> {
    let started = Instant::now();
    let our_id = PeerId::generate();
    log::info!(
        "{} ({}, {} pieces of {}): info-hash {}",
        meta.name,
        status::human(meta.total_length),
        meta.num_pieces(),
        status::human(meta.piece_length),
        meta.info_hash
    );
    let (storage, report) =
        Storage::open(&meta, &config.data_dir).map_err(|e| NodeError(format!("storage: {e}")))?;
    let storage = Arc::new(storage);
    let hashes = Arc::new(PieceHashes {
        expected: meta.piece_hashes.clone(),
        geometry: meta.geometry(),
    });
    let (hash_tx, hash_rx) = crossbeam_channel::unbounded();
    let hash_queue = shared.pool.queue(storage.clone(), hashes, hash_tx);

    let geometry = meta.geometry();
    let seed = u64::from_le_bytes(our_id.0[12..20].try_into().expect("8 bytes"));
    let mut state = TorrentState::new(geometry, our_id, config.upload_slots, seed);
    state.super_seed = config.super_seed;
    // BEP 27: a private torrent's peers come from its tracker only.
    state.pex_enabled = !meta.private;
    // BEP 9: the info dictionary for peers that came with a magnet link.
    state.metadata = (!meta.private).then(|| meta.info_bytes.clone());

    // Fast resume: after a clean stop with unchanged files, the recorded
    // pieces are trusted without hashing.
    let trusted = config.resume_file.as_deref().and_then(|path| {
        let data = match resume::load(path) {
            Ok(data) => data?,
            Err(e) => {
                log::warn!("ignoring resume data: {e}");
                return None;
            }
        };
        let stamps = resume::stamp_files(&meta, &config.data_dir).ok()?;
        data.trusted_pieces(&meta, &stamps)
    });
    if let Some(pieces) = &trusted {
        log::info!(
            "fast resume: {} pieces verified at the last clean stop",
            pieces.count()
        );
        for piece in pieces.iter_ones() {
            state.resume_piece(piece);
        }
    }
    // Otherwise verify, in parallel, every piece whose files already existed.
    let to_check: Vec<usize> = (0..meta.num_pieces())
        .filter(|_| trusted.is_none())
        .filter(|&p| {
            storage
                .files_of_piece(p, geometry.piece_len(p))
                .iter()
                .all(|&f| !report.created[f])
        })
        .collect();
    if !to_check.is_empty() {
        log::info!("checking {} pieces already on disk", to_check.len());
        for &piece in &to_check {
            hash_queue.send(HashJob {
                piece,
                purpose: HashPurpose::Resume,
            });
        }
        for _ in 0..to_check.len() {
            let r = hash_rx
                .recv()
                .map_err(|_| NodeError("hash workers stopped".into()))?;
            if r.ok {
                state.resume_piece(r.piece);
            }
        }
        log::info!(
            "{} of {} pieces verified on disk",
            state.stats.pieces_resumed,
            meta.num_pieces()
        );
    }
    state.stats.pieces_checked_at_start = to_check.len() as u64;
    // From here on the files change: the data on disk is not clean again
    // until the stop rewrites it.
    let mut resume_saved = state.have().clone();
    save_resume(config, &meta, &resume_saved, false);

    state.listen_port = shared.listen_port;
    let swarm = Swarm::new(
        state,
        storage.clone(),
        meta.info_hash,
        our_id,
        shared.limits.new_peer_share(),
        shared.limits.new_rate_limits(),
        hash_queue,
    );
    // Its share of the process's limits, handed back when the loop ends.
    let _limits = shared.limits.join(&swarm);
    shared.router.add(swarm.clone());

    let (peers_tx, peers_rx) = crossbeam_channel::unbounded::<Vec<SocketAddr>>();
    let mut candidates = Candidates::default();
    candidates.add(resolve_all(&config.direct_peers), Instant::now());

    let mode = discovery_mode(config, &meta);
    let overlay = &shared.overlay;
    let discovery = match &overlay {
        Some(o) => Some(
            OverlayDiscovery::start(
                o.clone(),
                meta.info_hash,
                our_id,
                shared.listen_port,
                swarm.clone(),
                peers_tx.clone(),
            )
            .map_err(failed("overlay discovery"))?,
        ),
        None => None,
    };
    // Hybrid: the tracker joins in when the overlay finds too few peers.
    let start_announcer = || -> Result<Option<Announcer>, NodeError> {
        if meta.trackers.is_empty() {
            return Ok(None);
        }
        let counters_swarm = swarm.clone();
        let counters: announcer::Counters = Arc::new(move || {
            let s = counters_swarm.state.lock();
            (s.stats.uploaded, s.stats.downloaded, s.left())
        });
        let announcer = Announcer::start(
            AnnouncerConfig {
                urls: meta.tracker_urls(),
                info_hash: meta.info_hash,
                peer_id: our_id,
                port: shared.listen_port,
                interval: config.announce_interval,
                stats: shared.announce_stats.clone(),
            },
            counters,
            peers_tx.clone(),
        )
        .map_err(failed("announcer"))?;
        Ok(Some(announcer))
    };
    let mut announcer = if mode == DiscoveryMode::Tracker {
        start_announcer()?
    } else {
        None
    };

    let overlay_port = overlay.as_ref().map(|o| o.local_addr().port());
    let mut progress = Progress::new(config.progress);
    let snapshot = |swarm: &Swarm, candidates: &Candidates, state_name: &'static str| {
        let s = swarm.state.lock();
        let (down_rate, up_rate) = s.rates();
        Status {
            info_hash: meta.info_hash.to_hex(),
            name: meta.name.clone(),
            state: state_name,
            peer_port: shared.listen_port,
            overlay_port,
            pieces_total: meta.num_pieces(),
            pieces_have: s.have().count(),
            complete: s.is_complete(),
            left: s.left(),
            total_length: meta.total_length,
            stats: s.stats.clone(),
            down_rate,
            up_rate,
            peers: s.peer_summaries(),
            known_peers: candidates.len(),
            piece_map: (0..s.have().len())
                .map(|p| if s.have().get(p) { '1' } else { '0' })
                .collect(),
        }
    };

    let mut complete = swarm.state.lock().is_complete();
    if complete {
        log::info!("all pieces present: seeding");
    }
    dial_due(&swarm, &mut candidates);
    let ticker = crossbeam_channel::tick(Duration::from_secs(1));
    let never = crossbeam_channel::never();
    let rounds = discovery.as_ref().map_or(&never, |d| d.rounds());
    let mut exit_now = complete && config.exit_on_complete;
    let mut resume_due = Instant::now();
    let mut failure = None;
    while !exit_now {
        crossbeam_channel::select! {
            recv(shutdown) -> _ => break,
            recv(swarm.storage_failures()) -> e => {
                if let Ok(e) = e {
                    log::error!("cannot store the download: {e}; stopping (verified pieces are kept)");
                    failure = Some(NodeError(format!("storage: {e}")));
                }
                break;
            },
            recv(hash_rx) -> r => {
                let Ok(r): Result<HashResult, _> = r else { break };
                let outcome = match r.purpose {
                    HashPurpose::Download => swarm.state.lock().on_hash_result(HashVerdict {
                        piece: r.piece as u32,
                        ok: r.ok,
                    }),
                    // Resume results are all read before the loop starts.
                    HashPurpose::Resume => HashOutcome::default(),
                };
                for addr in outcome.banned {
                    log::warn!("banning {addr}: it sent data that failed the hash check");
                    candidates.ban(addr);
                }
                if !r.ok {
                    log::warn!("piece {} failed the hash check; fetching it again", r.piece);
                }
                if outcome.completed {
                    complete = true;
                    if let Some(path) = &config.status_file {
                        status::write_status(path, &snapshot(&swarm, &candidates, "seeding"));
                    }
                    storage.flush().map_err(failed("flushing the download"))?;
                    log::info!(
                        "download complete in {:.1} s; seeding",
                        started.elapsed().as_secs_f64()
                    );
                    if let Some(a) = &announcer {
                        a.send(AnnounceCommand::Completed);
                    }
                    if let Some(d) = &discovery {
                        d.completed();
                    }
                    exit_now = config.exit_on_complete;
                }
            },
            recv(rounds) -> found => {
                if let Ok(found) = found {
                    if mode == DiscoveryMode::Hybrid
                        && announcer.is_none()
                        && hybrid_wants_tracker(found, true, started.elapsed())
                    {
                        log::info!("overlay found {found} peers: asking the tracker too");
                        announcer = start_announcer()?;
                    }
                }
            },
            recv(peers_rx) -> addrs => {
                if let Ok(addrs) = addrs {
                    candidates.add(addrs, Instant::now());
                    dial_due(&swarm, &mut candidates);
                }
            },
            recv(ticker) -> _ => {
                let now = Instant::now();
                shared.limits.tick();
                for addr in swarm.take_refused() {
                    candidates.ban(addr);
                }
                let learned = {
                    let mut state = swarm.state.lock();
                    state.tick(now);
                    state.take_pex_learned()
                };
                candidates.add(learned, now);
                dial_due(&swarm, &mut candidates);
                if mode == DiscoveryMode::Hybrid
                    && announcer.is_none()
                    && hybrid_wants_tracker(
                        discovery.as_ref().map_or(0, |d| d.found()),
                        false,
                        started.elapsed(),
                    )
                {
                    log::info!("overlay found too few peers: asking the tracker too");
                    announcer = start_announcer()?;
                }
                if config.resume_file.is_some() && resume_due.elapsed() >= RESUME_INTERVAL {
                    resume_due = Instant::now();
                    // Pieces verified before the flush are on disk after it.
                    let have = swarm.state.lock().have().clone();
                    if have != resume_saved {
                        match storage.flush() {
                            Ok(()) => {
                                save_resume(config, &meta, &have, false);
                                resume_saved = have;
                            }
                            Err(e) => log::warn!("cannot flush the download: {e}"),
                        }
                    }
                }
                let st = snapshot(&swarm, &candidates, if complete { "seeding" } else { "downloading" });
                progress.show(&st);
                if let Some(publish) = &shared.publish {
                    publish(&st);
                }
                if let Some(path) = &config.status_file {
                    status::write_status(path, &st);
                }
            },
        }
    }
    progress.finish();

    // Shutdown, in dependency order: stop taking work, tell the tracker,
    // close peers, finish hashing, flush the maps.
    log::info!("stopping");
    if let Some(d) = discovery {
        d.stop();
    }
    // Stop routing newcomers here before ending the connections.
    shared.router.remove(&meta.info_hash);
    swarm.shutdown(SHUTDOWN_DEADLINE);
    if let Some(a) = announcer {
        a.stop();
    }
    let final_status = snapshot(
        &swarm,
        &candidates,
        if failure.is_some() {
            "failed"
        } else {
            "stopped"
        },
    );
    let have = swarm.state.lock().have().clone();
    drop(swarm);
    storage.flush().map_err(failed("flushing the download"))?;
    // Clean only once everything is flushed.
    save_resume(config, &meta, &have, failure.is_none());
    if let Some(path) = &config.status_file {
        status::write_status(path, &final_status);
    }
    if let Some(publish) = &shared.publish {
        publish(&final_status);
    }
    log::info!(
        "stopped: {} downloaded, {} uploaded",
        status::human(final_status.stats.downloaded),
        status::human(final_status.stats.uploaded)
    );
    failure.map_or(Ok(()), Err)
}

/// Writes fast-resume data, if this torrent keeps any: `pieces` must be
/// verified and flushed; `clean` only after the final flush (the file
/// stamps are taken now, and trusted at the next start only if clean).
fn save_resume(config: &NodeConfig, meta: &Metainfo, pieces: &Bitfield, clean: bool) {
    let Some(path) = &config.resume_file else {
        return;
    };
    let files = if clean {
        match resume::stamp_files(meta, &config.data_dir) {
            Ok(f) => f,
            Err(e) => {
                log::warn!("cannot stamp the files for resume data: {e}");
                return;
            }
        }
    } else {
        Vec::new()
    };
    let data = ResumeData {
        info_hash: meta.info_hash,
        pieces: pieces.clone(),
        files,
        clean,
    };
    if let Err(e) = resume::save(path, &data) {
        log::warn!("cannot save resume data {}: {e}", path.display());
    }
}

/// Hybrid mode: whether the tracker should join in. `found` is what the
/// overlay's latest lookup found; the first round that finds too few is
/// enough (with no bootstrap and no members it answers at once from the
/// local store), and the grace only bounds the wait when no round answers.
fn hybrid_wants_tracker(found: usize, round_answered: bool, elapsed: Duration) -> bool {
    found < HYBRID_MIN_PEERS && (round_answered || elapsed >= HYBRID_GRACE)
}

/// Dials every known address that is due, up to the room for dials.
fn dial_due(swarm: &Arc<Swarm>, candidates: &mut Candidates) {
    let connected = swarm.state.lock().peer_addrs();
    let room = swarm.dial_room();
    let due = candidates.due(Instant::now(), room, |a| {
        connected.contains(a) || swarm.is_dialed(a)
    });
    for addr in due {
        swarm.dial(addr);
    }
}

/// Resolves `host:port` strings with the system resolver, skipping failures.
pub fn resolve_all(specs: &[String]) -> Vec<SocketAddr> {
    specs
        .iter()
        .flat_map(|s| match s.to_socket_addrs() {
            Ok(addrs) => addrs.collect::<Vec<_>>(),
            Err(e) => {
                log::warn!("cannot resolve {s}: {e}");
                vec![]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_asks_the_tracker_once_the_overlay_has_answered_short() {
        let early = Duration::from_millis(100);
        assert!(
            hybrid_wants_tracker(0, true, early),
            "first round found nobody"
        );
        assert!(hybrid_wants_tracker(2, true, early));
        assert!(!hybrid_wants_tracker(3, true, early), "enough peers");
        assert!(!hybrid_wants_tracker(0, false, early), "no round yet: wait");
        assert!(
            hybrid_wants_tracker(0, false, HYBRID_GRACE),
            "grace bounds the wait"
        );
        assert!(!hybrid_wants_tracker(5, false, HYBRID_GRACE * 2));
    }
}
