//! One peer listener for many torrents: each incoming connection gets a
//! short-lived thread that reads the peer's handshake (within the
//! handshake deadline), looks up the swarm of its info-hash and hands the
//! connection to it; a handshake for a torrent we do not hold is closed
//! without an answer, so the peer learns nothing.
//!
//! The connection keeps its listener `Slot` through the routing thread and
//! on into the swarm's connection thread, so the listener's caps (total
//! and per address) bound the routing threads too, and `Listener::stop`
//! closes a connection still being routed.
//!
//! Admission is the swarms' rule (`budget::room_for_incoming`) over the
//! whole process: connection threads of every swarm plus the routing
//! threads, which count as handshaking; past `--max-peers` only the spare
//! handshake threads are left, and one address may hold only its share of
//! them, so silent connections cannot keep a real peer from reaching
//! eviction.
//!
//! Locks: `swarms` and `routing` are each taken alone; neither is held
//! while a swarm is called.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::budget::{room_for_incoming, ThreadCount};
use super::handshake;
use super::Swarm;
use crate::core::InfoHash;
use crate::runtime::listener::{source_key, Slot};

#[derive(Default)]
pub struct Router {
    swarms: RwLock<HashMap<InfoHash, Arc<Swarm>>>,
    /// Routing threads (reading a handshake), by id, with their source.
    routing: Mutex<HashMap<u64, IpAddr>>,
    next_id: AtomicU64,
}

/// Takes a routing thread off the count when it ends, however it ends.
struct Routing<'a> {
    router: &'a Router,
    id: u64,
}

impl Drop for Routing<'_> {
    fn drop(&mut self) {
        self.router.routing.lock().remove(&self.id);
    }
}

impl Router {
    pub fn new() -> Arc<Router> {
        Arc::new(Router::default())
    }

    /// A router holding one swarm (a node running one torrent).
    pub fn single(swarm: Arc<Swarm>) -> Arc<Router> {
        let router = Router::new();
        router.add(swarm);
        router
    }

    /// Routes the swarm's info-hash to it from now on (replacing any swarm
    /// that had it: a resumed torrent gets a new swarm).
    pub fn add(&self, swarm: Arc<Swarm>) {
        self.swarms.write().insert(swarm.info_hash, swarm);
    }

    /// Stops routing to `info_hash`; connections already handed over stay
    /// the swarm's to end.
    pub fn remove(&self, info_hash: &InfoHash) -> Option<Arc<Swarm>> {
        self.swarms.write().remove(info_hash)
    }

    pub fn route(&self, info_hash: &InfoHash) -> Option<Arc<Swarm>> {
        self.swarms.read().get(info_hash).cloned()
    }

    pub fn len(&self) -> usize {
        self.swarms.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes an accepted connection: reads its handshake on a thread of
    /// its own (the accept thread must not wait on a peer) and routes it;
    /// refuses it at once past the limit (see the module's doc).
    pub fn accept(
        self: &Arc<Self>,
        mut stream: TcpStream,
        addr: SocketAddr,
        slot: Slot,
        max_peers: usize,
    ) {
        let swarms: Vec<Arc<Swarm>> = self.swarms.read().values().cloned().collect();
        let connected: usize = swarms.iter().map(|s| s.connection_count()).sum();
        let source = source_key(addr.ip());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut routing = self.routing.lock();
            let count = ThreadCount {
                threads: connected + routing.len(),
                handshaking: routing.len(),
                handshaking_from_ip: routing.values().filter(|&&ip| ip == source).count(),
            };
            if !room_for_incoming(count, max_peers) {
                log::debug!("refusing {addr}: at the peer limit");
                let _ = stream.shutdown(Shutdown::Both);
                return;
            }
            routing.insert(id, source);
        }
        let router = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("peer-hs-{addr}"))
            .spawn(move || {
                let routing = Routing {
                    router: &router,
                    id,
                };
                let theirs = match handshake::read_incoming(&mut stream) {
                    Ok(h) => h,
                    Err(e) => {
                        log::debug!("incoming {addr}: {e}");
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                };
                // The guard is a temporary of this statement: released
                // before the swarm is called.
                let swarm = router.route(&theirs.info_hash);
                // Counted by the swarm from here on.
                drop(routing);
                match swarm {
                    Some(swarm) => swarm.accept_handshaken(stream, addr, slot, theirs),
                    None => {
                        log::debug!("incoming {addr}: no torrent {}; closing", theirs.info_hash);
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                }
            });
        if let Err(e) = spawned {
            // The closure, and with it the socket and the slot, is dropped.
            log::warn!("cannot start a handshake thread: {e}");
            self.routing.lock().remove(&id);
        }
    }
}
