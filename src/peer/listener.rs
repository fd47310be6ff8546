//! The peerwire listener: accepts connections on the bounded
//! `runtime::listener` service and hands them to the [`Router`], which
//! reads each handshake and gives the connection to the swarm of its
//! info-hash; the swarm owns it from then on (`--max-peers`, eviction)
//! and keeps its listener `Slot` in the connection thread, so the
//! service's per-address cap ([`per_ip_cap`]) counts live peers. One
//! listener serves every torrent of a process. Stopped after the swarms'
//! shutdown: the service wakes its blocked `accept` by connecting to
//! itself, closes connections still being routed, and joins.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use super::budget::handshake_spare;
use super::router::Router;
use super::Swarm;
use crate::runtime::listener::{Limits, Options, Service};

/// Peer connections allowed from one source address: a quarter of
/// `--max-peers`, at least 8, so one address cannot take every slot.
pub fn per_ip_cap(max_peers: usize) -> usize {
    (max_peers / 4).max(8)
}

pub struct Listener {
    service: Service,
}

impl Listener {
    pub fn bind(ip: IpAddr, port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
        let l = TcpListener::bind((ip, port))?;
        let addr = l.local_addr()?;
        Ok((l, addr))
    }

    /// A listener for one swarm (a node running one torrent).
    pub fn start(listener: TcpListener, swarm: Arc<Swarm>) -> std::io::Result<Listener> {
        let max = swarm.max_peers();
        Listener::start_routed(listener, Router::single(swarm), max)
    }

    /// A listener for every torrent `router` holds; `max_peers` is the
    /// peer limit over all of them.
    pub fn start_routed(
        listener: TcpListener,
        router: Arc<Router>,
        max_peers: usize,
    ) -> std::io::Result<Listener> {
        let max = max_peers.max(1);
        let opts = Options {
            name: "peer".into(),
            // The swarms' own counts (`--max-peers` plus the spare
            // handshake threads) are the real limit; the service's total
            // only bounds them, and bounds the routing threads that read
            // handshakes. Past the per-address cap a newcomer from that
            // address is closed at once, not displacing an older one: which
            // peer to let go is the swarm's choice (eviction).
            limits: Limits {
                total: max + handshake_spare(max),
                per_ip: per_ip_cap(max),
                displace: false,
            },
            stop_grace: Duration::from_secs(1),
        };
        let service = Service::start_handoff(listener, opts, move |stream, peer, slot| {
            // The connection thread holds the slot until it ends.
            router.accept(stream, peer, slot, max);
        })?;
        Ok(Listener { service })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.service.local_addr()
    }

    /// Call after the swarm's shutdown flag is set.
    pub fn stop(self) {
        self.service.stop();
    }
}
