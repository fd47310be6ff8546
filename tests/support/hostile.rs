//! Test peers that misbehave on purpose: a seeder that answers every
//! request with garbage, and raw handshakes with the wrong info-hash.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use btnode::core::{InfoHash, PeerId};
use btnode::wire::peer::{decode_frame, Handshake, Message, HANDSHAKE_LEN};

/// A listener that claims every piece and serves corrupt blocks.
pub struct CorruptSeeder {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    pub blocks_served: Arc<AtomicUsize>,
}

impl CorruptSeeder {
    pub fn start(info_hash: InfoHash, num_pieces: usize) -> CorruptSeeder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let blocks_served = Arc::new(AtomicUsize::new(0));
        let (c, b) = (connections.clone(), blocks_served.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                c.fetch_add(1, Ordering::SeqCst);
                let b = b.clone();
                std::thread::spawn(move || {
                    let _ = serve_garbage(stream, info_hash, num_pieces, &b);
                });
            }
        });
        CorruptSeeder {
            addr,
            connections,
            blocks_served,
        }
    }
}

fn serve_garbage(
    s: TcpStream,
    info_hash: InfoHash,
    num_pieces: usize,
    served: &AtomicUsize,
) -> std::io::Result<()> {
    let mut id = [b'X'; 20];
    id[..8].copy_from_slice(b"-EV0001-");
    let hello = Handshake::new(info_hash, PeerId(id)).encode();
    serve_requests(s, hello, num_pieces, |r| {
        served.fetch_add(1, Ordering::SeqCst);
        Some(vec![0xAB; r.length as usize])
    })
}

/// A scripted seeder's connection: reads the peer's handshake, answers
/// with `hello`, a full bitfield and an unchoke, then answers each request
/// with the block `block` gives (`None` ends the connection).
fn serve_requests(
    mut s: TcpStream,
    hello: [u8; HANDSHAKE_LEN],
    num_pieces: usize,
    mut block: impl FnMut(&btnode::wire::peer::BlockRequest) -> Option<Vec<u8>>,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut hs = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut hs)?;
    s.write_all(&hello)?;
    let mut out = Vec::new();
    let bits = btnode::core::Bitfield::full(num_pieces);
    Message::Bitfield(bits.as_bytes().to_vec()).encode(&mut out);
    Message::Unchoke.encode(&mut out);
    s.write_all(&out)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some((msg, used))) = decode_frame(&buf, 1 << 20) {
            buf.drain(..used);
            let Message::Request(r) = msg else { continue };
            let Some(data) = block(&r) else {
                return Ok(());
            };
            let mut reply = Vec::new();
            Message::Piece {
                index: r.index,
                begin: r.begin,
                data,
            }
            .encode(&mut reply);
            s.write_all(&reply)?;
        }
    }
}

/// Connects to `addr` with `info_hash` and reports whether the node
/// answered with a handshake (true) or closed the connection (false).
pub fn handshake_answered(addr: &str, info_hash: InfoHash) -> bool {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&Handshake::new(info_hash, PeerId([7; 20])).encode())
        .unwrap();
    let mut reply = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut reply).is_ok()
}

/// A handshake with no extension bit: the node then sends us no BEP 10
/// handshake, so everything it sends is plain BEP 3.
pub fn plain_handshake(info_hash: InfoHash, peer_id: PeerId) -> [u8; HANDSHAKE_LEN] {
    Handshake {
        reserved: [0; 8],
        info_hash,
        peer_id,
    }
    .encode()
}

/// A peer id of our own, distinct per `n` (the node refuses duplicates).
pub fn hostile_id(n: u8) -> PeerId {
    let mut id = [b'H'; 20];
    id[..8].copy_from_slice(b"-HS0001-");
    id[19] = n;
    PeerId(id)
}

/// One framed message with any id and payload, valid or not.
pub fn frame(msg_id: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.extend_from_slice(&(1 + payload.len() as u32).to_be_bytes());
    out.push(msg_id);
    out.extend_from_slice(payload);
    out
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Whether the other side has closed `s`, checked without waiting long and
/// without consuming data: `Some(true)` closed (EOF or reset), `Some(false)`
/// open, `None` data is waiting (open, and talking).
pub fn closed_now(s: &TcpStream) -> Option<bool> {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut b = [0u8; 1];
    match s.peek(&mut b) {
        Ok(0) => Some(true),
        Ok(_) => None,
        Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => Some(false),
        Err(_) => Some(true),
    }
}

/// Raw TCP connections to `addr` that never send a byte.
pub fn idle_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5)).unwrap()
        })
        .collect()
}

/// A hand-driven peerwire connection: raw bytes out, decoded messages in.
/// Every read and write is bounded in time.
pub struct RawPeer {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// What a bounded wait for a message ended with.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Message(Message),
    TimedOut,
    /// The node closed the connection (EOF or reset).
    Closed,
}

impl RawPeer {
    /// Connects and sends a handshake (no extension bit) with `peer_id`;
    /// `None` if the node closed the connection instead of answering.
    pub fn try_connect(addr: &str, info_hash: InfoHash, peer_id: PeerId) -> Option<RawPeer> {
        let mut s =
            TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5)).unwrap();
        s.set_nodelay(true).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&plain_handshake(info_hash, peer_id)).ok()?;
        let mut reply = [0u8; HANDSHAKE_LEN];
        s.read_exact(&mut reply).ok()?;
        let theirs = Handshake::decode(&reply).expect("the node answered with a bad handshake");
        assert_eq!(
            theirs.info_hash, info_hash,
            "the node answered another torrent"
        );
        Some(RawPeer {
            stream: s,
            buf: Vec::new(),
        })
    }

    /// As [`RawPeer::try_connect`], panicking if the node does not answer.
    pub fn connect(addr: &str, info_hash: InfoHash, peer_id: PeerId) -> RawPeer {
        RawPeer::try_connect(addr, info_hash, peer_id)
            .unwrap_or_else(|| panic!("{addr} closed the connection instead of a handshake"))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().unwrap()
    }

    /// Writes raw bytes (bounded by the 10 s write timeout).
    pub fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send(&mut self, msg: &Message) {
        let mut out = Vec::new();
        msg.encode(&mut out);
        self.send_raw(&out)
            .unwrap_or_else(|e| panic!("sending {msg:?}: {e}"));
    }

    /// The next message from the node, waiting at most `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Next {
        let deadline = std::time::Instant::now() + timeout;
        let mut chunk = [0u8; 65536];
        loop {
            match decode_frame(&self.buf, 1 << 20) {
                Ok(Some((msg, used))) => {
                    self.buf.drain(..used);
                    return Next::Message(msg);
                }
                Ok(None) => {}
                Err(e) => panic!("the node sent an undecodable frame: {e}"),
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Next::TimedOut;
            }
            self.stream
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return Next::Closed,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Next::Closed,
            }
        }
    }

    /// Reads until a message matching `want` arrives (others are skipped);
    /// `None` on timeout or close.
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        mut want: impl FnMut(&Message) -> bool,
    ) -> Option<Message> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.next(left) {
                Next::Message(m) if want(&m) => return Some(m),
                Next::Message(_) => {}
                Next::TimedOut | Next::Closed => return None,
            }
        }
    }

    /// Reads and discards whatever the node sends until it closes the
    /// connection: true if it did so within `timeout`.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut chunk = [0u8; 65536];
        self.buf.clear();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return false;
            }
            self.stream
                .set_read_timeout(Some(left.min(Duration::from_millis(200))))
                .unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if is_timeout(&e) || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Sends `interested` and waits for the node's `unchoke`.
    pub fn get_unchoked(&mut self, timeout: Duration) -> bool {
        self.send(&Message::Interested);
        self.wait_for(timeout, |m| matches!(m, Message::Unchoke))
            .is_some()
    }

    /// Requests one block (once unchoked) and returns its payload.
    pub fn fetch_block(
        &mut self,
        index: u32,
        begin: u32,
        length: u32,
        timeout: Duration,
    ) -> Option<Vec<u8>> {
        self.send(&Message::Request(btnode::wire::peer::BlockRequest {
            index,
            begin,
            length,
        }));
        match self.wait_for(timeout, |m| {
            matches!(m, Message::Piece { index: i, begin: b, .. } if *i == index && *b == begin)
        })? {
            Message::Piece { data, .. } => Some(data),
            _ => unreachable!(),
        }
    }
}

/// A listener that accepts every connection and never sends a byte: a
/// node dialing it waits in its handshake until the handshake timeout.
pub struct HangListener {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
}

impl HangListener {
    pub fn start() -> HangListener {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let a = accepted.clone();
        std::thread::spawn(move || {
            // Held (never read, never written) until the test process ends.
            let mut held = Vec::new();
            for stream in listener.incoming().take(1000) {
                let Ok(stream) = stream else { continue };
                a.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        HangListener { addr, accepted }
    }

    /// Polls until something has connected to it, within `timeout`.
    pub fn wait_contacted(&self, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.accepted.load(Ordering::SeqCst) > 0)
    }
}

/// A seeder that serves the real content, except that every block of the
/// pieces `corrupt` picks has its bits flipped.
pub struct FlippingSeeder {
    pub addr: SocketAddr,
    pub blocks_served: Arc<AtomicUsize>,
    pub corrupt_served: Arc<AtomicUsize>,
}

impl FlippingSeeder {
    pub fn start(
        info_hash: InfoHash,
        content: Vec<u8>,
        piece_len: u32,
        corrupt: fn(u32) -> bool,
    ) -> FlippingSeeder {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let blocks_served = Arc::new(AtomicUsize::new(0));
        let corrupt_served = Arc::new(AtomicUsize::new(0));
        let (b, c) = (blocks_served.clone(), corrupt_served.clone());
        let content = Arc::new(content);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(100) {
                let Ok(stream) = stream else { continue };
                let (b, c, content) = (b.clone(), c.clone(), content.clone());
                std::thread::spawn(move || {
                    let _ = serve_flipped(stream, info_hash, &content, piece_len, corrupt, &b, &c);
                });
            }
        });
        FlippingSeeder {
            addr,
            blocks_served,
            corrupt_served,
        }
    }
}

fn serve_flipped(
    s: TcpStream,
    info_hash: InfoHash,
    content: &[u8],
    piece_len: u32,
    corrupt: fn(u32) -> bool,
    served: &AtomicUsize,
    corrupt_served: &AtomicUsize,
) -> std::io::Result<()> {
    let mut id = [b'F'; 20];
    id[..8].copy_from_slice(b"-FL0001-");
    let hello = plain_handshake(info_hash, PeerId(id));
    let num_pieces = content.len().div_ceil(piece_len as usize);
    serve_requests(s, hello, num_pieces, |r| {
        let at = r.index as usize * piece_len as usize + r.begin as usize;
        let mut data = content.get(at..at + r.length as usize)?.to_vec();
        if corrupt(r.index) {
            data.iter_mut().for_each(|b| *b ^= 0x5a);
            corrupt_served.fetch_add(1, Ordering::SeqCst);
        }
        served.fetch_add(1, Ordering::SeqCst);
        Some(data)
    })
}

/// Connects to `addr` from source address `from` (e.g. 127.0.0.2).
pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(from, 0).into())?;
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    Ok(sock.into())
}

/// Opens up to `count` connections to `addr` from the source addresses in
/// turn, each sending a plain handshake with its own peer id; keeps (and
/// returns) those the node answered. Bounded by `count` and `within`.
/// The kept connections never send anything else: idle peers.
pub fn idle_handshaken_flood(
    addr: SocketAddr,
    info_hash: InfoHash,
    sources: &[std::net::IpAddr],
    count: usize,
    within: Duration,
) -> Vec<TcpStream> {
    let started = std::time::Instant::now();
    let mut kept = Vec::new();
    for n in 0..count {
        if started.elapsed() >= within {
            break;
        }
        let Ok(mut s) = connect_from(sources[n % sources.len()], addr) else {
            continue;
        };
        let mut id = [b'I'; 20];
        id[..8].copy_from_slice(b"-ID0001-");
        id[16..].copy_from_slice(&(n as u32).to_be_bytes());
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        if s.write_all(&plain_handshake(info_hash, PeerId(id)))
            .is_err()
        {
            continue;
        }
        let mut reply = [0u8; HANDSHAKE_LEN];
        if s.read_exact(&mut reply).is_ok() {
            kept.push(s);
        }
    }
    kept
}
