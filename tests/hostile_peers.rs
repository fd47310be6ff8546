//! A running seeder against hostile peers on loopback: malformed and
//! oversized frames, out-of-range requests and announcements, unrequested
//! garbage data, idle connections past `--max-peers`, and a request storm.
//! The tests check that the seeder drops each offender within a bound (and
//! says why in its log), keeps its file intact, stays alive, and keeps
//! serving correct data; one control test shows that odd but legal traffic
//! is not dropped; a flood of idle handshaken peers must not shut out a
//! real leecher, and one source address gets at most its cap of slots and
//! of spare handshake threads. The hostile peers are raw `TcpStream`s (see
//! `support::hostile`); everything stays on 127.0.0.0/8.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use btnode::core::{Metainfo, BLOCK_SIZE};
use btnode::peer::handshake::HANDSHAKE_TIMEOUT;
use btnode::swarm::torrent::MAX_QUEUED_UPLOADS;
use btnode::wire::peer::{id, max_frame_len, BlockRequest, Message, MAX_REQUEST_LEN};
use btnode::wire::pex::OUR_UT_PEX_ID;
use support::hostile::{self, closed_now, frame, hostile_id, RawPeer};
use support::*;

const PIECE_LEN: u32 = 32 * 1024;
/// Eleven pieces, the last one short (5000 bytes): the bitfield has two
/// bytes and five spare bits.
const FILE_LEN: usize = 10 * PIECE_LEN as usize + 5000;
/// How long the seeder may take to drop an offender.
const DROP_DEADLINE: Duration = Duration::from_secs(10);
/// One protocol exchange on loopback.
const STEP: Duration = Duration::from_secs(10);
const LONG: Duration = Duration::from_secs(120);

/// A seeder of one file, started and verified complete.
struct Seeded {
    // Fields drop in order: the process is killed before its folder goes.
    seeder: Node,
    tmp: tempfile::TempDir,
    torrent: PathBuf,
    meta: Metainfo,
    content: Vec<u8>,
    addr: String,
}

impl Seeded {
    fn start(extra: &[&str]) -> Seeded {
        let tmp = tempdir();
        let file = tmp.path().join("seed/file.bin");
        make_file(&file, FILE_LEN, 0x5eed);
        let content = std::fs::read(&file).unwrap();
        let torrent = tmp.path().join("file.torrent");
        create_torrent(&file, &torrent, &["--piece-length", &PIECE_LEN.to_string()]);
        let meta = btnode::storage::torrent_file::read(&torrent).unwrap();
        assert_eq!(meta.num_pieces(), 11);
        let seeder = Node::start(&torrent, &tmp.path().join("seed"), extra);
        let addr = seeder.addr();
        assert!(
            wait_until(LONG, || seeder.is_complete()),
            "the seeder never verified its file; log:\n{}",
            seeder.log()
        );
        Seeded {
            tmp,
            torrent,
            meta,
            content,
            seeder,
            addr,
        }
    }

    fn file(&self) -> PathBuf {
        self.tmp.path().join("seed/file.bin")
    }

    fn num_pieces(&self) -> u32 {
        self.meta.num_pieces() as u32
    }

    /// A handshaken raw peer the seeder has registered (it sent its bitfield).
    fn peer(&self, n: u8) -> RawPeer {
        let mut p = RawPeer::connect(&self.addr, self.meta.info_hash, hostile_id(n));
        assert!(
            p.wait_for(STEP, |m| matches!(m, Message::Bitfield(_)))
                .is_some(),
            "the seeder sent no bitfield to a fresh peer; log:\n{}",
            self.seeder.log()
        );
        p
    }

    fn assert_alive(&mut self) {
        assert!(
            matches!(self.seeder.child.try_wait(), Ok(None)),
            "the seeder exited: {:?}; log:\n{}",
            self.seeder.child.try_wait(),
            self.seeder.log()
        );
    }

    /// The seeder's log says it ended the connection from `peer` for `reason`.
    fn assert_logged_drop(&self, peer: SocketAddr, reason: &str) {
        let prefix = format!("{peer}: connection ended:");
        let logged = |log: &str| {
            log.lines()
                .any(|l| l.contains(&prefix) && l.contains(reason))
        };
        assert!(
            wait_until(STEP, || logged(&self.seeder.log())),
            "no {prefix:?} line naming {reason:?} in the seeder's log:\n{}",
            self.seeder.log()
        );
    }

    /// A fresh well-behaved raw peer gets every block of `pieces` intact.
    fn assert_serves(&self, n: u8, pieces: impl IntoIterator<Item = u32>) {
        let mut p = self.peer(n);
        assert!(p.get_unchoked(STEP), "a fresh peer was never unchoked");
        for piece in pieces {
            let start = piece * PIECE_LEN;
            let piece_len = self.meta.piece_len(piece as usize);
            for begin in (0..piece_len).step_by(BLOCK_SIZE as usize) {
                let len = (piece_len - begin).min(BLOCK_SIZE);
                let data = p
                    .fetch_block(piece, begin, len, STEP)
                    .unwrap_or_else(|| panic!("block {piece}/{begin} never came"));
                let at = (start + begin) as usize;
                assert!(
                    data == self.content[at..at + len as usize],
                    "block {piece}/{begin} served with wrong bytes"
                );
            }
        }
    }

    /// A real btnode leecher downloads the whole file and gets the same bytes.
    fn assert_leecher_completes(&self, name: &str) {
        let dir = self.tmp.path().join(name);
        let mut leecher = Node::start(
            &self.torrent,
            &dir,
            &["--peer", &self.addr, "--exit-on-complete"],
        );
        assert_eq!(
            leecher.wait_exit(LONG),
            Some(0),
            "leecher log:\n{}\nseeder log:\n{}",
            leecher.log(),
            self.seeder.log()
        );
        assert_eq!(sha256(&dir.join("file.bin")), sha256(&self.file()));
    }

    /// For each case, a fresh peer sends the bytes after its handshake and
    /// the seeder must close the connection within [`DROP_DEADLINE`],
    /// logging the reason. Then the seeder is alive and serves correctly.
    fn assert_each_dropped(&mut self, cases: &[(&str, Vec<u8>, String)]) {
        for (n, (case, bytes, reason)) in cases.iter().enumerate() {
            let mut p = self.peer(n as u8 + 1);
            let local = p.local_addr();
            p.send_raw(bytes)
                .unwrap_or_else(|e| panic!("{case}: cannot send: {e}"));
            let started = Instant::now();
            assert!(
                p.closed_within(DROP_DEADLINE),
                "{case}: the seeder kept the connection open; log:\n{}",
                self.seeder.log()
            );
            eprintln!("{case}: dropped after {:?}", started.elapsed());
            self.assert_logged_drop(local, reason);
            self.assert_alive();
        }
        self.assert_serves(200, [0, self.num_pieces() - 1]);
        self.assert_alive();
    }
}

fn encoded(msg: Message) -> Vec<u8> {
    let mut out = Vec::new();
    msg.encode(&mut out);
    out
}

fn request(index: u32, begin: u32, length: u32) -> Message {
    Message::Request(BlockRequest {
        index,
        begin,
        length,
    })
}

/// A length prefix of 4 GiB, and a piece frame over the largest frame the
/// seeder accepts, are refused on the prefix alone: the seeder neither
/// allocates for them nor waits for their payload.
#[test]
fn oversized_length_prefixes_are_dropped() {
    let mut s = Seeded::start(&[]);
    let big: u32 = (1 << 20) + 100;
    assert!(big > max_frame_len(s.meta.num_pieces()));
    let mut huge_piece = Vec::new();
    huge_piece.extend_from_slice(&big.to_be_bytes());
    huge_piece.push(id::PIECE);
    huge_piece.extend_from_slice(&[0; 8]);
    // Only a little of the promised payload: the seeder must not wait for it.
    huge_piece.extend_from_slice(&[0xAB; 4096]);
    s.assert_each_dropped(&[
        (
            "length prefix 0xFFFFFFFF",
            vec![0xff, 0xff, 0xff, 0xff, id::PIECE],
            format!("frame of {} bytes", u32::MAX),
        ),
        (
            "length prefix 0xFFFFFFFF with a request id",
            vec![0xff, 0xff, 0xff, 0xff, id::REQUEST],
            format!("frame of {} bytes", u32::MAX),
        ),
        (
            "piece of 1 MiB + 100",
            huge_piece,
            format!("frame of {big} bytes"),
        ),
    ]);
}

/// Requests are checked against the torrent before anything else, choked
/// or not: past the last piece, past the end of a piece, empty, or over
/// 128 KiB.
#[test]
fn requests_outside_the_torrent_or_over_128_kib_are_dropped() {
    let mut s = Seeded::start(&[]);
    let n = s.num_pieces();
    let last_len = s.meta.piece_len(n as usize - 1);
    let outside = "request outside the torrent".to_string();
    s.assert_each_dropped(&[
        (
            "request for piece num_pieces",
            encoded(request(n, 0, BLOCK_SIZE)),
            outside.clone(),
        ),
        (
            "request for piece u32::MAX",
            encoded(request(u32::MAX, 0, BLOCK_SIZE)),
            outside.clone(),
        ),
        (
            "request past the end of the short last piece",
            encoded(request(n - 1, 0, last_len + 1)),
            outside.clone(),
        ),
        (
            "request whose begin + length overflows u32",
            encoded(request(0, u32::MAX - 10, BLOCK_SIZE)),
            outside.clone(),
        ),
        (
            "request of 0 bytes",
            encoded(request(0, 0, 0)),
            outside.clone(),
        ),
        (
            "request of 128 KiB + 1",
            encoded(request(0, 0, MAX_REQUEST_LEN + 1)),
            format!(
                "request for {} bytes is over the limit",
                MAX_REQUEST_LEN + 1
            ),
        ),
        (
            "request of 4 GiB - 1",
            encoded(request(0, 0, u32::MAX)),
            format!("request for {} bytes is over the limit", u32::MAX),
        ),
        (
            "request with a 4-byte body",
            frame(id::REQUEST, &[0, 0, 0, 0]),
            "message id 6 has a bad length 4".to_string(),
        ),
    ]);
}

/// BEP 3: "drop the connection if they receive bitfields that are not of
/// the correct size, or if the bitfield has any of the spare bits set".
/// (A bitfield after HAVEs is tolerated and merged on purpose, and a full
/// one from a seed ends the connection as both seeds; neither is sent here.)
#[test]
fn malformed_bitfields_are_dropped() {
    let mut s = Seeded::start(&[]);
    let wrong = "bitfield of the wrong size".to_string();
    s.assert_each_dropped(&[
        (
            "bitfield one byte too long",
            encoded(Message::Bitfield(vec![0x80, 0x00, 0x00])),
            wrong.clone(),
        ),
        (
            "bitfield one byte too short",
            encoded(Message::Bitfield(vec![0x80])),
            wrong.clone(),
        ),
        (
            "empty bitfield",
            encoded(Message::Bitfield(vec![])),
            wrong.clone(),
        ),
        (
            "bitfield with the lowest spare bit set",
            encoded(Message::Bitfield(vec![0x80, 0x01])),
            wrong.clone(),
        ),
        (
            "bitfield with the first spare bit set (piece 11 of 11)",
            encoded(Message::Bitfield(vec![0x00, 0x10])),
            wrong.clone(),
        ),
    ]);
}

#[test]
fn have_for_a_piece_that_does_not_exist_is_dropped() {
    let mut s = Seeded::start(&[]);
    let missing = "have for a piece that does not exist".to_string();
    let n = s.num_pieces();
    s.assert_each_dropped(&[
        (
            "have num_pieces",
            encoded(Message::Have(n)),
            missing.clone(),
        ),
        (
            "have u32::MAX",
            encoded(Message::Have(u32::MAX)),
            missing.clone(),
        ),
        (
            "have with a 2-byte body",
            frame(id::HAVE, &[0, 0]),
            "message id 4 has a bad length 2".to_string(),
        ),
    ]);
}

/// Piece data that could never answer one of our requests (outside the
/// torrent, off a block boundary, of the wrong length, or too short to
/// have a header) ends the connection before any byte reaches the disk.
#[test]
fn piece_messages_no_request_could_match_are_dropped() {
    let mut s = Seeded::start(&[]);
    let file_before = sha256(&s.file());
    let n = s.num_pieces();
    let never = "piece message for a block we never request".to_string();
    let piece = |index, begin, len: usize| {
        encoded(Message::Piece {
            index,
            begin,
            data: vec![0xAB; len],
        })
    };
    let cases = [
        ("piece past the last one", piece(n, 0, 16384), never.clone()),
        (
            "piece off a block boundary",
            piece(0, 1, 16384),
            never.clone(),
        ),
        (
            "block shorter than a block",
            piece(0, 0, 16383),
            never.clone(),
        ),
        (
            "block past the end of its piece",
            piece(0, PIECE_LEN, 16384),
            never.clone(),
        ),
        (
            "short last block sent full size",
            piece(n - 1, 0, 16384),
            never.clone(),
        ),
        (
            "piece frame shorter than its header",
            frame(id::PIECE, &[0, 0, 0, 0]),
            "short piece message".to_string(),
        ),
    ];
    s.assert_each_dropped(&cases);
    assert_eq!(sha256(&s.file()), file_before);
}

/// Everything here is odd but legal or deliberately ignored (unknown ids,
/// a bencode bomb as extension handshake, garbage peer exchange, a cancel
/// for nothing): the connection stays up and the whole file comes over it
/// intact. This is the control for the tests that expect a drop.
#[test]
fn odd_but_tolerated_messages_keep_the_connection_and_the_data() {
    let mut s = Seeded::start(&[]);
    let mut p = s.peer(1);
    let local = p.local_addr();
    let mut burst = Vec::new();
    for m in [
        Message::KeepAlive,
        Message::Bitfield(vec![0x80, 0x00]),
        Message::Have(1),
        Message::Have(1),
        Message::Port(6881),
        // Nested lists 10 000 deep: a recursive decoder without a depth
        // limit would overflow its stack and take the process down.
        Message::Extended {
            ext_id: 0,
            payload: vec![b'l'; 10_000],
        },
        Message::Extended {
            ext_id: OUR_UT_PEX_ID,
            payload: b"\xffd5:added not bencode".to_vec(),
        },
        Message::Extended {
            ext_id: 77,
            payload: vec![0; 1000],
        },
        Message::Cancel(BlockRequest {
            index: 0,
            begin: 0,
            length: BLOCK_SIZE,
        }),
        Message::NotInterested,
    ] {
        m.encode(&mut burst);
    }
    burst.extend_from_slice(&frame(99, &[0x5A; 1000]));
    p.send_raw(&burst).unwrap();
    assert!(
        p.get_unchoked(STEP),
        "never unchoked; log:\n{}",
        s.seeder.log()
    );
    for piece in 0..s.num_pieces() {
        let piece_len = s.meta.piece_len(piece as usize);
        for begin in (0..piece_len).step_by(BLOCK_SIZE as usize) {
            let len = (piece_len - begin).min(BLOCK_SIZE);
            let data = p
                .fetch_block(piece, begin, len, STEP)
                .unwrap_or_else(|| panic!("block {piece}/{begin}; log:\n{}", s.seeder.log()));
            let at = (piece * PIECE_LEN + begin) as usize;
            assert!(
                data == s.content[at..at + len as usize],
                "block {piece}/{begin}"
            );
        }
    }
    assert_eq!(closed_now(&p.stream), Some(false));
    assert!(
        !s.seeder
            .log()
            .contains(&format!("{local}: connection ended")),
        "the seeder dropped a peer that did nothing wrong"
    );
    s.assert_alive();
}

/// Blocks the seeder never asked for, full of garbage but shaped like real
/// blocks of pieces it has, are read and thrown away: its file is unchanged
/// and it goes on serving the right bytes.
#[test]
fn unrequested_garbage_piece_data_changes_nothing() {
    let mut s = Seeded::start(&[]);
    let before = sha256(&s.file());
    let n = s.num_pieces();
    let last_len = s.meta.piece_len(n as usize - 1);
    let blocks = [
        (0, 0, BLOCK_SIZE),
        (0, BLOCK_SIZE, BLOCK_SIZE),
        (5, 0, BLOCK_SIZE),
        (n - 1, 0, last_len),
    ];
    let mut p = s.peer(1);
    let wasted_before = s.seeder.stat_u64("wasted").unwrap_or(0);
    for (index, begin, len) in blocks {
        p.send(&Message::Piece {
            index,
            begin,
            data: vec![0xAB; len as usize],
        });
    }
    // The seeder has read all of it and counted it as waste.
    let garbage: u64 = blocks.iter().map(|b| b.2 as u64).sum();
    assert!(
        wait_until(STEP, || s
            .seeder
            .stat_u64("wasted")
            .is_some_and(|w| w >= wasted_before + garbage)),
        "the seeder did not discard the garbage: wasted {:?}; log:\n{}",
        s.seeder.stat_u64("wasted"),
        s.seeder.log()
    );
    assert_eq!(sha256(&s.file()), before, "the seeder's file changed");
    // The same connection is served the real bytes of those blocks.
    assert!(p.get_unchoked(STEP));
    for (index, begin, len) in blocks {
        let data = p.fetch_block(index, begin, len, STEP).unwrap();
        let at = (index * PIECE_LEN + begin) as usize;
        assert!(
            data == s.content[at..at + len as usize],
            "block {index}/{begin} served corrupted after the garbage"
        );
    }
    s.assert_leecher_completes("leech");
    assert_eq!(sha256(&s.file()), before, "the seeder's file changed");
    s.assert_alive();
}

/// Silent connections fill `--max-peers`; past the limit the seeder closes
/// new ones at once, and it closes the silent ones at its handshake
/// timeout, so a real leecher that arrives meanwhile gets the file.
#[test]
fn idle_connections_past_max_peers_do_not_starve_a_leecher() {
    const MAX_PEERS: usize = 4;
    let mut s = Seeded::start(&["--max-peers", &MAX_PEERS.to_string()]);
    // Kept open by us for the whole test: only the seeder may close them.
    let holders = hostile::idle_connections(&s.addr, MAX_PEERS);
    let extras = hostile::idle_connections(&s.addr, 4);
    assert!(
        wait_until(STEP, || extras.iter().all(|c| closed_now(c) == Some(true))),
        "connections past --max-peers were not refused"
    );
    assert!(
        holders.iter().all(|c| closed_now(c) == Some(false)),
        "a silent connection was closed before the handshake timeout"
    );
    // The slots are full: even a real handshake is refused now.
    assert!(
        RawPeer::try_connect(&s.addr, s.meta.info_hash, hostile_id(1)).is_none(),
        "the seeder answered a handshake past --max-peers"
    );
    let opened = Instant::now();
    let dir = s.tmp.path().join("leech");
    let mut leecher = Node::start(&s.torrent, &dir, &["--peer", &s.addr, "--exit-on-complete"]);
    assert!(
        wait_until(HANDSHAKE_TIMEOUT + STEP, || holders
            .iter()
            .all(|c| closed_now(c) == Some(true))),
        "silent connections outlived the handshake timeout; seeder log:\n{}",
        s.seeder.log()
    );
    eprintln!(
        "silent connections closed {:?} after the leecher started",
        opened.elapsed()
    );
    assert_eq!(
        leecher.wait_exit(LONG),
        Some(0),
        "leecher log:\n{}\nseeder log:\n{}",
        leecher.log(),
        s.seeder.log()
    );
    assert_eq!(sha256(&dir.join("file.bin")), sha256(&s.file()));
    s.assert_alive();
    drop((holders, extras));
}

/// Thousands of requests in one write, far past what the seeder queues per
/// peer: the peer is dropped as a request storm, the seeder stays up and
/// serves a real leecher.
#[test]
fn request_storm_drops_the_peer_and_the_seeder_keeps_serving() {
    let mut s = Seeded::start(&[]);
    let mut p = s.peer(1);
    let local = p.local_addr();
    assert!(
        p.get_unchoked(STEP),
        "never unchoked; log:\n{}",
        s.seeder.log()
    );
    let count = 4 * MAX_QUEUED_UPLOADS;
    let n = s.num_pieces();
    let mut storm = Vec::with_capacity(count * 17);
    for i in 0..count as u32 {
        request(i % n, 0, s.meta.piece_len((i % n) as usize).min(BLOCK_SIZE)).encode(&mut storm);
    }
    // The seeder may drop us before it has read all of it: a failed write
    // is the expected outcome then.
    let sent = p.send_raw(&storm);
    eprintln!(
        "storm of {count} requests ({} bytes): {sent:?}",
        storm.len()
    );
    assert!(
        p.closed_within(DROP_DEADLINE),
        "the seeder kept a peer that queued {count} requests; log:\n{}",
        s.seeder.log()
    );
    s.assert_logged_drop(local, "too many queued requests");
    s.assert_alive();
    s.assert_leecher_completes("leech");
    s.assert_serves(2, [0, n - 1]);
    s.assert_alive();
}

/// A peer that sends its handshake one byte a second is cut off once
/// HANDSHAKE_TIMEOUT has passed for the whole handshake (a socket read
/// timeout alone restarts with every byte, which let 68 bytes take 68 × 10 s
/// and a few such peers hold every `--max-peers` slot for minutes).
#[test]
fn a_trickled_handshake_is_cut_at_the_handshake_timeout() {
    use std::io::{Read, Write};
    let s = Seeded::start(&["--max-peers", "1"]);
    let hs = hostile::plain_handshake(s.meta.info_hash, hostile_id(1));
    let mut c = std::net::TcpStream::connect(&s.addr).unwrap();
    c.set_write_timeout(Some(STEP)).unwrap();
    let started = Instant::now();
    let limit = HANDSHAKE_TIMEOUT + Duration::from_secs(5);
    let mut sent = 0;
    let mut cut = false;
    while !cut && sent < hs.len() - 1 && started.elapsed() < limit {
        if c.write_all(&hs[sent..sent + 1]).is_err() {
            cut = true;
            break;
        }
        sent += 1;
        // Paces the attack at a byte a second, and notices a close at once.
        cut = wait_until(Duration::from_secs(1), || closed_now(&c) == Some(true));
    }
    if !cut {
        // Show what the open slot costs: with --max-peers 1 a real peer is
        // turned away, while the trickler's handshake is still answered.
        let legit_refused =
            RawPeer::try_connect(&s.addr, s.meta.info_hash, hostile_id(2)).is_none();
        let answered = c.write_all(&hs[sent..]).is_ok() && {
            c.set_read_timeout(Some(STEP)).unwrap();
            let mut reply = [0u8; 68];
            c.read_exact(&mut reply).is_ok()
        };
        panic!(
            "after {:?} ({sent} of 68 bytes, one a second) the seeder still waited for \
             the handshake (HANDSHAKE_TIMEOUT is {HANDSHAKE_TIMEOUT:?}); a real peer was \
             refused meanwhile: {legit_refused}; the seeder then answered the trickled \
             handshake: {answered}",
            started.elapsed()
        );
    }
    assert!(started.elapsed() <= limit + STEP);
}

/// 500 handshaken peers that then say nothing fill every one of the
/// default 50 slots (from 50 source addresses other than the leecher's
/// 127.0.0.1, so per-address caps do not thin the flood); a real leecher
/// arriving meanwhile must still be served, and soon: a peer silent since
/// its handshake has only a short grace before it may be evicted for a
/// newcomer. The flood stays connected throughout: the leecher must finish
/// while at least 40 of its connections are still open.
#[test]
fn a_flood_of_idle_handshaken_peers_does_not_shut_out_a_real_leecher() {
    let mut s = Seeded::start(&[]);
    let sources: Vec<std::net::IpAddr> = (2..52u8).map(|i| [127, 0, 0, i].into()).collect();
    let started = Instant::now();
    let flood = hostile::idle_handshaken_flood(
        s.addr.parse().unwrap(),
        s.meta.info_hash,
        &sources,
        500,
        Duration::from_secs(60),
    );
    eprintln!(
        "flood: {} of 500 handshakes answered in {:?}",
        flood.len(),
        started.elapsed()
    );
    assert!(
        flood.len() >= 50,
        "the flood did not fill the 50 slots: {} answered",
        flood.len()
    );
    let dir = s.tmp.path().join("leech");
    let leech_started = Instant::now();
    let mut leecher = Node::start(&s.torrent, &dir, &["--peer", &s.addr, "--exit-on-complete"]);
    // Generous for loopback (the leecher needs well under a second once it
    // has a slot, plus one dial retry); the old 10 s grace for every
    // newcomer made it about 15 s.
    let bound = Duration::from_secs(12);
    let code = leecher.wait_exit(bound);
    let took = leech_started.elapsed();
    let open = flood.iter().filter(|c| closed_now(c) != Some(true)).count();
    eprintln!(
        "leecher exited {code:?} {took:?} after it started (time to complete during the \
         flood); {open} flood connections still open"
    );
    assert_eq!(
        code,
        Some(0),
        "the leecher was not served within {bound:?} during the flood; leecher log:\n{}",
        leecher.log()
    );
    assert_eq!(sha256(&dir.join("file.bin")), sha256(&s.file()));
    assert!(
        open >= 40,
        "the flood was not holding the slots: {open} open"
    );
    s.assert_alive();
    drop(flood);
}

/// One source address (127.0.0.2) opens far more handshaken idle
/// connections than the per-address cap: it keeps at most the cap, so it
/// cannot take every `--max-peers` slot, and a real leecher from 127.0.0.1
/// is served meanwhile while that address's connections stay open.
#[test]
fn one_address_gets_at_most_its_cap_of_peer_slots() {
    let mut s = Seeded::start(&[]);
    let cap = btnode::peer::listener::per_ip_cap(50);
    assert!(cap < 50, "the cap ({cap}) must leave room for others");
    let from: std::net::IpAddr = [127, 0, 0, 2].into();
    let attempts = 4 * 50;
    let flood = hostile::idle_handshaken_flood(
        s.addr.parse().unwrap(),
        s.meta.info_hash,
        &[from],
        attempts,
        Duration::from_secs(60),
    );
    let open = || flood.iter().filter(|c| closed_now(c) != Some(true)).count();
    // Connections answered and then dropped close on their own; poll until
    // the seeder's choice settles.
    let capped = wait_until(STEP, || open() <= cap);
    eprintln!(
        "one address: {} of {attempts} handshakes answered, {} kept open (cap {cap})",
        flood.len(),
        open()
    );
    assert!(
        capped,
        "127.0.0.2 holds {} peer connections, past the per-address cap of {cap}",
        open()
    );
    assert!(open() >= 1, "the address got no slot at all");
    s.assert_leecher_completes("leech");
    assert!(
        open() >= 1,
        "the capped address's connections were evicted: the leecher had free slots"
    );
    s.assert_alive();
    drop(flood);
}

/// With every `--max-peers` slot taken, newcomers handshake on a few spare
/// threads before they may evict an idle peer. Raw connections from one
/// address that never send a handshake get at most half of those (the
/// rest are closed at once), so a real newcomer from another address still
/// gets its handshake answered while they wait out the handshake timeout.
#[test]
fn one_silent_address_cannot_take_every_spare_handshake_thread() {
    use btnode::peer::connection::{handshake_spare, spare_per_ip};
    let s = Seeded::start(&[]);
    let addr: SocketAddr = s.addr.parse().unwrap();
    let sources: Vec<std::net::IpAddr> = (3..53u8).map(|i| [127, 0, 0, i].into()).collect();
    let full = hostile::idle_handshaken_flood(
        addr,
        s.meta.info_hash,
        &sources,
        50,
        Duration::from_secs(30),
    );
    assert_eq!(full.len(), 50, "the 50 slots were not filled");
    let (spare, per_ip) = (handshake_spare(50), spare_per_ip(50));
    let from: std::net::IpAddr = [127, 0, 0, 2].into();
    let opened = Instant::now();
    let raw: Vec<std::net::TcpStream> = (0..spare)
        .filter_map(|_| hostile::connect_from(from, addr).ok())
        .collect();
    assert_eq!(raw.len(), spare);
    let closed = || raw.iter().filter(|c| closed_now(c) == Some(true)).count();
    let refused = wait_until(HANDSHAKE_TIMEOUT / 2, || closed() >= spare - per_ip);
    let answered = RawPeer::try_connect(&s.addr, s.meta.info_hash, hostile_id(1)).is_some();
    eprintln!(
        "{} of {spare} silent connections from {from} closed at once ({:?}); a newcomer \
         from 127.0.0.1 answered: {answered}",
        closed(),
        opened.elapsed()
    );
    assert!(
        opened.elapsed() < HANDSHAKE_TIMEOUT,
        "too slow to tell refusal from the handshake timeout"
    );
    assert!(
        refused,
        "{from} holds {} spare handshake threads, past its {per_ip}",
        spare - closed()
    );
    assert!(
        answered,
        "a newcomer's handshake was refused while {from} held spare threads"
    );
    drop((full, raw));
}
