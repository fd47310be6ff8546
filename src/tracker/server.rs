//! A small tracker: one [`Registry`] behind two fronts on the same port,
//! HTTP (`http`: `/announce`, compact or dictionary replies, and `/scrape`)
//! and UDP (BEP 15, `udp_server`). `event=stopped` removes at once, silent
//! peers expire, empty torrents are forgotten (`registry`).
//!
//! Threads: the HTTP front's accept thread and connection threads, and one
//! thread reading the UDP socket; each takes the one registry lock for each
//! announce or scrape (a periodic sweep of expired peers runs under it
//! too); no other lock exists, so there is no lock order to get wrong.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::registry::Registry;
use super::udp_server::UdpFront;
use crate::runtime::listener::Service;

pub use super::registry::ServerOptions;

/// A running tracker; [`TrackerServer::shutdown`] stops and joins it.
pub struct TrackerServer {
    addr: SocketAddr,
    http: Option<Service>,
    /// BEP 15 on the same port.
    udp: Option<UdpFront>,
}

impl TrackerServer {
    /// Binds `addr` for HTTP and UDP (port 0 picks a port free for both)
    /// and starts the bounded HTTP front and one UDP thread.
    pub fn start(addr: SocketAddr, opts: ServerOptions) -> std::io::Result<TrackerServer> {
        if opts.max_connections == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the tracker needs at least one connection",
            ));
        }
        let (listener, udp_socket) = bind_http_and_udp(addr)?;
        let bound = udp_socket.local_addr()?;
        let max_connections = opts.max_connections;
        let registry = Arc::new(Mutex::new(Registry::new(opts, Instant::now())));
        let service = super::http::start(listener, registry.clone(), max_connections)?;
        let mut tracker = TrackerServer {
            addr: bound,
            http: Some(service),
            udp: None,
        };
        match UdpFront::start(udp_socket, registry) {
            Ok(front) => tracker.udp = Some(front),
            Err(e) => {
                tracker.shutdown();
                return Err(e);
            }
        }
        Ok(tracker)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The announce URLs, HTTP then UDP, as a client on this machine can
    /// dial them: an unspecified bind address shows as loopback.
    pub fn announce_urls(&self) -> [String; 2] {
        announce_urls(self.addr)
    }

    /// Stops taking requests, closes open connections and joins the
    /// threads (bounded); the listening socket is closed with them.
    pub fn shutdown(mut self) {
        if let Some(udp) = self.udp.take() {
            udp.stop();
        }
        if let Some(http) = self.http.take() {
            http.stop();
        }
    }
}

fn announce_urls(bound: SocketAddr) -> [String; 2] {
    let shown = match bound {
        a if a.ip().is_unspecified() => SocketAddr::new([127, 0, 0, 1].into(), a.port()),
        a => a,
    };
    [
        format!("http://{shown}/announce"),
        format!("udp://{shown}/announce"),
    ]
}

/// A TCP listener and a UDP socket on the same address. With port 0 the
/// port TCP got may be taken for UDP: then try another, a bounded number
/// of times.
fn bind_http_and_udp(addr: SocketAddr) -> std::io::Result<(TcpListener, UdpSocket)> {
    let tries = if addr.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let listener = TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        match UdpSocket::bind(bound) {
            Ok(udp) => return Ok((listener, udp)),
            Err(e) => last = Some(e),
        }
    }
    let e = last.expect("at least one try");
    Err(std::io::Error::new(
        e.kind(),
        format!("cannot bind UDP on the tracker's port: {e}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_show_loopback_for_an_unspecified_address() {
        let urls = |a: &str| announce_urls(a.parse().unwrap());
        assert_eq!(
            urls("0.0.0.0:7000"),
            [
                "http://127.0.0.1:7000/announce",
                "udp://127.0.0.1:7000/announce"
            ]
        );
        assert_eq!(urls("[::]:7000")[0], "http://127.0.0.1:7000/announce");
        assert_eq!(urls("10.0.0.1:80")[1], "udp://10.0.0.1:80/announce");
    }
}
