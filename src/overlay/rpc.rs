//! The client side of the overlay protocol: one request and its reply over
//! a fresh connection, under one deadline, and the traffic counters every
//! request and reply adds to.

use std::io::{BufReader, BufWriter};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::io::Write;

use crate::core::lww::now_ms;
use crate::runtime::listener::{Deadline, Timed};
use crate::wire::overlay::{self as wire, FrameError, Message};
use crate::wire::sealed::{self, Context, Keyring, SealError};

/// Bytes and messages in and out (the `stats` reply), and frames dropped
/// because they did not open under the swarm key.
#[derive(Default)]
pub struct Counters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages: AtomicU64,
    pub auth_failures: AtomicU64,
}

/// Why a request to an overlay node got no reply, by what the user can do
/// about it (`btnode lookup` and `health` print these).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Nothing listens there, or the host is unreachable.
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    /// Connected, but no whole reply came within the deadline.
    #[error("no answer within {0:?} (the node is busy or stuck, or is not an overlay node)")]
    TimedOut(Duration),
    /// The other side closed (or reset) the connection before a whole reply.
    #[error(
        "the node closed the connection without answering (busy, shutting down, \
         not an overlay node, or a keyed overlay that needs --swarm-key-file)"
    )]
    Closed,
    /// We hold a swarm key and the reply did not open under it (a keyless
    /// node, another swarm's key, or a forged reply).
    #[error("the reply is not sealed with our swarm key ({0})")]
    Unauthenticated(SealError),
    /// Bytes came back that are not an overlay frame.
    #[error("not an overlay node: it answered something that is not an overlay message ({0})")]
    NotOverlay(FrameError),
    #[error("i/o: {0}")]
    Io(std::io::Error),
}

impl RequestError {
    pub(super) fn from_io(e: std::io::Error, timeout: Duration) -> RequestError {
        use std::io::ErrorKind::*;
        match e.kind() {
            WouldBlock | TimedOut => RequestError::TimedOut(timeout),
            UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => {
                RequestError::Closed
            }
            _ => RequestError::Io(e),
        }
    }

    fn from_frame(e: FrameError, timeout: Duration) -> RequestError {
        match e {
            FrameError::Io(e) => RequestError::from_io(e, timeout),
            FrameError::Sealed(e) => RequestError::Unauthenticated(e),
            other => RequestError::NotOverlay(other),
        }
    }
}

/// Where a request goes and how: the deadline, the counters it adds to,
/// and the swarm key it is sealed with (none: an open overlay).
#[derive(Clone, Copy)]
pub struct Client<'a> {
    pub timeout: Duration,
    pub counters: Option<&'a Counters>,
    pub keys: Option<&'a Keyring>,
}

impl Client<'_> {
    pub fn request(&self, addr: SocketAddr, msg: &Message) -> Result<Message, RequestError> {
        request_with(addr, msg, self.timeout, self.counters, self.keys)
    }
}

/// One request and its reply over a fresh connection, all within `timeout`
/// after the connection is made (one deadline for the write and the read).
pub fn request(
    addr: SocketAddr,
    msg: &Message,
    timeout: Duration,
    counters: Option<&Counters>,
) -> Result<Message, RequestError> {
    request_with(addr, msg, timeout, counters, None)
}

/// [`request`], sealed with `keys` when given: the request under
/// `OVERLAY_REQUEST`, and the reply must open as the reply to its nonce.
pub fn request_with(
    addr: SocketAddr,
    msg: &Message,
    timeout: Duration,
    counters: Option<&Counters>,
    keys: Option<&Keyring>,
) -> Result<Message, RequestError> {
    request_from(None, addr, msg, timeout, counters, keys)
}

/// [`request_with`] from `source` (the address a node's overlay is bound
/// to, when it is bound to one): the receiver names us by the source
/// address of our connection, so a node on one of a host's several
/// addresses must send from it. Not used across loopback and the outside
/// (a loopback source cannot reach another host) nor across families.
pub fn request_from(
    source: Option<IpAddr>,
    addr: SocketAddr,
    msg: &Message,
    timeout: Duration,
    counters: Option<&Counters>,
    keys: Option<&Keyring>,
) -> Result<Message, RequestError> {
    let stream = connect(source, addr, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            RequestError::TimedOut(timeout)
        }
        _ => RequestError::Connect(e),
    })?;
    // One deadline for writing the request and reading the reply: a node
    // that opens its receive window a little at a time, or trickles its
    // reply, cannot hold us longer.
    let deadline = Deadline::after(timeout);
    let io = |e| RequestError::from_io(e, timeout);
    stream.set_nodelay(true).map_err(io)?;
    let mut writer = BufWriter::new(Timed::new(&stream, deadline));
    let mut reader = BufReader::new(Timed::new(&stream, deadline));
    let (reply, sent, got) = match keys {
        None => {
            let sent = wire::write_frame(&mut writer, msg).map_err(io)?;
            let (reply, got) =
                wire::read_frame(&mut reader).map_err(|e| RequestError::from_frame(e, timeout))?;
            (reply, sent, got)
        }
        Some(keys) => {
            let nonce = sealed::fresh_nonce();
            let ctx = Context::request(sealed::OVERLAY_REQUEST);
            let bytes = wire::encode_sealed(msg, keys, &ctx, now_ms(), nonce);
            writer
                .write_all(&bytes)
                .and_then(|()| writer.flush())
                .map_err(io)?;
            let frame = |e| RequestError::from_frame(e, timeout);
            let body = wire::read_raw_frame(&mut reader).map_err(frame)?;
            let reply_ctx = Context::reply(sealed::OVERLAY_REPLY, nonce);
            let opened = wire::open_sealed(&body, keys, &reply_ctx).map_err(frame)?;
            let reply = Message::decode_body(opened.payload).map_err(frame)?;
            (reply, bytes.len(), 4 + body.len())
        }
    };
    if let Some(c) = counters {
        c.bytes_out.fetch_add(sent as u64, Ordering::Relaxed);
        c.bytes_in.fetch_add(got as u64, Ordering::Relaxed);
        c.messages.fetch_add(1, Ordering::Relaxed);
    }
    Ok(reply)
}

fn connect(
    source: Option<IpAddr>,
    addr: SocketAddr,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Protocol, Socket, Type};
    let usable = |s: &IpAddr| {
        !s.is_unspecified()
            && s.is_ipv4() == addr.is_ipv4()
            && s.is_loopback() == addr.ip().is_loopback()
    };
    let Some(ip) = source.filter(usable) else {
        return TcpStream::connect_timeout(&addr, timeout);
    };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.bind(&SocketAddr::new(ip, 0).into())?;
    sock.connect_timeout(&addr.into(), timeout)?;
    Ok(sock.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::time::Instant;

    /// A node bound to one loopback address is seen to come from it, not
    /// from 127.0.0.1 (the kernel's choice), so members name it right.
    #[test]
    fn a_request_comes_from_the_source_address_it_is_given() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut froms = vec![];
            for _ in 0..2 {
                let (s, from) = listener.accept().unwrap();
                froms.push(from.ip());
                let mut r = BufReader::new(&s);
                if wire::read_frame(&mut r).is_ok() {
                    let mut w = BufWriter::new(&s);
                    let _ = wire::write_frame(&mut w, &Message::Pong { observed: from });
                }
            }
            froms
        });
        let ping = Message::Ping { overlay_port: None };
        let t = Duration::from_secs(3);
        let src: IpAddr = "127.0.0.9".parse().unwrap();
        let reply = request_from(Some(src), addr, &ping, t, None, None).unwrap();
        assert!(matches!(reply, Message::Pong { observed } if observed.ip() == src));
        request_with(addr, &ping, t, None, None).unwrap();
        let froms = server.join().unwrap();
        assert_eq!(froms, vec![src, "127.0.0.1".parse::<IpAddr>().unwrap()]);
    }

    /// A member that opens its receive window a little at a time must not
    /// hold a sender past the request's deadline: the write counts too.
    #[test]
    fn a_trickling_reader_cannot_stretch_a_request_past_its_deadline() {
        use socket2::{Domain, Socket, Type};
        const TIMEOUT: Duration = Duration::from_millis(500);
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        // Small, so the frame below is far larger than what the kernel
        // buffers on both sides take at once.
        sock.set_recv_buffer_size(4096).unwrap();
        let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
        sock.bind(&bind.into()).unwrap();
        sock.listen(1).unwrap();
        let listener: TcpListener = sock.into();
        let addr = listener.local_addr().unwrap();
        // Reads 4 KiB every 5 ms (enough to keep each write moving well
        // inside any per-write timeout, far too slow for the frame to fit
        // in the deadline), for at most 4 s.
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let end = Instant::now() + Duration::from_secs(4);
            let mut buf = [0u8; 4096];
            while Instant::now() < end {
                match std::io::Read::read(&mut s, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        // About 3 MB: far more than the reader takes within the deadline
        // (the codec's list caps are for decoding; a sender is not held to
        // them here).
        let msg = Message::MemberList {
            members: vec!["127.0.0.1:1".parse().unwrap(); 250_000],
        };
        let start = Instant::now();
        let result = request(addr, &msg, TIMEOUT, None);
        let took = start.elapsed();
        assert!(
            matches!(result, Err(RequestError::TimedOut(_))),
            "got {result:?}"
        );
        assert!(took < TIMEOUT * 3, "the request took {took:?}");
        server.join().unwrap();
    }
}
