//! UDP tracker client (BEP 15) over a blocking `UdpSocket`: a connect
//! exchange for a connection id (cached for its one-minute life), then the
//! announce or scrape. Lost packets are resent after 1, 2, 4... seconds
//! within the caller's time budget (BEP 15's 15 s first wait would leave no
//! retry inside a node's announce timeout). The bytes are
//! `wire::udp_tracker`'s business; the request, response and error types
//! are `announce`'s, shared with the HTTP client.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::announce::{
    process_key, random_u32, AnnounceRequest, AnnounceResponse, ScrapeStats, TrackerError,
};
use crate::core::InfoHash;
use crate::wire::udp_tracker::{self as codec, UdpTrackerError, MAX_PACKET};

/// How long a tracker's connection id may be reused (BEP 15).
const CONNECTION_ID_LIFE: Duration = Duration::from_secs(60);
const FIRST_RESEND: Duration = Duration::from_secs(1);

fn transport(e: impl std::fmt::Display) -> TrackerError {
    TrackerError::Transport(e.to_string())
}

/// `host:port` of a `udp://host:port[/path]` URL, resolved.
fn tracker_addr(url: &str) -> Result<SocketAddr, TrackerError> {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    rest.to_socket_addrs()
        .map_err(|e| transport(format!("{rest}: {e}")))?
        .next()
        .ok_or_else(|| transport(format!("{rest}: no address")))
}

fn connection_ids() -> &'static Mutex<HashMap<SocketAddr, (u64, Instant)>> {
    static IDS: OnceLock<Mutex<HashMap<SocketAddr, (u64, Instant)>>> = OnceLock::new();
    IDS.get_or_init(Default::default)
}

/// A socket connected to the tracker, with the time budget of one call.
struct Exchange {
    socket: UdpSocket,
    tracker: SocketAddr,
    deadline: Instant,
}

impl Exchange {
    fn open(url: &str, timeout: Duration) -> Result<Exchange, TrackerError> {
        let tracker = tracker_addr(url)?;
        let local: SocketAddr = if tracker.is_ipv4() {
            "0.0.0.0:0".parse().expect("valid")
        } else {
            "[::]:0".parse().expect("valid")
        };
        let socket = UdpSocket::bind(local).map_err(transport)?;
        socket.connect(tracker).map_err(transport)?;
        Ok(Exchange {
            socket,
            tracker,
            deadline: Instant::now() + timeout,
        })
    }

    /// Sends `packet` and returns the first reply `decode` accepts,
    /// resending on silence; replies to other transactions are skipped.
    fn request<T>(
        &self,
        packet: &[u8],
        decode: impl Fn(&[u8]) -> Result<T, UdpTrackerError>,
    ) -> Result<T, TrackerError> {
        let mut buf = vec![0u8; MAX_PACKET + 1];
        let mut wait = FIRST_RESEND;
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                return Err(transport("no reply from the UDP tracker"));
            }
            self.socket.send(packet).map_err(transport)?;
            let resend_at = (now + wait).min(self.deadline);
            wait *= 2;
            while let Some(left) = resend_at.checked_duration_since(Instant::now()) {
                if left.is_zero() {
                    break;
                }
                self.socket
                    .set_read_timeout(Some(left))
                    .map_err(transport)?;
                let n = match self.socket.recv(&mut buf) {
                    Ok(n) => n,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        break
                    }
                    // ICMP port unreachable: nobody listens there.
                    Err(e) => return Err(transport(e)),
                };
                match decode(&buf[..n]) {
                    Err(UdpTrackerError::Mismatch) => continue,
                    other => return other.map_err(TrackerError::from),
                }
            }
        }
    }

    fn connection_id(&self) -> Result<u64, TrackerError> {
        let cached = connection_ids().lock().get(&self.tracker).copied();
        if let Some((id, at)) = cached {
            if at.elapsed() < CONNECTION_ID_LIFE {
                return Ok(id);
            }
        }
        let tid = random_u32();
        let id = self.request(&codec::encode_connect(tid), |p| {
            codec::decode_connect(p, tid)
        })?;
        connection_ids()
            .lock()
            .insert(self.tracker, (id, Instant::now()));
        Ok(id)
    }

    /// Runs `call` with a connection id; once more with a fresh id if the
    /// tracker refused the cached one (it may have restarted).
    fn with_connection<T>(
        &self,
        call: impl Fn(u64) -> Result<T, TrackerError>,
    ) -> Result<T, TrackerError> {
        let cached = connection_ids().lock().contains_key(&self.tracker);
        match call(self.connection_id()?) {
            Err(TrackerError::Failure(_)) if cached => {
                connection_ids().lock().remove(&self.tracker);
                call(self.connection_id()?)
            }
            other => other,
        }
    }
}

pub fn announce(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    let ex = Exchange::open(url, timeout)?;
    let ipv6 = ex.tracker.is_ipv6();
    let reply = ex.with_connection(|connection_id| {
        let tid = random_u32();
        let packet = codec::encode_announce(connection_id, tid, process_key(), req);
        ex.request(&packet, |p| codec::decode_announce(p, tid, ipv6))
    })?;
    Ok(reply.into())
}

pub fn scrape(
    url: &str,
    hashes: &[InfoHash],
    timeout: Duration,
) -> Result<HashMap<InfoHash, ScrapeStats>, TrackerError> {
    let ex = Exchange::open(url, timeout)?;
    let mut out = HashMap::new();
    // BEP 15 has no "every torrent" scrape: an empty list asks for nothing.
    for chunk in hashes.chunks(codec::MAX_SCRAPE_HASHES) {
        let entries = ex.with_connection(|connection_id| {
            let tid = random_u32();
            let packet = codec::encode_scrape(connection_id, tid, chunk);
            ex.request(&packet, |p| codec::decode_scrape(p, tid, chunk.len()))
        })?;
        out.extend(chunk.iter().copied().zip(entries));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tracker::test_announce as request;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A tiny BEP 15 tracker on loopback that drops the first `drop_first`
    /// packets (to exercise resending) and answers every announce with one
    /// peer, or with an error packet when `refuse` is set.
    fn fake_tracker(drop_first: usize, refuse: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = socket.local_addr().unwrap();
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            socket
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            while let Ok((n, from)) = socket.recv_from(&mut buf) {
                let k = counter.fetch_add(1, Ordering::SeqCst);
                if k < drop_first || n < 16 {
                    continue;
                }
                let action = u32::from_be_bytes(buf[8..12].try_into().unwrap());
                let mut reply = Vec::new();
                if action == 0 {
                    assert_eq!(&buf[..8], &codec::PROTOCOL_ID.to_be_bytes());
                    reply.extend_from_slice(&[0, 0, 0, 0]);
                    reply.extend_from_slice(&buf[12..16]);
                    reply.extend_from_slice(&77u64.to_be_bytes());
                } else if refuse {
                    reply.extend_from_slice(&[0, 0, 0, 3]);
                    reply.extend_from_slice(&buf[12..16]);
                    reply.extend_from_slice(b"unknown torrent");
                } else {
                    assert_eq!(&buf[..8], &77u64.to_be_bytes(), "the connection id");
                    assert_eq!(n, 98);
                    reply.extend_from_slice(&[0, 0, 0, 1]);
                    reply.extend_from_slice(&buf[12..16]);
                    reply.extend_from_slice(&[0, 0, 0, 30, 0, 0, 0, 0, 0, 0, 0, 1]);
                    reply.extend_from_slice(&[10, 0, 0, 1, 0x1A, 0xE1]);
                }
                // A stale reply first: a wrong transaction id is skipped.
                let mut stale = reply.clone();
                stale[4] ^= 0xFF;
                socket.send_to(&stale, from).unwrap();
                socket.send_to(&reply, from).unwrap();
            }
        });
        (addr, seen)
    }

    #[test]
    fn announces_and_resends_a_lost_packet() {
        let (addr, seen) = fake_tracker(1, false);
        let url = format!("udp://{addr}/announce");
        let r = announce(&url, &request(), Duration::from_secs(10)).unwrap();
        assert_eq!(r.peers, vec!["10.0.0.1:6881".parse().unwrap()]);
        assert_eq!(r.interval, Duration::from_secs(30));
        assert_eq!(r.complete, Some(1));
        // Dropped connect, resent connect, announce.
        assert_eq!(seen.load(Ordering::SeqCst), 3);
        // The connection id is reused: one more packet for a second announce.
        announce(&url, &request(), Duration::from_secs(10)).unwrap();
        assert_eq!(seen.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn an_error_packet_is_a_failure_and_silence_times_out() {
        let (addr, _) = fake_tracker(0, true);
        let e = announce(
            &format!("udp://{addr}"),
            &request(),
            Duration::from_secs(10),
        );
        assert!(
            matches!(&e, Err(TrackerError::Failure(m)) if m == "unknown torrent"),
            "{e:?}"
        );
        let (silent, _) = fake_tracker(usize::MAX, false);
        let t = Instant::now();
        let e = announce(
            &format!("udp://{silent}/announce"),
            &request(),
            Duration::from_millis(1500),
        );
        assert!(matches!(e, Err(TrackerError::Transport(_))), "{e:?}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "bounded by the timeout"
        );
    }
}
