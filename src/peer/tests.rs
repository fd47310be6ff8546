//! Connection-level tests: whole `Swarm`s (listener, reader and writer
//! threads, hash pool) talking peerwire over loopback TCP, every torrent in
//! a `MemStorage`, no disk and no node loop. The little the node loop does
//! for a download (apply hash results) is done here by one thread per node.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Receiver;

use super::listener::Listener;
use super::{RateLimits, Swarm};
use crate::core::{InfoHash, PeerId, PieceGeometry};
use crate::storage::{HashPool, HashResult, MemStorage, PieceHashes, PieceStore};
use crate::swarm::torrent::{HashVerdict, TorrentState};
use crate::wire::peer::{id, Handshake, HANDSHAKE_LEN};

const PIECE_LEN: u64 = 32 * 1024;
/// Four whole pieces and a short one, whose last block is short too.
const TOTAL_LEN: u64 = 4 * PIECE_LEN + 20_000;
const INFO_HASH: InfoHash = InfoHash([0x11; 20]);
/// Long enough for a loaded machine; a passing run takes well under a second.
const PATIENCE: Duration = Duration::from_secs(30);
const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Torrent {
    data: Vec<u8>,
    hashes: Arc<PieceHashes>,
}

impl Torrent {
    fn new(seed: u64) -> Torrent {
        let mut rng = fastrand::Rng::with_seed(seed);
        let data: Vec<u8> = (0..TOTAL_LEN).map(|_| rng.u8(..)).collect();
        let expected = data
            .chunks(PIECE_LEN as usize)
            .map(|p| {
                use sha1::{Digest, Sha1};
                Sha1::digest(p).into()
            })
            .collect();
        Torrent {
            data,
            hashes: Arc::new(PieceHashes {
                expected,
                geometry: Self::geometry(),
            }),
        }
    }

    fn geometry() -> PieceGeometry {
        PieceGeometry::new(TOTAL_LEN, PIECE_LEN).expect("a valid geometry")
    }
}

/// What the node loop reports of a hash result, for the tests to wait on.
#[derive(Debug)]
enum Event {
    Hashed(HashResult),
    Banned(SocketAddr),
    Completed,
}

/// One node's peer layer: its swarm, listener and hash pool.
struct Node {
    swarm: Arc<Swarm>,
    store: Arc<MemStorage>,
    listener: Option<Listener>,
    addr: SocketAddr,
    pool: Option<HashPool>,
    applier: Option<JoinHandle<()>>,
    events: Receiver<Event>,
}

impl Node {
    /// A node holding `contents` (claimed verified: a seeder), or nothing.
    fn start(t: &Torrent, contents: Option<&[u8]>, seed: u64) -> Node {
        let store = Arc::new(match contents {
            Some(bytes) => MemStorage::with_contents(PIECE_LEN, bytes),
            None => MemStorage::new(PIECE_LEN, TOTAL_LEN),
        });
        let (hash_tx, hash_rx) = crossbeam_channel::unbounded();
        let pool = HashPool::start(store.clone(), t.hashes.clone(), 2, hash_tx);
        let our_id = PeerId::generate();
        let mut state = TorrentState::new(Torrent::geometry(), our_id, 4, seed);
        if contents.is_some() {
            for piece in 0..Torrent::geometry().num_pieces() {
                state.resume_piece(piece);
            }
        }
        let (listener, addr) = Listener::bind(LOOPBACK, 0).unwrap();
        state.listen_port = addr.port();
        let swarm = Swarm::new(
            state,
            store.clone(),
            INFO_HASH,
            our_id,
            16,
            RateLimits::default(),
            pool.submitter(),
        );
        let listener = Listener::start(listener, swarm.clone()).unwrap();
        let (events_tx, events) = crossbeam_channel::unbounded();
        let applied = swarm.clone();
        // Ends when the pool's workers (the result senders) are gone.
        let applier = std::thread::spawn(move || {
            for r in hash_rx {
                let verdict = HashVerdict {
                    piece: r.piece as u32,
                    ok: r.ok,
                };
                let outcome = applied.state.lock().on_hash_result(verdict);
                let _ = events_tx.send(Event::Hashed(r));
                for addr in outcome.banned {
                    let _ = events_tx.send(Event::Banned(addr));
                }
                if outcome.completed {
                    let _ = events_tx.send(Event::Completed);
                }
            }
        });
        Node {
            swarm,
            store,
            listener: Some(listener),
            addr,
            pool: Some(pool),
            applier: Some(applier),
            events,
        }
    }

    /// Waits for the first event `want` accepts; panics after [`PATIENCE`].
    fn wait_for(&self, what: &str, want: impl Fn(&Event) -> bool) -> Event {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.events.recv_timeout(left) {
                Ok(e) if want(&e) => return e,
                Ok(_) => {}
                Err(_) => panic!("no {what} within {PATIENCE:?}"),
            }
        }
    }

    fn wait_complete(&self) {
        self.wait_for("completion", |e| matches!(e, Event::Completed));
    }

    /// Stops the node as the node loop does and returns what it stored.
    fn stop(mut self) -> Vec<u8> {
        self.swarm.shutdown(Duration::from_secs(5));
        self.listener.take().expect("running").stop();
        self.pool.take().expect("running").shutdown();
        self.applier.take().expect("running").join().unwrap();
        self.store.flush().unwrap();
        // SAFETY: every connection thread was joined: nothing writes.
        unsafe { self.store.contents() }
    }
}

#[test]
fn a_leecher_downloads_every_piece_from_a_seeder() {
    let t = Torrent::new(1);
    let seeder = Node::start(&t, Some(&t.data), 2);
    let leecher = Node::start(&t, None, 3);
    assert!(leecher.swarm.dial(seeder.addr));
    leecher.wait_complete();
    {
        let s = leecher.swarm.state.lock();
        assert!(s.is_complete());
        assert_eq!(s.stats.downloaded, TOTAL_LEN);
        assert_eq!(s.stats.hash_failures, 0);
    }
    assert!(
        leecher.stop() == t.data,
        "the leecher's bytes are the source's"
    );
    assert!(seeder.stop() == t.data);
}

#[test]
fn several_leechers_download_from_one_seeder() {
    let t = Torrent::new(4);
    let seeder = Node::start(&t, Some(&t.data), 5);
    let leechers: Vec<Node> = (0..3).map(|i| Node::start(&t, None, 10 + i)).collect();
    for l in &leechers {
        assert!(l.swarm.dial(seeder.addr));
    }
    for l in &leechers {
        l.wait_complete();
    }
    for l in leechers {
        assert!(
            l.stop() == t.data,
            "a leecher's bytes differ from the source"
        );
    }
    let uploaded = seeder.swarm.state.lock().stats.uploaded;
    assert!(uploaded >= TOTAL_LEN, "the seeder sent {uploaded} bytes");
    seeder.stop();
}

#[test]
fn a_piece_that_fails_its_hash_bans_its_sole_sender() {
    let t = Torrent::new(6);
    let mut corrupt = t.data.clone();
    corrupt[PIECE_LEN as usize + 100] ^= 0xff;
    let liar = Node::start(&t, Some(&corrupt), 7);
    let leecher = Node::start(&t, None, 8);
    assert!(leecher.swarm.dial(liar.addr));
    let failed = leecher.wait_for("a failed hash", |e| matches!(e, Event::Hashed(r) if !r.ok));
    assert!(
        matches!(failed, Event::Hashed(r) if r.piece == 1),
        "{failed:?}"
    );
    let banned = leecher.wait_for("a ban", |e| matches!(e, Event::Banned(_)));
    assert!(
        matches!(banned, Event::Banned(a) if a == liar.addr),
        "{banned:?}"
    );
    {
        let s = leecher.swarm.state.lock();
        assert!(!s.is_complete());
        assert!(!s.have().get(1), "the bad piece is not kept");
        assert_eq!(s.stats.hash_failures, 1);
    }
    leecher.stop();
    liar.stop();
}

#[test]
fn a_frame_over_the_limit_drops_the_peer_on_its_prefix() {
    let t = Torrent::new(9);
    let seeder = Node::start(&t, Some(&t.data), 10);
    let mut raw = TcpStream::connect(seeder.addr).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.write_all(&Handshake::new(INFO_HASH, PeerId([0x22; 20])).encode())
        .unwrap();
    let mut theirs = [0u8; HANDSHAKE_LEN];
    raw.read_exact(&mut theirs).unwrap();
    assert_eq!(Handshake::decode(&theirs).unwrap().info_hash, INFO_HASH);
    // A length prefix one past the largest frame, a piece id, and no
    // payload: the seeder must not wait for the rest.
    let over = seeder.swarm.max_frame + 1;
    raw.write_all(&over.to_be_bytes()).unwrap();
    raw.write_all(&[id::PIECE]).unwrap();
    let mut sink = Vec::new();
    match raw.read_to_end(&mut sink) {
        Ok(_) => {}
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
    assert_eq!(seeder.swarm.state.lock().num_peers(), 0, "still registered");
    seeder.stop();
}

#[test]
fn a_full_store_is_reported_and_the_peer_is_kept() {
    let t = Torrent::new(11);
    let seeder = Node::start(&t, Some(&t.data), 12);
    let leecher = Node::start(&t, None, 13);
    leecher.store.set_full(true);
    assert!(leecher.swarm.dial(seeder.addr));
    let failure = leecher
        .swarm
        .storage_failures()
        .recv_timeout(PATIENCE)
        .expect("the full store is reported");
    assert!(failure.to_string().contains("No space left"), "{failure}");
    {
        // Our fault, not the peer's: it stays, and nothing was counted.
        let s = leecher.swarm.state.lock();
        assert_eq!(s.num_peers(), 1);
        assert_eq!(s.have().count(), 0);
        assert_eq!(s.stats.hash_failures, 0);
    }
    leecher.stop();
    seeder.stop();
}
