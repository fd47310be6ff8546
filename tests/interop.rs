//! btnode trading pieces with the BitTorrent clients people run: libtorrent
//! (python3-libtorrent), Transmission 3.00, aria2, through opentracker and
//! btnode's tracker; torrents made by mktorrent and transmission-create;
//! the real-world webtorrent fixtures; and a mixed swarm. Every transfer
//! ends in a sha256 comparison of the bytes on disk.
//!
//! A client that is not installed skips its test with a message, unless
//! `BTNODE_REQUIRE_PEERS=1` (CI), which turns the skip into a failure.
//! Transmission never dials loopback peers, so btnode dials it (`--peer`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use btnode::core::{InfoHash, Metainfo};
use btnode::tracker::client::ScrapeStats;
use support::*;

const T: Duration = Duration::from_secs(120);

/// A foreign client process, killed by PID and reaped on drop.
struct Client(Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Client {
    fn wait_success(&mut self, timeout: Duration) -> bool {
        let mut ok = false;
        wait_until(timeout, || match self.0.try_wait() {
            Ok(Some(s)) => {
                ok = s.success();
                true
            }
            _ => false,
        });
        ok
    }
}

fn lt_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lt_client.py")
}

fn libtorrent(mode: &str, torrent: &Path, dir: &Path, port: u16, peers: &[String]) -> Client {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(lt_script())
        .arg(mode)
        .arg(torrent)
        .arg(dir)
        .arg(port.to_string());
    for p in peers {
        cmd.args(["--peer", p]);
    }
    Client(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn transmission(torrent: &Path, dir: &Path, cfg: &Path, port: u16) -> Client {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::create_dir_all(cfg).unwrap();
    let child = Command::new("transmission-cli")
        .arg("-g")
        .arg(cfg)
        .arg("-w")
        .arg(dir)
        // -et: encryption tolerated (btnode does not speak MSE).
        .args(["-p", &port.to_string(), "-et"])
        .arg(torrent)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Client(child)
}

fn aria2(torrent: &Path, dir: &Path, port: u16, seed: bool) -> Client {
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new("aria2c");
    cmd.arg("--dir").arg(dir).args([
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--console-log-level=error",
        "--summary-interval=0",
        "--file-allocation=none",
        &format!("--listen-port={port}"),
    ]);
    if seed {
        cmd.args([
            "--seed-ratio=0.0",
            "--check-integrity=true",
            "--bt-seed-unverified=false",
        ]);
    } else {
        cmd.arg("--seed-time=0");
    }
    Client(
        cmd.arg(torrent)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Polls until every file of `meta` under `dir` matches the seed's bytes.
fn wait_same_tree(meta: &Metainfo, seed_dir: &Path, dir: &Path, timeout: Duration) -> bool {
    wait_until(timeout, || {
        meta.files.iter().all(|f| {
            let rel = f.relative_path();
            let got = dir.join(&rel);
            got.is_file()
                && std::fs::metadata(&got).map(|m| m.len()).ok() == Some(f.length)
                && sha256(&got) == sha256(&seed_dir.join(&rel))
        })
    })
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    torrent: PathBuf,
    meta: Metainfo,
}

fn single_file(len: usize, tracker: Option<&str>) -> Setup {
    let tmp = tempdir();
    let root = tmp.path().to_path_buf();
    let content = root.join("seed/payload.bin");
    make_file(&content, len, 99);
    let torrent = root.join("payload.torrent");
    let mut extra = vec!["--piece-length", "262144"];
    if let Some(t) = tracker {
        extra.extend(["--tracker", t]);
    }
    create_torrent(&content, &torrent, &extra);
    let meta = btnode::storage::torrent_file::read(&torrent).unwrap();
    Setup {
        _tmp: tmp,
        root,
        torrent,
        meta,
    }
}

fn same_file(s: &Setup, dir: &str) -> bool {
    let a = s.root.join("seed/payload.bin");
    let b = s.root.join(dir).join("payload.bin");
    b.is_file() && sha256(&a) == sha256(&b)
}

const TRACKERLESS: [&str; 2] = ["--discovery-mode", "tracker"];

#[test]
fn btnode_and_libtorrent_both_ways() {
    if !require("libtorrent") {
        return;
    }
    let s = single_file(5_000_000, None);
    // libtorrent seeds, btnode leeches.
    let port = free_port();
    let _lt = libtorrent("seed", &s.torrent, &s.root.join("seed"), port, &[]);
    let mut args = TRACKERLESS.to_vec();
    let peer = format!("127.0.0.1:{port}");
    args.extend(["--peer", &peer, "--exit-on-complete"]);
    let mut leecher = Node::start(&s.torrent, &s.root.join("from-lt"), &args);
    assert_eq!(leecher.wait_exit(T), Some(0), "{}", leecher.log());
    assert!(same_file(&s, "from-lt"));
    // btnode seeds, libtorrent leeches.
    let seeder = Node::start(&s.torrent, &s.root.join("seed"), &TRACKERLESS);
    let mut lt = libtorrent(
        "leech",
        &s.torrent,
        &s.root.join("to-lt"),
        free_port(),
        &[seeder.addr()],
    );
    assert!(lt.wait_success(T), "libtorrent did not complete");
    assert!(same_file(&s, "to-lt"));
}

#[test]
fn btnode_and_transmission_both_ways() {
    if !require("transmission-cli") {
        return;
    }
    let s = single_file(3_000_000, None);
    // Transmission seeds (it verifies the data first), btnode leeches.
    let port = free_port();
    let _tr = transmission(
        &s.torrent,
        &s.root.join("seed"),
        &s.root.join("tr-seed-cfg"),
        port,
    );
    let peer = format!("127.0.0.1:{port}");
    let mut args = TRACKERLESS.to_vec();
    args.extend(["--peer", &peer, "--exit-on-complete"]);
    let mut leecher = Node::start(&s.torrent, &s.root.join("from-tr"), &args);
    assert_eq!(leecher.wait_exit(T), Some(0), "{}", leecher.log());
    assert!(same_file(&s, "from-tr"));
    // btnode seeds and dials the Transmission leecher.
    let tport = free_port();
    let _leech = transmission(
        &s.torrent,
        &s.root.join("to-tr"),
        &s.root.join("tr-leech-cfg"),
        tport,
    );
    let tpeer = format!("127.0.0.1:{tport}");
    let mut args = TRACKERLESS.to_vec();
    args.extend(["--peer", &tpeer]);
    let _seeder = Node::start(&s.torrent, &s.root.join("seed"), &args);
    assert!(wait_same_tree(
        &s.meta,
        &s.root.join("seed"),
        &s.root.join("to-tr"),
        T
    ));
}

#[test]
fn btnode_and_aria2_both_ways_through_btnode_tracker() {
    if !require("aria2c") {
        return;
    }
    let tracker = Tracker::start();
    let s = single_file(4_000_000, Some(&tracker.url));
    // btnode seeds; aria2 finds it through the tracker.
    let seeder = Node::start(
        &s.torrent,
        &s.root.join("seed"),
        &["--discovery-mode", "tracker", "--announce-interval", "1"],
    );
    seeder.wait_port();
    let mut a = aria2(&s.torrent, &s.root.join("to-aria2"), free_port(), false);
    assert!(a.wait_success(T), "aria2 did not complete");
    assert!(same_file(&s, "to-aria2"));
    drop(seeder);
    // aria2 seeds, btnode leeches.
    let port = free_port();
    let _a = aria2(&s.torrent, &s.root.join("seed"), port, true);
    let peer = format!("127.0.0.1:{port}");
    let mut args = TRACKERLESS.to_vec();
    args.extend(["--peer", &peer, "--exit-on-complete"]);
    let mut leecher = Node::start(&s.torrent, &s.root.join("from-aria2"), &args);
    assert_eq!(leecher.wait_exit(T), Some(0), "{}", leecher.log());
    assert!(same_file(&s, "from-aria2"));
}

/// `btnode tracker` answers BEP 15 on its HTTP port: libtorrent and a
/// btnode leecher, given only the udp:// URL, find the btnode seeder, and
/// the UDP scrape counts the downloads. (aria2 speaks UDP to trackers only
/// through its DHT socket, which these tests keep off.)
#[test]
fn libtorrent_leeches_through_btnode_tracker_over_udp() {
    if !require("libtorrent") {
        return;
    }
    let tracker = Tracker::start();
    let url = tracker.url.replacen("http://", "udp://", 1);
    let s = single_file(3_000_000, Some(&url));
    let hash = s.meta.info_hash;
    let scrape = || scrape_counts(&url, hash);
    let seeder = Node::start(&s.torrent, &s.root.join("seed"), &TRACKERLESS);
    assert!(
        wait_until(Duration::from_secs(30), || scrape().complete >= 1),
        "the seeder's UDP announce never arrived; log:\n{}",
        seeder.log()
    );
    let mut lt = libtorrent("leech", &s.torrent, &s.root.join("lt"), free_port(), &[]);
    let mut leecher = Node::start(
        &s.torrent,
        &s.root.join("leech"),
        &["--discovery-mode", "tracker", "--exit-on-complete"],
    );
    assert_eq!(leecher.wait_exit(T), Some(0), "{}", leecher.log());
    assert!(lt.wait_success(T), "libtorrent did not complete over UDP");
    for dir in ["leech", "lt"] {
        assert!(same_file(&s, dir), "{dir}");
    }
    // Each client sends `completed` as it finishes, so both count.
    assert!(
        wait_until(Duration::from_secs(10), || scrape().downloaded >= 2),
        "completed downloads seen over UDP: {:?}",
        scrape()
    );
}

#[test]
fn libtorrent_and_aria2_leech_from_btnode_through_opentracker() {
    if !require("opentracker") || !require("libtorrent") || !require("aria2c") {
        return;
    }
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}/announce");
    let s = single_file(3_000_000, Some(&url));
    let _ot = opentracker(&s, port);
    let seeder = Node::start(
        &s.torrent,
        &s.root.join("seed"),
        &["--discovery-mode", "tracker"],
    );
    seeder.wait_port();
    let mut lt = libtorrent("leech", &s.torrent, &s.root.join("lt"), free_port(), &[]);
    let mut a = aria2(&s.torrent, &s.root.join("aria2"), free_port(), false);
    assert!(
        lt.wait_success(T),
        "libtorrent did not complete through opentracker"
    );
    assert!(
        a.wait_success(T),
        "aria2 did not complete through opentracker"
    );
    assert!(same_file(&s, "lt"));
    assert!(same_file(&s, "aria2"));
}

/// One torrent's counts from a scrape of `url` (zeros when it fails, so
/// a poll can wait for them to rise).
fn scrape_counts(url: &str, hash: InfoHash) -> ScrapeStats {
    btnode::tracker::client::scrape(url, &[hash], Duration::from_secs(5))
        .ok()
        .and_then(|m| m.get(&hash).copied())
        .unwrap_or_default()
}

/// opentracker on `port` (HTTP and UDP), serving only this setup's torrent
/// (Debian's build answers whitelisted info-hashes only).
fn opentracker(s: &Setup, port: u16) -> Client {
    let whitelist = s.root.join("whitelist");
    std::fs::write(&whitelist, format!("{}\n", s.meta.info_hash.to_hex())).unwrap();
    let ot = Client(
        Command::new("opentracker")
            .args([
                "-i",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-P",
                &port.to_string(),
            ])
            .arg("-w")
            .arg(&whitelist)
            .args(["-d", "/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    ot
}

/// UDP trackers (BEP 15) are what most public torrents list. btnode and
/// libtorrent meet through opentracker's UDP port alone, and opentracker's
/// UDP scrape sees btnode's `started` and `completed` events.
#[test]
fn btnode_and_libtorrent_meet_through_opentracker_over_udp() {
    if !require("opentracker") || !require("libtorrent") {
        return;
    }
    let port = free_port();
    let url = format!("udp://127.0.0.1:{port}/announce");
    let s = single_file(3_000_000, Some(&url));
    let _ot = opentracker(&s, port);
    let hash = s.meta.info_hash;
    let scrape = || scrape_counts(&url, hash);
    let seeder = Node::start(&s.torrent, &s.root.join("seed"), &TRACKERLESS);
    assert!(
        wait_until(Duration::from_secs(30), || scrape().complete >= 1),
        "the seeder's UDP announce never reached opentracker; log:\n{}",
        seeder.log()
    );
    let mut leecher = Node::start(
        &s.torrent,
        &s.root.join("leech"),
        &["--discovery-mode", "tracker", "--exit-on-complete"],
    );
    let mut lt = libtorrent("leech", &s.torrent, &s.root.join("lt"), free_port(), &[]);
    assert_eq!(leecher.wait_exit(T), Some(0), "{}", leecher.log());
    assert!(lt.wait_success(T), "libtorrent did not complete over UDP");
    assert!(same_file(&s, "leech"));
    assert!(same_file(&s, "lt"));
    assert!(
        wait_until(Duration::from_secs(10), || scrape().downloaded >= 1),
        "opentracker never counted a completed download: {:?}",
        scrape()
    );
}

#[test]
fn multi_file_torrent_with_empty_file_and_non_ascii_names_both_ways_with_libtorrent() {
    if !require("libtorrent") {
        return;
    }
    let tmp = tempdir();
    let root = tmp.path().join("seed/Ünïcødé álbum");
    make_file(&root.join("disc 1/trâck 01.bin"), 600_000, 1);
    make_file(&root.join("disc 1/深い/notes.txt"), 77, 2);
    make_file(&root.join("cover.jpg"), 300_000, 3);
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    let torrent = tmp.path().join("album.torrent");
    create_torrent(&root, &torrent, &["--piece-length", "32768"]);
    let meta = btnode::storage::torrent_file::read(&torrent).unwrap();
    let port = free_port();
    let _lt_seed = libtorrent("seed", &torrent, &tmp.path().join("seed"), port, &[]);
    let peer = format!("127.0.0.1:{port}");
    let mut args = TRACKERLESS.to_vec();
    args.extend(["--peer", &peer, "--exit-on-complete"]);
    let mut leecher = Node::start(&torrent, &tmp.path().join("from-lt"), &args);
    assert_eq!(leecher.wait_exit(T), Some(0), "{}", leecher.log());
    assert_eq!(
        tree_hashes(&tmp.path().join("from-lt/Ünïcødé álbum")),
        tree_hashes(&root)
    );
    drop(_lt_seed);
    let seeder = Node::start(&torrent, &tmp.path().join("seed"), &TRACKERLESS);
    let mut lt = libtorrent(
        "leech",
        &torrent,
        &tmp.path().join("to-lt"),
        free_port(),
        &[seeder.addr()],
    );
    assert!(lt.wait_success(T), "libtorrent did not complete");
    assert!(wait_same_tree(
        &meta,
        &tmp.path().join("seed"),
        &tmp.path().join("to-lt"),
        T
    ));
}

fn lt_hash(torrent: &Path) -> String {
    let out = Command::new("/usr/bin/python3")
        .arg(lt_script())
        .arg("hash")
        .arg(torrent)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn transmission_show_hash(torrent: &Path) -> String {
    let out = Command::new("transmission-show")
        .arg(torrent)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Hash:"))
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|| panic!("no hash in transmission-show output: {text}"))
}

#[test]
fn torrents_made_by_other_tools_and_by_btnode_agree_on_the_info_hash() {
    if !require("mktorrent") || !require("transmission-create") || !require("libtorrent") {
        return;
    }
    let tmp = tempdir();
    let dir = tmp.path().join("stuff");
    make_file(&dir.join("a.bin"), 300_000, 1);
    make_file(&dir.join("sub/b.bin"), 12_345, 2);
    // mktorrent and transmission-create → btnode agrees with the makers.
    let mk = tmp.path().join("mk.torrent");
    let st = Command::new("mktorrent")
        .args(["-a", "http://127.0.0.1:1/announce", "-l", "16", "-o"])
        .arg(&mk)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let tc = tmp.path().join("tc.torrent");
    let st = Command::new("transmission-create")
        .args(["-t", "http://127.0.0.1:1/announce", "-o"])
        .arg(&tc)
        .arg(&dir)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    for t in [&mk, &tc] {
        let ours = btnode::storage::torrent_file::read(t)
            .unwrap()
            .info_hash
            .to_hex();
        assert_eq!(ours, lt_hash(t), "{}", t.display());
        assert_eq!(ours, transmission_show_hash(t), "{}", t.display());
    }
    // btnode create → libtorrent and Transmission agree with btnode.
    for (name, src) in [("dir", dir.clone()), ("file", dir.join("a.bin"))] {
        let t = tmp.path().join(format!("bt-{name}.torrent"));
        let printed = create_torrent(&src, &t, &["--tracker", "http://127.0.0.1:1/announce"]);
        assert_eq!(lt_hash(&t), printed);
        assert_eq!(transmission_show_hash(&t), printed);
    }
}

fn fixtures() -> PathBuf {
    std::env::var_os("BTNODE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
}

#[test]
fn real_world_fixtures_are_seeded_by_btnode_to_libtorrent() {
    if !require("libtorrent") {
        return;
    }
    let web = fixtures().join("webtorrent");
    assert!(web.is_dir(), "fixtures missing at {}", web.display());
    let tmp = tempdir();
    // The payloads sit beside their torrents under the torrent's name.
    for (torrent, payload) in [
        ("alice.torrent", "alice.txt"),
        ("numbers.torrent", "numbers"),
        ("folder.torrent", "folder"),
        ("lots-of-numbers.torrent", "lots-of-numbers"),
        ("leaves.torrent", "Leaves of Grass by Walt Whitman.epub"),
    ] {
        let t = web.join(torrent);
        let meta = btnode::storage::torrent_file::read(&t).unwrap();
        assert_eq!(meta.info_hash.to_hex(), lt_hash(&t), "{torrent}");
        let seed_dir = tmp.path().join(format!("{torrent}-seed"));
        copy_tree(&web.join(payload), &seed_dir.join(payload));
        let seeder = Node::start(&t, &seed_dir, &TRACKERLESS);
        assert!(
            wait_until(T, || seeder.is_complete()),
            "{torrent}: btnode did not verify the payload: {}",
            seeder.log()
        );
        let dest = tmp.path().join(format!("{torrent}-lt"));
        let mut lt = libtorrent("leech", &t, &dest, free_port(), &[seeder.addr()]);
        assert!(lt.wait_success(T), "{torrent}: libtorrent did not complete");
        assert!(wait_same_tree(&meta, &seed_dir, &dest, T), "{torrent}");
    }
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

#[test]
fn a_mixed_swarm_of_every_client_completes() {
    if !require("libtorrent") || !require("transmission-cli") || !require("aria2c") {
        return;
    }
    let tracker = Tracker::start();
    let s = single_file(6_000_000, Some(&tracker.url));
    let tport = free_port();
    let _tr = transmission(
        &s.torrent,
        &s.root.join("tr"),
        &s.root.join("tr-cfg"),
        tport,
    );
    let tpeer = format!("127.0.0.1:{tport}");
    let common = ["--discovery-mode", "tracker", "--announce-interval", "1"];
    let mut seeder_args = common.to_vec();
    seeder_args.extend(["--peer", &tpeer]);
    let seeder = Node::start(&s.torrent, &s.root.join("seed"), &seeder_args);
    let mut lt = libtorrent(
        "leech",
        &s.torrent,
        &s.root.join("lt"),
        free_port(),
        &[seeder.addr()],
    );
    let mut a = aria2(&s.torrent, &s.root.join("aria2"), free_port(), false);
    let mut leecher_args = common.to_vec();
    leecher_args.extend(["--peer", &tpeer, "--exit-on-complete"]);
    let mut b1 = Node::start(&s.torrent, &s.root.join("bt1"), &leecher_args);
    let mut b2 = Node::start(&s.torrent, &s.root.join("bt2"), &leecher_args);
    assert!(lt.wait_success(T), "libtorrent did not complete");
    assert!(a.wait_success(T), "aria2 did not complete");
    assert_eq!(b1.wait_exit(T), Some(0), "{}", b1.log());
    assert_eq!(b2.wait_exit(T), Some(0), "{}", b2.log());
    assert!(wait_same_tree(
        &s.meta,
        &s.root.join("seed"),
        &s.root.join("tr"),
        T
    ));
    for d in ["lt", "aria2", "bt1", "bt2"] {
        assert!(same_file(&s, d), "{d}");
    }
}

/// A btnode seeder with `--super-seed` shows a few pieces at a time as
/// `have` messages instead of its bitfield: libtorrent and aria2, which
/// never see it as a seed, still complete from it (found through btnode's
/// tracker), and so does a btnode leecher.
#[test]
fn libtorrent_aria2_and_btnode_leech_from_a_super_seeding_btnode() {
    let with_lt = require("libtorrent");
    let with_aria2 = require("aria2c");
    let tracker = Tracker::start();
    let s = single_file(3_000_000, Some(&tracker.url));
    let seeder = Node::start(
        &s.torrent,
        &s.root.join("seed"),
        &[
            "--discovery-mode",
            "tracker",
            "--announce-interval",
            "1",
            "--super-seed",
        ],
    );
    seeder.wait_port();
    if with_lt {
        let mut lt = libtorrent(
            "leech",
            &s.torrent,
            &s.root.join("to-lt"),
            free_port(),
            &[seeder.addr()],
        );
        assert!(lt.wait_success(T), "libtorrent did not complete");
        assert!(same_file(&s, "to-lt"));
    }
    if with_aria2 {
        let mut a = aria2(&s.torrent, &s.root.join("to-aria2"), free_port(), false);
        assert!(a.wait_success(T), "aria2 did not complete");
        assert!(same_file(&s, "to-aria2"));
    }
    let mut args = TRACKERLESS.to_vec();
    let peer = seeder.addr();
    args.extend(["--peer", &peer, "--exit-on-complete"]);
    let mut leecher = Node::start(&s.torrent, &s.root.join("to-btnode"), &args);
    assert_eq!(leecher.wait_exit(T), Some(0), "{}", leecher.log());
    assert!(same_file(&s, "to-btnode"));
}
