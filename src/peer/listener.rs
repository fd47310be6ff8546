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

/// A TCP listener on `[::]:port` that takes IPv4 connections too.
fn dual_stack(port: u16) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::STREAM, None)?;
    s.set_only_v6(false)?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)).into())?;
    s.listen(1024)?;
    Ok(s.into())
}

pub struct Listener {
    service: Service,
}

impl Listener {
    /// Binds the peer port. `::` is dual-stack (IPv4 peers arrive as
    /// v4-mapped addresses) whatever the system's `bindv6only` default.
    pub fn bind(ip: IpAddr, port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
        let l = if ip == IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) {
            dual_stack(port)?
        } else {
            TcpListener::bind((ip, port))?
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_v6_bind_takes_v4_and_v6_peers() {
        let Ok((l, addr)) = Listener::bind("::".parse().unwrap(), 0) else {
            return; // no IPv6 on this machine
        };
        for ip in ["127.0.0.1", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let _c = std::net::TcpStream::connect((ip, addr.port())).unwrap();
            let (_, from) = l.accept().unwrap();
            assert_eq!(from.ip().to_canonical(), ip);
        }
    }
}
