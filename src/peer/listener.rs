//! The peerwire listener: accepts connections on the bounded
//! `runtime::listener` service and hands them to the swarm, which owns
//! each connection from then on (the handshake deadline, `--max-peers`).
//! Stopped after the swarm's shutdown: the service wakes its blocked
//! `accept` by connecting to itself and joins it.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use super::Swarm;
use crate::runtime::listener::{Limits, Options, Service};

pub struct Listener {
    service: Service,
}

impl Listener {
    pub fn bind(ip: IpAddr, port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
        let l = TcpListener::bind((ip, port))?;
        let addr = l.local_addr()?;
        Ok((l, addr))
    }

    pub fn start(listener: TcpListener, swarm: Arc<Swarm>) -> std::io::Result<Listener> {
        let max = swarm.max_peers.max(1);
        let opts = Options {
            name: "peer".into(),
            // No per-address cap yet: the swarm owns each connection's life
            // (its slot would have to live in the connection thread), and
            // it must not refuse an address before the swarm's own choice
            // of whom to let go when `--max-peers` is full.
            limits: Limits {
                total: max,
                per_ip: max,
                displace: false,
            },
            stop_grace: Duration::from_secs(1),
        };
        let service = Service::start_handoff(listener, opts, move |stream, peer, slot| {
            if swarm.is_shutting_down() {
                return;
            }
            swarm.accept(stream, peer);
            // The swarm runs the connection on its own thread and keeps its
            // own count (`--max-peers`).
            drop(slot);
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
