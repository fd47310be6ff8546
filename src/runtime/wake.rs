//! The one way a blocked listener is woken at stop: the stop flag is set
//! first, then a connection (TCP) or an empty datagram (UDP) from loopback
//! makes the blocked `accept`/`recv_from` return, and the loop sees the flag.
//! No polling: a stopped listener ends within one round trip.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// Where to connect to reach a socket bound to `addr` (an unspecified
/// address is reached on loopback of the same family).
pub fn wake_addr(mut addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    addr
}

/// Wakes a thread blocked in `accept` on a listener bound to `addr`.
pub fn wake_tcp(addr: SocketAddr) {
    let _ = TcpStream::connect_timeout(&wake_addr(addr), Duration::from_secs(1));
}

/// Wakes a thread blocked in `recv_from` on a UDP socket bound to `addr`.
pub fn wake_udp(addr: SocketAddr) {
    let to = wake_addr(addr);
    let from: SocketAddr = match to {
        SocketAddr::V4(_) => (Ipv4Addr::LOCALHOST, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::LOCALHOST, 0).into(),
    };
    if let Ok(s) = UdpSocket::bind(from) {
        let _ = s.send_to(&[], to);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn wakes_a_blocked_accept_and_recv() {
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || l.accept().is_ok());
        wake_tcp(addr);
        assert!(t.join().unwrap());

        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = u.local_addr().unwrap();
        let t = std::thread::spawn(move || u.recv_from(&mut [0u8; 4]).map(|(n, _)| n).ok());
        wake_udp(addr);
        assert_eq!(t.join().unwrap(), Some(0));
    }
}
