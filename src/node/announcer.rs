//! The tracker announcer thread: `started`, then periodic announces,
//! `completed` when told, and `stopped` at shutdown. Peers it learns go to
//! the node loop over a channel. When and whom to ask is
//! `tracker::schedule`'s decision (clamped intervals, backoff, logging a
//! failure once per change); this thread only does the I/O.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::core::{InfoHash, PeerId};
use crate::tracker::client::{self, AnnounceRequest, Event};
use crate::tracker::schedule::{self, Outcome, TrackerSet};

const TIMEOUT: Duration = Duration::from_secs(10);
/// The whole `stopped` round, however many trackers it asks.
const STOPPED_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `stop` waits for the thread: a request in flight to a tracker
/// that does not answer cannot be interrupted, and shutdown must not wait
/// out its timeout. Past this the thread is left to end on its own.
const STOP_WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceCommand {
    Completed,
    /// Announce right away (e.g. too few peers).
    Now,
}

/// (uploaded, downloaded, left) at the time of an announce.
pub type Counters = Arc<dyn Fn() -> (u64, u64, u64) + Send + Sync>;

pub struct Announcer {
    commands: Sender<AnnounceCommand>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Disconnected when the thread ends (its sender is dropped with it).
    done: Receiver<()>,
}

pub struct AnnouncerConfig {
    pub urls: Vec<String>,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub interval: Option<Duration>,
    /// Counted over every announcer of the process (for `/metrics`).
    pub stats: Arc<AnnounceStats>,
}

/// Announces sent to trackers and how many of them failed.
#[derive(Debug, Default)]
pub struct AnnounceStats {
    sent: AtomicU64,
    failed: AtomicU64,
}

impl AnnounceStats {
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
}

impl Announcer {
    pub fn start(
        cfg: AnnouncerConfig,
        counters: Counters,
        peers: Sender<Vec<SocketAddr>>,
    ) -> std::io::Result<Announcer> {
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let (stop, stop_rx) = crossbeam_channel::bounded(0);
        let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("announcer".into())
            .spawn(move || {
                let _done = done_tx;
                announce_loop(cfg, counters, peers, command_rx, stop_rx)
            })?;
        Ok(Announcer {
            commands,
            stop: Some(stop),
            thread: Some(thread),
            done,
        })
    }

    pub fn send(&self, c: AnnounceCommand) {
        let _ = self.commands.send(c);
    }

    /// Announces `stopped` (one short deadline for the round) and joins,
    /// waiting at most [`STOP_WAIT`] for a request already in flight.
    pub fn stop(mut self) {
        self.stop.take();
        let ended = matches!(
            self.done.recv_timeout(STOP_WAIT),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        match self.thread.take() {
            Some(t) if ended => {
                let _ = t.join();
            }
            _ => log::warn!("a tracker is not answering; stopping without waiting for it"),
        }
    }
}

fn announce_loop(
    cfg: AnnouncerConfig,
    counters: Counters,
    peers: Sender<Vec<SocketAddr>>,
    commands: Receiver<AnnounceCommand>,
    stop: Receiver<()>,
) {
    let mut trackers = TrackerSet::new(&cfg.urls, cfg.interval, Instant::now());
    if cfg.urls.len() > trackers.len() {
        log::warn!(
            "the torrent names {} trackers; asking only the first {} distinct ones",
            cfg.urls.len(),
            trackers.len()
        );
    }
    let request = |event: Option<Event>| {
        let (uploaded, downloaded, left) = counters();
        AnnounceRequest {
            info_hash: cfg.info_hash,
            peer_id: cfg.peer_id,
            port: cfg.port,
            uploaded,
            downloaded,
            left,
            event,
            numwant: Some(50),
        }
    };
    // Dropping the `Announcer`'s sender says stop.
    let stopping = || {
        matches!(
            stop.try_recv(),
            Err(crossbeam_channel::TryRecvError::Disconnected)
        )
    };
    // One round: the due trackers in order until one answers, all within
    // `budget`, and none once shutdown has begun (unless this is the final
    // `stopped` round). True if one answered.
    let announce_round = |trackers: &mut TrackerSet, urls: Vec<String>, event, budget: Duration| {
        let req = request(event);
        let deadline = Instant::now() + budget;
        for url in urls {
            let left = deadline.saturating_duration_since(Instant::now());
            // Regular announces stop with shutdown; events still go out.
            if left.is_zero() || (event.is_none() && stopping()) {
                break;
            }
            cfg.stats.sent.fetch_add(1, Ordering::Relaxed);
            let outcome = match client::announce(&url, &req, left.min(TIMEOUT)) {
                Ok(resp) => {
                    if let Some(w) = &resp.warning {
                        log::warn!("tracker {}: {}", schedule::shown(&url), schedule::shown(w));
                    }
                    log::debug!(
                        "tracker {}: {} peers",
                        schedule::shown(&url),
                        resp.peers.len()
                    );
                    let _ = peers.send(resp.peers);
                    Outcome::Answered {
                        interval: resp.interval,
                        min_interval: resp.min_interval,
                    }
                }
                Err(e) => {
                    cfg.stats.failed.fetch_add(1, Ordering::Relaxed);
                    Outcome::Failed {
                        kind: e.kind(),
                        reason: e.to_string(),
                    }
                }
            };
            let answered = matches!(outcome, Outcome::Answered { .. });
            if let Some(line) = trackers.record(&url, outcome, Instant::now()) {
                log::warn!("{line}");
            }
            if answered {
                return true;
            }
        }
        false
    };

    let mut event = Some(Event::Started);
    let mut wait = Duration::ZERO;
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => break,
            recv(commands) -> c => match c {
                Ok(AnnounceCommand::Completed) => event = Some(Event::Completed),
                // Asked for peers now, but never before the tracker's min interval.
                Ok(AnnounceCommand::Now) => {
                    let hold = trackers.forced_wait(Instant::now());
                    if !hold.is_zero() {
                        wait = hold;
                        continue;
                    }
                }
                Err(_) => break,
            },
            default(wait) => {}
        }
        let due = trackers.round(Instant::now());
        let answered = announce_round(&mut trackers, due, event, TIMEOUT * 4);
        if answered {
            event = None;
        }
        wait = trackers.wait_after_round(answered, Instant::now());
    }
    // A `completed` not yet told (queued as we were stopped, or its round
    // failed) goes out before `stopped`: trackers count downloads by it.
    // Both share the one short deadline.
    let deadline = Instant::now() + STOPPED_TIMEOUT;
    let completed_pending = event == Some(Event::Completed)
        || commands.try_iter().any(|c| c == AnnounceCommand::Completed);
    if completed_pending {
        let urls = trackers.stopping_round();
        announce_round(&mut trackers, urls, Some(Event::Completed), STOPPED_TIMEOUT);
    }
    let urls = trackers.stopping_round();
    let left = deadline.saturating_duration_since(Instant::now());
    announce_round(&mut trackers, urls, Some(Event::Stopped), left);
}
