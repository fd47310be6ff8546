//! The daemon's session: many torrents in one process behind one peer
//! listener (routing by info-hash), one hash pool and one overlay node.
//! Each running torrent is the node loop of `node::run_in_session` on a
//! thread of its own; pausing ends that loop (flushing and writing clean
//! fast-resume data) and resuming starts a new one, which trusts that data.
//! A torrent added by magnet link first fetches its metadata on that same
//! thread (`node::magnet`), saves it in the state directory and hands it
//! to the session (an entry's `fetched`), then runs as any other.
//!
//! Locks, in order: `torrents`, then an entry's `status` or `fetched`
//! (never both). Neither is held while a torrent thread is joined or a
//! file is written.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use parking_lot::Mutex;

use super::state::{resolve_data_dir, StateDir, StoredSource, TorrentSettings};
use crate::api::{
    Control, ControlError, FileEntry, PeerEntry, SessionCounters, SessionInfo, TorrentDetail,
    TorrentSummary,
};
use crate::core::{InfoHash, Magnet, Metainfo};
use crate::node::status::Status;
use crate::node::{self, DiscoveryMode, NodeConfig, NodeError, Services, Shared};
use crate::storage::resume;

/// How the daemon was started.
pub struct SessionConfig {
    /// The node flags every torrent runs with (data dir and torrent are
    /// per torrent).
    pub node: NodeConfig,
    pub state_dir: PathBuf,
    /// Every torrent's data lives under here.
    pub download_root: PathBuf,
}

struct Entry {
    /// `None` for a magnet link whose metadata is not fetched yet.
    meta: Option<Metainfo>,
    /// The link a torrent was added by, while `meta` is `None`.
    magnet: Option<Magnet>,
    /// Where the torrent's thread leaves the metadata it fetched; taken
    /// into `meta` by the next call that looks at the entry.
    fetched: Arc<Mutex<Option<Metainfo>>>,
    settings: TorrentSettings,
    data_dir: PathBuf,
    running: Option<Running>,
    /// The latest status the torrent's loop published.
    status: Arc<Mutex<Option<Status>>>,
    /// Pieces its resume data recorded when the session took it back:
    /// what a torrent restored paused (no loop, no status) shows.
    recorded_pieces: usize,
}

struct Running {
    stop: Sender<()>,
    thread: JoinHandle<Result<(), NodeError>>,
}

pub struct Session {
    config: NodeConfig,
    root: PathBuf,
    state: StateDir,
    shared: Shared,
    /// Taken by `shutdown`.
    services: Mutex<Option<Services>>,
    torrents: Mutex<HashMap<InfoHash, Entry>>,
    started: Instant,
    dns_name: Option<String>,
}

impl Session {
    /// Binds the peer listener, starts the hash pool and the overlay, and
    /// brings back every torrent of the state directory (paused ones stay
    /// paused).
    pub fn start(cfg: SessionConfig) -> Result<Arc<Session>, NodeError> {
        let io = |what: &'static str| move |e: std::io::Error| NodeError(format!("{what}: {e}"));
        std::fs::create_dir_all(&cfg.download_root).map_err(io("download root"))?;
        let root = cfg
            .download_root
            .canonicalize()
            .map_err(io("download root"))?;
        let state = StateDir::open(&cfg.state_dir).map_err(io("state directory"))?;
        let config = cfg.node;
        let with_overlay = config.discovery_mode != Some(DiscoveryMode::Tracker);
        let services = Services::start(&config, with_overlay)?;
        let session = Arc::new(Session {
            dns_name: config.dns_registration.as_ref().map(|r| r.name.clone()),
            shared: services.shared.clone(),
            services: Mutex::new(Some(services)),
            config,
            root,
            state,
            torrents: Mutex::new(HashMap::new()),
            started: Instant::now(),
        });
        for stored in session.state.list() {
            let data_dir = match resolve_data_dir(&session.root, Some(&stored.settings.dir)) {
                Ok(d) => d,
                Err(e) => {
                    log::warn!("skipping {}: {e}", stored.info_hash_hex);
                    continue;
                }
            };
            let paused = stored.settings.paused;
            let (meta, magnet) = match stored.source {
                StoredSource::Metainfo { metainfo, .. } => (Some(metainfo), None),
                StoredSource::Magnet(magnet) => (None, Some(magnet)),
            };
            let recorded_pieces = resume::load(&session.state.resume_path(&stored.info_hash))
                .ok()
                .flatten()
                .filter(|r| meta.as_ref().is_some_and(|m| r.check_torrent(m).is_ok()))
                .map_or(0, |r| r.pieces.count());
            session.torrents.lock().insert(
                stored.info_hash,
                Entry {
                    meta,
                    magnet,
                    fetched: Arc::default(),
                    settings: stored.settings,
                    data_dir,
                    running: None,
                    status: Arc::new(Mutex::new(None)),
                    recorded_pieces,
                },
            );
            if !paused {
                session.start_torrent(&stored.info_hash);
            }
        }
        Ok(session)
    }

    pub fn peer_port(&self) -> u16 {
        self.shared.listen_port
    }

    pub fn overlay_addr(&self) -> Option<SocketAddr> {
        self.shared.overlay.as_ref().map(|o| o.local_addr())
    }

    /// Adds a torrent from metainfo bytes or a magnet link (as the API
    /// does: the body is one or the other).
    pub fn add_torrent(
        &self,
        metainfo: &[u8],
        dir: Option<&str>,
        paused: bool,
    ) -> Result<InfoHash, ControlError> {
        let link = std::str::from_utf8(metainfo)
            .ok()
            .map(str::trim)
            .filter(|t| Magnet::is_magnet(t));
        let (meta, magnet) = match link {
            Some(link) => {
                let magnet = Magnet::parse(link)
                    .map_err(|e| ControlError::BadRequest(format!("bad magnet link: {e}")))?;
                (None, Some(magnet))
            }
            None => {
                let meta = Metainfo::from_bytes(metainfo)
                    .map_err(|e| ControlError::BadRequest(format!("bad metainfo: {e}")))?;
                (Some(meta), None)
            }
        };
        let sub = dir.unwrap_or("");
        let data_dir = resolve_data_dir(&self.root, Some(sub))
            .map_err(|e| ControlError::BadRequest(e.to_string()))?;
        let info_hash = match (&meta, &magnet) {
            (Some(m), _) => m.info_hash,
            (None, Some(m)) => m.info_hash,
            (None, None) => unreachable!("one of the two was parsed"),
        };
        let settings = TorrentSettings {
            dir: sub.to_string(),
            paused,
            added_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        {
            let mut torrents = self.torrents.lock();
            if torrents.contains_key(&info_hash) {
                return Err(ControlError::Conflict(format!(
                    "torrent {info_hash} is already in the session"
                )));
            }
            // Another torrent's files at the same place would be shared
            // (a magnet link's are checked once its metadata is known).
            let clash = meta.as_ref().and_then(|meta| {
                torrents.iter().find(|(_, e)| {
                    e.data_dir == data_dir && e.meta.as_ref().is_some_and(|m| m.name == meta.name)
                })
            });
            if let (Some((other, _)), Some(meta)) = (clash, &meta) {
                return Err(ControlError::Conflict(format!(
                    "torrent {other} already keeps {:?} in that directory",
                    meta.name
                )));
            }
            torrents.insert(
                info_hash,
                Entry {
                    meta,
                    magnet: magnet.clone(),
                    fetched: Arc::default(),
                    settings: settings.clone(),
                    data_dir,
                    running: None,
                    status: Arc::new(Mutex::new(None)),
                    recorded_pieces: 0,
                },
            );
        }
        let saved = match &magnet {
            Some(m) => self.state.save_magnet(&info_hash, m, &settings),
            None => self.state.save_torrent(&info_hash, metainfo, &settings),
        };
        if let Err(e) = saved {
            self.torrents.lock().remove(&info_hash);
            return Err(ControlError::Internal(format!(
                "cannot save the torrent: {e}"
            )));
        }
        if !paused {
            self.start_torrent(&info_hash);
        }
        log::info!("added {info_hash}{}", if paused { " (paused)" } else { "" });
        Ok(info_hash)
    }

    /// Starts the torrent's loop unless it runs.
    fn start_torrent(&self, info_hash: &InfoHash) {
        let mut torrents = self.torrents.lock();
        let Some(entry) = torrents.get_mut(info_hash) else {
            return;
        };
        // A loop that ended by itself (a storage failure) may be restarted.
        if entry
            .running
            .as_ref()
            .is_some_and(|r| !r.thread.is_finished())
        {
            return;
        }
        if let Some(ended) = entry.running.take() {
            let _ = ended.thread.join();
        }
        let mut config = self.config.clone();
        config.torrent = None;
        config.data_dir = entry.data_dir.clone();
        config.exit_on_complete = false;
        config.status_file = None;
        config.progress = false;
        config.resume_file = Some(self.state.resume_path(info_hash));
        let status = entry.status.clone();
        let mut shared = self.shared.clone();
        shared.publish = Some(Arc::new(move |s: &Status| *status.lock() = Some(s.clone())));
        Session::adopt_fetched(entry);
        let source = match (&entry.meta, &entry.magnet) {
            (Some(meta), _) => Ok(meta.clone()),
            (None, Some(magnet)) => Err(magnet.clone()),
            (None, None) => return,
        };
        let fetched = entry.fetched.clone();
        let state = self.state.clone();
        let ih = *info_hash;
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let name = format!("torrent-{}", &info_hash.to_hex()[..8]);
        let spawned = std::thread::Builder::new().name(name).spawn(move || {
            let mut config = config;
            let run = || {
                let meta = match source {
                    Ok(meta) => meta,
                    Err(magnet) => {
                        let found = fetch_for_session(&config, &magnet, &shared, &stopped)?;
                        let Some((meta, bytes)) = found else {
                            return Ok(());
                        };
                        // The link's peers serve the data too (this run;
                        // after a restart the torrent's own discovery).
                        config.direct_peers.extend(magnet.peers.iter().cloned());
                        if let Err(e) = state.save_fetched_metainfo(&ih, &bytes) {
                            log::warn!("cannot save the metadata of {ih}: {e}");
                        }
                        *fetched.lock() = Some(meta.clone());
                        meta
                    }
                };
                node::run_in_session(&config, meta, &shared, stopped)
            };
            let r = run();
            if let Err(e) = &r {
                log::error!("torrent stopped: {e}");
            }
            r
        });
        match spawned {
            Ok(thread) => entry.running = Some(Running { stop, thread }),
            Err(e) => log::error!("cannot start a torrent thread: {e}"),
        }
    }

    /// Ends the torrent's loop (flushing, clean resume data) and waits.
    fn stop_torrent(&self, info_hash: &InfoHash) {
        let running = {
            let mut torrents = self.torrents.lock();
            torrents.get_mut(info_hash).and_then(|e| e.running.take())
        };
        if let Some(r) = running {
            let _ = r.stop.send(());
            let _ = r.thread.join();
        }
    }

    fn set_paused(&self, info_hash: &str, paused: bool) -> Result<(), ControlError> {
        let ih = parse_hash(info_hash)?;
        let settings = {
            let mut torrents = self.torrents.lock();
            let entry = torrents.get_mut(&ih).ok_or(ControlError::NotFound)?;
            entry.settings.paused = paused;
            entry.settings.clone()
        };
        if paused {
            self.stop_torrent(&ih);
        } else {
            self.start_torrent(&ih);
        }
        self.state
            .save_settings(&ih, &settings)
            .map_err(|e| ControlError::Internal(format!("cannot save settings: {e}")))
    }

    /// Takes the metadata the entry's thread fetched, if it has.
    fn adopt_fetched(entry: &mut Entry) {
        if entry.meta.is_none() {
            let fetched = entry.fetched.lock().take();
            if fetched.is_some() {
                entry.meta = fetched;
                entry.magnet = None;
            }
        }
    }

    fn summary(entry: &Entry) -> TorrentSummary {
        let status = entry.status.lock().clone();
        let Some(meta) = &entry.meta else {
            return Session::fetching_summary(entry, status);
        };
        let state = if entry.running.is_none() {
            "paused"
        } else {
            status.as_ref().map_or("checking", |s| s.state)
        };
        let mut summary = TorrentSummary {
            info_hash: meta.info_hash.to_hex(),
            name: meta.name.clone(),
            size: meta.total_length,
            // No loop has reported yet (or the torrent is paused): what
            // its resume data recorded.
            progress: if meta.num_pieces() == 0 {
                0.0
            } else {
                entry.recorded_pieces as f64 / meta.num_pieces() as f64
            },
            pieces_have: entry.recorded_pieces,
            pieces_total: meta.num_pieces(),
            state: state.to_string(),
            ..TorrentSummary::default()
        };
        if let Some(s) = status {
            let have_bytes = meta.total_length - s.left;
            summary.progress = if meta.total_length == 0 {
                1.0
            } else {
                have_bytes as f64 / meta.total_length as f64
            };
            summary.pieces_have = s.pieces_have;
            summary.pieces_total = s.pieces_total;
            summary.down_rate = s.down_rate as u64;
            summary.up_rate = s.up_rate as u64;
            summary.peers = s.peers.len();
            summary.eta_secs = (s.left > 0 && s.down_rate >= 1.0)
                .then(|| (s.left as f64 / s.down_rate).ceil() as u64);
            summary.downloaded = s.stats.downloaded;
            summary.uploaded = s.stats.uploaded;
            summary.pieces_verified = s.stats.pieces_downloaded;
            summary.hash_failures = s.stats.hash_failures;
            summary.pieces_checked_at_start = s.stats.pieces_checked_at_start;
        }
        summary
    }

    /// A magnet link's entry before its metadata: the link's name (or the
    /// info-hash), nothing known of its size, "fetching metadata" while
    /// its thread runs, with the addresses known for it.
    fn fetching_summary(entry: &Entry, status: Option<Status>) -> TorrentSummary {
        let magnet = entry.magnet.as_ref();
        let info_hash = magnet.map(|m| m.info_hash.to_hex()).unwrap_or_default();
        let running = entry.running.is_some();
        // A status left from before the metadata came is the loop's own.
        let status = status.filter(|s| s.state == node::magnet::FETCHING_STATE);
        TorrentSummary {
            name: magnet
                .and_then(|m| m.name.clone())
                .unwrap_or_else(|| info_hash.clone()),
            info_hash,
            state: if running {
                node::magnet::FETCHING_STATE
            } else {
                "paused"
            }
            .to_string(),
            peers: status.map_or(0, |s| s.known_peers),
            ..TorrentSummary::default()
        }
    }

    /// Stops every torrent (each flushes and writes clean resume data),
    /// then the listener, the overlay and the hash pool.
    pub fn shutdown(&self) {
        let hashes: Vec<InfoHash> = self.torrents.lock().keys().copied().collect();
        for ih in &hashes {
            self.stop_torrent(ih);
        }
        let services = self.services.lock().take();
        if let Some(s) = services {
            s.stop();
        }
    }
}

/// A magnet link's metadata, fetched from peers on the session's services
/// and checked as a `.torrent` would be: the metainfo and the `.torrent`
/// bytes to keep; `None` if stopped first.
fn fetch_for_session(
    config: &NodeConfig,
    magnet: &Magnet,
    shared: &Shared,
    stop: &crossbeam_channel::Receiver<()>,
) -> Result<Option<(Metainfo, Vec<u8>)>, NodeError> {
    let mode = node::magnet::discovery_mode(config, magnet);
    let Some(info) = node::magnet::fetch_metadata(config, magnet, mode, shared, stop)? else {
        return Ok(None);
    };
    let meta = Metainfo::from_info_dict(&info, &magnet.trackers).map_err(|e| {
        NodeError(format!(
            "the metadata peers sent is not a valid torrent: {e}"
        ))
    })?;
    Ok(Some((
        meta,
        node::magnet::torrent_file_bytes(&info, &magnet.trackers),
    )))
}

fn parse_hash(hex: &str) -> Result<InfoHash, ControlError> {
    InfoHash::from_hex(hex).ok_or_else(|| ControlError::BadRequest("bad info-hash".into()))
}

/// Deletes the torrent's own files under `data_dir`, then the folders
/// they leave empty, up to (not including) `data_dir`.
fn delete_data(meta: &Metainfo, data_dir: &Path) -> std::io::Result<()> {
    for file in &meta.files {
        let path = data_dir.join(file.relative_path());
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == data_dir || !d.starts_with(data_dir) || std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
    }
    Ok(())
}

impl Control for Session {
    fn list(&self) -> Vec<TorrentSummary> {
        let mut torrents = self.torrents.lock();
        torrents.values_mut().for_each(Session::adopt_fetched);
        let mut list: Vec<TorrentSummary> = torrents.values().map(Session::summary).collect();
        list.sort_by(|a, b| a.name.cmp(&b.name).then(a.info_hash.cmp(&b.info_hash)));
        list
    }

    fn add(
        &self,
        metainfo: &[u8],
        dir: Option<&str>,
        paused: bool,
    ) -> Result<String, ControlError> {
        self.add_torrent(metainfo, dir, paused)
            .map(|ih| ih.to_hex())
    }

    fn detail(&self, info_hash: &str) -> Result<TorrentDetail, ControlError> {
        let ih = parse_hash(info_hash)?;
        let mut torrents = self.torrents.lock();
        let entry = torrents.get_mut(&ih).ok_or(ControlError::NotFound)?;
        Session::adopt_fetched(entry);
        let entry = &*entry;
        let status = entry.status.lock().clone();
        let (peer_list, piece_map) = match status {
            Some(s) => (
                s.peers
                    .iter()
                    .map(|p| PeerEntry {
                        addr: p.addr.clone(),
                        pieces: p.have,
                        down_rate: p.down_rate as u64,
                        up_rate: p.up_rate as u64,
                        choked: p.am_choking,
                        choking_us: p.peer_choking,
                    })
                    .collect(),
                s.piece_map,
            ),
            None => (
                Vec::new(),
                "0".repeat(entry.meta.as_ref().map_or(0, Metainfo::num_pieces)),
            ),
        };
        Ok(TorrentDetail {
            summary: Session::summary(entry),
            dir: entry.settings.dir.clone(),
            files: entry
                .meta
                .iter()
                .flat_map(|m| &m.files)
                .map(|f| FileEntry {
                    path: f.path.join("/"),
                    length: f.length,
                })
                .collect(),
            peer_list,
            piece_map,
        })
    }

    fn pause(&self, info_hash: &str) -> Result<(), ControlError> {
        self.set_paused(info_hash, true)
    }

    fn resume(&self, info_hash: &str) -> Result<(), ControlError> {
        self.set_paused(info_hash, false)
    }

    fn remove(&self, info_hash: &str, delete_data_too: bool) -> Result<(), ControlError> {
        let ih = parse_hash(info_hash)?;
        if !self.torrents.lock().contains_key(&ih) {
            return Err(ControlError::NotFound);
        }
        self.stop_torrent(&ih);
        let entry = self.torrents.lock().remove(&ih);
        let Some(mut entry) = entry else {
            return Err(ControlError::NotFound);
        };
        Session::adopt_fetched(&mut entry);
        self.state
            .remove(&ih)
            .map_err(|e| ControlError::Internal(format!("cannot forget the torrent: {e}")))?;
        // A magnet link whose metadata never came has no files.
        if let (true, Some(meta)) = (delete_data_too, &entry.meta) {
            delete_data(meta, &entry.data_dir)
                .map_err(|e| ControlError::Internal(format!("cannot delete the data: {e}")))?;
        }
        log::info!(
            "removed {ih}{}",
            if delete_data_too { " and its data" } else { "" }
        );
        Ok(())
    }

    fn session(&self) -> SessionInfo {
        let list = self.list();
        let (gossip_bytes_in, gossip_bytes_out) = self
            .shared
            .overlay
            .as_ref()
            .map_or((0, 0), |o| o.served_bytes());
        SessionInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_secs: self.started.elapsed().as_secs(),
            peer_port: self.shared.listen_port,
            overlay_addr: self.overlay_addr().map(|a| a.to_string()),
            overlay_members: self.shared.overlay.as_ref().map_or(0, |o| o.member_count()),
            dns_registration: self.dns_name.clone(),
            torrents: list.len(),
            down_rate: list.iter().map(|t| t.down_rate).sum(),
            up_rate: list.iter().map(|t| t.up_rate).sum(),
            counters: SessionCounters {
                gossip_bytes_in,
                gossip_bytes_out,
                tracker_announces: self.shared.announce_stats.sent(),
                tracker_failures: self.shared.announce_stats.failed(),
                dns_queries: crate::dns::client::queries_sent(),
                overlay_auth_failures: self
                    .shared
                    .overlay
                    .as_ref()
                    .map_or(0, |o| o.auth_failures()),
            },
        }
    }
}
