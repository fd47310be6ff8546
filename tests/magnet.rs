//! Magnet links with real processes on loopback: a leecher that has only
//! the link finds the seeder through the overlay (or the link's tracker),
//! fetches the metadata (BEP 9), saves it as a `.torrent` and downloads;
//! hostile metadata peers (a liar, a 1 GiB claim, one that never answers)
//! cost it nothing but time. Interop: libtorrent fetches the metadata from
//! btnode, and btnode from libtorrent and aria2 seeders (skipped when not
//! installed, failures under `BTNODE_REQUIRE_PEERS=1`).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use btnode::core::{InfoHash, Magnet, Metainfo, PeerId};
use btnode::wire::metadata::{MetadataMessage, OUR_UT_METADATA_ID};
use btnode::wire::peer::{decode_frame, ExtendedHandshake, Handshake, Message, HANDSHAKE_LEN};
use support::*;

const T: Duration = Duration::from_secs(90);

struct Seeded {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    torrent: PathBuf,
    magnet: String,
    meta: Metainfo,
    content: PathBuf,
}

fn seeded(len: usize, extra: &[&str]) -> Seeded {
    let tmp = tempdir();
    let root = tmp.path().to_path_buf();
    let content = root.join("seed/data.bin");
    make_file(&content, len, 4242);
    let torrent = root.join("data.torrent");
    let mut args = vec!["--piece-length", "65536"];
    args.extend(extra);
    let magnet = create_magnet(&content, &torrent, &args);
    let meta = btnode::storage::torrent_file::read(&torrent).unwrap();
    Seeded {
        _tmp: tmp,
        root,
        torrent,
        magnet,
        meta,
        content,
    }
}

/// Waits until `node` is complete and its copy matches the seed's bytes,
/// and the `.torrent` it saved describes the same torrent.
fn assert_downloaded(node: &Node, s: &Seeded, dir: &Path) {
    let done = wait_until(T, || node.is_complete());
    assert!(done, "leecher never completed; log:\n{}", node.log());
    assert_eq!(sha256(&dir.join("data.bin")), sha256(&s.content));
    let saved = dir.join(format!("{}.torrent", s.meta.info_hash.to_hex()));
    let again = btnode::storage::torrent_file::read(&saved).unwrap();
    assert_eq!(again.info_hash, s.meta.info_hash);
    assert_eq!(&again.info_bytes[..], &s.meta.info_bytes[..]);
}

#[test]
fn create_prints_a_link_that_names_the_torrent() {
    let s = seeded(100_000, &["--tracker", "http://127.0.0.1:1/announce"]);
    let m = Magnet::parse(&s.magnet).unwrap();
    assert_eq!(m.info_hash, s.meta.info_hash);
    assert_eq!(m.name.as_deref(), Some("data.bin"));
    assert_eq!(m.trackers, ["http://127.0.0.1:1/announce"]);
}

#[test]
fn a_malformed_link_is_a_usage_error() {
    let o = Command::new(bin())
        .args(["-t", "magnet:?xt=urn:btih:nothex", "-d", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("info-hash"), "{err}");
}

#[test]
fn a_leecher_with_only_the_link_and_one_overlay_node_downloads() {
    let s = seeded(1_500_000, &[]);
    let boot = OverlayNode::start(&[], 0);
    let b = boot.addr.to_string();
    let _seeder = Node::start(&s.torrent, &s.root.join("seed"), &["-b", &b]);
    let dir = s.root.join("leech");
    let leecher = Node::start(Path::new(&s.magnet), &dir, &["-b", &b]);
    assert_downloaded(&leecher, &s, &dir);
    assert!(
        leecher.log().contains("metadata verified"),
        "{}",
        leecher.log()
    );
    // Started again with the link alone and no peer anywhere: the saved
    // .torrent stands in for the metadata and the data on disk verifies.
    drop(leecher);
    drop(_seeder);
    let again = Node::start(Path::new(&s.magnet), &dir, &[]);
    assert!(
        wait_until(T, || again.is_complete()),
        "restart did not find its data; log:\n{}",
        again.log()
    );
    assert!(again.log().contains("metadata of"), "{}", again.log());
}

/// An info dictionary of several 16 KiB pieces (300 files with long
/// names), with two seeders in the overlay: assembled in order, verified,
/// saved byte for byte, and every file downloaded. (Which seeder serves
/// which piece is the policy's unit tests' concern.)
#[test]
fn metadata_of_several_pieces_comes_from_two_seeders() {
    let tmp = tempdir();
    let root = tmp.path().to_path_buf();
    let folder = root.join("seed1/many");
    for i in 0..300 {
        let name = format!("{i:03}-{}.bin", "long-file-name-".repeat(6));
        make_file(&folder.join(name), 1000 + i, i as u64);
    }
    let torrent = root.join("many.torrent");
    let link = create_magnet(&folder, &torrent, &["--piece-length", "16384"]);
    let meta = btnode::storage::torrent_file::read(&torrent).unwrap();
    assert!(
        meta.info_bytes.len() > 2 * 16384,
        "only {} bytes of metadata",
        meta.info_bytes.len()
    );
    // The second seeder's copy of the data.
    let copy = root.join("seed2/many");
    std::fs::create_dir_all(&copy).unwrap();
    for e in std::fs::read_dir(&folder).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    let boot = OverlayNode::start(&[], 0);
    let b = boot.addr.to_string();
    let seeders: Vec<Node> = ["seed1", "seed2"]
        .iter()
        .map(|d| Node::start(&torrent, &root.join(d), &["-b", &b]))
        .collect();
    let dir = root.join("leech");
    let leecher = Node::start(Path::new(&link), &dir, &["-b", &b]);
    let done = wait_until(T, || leecher.is_complete());
    assert!(done, "leecher never completed; log:\n{}", leecher.log());
    assert_eq!(tree_hashes(&dir.join("many")), tree_hashes(&folder));
    let saved = dir.join(format!("{}.torrent", meta.info_hash.to_hex()));
    let again = btnode::storage::torrent_file::read(&saved).unwrap();
    assert_eq!(&again.info_bytes[..], &meta.info_bytes[..]);
    drop(seeders);
}

#[test]
fn a_leecher_finds_the_seeder_through_the_links_tracker() {
    let tracker = Tracker::start();
    let s = seeded(800_000, &["--tracker", &tracker.url]);
    let _seeder = Node::start(
        &s.torrent,
        &s.root.join("seed"),
        &["--discovery-mode", "tracker"],
    );
    let dir = s.root.join("leech");
    let leecher = Node::start(
        Path::new(&s.magnet),
        &dir,
        &["--discovery-mode", "tracker", "--announce-interval", "2"],
    );
    assert_downloaded(&leecher, &s, &dir);
    if std::env::var("MAGNET_DEBUG").is_ok() {
        eprintln!("{}", leecher.log());
    }
}

/// How a fake metadata peer misbehaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fake {
    /// Serves metadata of the right size with one byte flipped.
    Liar,
    /// Announces a 1 GiB `metadata_size`.
    Huge,
    /// Announces the right size and never answers a request.
    Silent,
}

/// A peer on a loopback port that handshakes for `info_hash` and then
/// behaves as `kind` says; counts the requests it got.
fn fake_peer(kind: Fake, info_hash: InfoHash, info: Arc<[u8]>) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (info, counter) = (info.clone(), counter.clone());
            std::thread::spawn(move || {
                let _ = serve_fake(stream, kind, info_hash, &info, &counter);
            });
        }
    });
    (addr, asked)
}

fn serve_fake(
    mut stream: TcpStream,
    kind: Fake,
    info_hash: InfoHash,
    info: &[u8],
    asked: &AtomicUsize,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut hs = [0u8; HANDSHAKE_LEN];
    stream.read_exact(&mut hs)?;
    stream.write_all(&Handshake::new(info_hash, PeerId([9; 20])).encode())?;
    let size = if kind == Fake::Huge {
        1 << 30
    } else {
        info.len() as u64
    };
    let ours = ExtendedHandshake {
        ut_metadata: Some(OUR_UT_METADATA_ID),
        metadata_size: Some(size),
        ..Default::default()
    };
    let mut out = Vec::new();
    Message::ExtendedHandshake(ours).encode(&mut out);
    stream.write_all(&out)?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Ok(Some((msg, used))) = decode_frame(&buf, 1 << 20) {
            buf.drain(..used);
            let Message::Metadata {
                msg: MetadataMessage::Request { piece },
                ..
            } = msg
            else {
                continue;
            };
            asked.fetch_add(1, Ordering::SeqCst);
            if kind != Fake::Liar {
                continue;
            }
            let start = piece as usize * 16384;
            let mut data = info[start..(start + 16384).min(info.len())].to_vec();
            data[0] ^= 0xff;
            let reply = MetadataMessage::Data {
                piece,
                total_size: info.len() as u64,
                data,
            };
            let mut out = Vec::new();
            Message::Metadata {
                ext_id: OUR_UT_METADATA_ID,
                msg: reply,
            }
            .encode(&mut out);
            stream.write_all(&out)?;
        }
    }
}

/// A liar, a peer claiming 1 GiB of metadata and a silent one are all the
/// leecher knows at first: the liar is banned, the 1 GiB claim refused,
/// the silent one times out; then an honest seeder appears in the overlay
/// and the download completes.
#[test]
fn hostile_metadata_peers_are_refused_and_an_honest_one_serves() {
    let s = seeded(600_000, &[]);
    let ih = s.meta.info_hash;
    let info = s.meta.info_bytes.clone();
    let (liar, lies) = fake_peer(Fake::Liar, ih, info.clone());
    let (huge, _) = fake_peer(Fake::Huge, ih, info.clone());
    let (silent, silenced) = fake_peer(Fake::Silent, ih, info);
    let mut link = Magnet::parse(&s.magnet).unwrap();
    link.peers = vec![liar.to_string(), huge.to_string(), silent.to_string()];
    let boot = OverlayNode::start(&[], 0);
    let b = boot.addr.to_string();
    let dir = s.root.join("leech");
    let leecher = Node::start(Path::new(&link.to_uri()), &dir, &["-b", &b]);
    let banned = format!("banning {liar}");
    assert!(
        wait_until(T, || leecher.log().contains(&banned)),
        "liar not banned; log:\n{}",
        leecher.log()
    );
    assert!(lies.load(Ordering::SeqCst) >= 1);
    assert!(
        wait_until(T, || leecher.log().contains("over the 16777216 byte cap")),
        "1 GiB claim not refused; log:\n{}",
        leecher.log()
    );
    assert!(
        wait_until(T, || silenced.load(Ordering::SeqCst) >= 1
            && leecher.log().contains(&format!("{silent} did not answer"))),
        "silent peer never timed out; log:\n{}",
        leecher.log()
    );
    assert!(!leecher.is_complete());
    let _seeder = Node::start(&s.torrent, &s.root.join("seed"), &["-b", &b]);
    assert_downloaded(&leecher, &s, &dir);
}

// ---- interop ---------------------------------------------------------

struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn interop_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/interop")
        .join(name)
}

#[test]
fn libtorrent_given_only_the_link_fetches_the_metadata_from_btnode() {
    if !require("libtorrent") {
        return;
    }
    let s = seeded(1_000_000, &[]);
    let seeder = Node::start(&s.torrent, &s.root.join("seed"), &[]);
    let dir = s.root.join("lt");
    std::fs::create_dir_all(&dir).unwrap();
    let mut lt = Client(
        Command::new("/usr/bin/python3")
            .arg(interop_script("lt_magnet.py"))
            .arg(&s.magnet)
            .arg(&dir)
            .arg(free_port().to_string())
            .arg(seeder.addr())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut ok = false;
    wait_until(T, || match lt.0.try_wait() {
        Ok(Some(st)) => {
            ok = st.success();
            true
        }
        _ => false,
    });
    assert!(
        ok,
        "libtorrent did not complete; btnode log:\n{}",
        seeder.log()
    );
    assert_eq!(sha256(&dir.join("data.bin")), sha256(&s.content));
}

fn btnode_fetches_from(s: &Seeded, seed_addr: &str) {
    let mut link = Magnet::parse(&s.magnet).unwrap();
    link.peers = vec![seed_addr.to_string()];
    let dir = s.root.join("leech");
    let leecher = Node::start(
        Path::new(&link.to_uri()),
        &dir,
        &["--discovery-mode", "overlay"],
    );
    assert_downloaded(&leecher, s, &dir);
}

#[test]
fn btnode_fetches_the_metadata_from_a_libtorrent_seeder() {
    if !require("libtorrent") {
        return;
    }
    let s = seeded(1_000_000, &[]);
    let port = free_port();
    let _lt = Client(
        Command::new("/usr/bin/python3")
            .arg(interop_script("lt_client.py"))
            .arg("seed")
            .arg(&s.torrent)
            .arg(s.root.join("seed"))
            .arg(port.to_string())
            .args(["--timeout", "120"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    btnode_fetches_from(&s, &format!("127.0.0.1:{port}"));
}

#[test]
fn btnode_fetches_the_metadata_from_an_aria2_seeder() {
    if !require("aria2c") {
        return;
    }
    let s = seeded(1_000_000, &[]);
    let port = free_port();
    let _aria2 = Client(
        Command::new("aria2c")
            .arg("--dir")
            .arg(s.root.join("seed"))
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--console-log-level=error",
                "--summary-interval=0",
                "--seed-ratio=0.0",
                "--check-integrity=true",
                &format!("--listen-port={port}"),
            ])
            .arg(&s.torrent)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    btnode_fetches_from(&s, &format!("127.0.0.1:{port}"));
}
