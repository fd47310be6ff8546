//! Finding peers through the overlay for one torrent: announce our presence
//! (at start, periodically, at completion; withdraw at stop) and look up
//! providers, handing their addresses to the node loop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::core::{InfoHash, PeerId};
use crate::overlay::Overlay;
use crate::peer::Swarm;

/// Lookups while we have few peers, and once we are settled.
const LOOKUP_EAGER: Duration = Duration::from_secs(2);
const LOOKUP_SETTLED: Duration = Duration::from_secs(15);
/// Peers that count as "enough" to slow lookups down.
const ENOUGH_PEERS: usize = 8;

enum Command {
    Completed,
}

pub struct OverlayDiscovery {
    commands: Sender<Command>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    found: Arc<AtomicUsize>,
    rounds: Receiver<usize>,
}

impl OverlayDiscovery {
    pub fn start(
        overlay: Arc<Overlay>,
        info_hash: InfoHash,
        peer_id: PeerId,
        peer_port: u16,
        swarm: Arc<Swarm>,
        peers: Sender<Vec<SocketAddr>>,
    ) -> std::io::Result<OverlayDiscovery> {
        let (commands, command_rx) = crossbeam_channel::unbounded();
        let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let found = Arc::new(AtomicUsize::new(0));
        let found_in = found.clone();
        // The latest round's count; older ones are not worth queueing.
        let (rounds_tx, rounds) = crossbeam_channel::bounded::<usize>(1);
        let rounds_rx = rounds.clone();
        let thread = std::thread::Builder::new()
            .name("overlay-discovery".into())
            .spawn(move || {
                // Re-announce well within the providers' TTL (90 s), and
                // often enough that a node back from a partition is listed
                // again within seconds.
                let reannounce = Duration::from_secs(10);
                let left = || swarm.state.lock().left();
                overlay.announce(info_hash, peer_id, peer_port, left());
                let mut last_announce = Instant::now();
                loop {
                    let providers = overlay.lookup(info_hash, 50);
                    let addrs: Vec<SocketAddr> = providers
                        .iter()
                        .map(|p| p.addr)
                        .filter(|a| a.port() != peer_port || !is_own_ip(a))
                        .collect();
                    found_in.store(addrs.len(), Ordering::Relaxed);
                    // Replace an unread count rather than keep the older one.
                    let _ = rounds_rx.try_recv();
                    let _ = rounds_tx.try_send(addrs.len());
                    if !addrs.is_empty() && peers.send(addrs).is_err() {
                        break;
                    }
                    let connected = swarm.state.lock().num_peers();
                    let wait = if connected < ENOUGH_PEERS && !swarm.state.lock().is_complete() {
                        LOOKUP_EAGER
                    } else {
                        LOOKUP_SETTLED
                    };
                    let wait = wait.min(reannounce.saturating_sub(last_announce.elapsed()));
                    crossbeam_channel::select! {
                        recv(stop_rx) -> _ => break,
                        recv(command_rx) -> c => if let Ok(Command::Completed) = c {
                            overlay.announce(info_hash, peer_id, peer_port, 0);
                            last_announce = Instant::now();
                        },
                        default(wait) => {}
                    }
                    if last_announce.elapsed() >= reannounce {
                        overlay.announce(info_hash, peer_id, peer_port, left());
                        last_announce = Instant::now();
                    }
                }
                overlay.withdraw(info_hash, peer_port);
            })?;
        Ok(OverlayDiscovery {
            commands,
            stop: Some(stop),
            thread: Some(thread),
            found,
            rounds,
        })
    }

    /// Distinct providers (other than us) the last lookup returned.
    pub fn found(&self) -> usize {
        self.found.load(Ordering::Relaxed)
    }

    /// Yields the number of providers found after each lookup round, so the
    /// node can decide on the tracker as soon as the overlay has answered.
    pub fn rounds(&self) -> &Receiver<usize> {
        &self.rounds
    }

    pub fn completed(&self) {
        let _ = self.commands.send(Command::Completed);
    }

    /// Withdraws our presence and joins.
    pub fn stop(mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Loopback or unspecified: an address that may be our own.
pub(super) fn is_own_ip(a: &SocketAddr) -> bool {
    a.ip().is_loopback() || a.ip().is_unspecified()
}
