//! The tracker announcer thread: `started`, then periodic announces,
//! `completed` when told, and `stopped` at shutdown. Peers it learns go to
//! the node loop over a channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::core::{InfoHash, PeerId};
use crate::tracker::client::{self, AnnounceRequest, Event};

const TIMEOUT: Duration = Duration::from_secs(10);
const STOPPED_TIMEOUT: Duration = Duration::from_secs(2);
const RETRY: Duration = Duration::from_secs(15);
const MIN_INTERVAL: Duration = Duration::from_secs(5);

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
}

pub struct AnnouncerConfig {
    pub urls: Vec<String>,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub interval: Option<Duration>,
}

impl Announcer {
    pub fn start(
        cfg: AnnouncerConfig,
        counters: Counters,
        peers: Sender<Vec<SocketAddr>>,
    ) -> std::io::Result<Announcer> {
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let (stop, stop_rx) = crossbeam_channel::bounded(0);
        let thread = std::thread::Builder::new()
            .name("announcer".into())
            .spawn(move || announce_loop(cfg, counters, peers, command_rx, stop_rx))?;
        Ok(Announcer {
            commands,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn send(&self, c: AnnounceCommand) {
        let _ = self.commands.send(c);
    }

    /// Announces `stopped` (bounded by a short timeout) and joins.
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
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
    let announce = |event: Option<Event>, timeout: Duration| -> Option<Duration> {
        let (uploaded, downloaded, left) = counters();
        let req = AnnounceRequest {
            info_hash: cfg.info_hash,
            peer_id: cfg.peer_id,
            port: cfg.port,
            uploaded,
            downloaded,
            left,
            event,
            numwant: Some(50),
        };
        for url in &cfg.urls {
            match client::announce(url, &req, timeout) {
                Ok(resp) => {
                    if let Some(w) = &resp.warning {
                        log::warn!("tracker {url}: {w}");
                    }
                    log::debug!("tracker {url}: {} peers", resp.peers.len());
                    let _ = peers.send(resp.peers);
                    let interval = cfg
                        .interval
                        .unwrap_or(resp.interval)
                        .max(resp.min_interval.unwrap_or(Duration::ZERO))
                        .max(MIN_INTERVAL);
                    return Some(interval);
                }
                Err(e) => log::warn!("tracker {url}: {e}"),
            }
        }
        None
    };

    let mut event = Some(Event::Started);
    let mut wait = Duration::ZERO;
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => break,
            recv(commands) -> c => match c {
                Ok(AnnounceCommand::Completed) => event = Some(Event::Completed),
                Ok(AnnounceCommand::Now) => {}
                Err(_) => break,
            },
            default(wait) => {}
        }
        match announce(event, TIMEOUT) {
            Some(interval) => {
                event = None;
                wait = interval;
            }
            None => wait = RETRY,
        }
    }
    let _ = announce(Some(Event::Stopped), STOPPED_TIMEOUT);
}
