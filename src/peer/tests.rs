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
use super::router::Router;
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
/// The listen address of a node that only dials.
const LOOPBACK_ANY: SocketAddr = SocketAddr::new(LOOPBACK, 0);

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
    applier_stop: Option<crossbeam_channel::Sender<()>>,
    events: Receiver<Event>,
}

impl Node {
    /// A node holding `contents` (claimed verified: a seeder), or nothing.
    fn start(t: &Torrent, contents: Option<&[u8]>, seed: u64) -> Node {
        let (listener, addr) = Listener::bind(LOOPBACK, 0).unwrap();
        let mut node = Node::build(t, contents, seed, INFO_HASH, addr);
        node.listener = Some(Listener::start(listener, node.swarm.clone()).unwrap());
        node
    }

    /// A node for torrent `info_hash` whose connections come through a
    /// listener shared with other torrents, at `addr`.
    fn start_routed(
        t: &Torrent,
        contents: Option<&[u8]>,
        seed: u64,
        info_hash: InfoHash,
        router: &Router,
        addr: SocketAddr,
    ) -> Node {
        let node = Node::build(t, contents, seed, info_hash, addr);
        router.add(node.swarm.clone());
        node
    }

    fn build(
        t: &Torrent,
        contents: Option<&[u8]>,
        seed: u64,
        info_hash: InfoHash,
        addr: SocketAddr,
    ) -> Node {
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
        state.listen_port = addr.port();
        let swarm = Swarm::new(
            state,
            store.clone(),
            info_hash,
            our_id,
            16,
            RateLimits::default(),
            pool.submitter(),
        );
        let (events_tx, events) = crossbeam_channel::unbounded();
        let applied = swarm.clone();
        // Ends at `stop`: the swarm it holds keeps a result sender alive.
        let (applier_stop, stopped) = crossbeam_channel::bounded::<()>(0);
        let applier = std::thread::spawn(move || loop {
            let r = crossbeam_channel::select! {
                recv(hash_rx) -> r => match r {
                    Ok(r) => r,
                    Err(_) => return,
                },
                recv(stopped) -> _ => return,
            };
            {
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
            listener: None,
            addr,
            pool: Some(pool),
            applier: Some(applier),
            applier_stop: Some(applier_stop),
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
        if let Some(l) = self.listener.take() {
            l.stop();
        }
        self.pool.take().expect("running").shutdown();
        self.applier_stop.take();
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

/// Sends a handshake for `info_hash` and returns the info-hash of the
/// answer, or None if the connection was closed without one.
fn handshake_with(addr: SocketAddr, info_hash: InfoHash) -> Option<InfoHash> {
    let mut raw = TcpStream::connect(addr).unwrap();
    raw.set_read_timeout(Some(PATIENCE)).unwrap();
    raw.write_all(&Handshake::new(info_hash, PeerId([0x33; 20])).encode())
        .unwrap();
    let mut theirs = [0u8; HANDSHAKE_LEN];
    match raw.read_exact(&mut theirs) {
        Ok(()) => Some(Handshake::decode(&theirs).unwrap().info_hash),
        Err(e) => {
            assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                ),
                "closed, not timed out: {e}"
            );
            None
        }
    }
}

#[test]
fn one_listener_routes_each_handshake_to_its_torrent() {
    let (a, b) = (Torrent::new(20), Torrent::new(21));
    let (hash_a, hash_b) = (InfoHash([0xaa; 20]), InfoHash([0xbb; 20]));
    let router = Router::new();
    let (socket, addr) = Listener::bind(LOOPBACK, 0).unwrap();
    let listener = Listener::start_routed(socket, router.clone(), 32).unwrap();
    let seed_a = Node::start_routed(&a, Some(&a.data), 22, hash_a, &router, addr);
    let seed_b = Node::start_routed(&b, Some(&b.data), 23, hash_b, &router, addr);
    assert_eq!(router.len(), 2);

    assert_eq!(handshake_with(addr, hash_a), Some(hash_a));
    assert_eq!(handshake_with(addr, hash_b), Some(hash_b));
    assert_eq!(
        handshake_with(addr, InfoHash([0xcc; 20])),
        None,
        "a torrent we do not hold is closed unanswered"
    );

    // A real download of the second torrent through the shared port.
    let leecher = Node::build(&b, None, 24, hash_b, LOOPBACK_ANY);
    assert!(leecher.swarm.dial(addr));
    leecher.wait_complete();
    assert!(leecher.stop() == b.data, "the bytes are torrent b's");

    // A removed torrent is no longer answered; the other still is.
    let removed = router.remove(&hash_a).expect("routed");
    assert!(Arc::ptr_eq(&removed, &seed_a.swarm));
    assert_eq!(handshake_with(addr, hash_a), None);
    assert_eq!(handshake_with(addr, hash_b), Some(hash_b));
    seed_a.stop();
    seed_b.stop();
    listener.stop();
}
