//! The tracker's UDP front (BEP 15), beside the HTTP one and on the same
//! port, sharing its [`Registry`].
//!
//! Connection ids are stateless: a keyed hash of the client's address and
//! the current minute, accepted for that minute and the one before. A
//! forged source address never sees the id sent to the real one, so it
//! cannot announce for it, and every reply to an unproven address is no
//! larger than its request (no amplification). Garbage gets no reply.
//!
//! One thread serves every packet; stop sets a flag and sends the socket a
//! packet of its own to wake the blocked `recv_from`.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::registry::{Families, Registry};
use crate::wire::udp_tracker::{self as codec, UdpRequest, MAX_PACKET};

const ID_EPOCH: Duration = Duration::from_secs(60);

/// Issues and checks connection ids.
pub struct ConnectionIds {
    keys: std::collections::hash_map::RandomState,
    start: Instant,
}

impl ConnectionIds {
    pub fn new(start: Instant) -> ConnectionIds {
        ConnectionIds {
            keys: Default::default(),
            start,
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_secs()) / ID_EPOCH.as_secs()
    }

    fn for_epoch(&self, from: SocketAddr, epoch: u64) -> u64 {
        self.keys.hash_one((from, epoch))
    }

    pub fn issue(&self, from: SocketAddr, now: Instant) -> u64 {
        self.for_epoch(from, self.epoch(now))
    }

    pub fn is_valid(&self, id: u64, from: SocketAddr, now: Instant) -> bool {
        let e = self.epoch(now);
        id == self.for_epoch(from, e) || (e > 0 && id == self.for_epoch(from, e - 1))
    }
}

/// The reply to one packet from `from`, if it deserves one.
pub fn handle_packet(
    packet: &[u8],
    from: SocketAddr,
    registry: &Mutex<Registry>,
    ids: &ConnectionIds,
    now: Instant,
) -> Option<Vec<u8>> {
    let request = UdpRequest::decode(packet).ok()?;
    let tid = request.transaction_id();
    let proven = |connection_id| ids.is_valid(connection_id, from, now);
    match request {
        UdpRequest::Connect { transaction_id } => {
            Some(codec::encode_connect_reply(transaction_id, ids.issue(from, now)).to_vec())
        }
        UdpRequest::Announce {
            connection_id,
            announce,
            ..
        } if proven(connection_id) => {
            if announce.port == 0 {
                return Some(codec::encode_error(tid, "port must be 1-65535"));
            }
            let ip: IpAddr = from.ip().to_canonical();
            let reply = registry.lock().announce(&announce, ip, now, Families::Own);
            Some(match reply {
                Ok(reply) => codec::encode_announce_reply(tid, &reply),
                Err(refusal) => codec::encode_error(tid, refusal),
            })
        }
        UdpRequest::Scrape {
            connection_id,
            hashes,
            ..
        } if proven(connection_id) => {
            let counts = registry.lock().scrape(&hashes, now);
            let entries: Vec<_> = hashes
                .iter()
                .map(|h| counts.get(h).copied().unwrap_or_default())
                .collect();
            Some(codec::encode_scrape_reply(tid, &entries))
        }
        // An unknown or expired id: a short error, never longer than the
        // request, so the client connects again.
        _ => Some(codec::encode_error(tid, "bad connection id")),
    }
}

/// A running UDP front; [`UdpFront::stop`] joins it.
pub struct UdpFront {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpFront {
    pub fn start(socket: UdpSocket, registry: Arc<Mutex<Registry>>) -> std::io::Result<UdpFront> {
        let addr = socket.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let their_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("tracker-udp".into())
            .spawn(move || serve(&socket, &registry, &their_stop))?;
        Ok(UdpFront {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        crate::runtime::wake::wake_udp(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(socket: &UdpSocket, registry: &Mutex<Registry>, stop: &AtomicBool) {
    let ids = ConnectionIds::new(Instant::now());
    let mut buf = vec![0u8; MAX_PACKET];
    loop {
        let received = socket.recv_from(&mut buf);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match received {
            Ok((n, from)) => {
                if let Some(reply) = handle_packet(&buf[..n], from, registry, &ids, Instant::now())
                {
                    // A client that has gone is not our problem.
                    let _ = socket.send_to(&reply, from);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("tracker udp: {e}");
                // Do not spin on a persistent error.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{InfoHash, PeerId};
    use crate::tracker::registry::ServerOptions;
    use crate::wire::tracker::{AnnounceRequest, Event};
    use crate::wire::udp_tracker::{decode_announce, decode_connect, encode_announce};

    fn setup() -> (Mutex<Registry>, ConnectionIds, Instant) {
        let now = Instant::now();
        (
            Mutex::new(Registry::new(ServerOptions::default(), now)),
            ConnectionIds::new(now),
            now,
        )
    }

    fn announce_packet(connection_id: u64, port: u16, event: Option<Event>) -> [u8; 98] {
        let req = AnnounceRequest {
            info_hash: InfoHash([9; 20]),
            peer_id: PeerId([port as u8; 20]),
            downloaded: 0,
            left: 5,
            uploaded: 0,
            event,
            numwant: None,
            port,
        };
        encode_announce(connection_id, u32::from(port), 1, &req)
    }

    #[test]
    fn connect_then_announce_lists_the_other_peer() {
        let (reg, ids, now) = setup();
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.2:5001".parse().unwrap();
        let id_of = |from| {
            let r = handle_packet(&codec::encode_connect(1), from, &reg, &ids, now).unwrap();
            decode_connect(&r, 1).unwrap()
        };
        let (ida, idb) = (id_of(a), id_of(b));
        assert_ne!(ida, idb, "ids are bound to the address");
        let r = handle_packet(
            &announce_packet(ida, 6881, Some(Event::Started)),
            a,
            &reg,
            &ids,
            now,
        )
        .unwrap();
        assert!(decode_announce(&r, 6881, false).unwrap().peers.is_empty());
        let r = handle_packet(&announce_packet(idb, 6882, None), b, &reg, &ids, now).unwrap();
        let got = decode_announce(&r, 6882, false).unwrap();
        let addrs: Vec<SocketAddr> = got.peers.iter().map(|p| p.addr).collect();
        assert_eq!(addrs, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert_eq!((got.incomplete, got.complete), (Some(2), Some(0)));
    }

    #[test]
    fn a_forged_or_stale_id_gets_a_short_error_and_changes_nothing() {
        let (reg, ids, now) = setup();
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let other: SocketAddr = "127.0.0.9:5000".parse().unwrap();
        let id_for_other = ids.issue(other, now);
        let packet = announce_packet(id_for_other, 6881, Some(Event::Started));
        let r = handle_packet(&packet, a, &reg, &ids, now).unwrap();
        assert!(r.len() <= packet.len());
        assert!(decode_announce(&r, 6881, false).is_err());
        assert_eq!(reg.lock().peer_count(), 0);
        // An id lives for its minute and the next, not longer.
        let id = ids.issue(a, now);
        assert!(ids.is_valid(id, a, now + Duration::from_secs(100)));
        assert!(!ids.is_valid(id, a, now + Duration::from_secs(130)));
    }

    #[test]
    fn garbage_gets_no_reply() {
        let (reg, ids, now) = setup();
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        for junk in [&b""[..], &[0u8; 15], &[0xFF; 200]] {
            assert!(handle_packet(junk, a, &reg, &ids, now).is_none());
        }
    }

    #[test]
    fn the_front_answers_over_a_socket_and_stops() {
        let registry = Arc::new(Mutex::new(Registry::new(
            ServerOptions::default(),
            Instant::now(),
        )));
        let front = UdpFront::start(UdpSocket::bind("127.0.0.1:0").unwrap(), registry).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
            .send_to(&codec::encode_connect(3), front.local_addr())
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert!(decode_connect(&buf[..n], 3).is_ok());
        front.stop();
    }
}
