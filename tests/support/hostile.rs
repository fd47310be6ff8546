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
    mut s: TcpStream,
    info_hash: InfoHash,
    num_pieces: usize,
    served: &AtomicUsize,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut hs = [0u8; HANDSHAKE_LEN];
    s.read_exact(&mut hs)?;
    let mut id = [b'X'; 20];
    id[..8].copy_from_slice(b"-EV0001-");
    s.write_all(&Handshake::new(info_hash, PeerId(id)).encode())?;
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
            if let Message::Request(r) = msg {
                let mut reply = Vec::new();
                Message::Piece {
                    index: r.index,
                    begin: r.begin,
                    data: vec![0xAB; r.length as usize],
                }
                .encode(&mut reply);
                s.write_all(&reply)?;
                served.fetch_add(1, Ordering::SeqCst);
            }
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
