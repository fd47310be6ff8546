//! The gossip overlay with real processes on loopback: convergence across
//! 20 nodes, downloads with no tracker, surviving bootstrap death, dead
//! providers disappearing, rejoining, hybrid fallback, hostile frames.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use btnode::core::InfoHash;
use btnode::overlay::service;
use btnode::wire::overlay::Message;
use support::*;

const T: Duration = Duration::from_secs(60);

fn torrent_in(dir: &Path, len: usize, tracker: Option<&str>) -> (std::path::PathBuf, InfoHash) {
    let content = dir.join("seed/data.bin");
    make_file(&content, len, len as u64 + 5);
    let torrent = dir.join("data.torrent");
    let mut extra = vec!["--piece-length", "65536"];
    if let Some(t) = tracker {
        extra.extend(["--tracker", t]);
    }
    create_torrent(&content, &torrent, &extra);
    let ih = btnode::storage::torrent_file::read(&torrent)
        .unwrap()
        .info_hash;
    (torrent, ih)
}

fn peer_addr(node: &Node) -> SocketAddr {
    node.addr().parse().unwrap()
}

#[test]
fn an_announce_reaches_every_store_of_a_20_node_overlay() {
    let tmp = tempdir();
    let boot = OverlayNode::start(&[], 0);
    let others: Vec<OverlayNode> = (0..18)
        .map(|_| OverlayNode::start(&[boot.addr], 0))
        .collect();
    let (torrent, ih) = torrent_in(tmp.path(), 200_000, None);
    let seeder = Node::start(
        &torrent,
        &tmp.path().join("seed"),
        &["-b", &boot.addr.to_string()],
    );
    let provider = peer_addr(&seeder);
    let mut all: Vec<SocketAddr> = others.iter().map(|n| n.addr).collect();
    all.push(boot.addr);
    assert_eq!(all.len() + 1, 20);
    let converged = wait_until(T, || {
        all.iter()
            .all(|a| local_providers(*a, &ih).contains(&provider))
    });
    let missing: Vec<_> = all
        .iter()
        .filter(|a| !local_providers(**a, &ih).contains(&provider))
        .collect();
    assert!(converged, "stores without the provider: {missing:?}");
    // And the CLI sees it from any node.
    let out = std::process::Command::new(bin())
        .args(["lookup", &ih.to_hex(), "--at", &others[7].addr.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["addr"], provider.to_string());
    assert_eq!(first["left"], 0);
}

#[test]
fn a_leecher_that_knows_one_overlay_node_downloads_without_a_tracker() {
    let tmp = tempdir();
    let boot = OverlayNode::start(&[], 0);
    let (torrent, _) = torrent_in(tmp.path(), 3_000_000, None);
    let b = boot.addr.to_string();
    let _seeder = Node::start(&torrent, &tmp.path().join("seed"), &["-b", &b]);
    let mut leecher = Node::start(
        &torrent,
        &tmp.path().join("leech"),
        &["-b", &b, "--exit-on-complete"],
    );
    assert_eq!(leecher.wait_exit(T), Some(0), "{}", leecher.log());
    assert_eq!(
        sha256(&tmp.path().join("leech/data.bin")),
        sha256(&tmp.path().join("seed/data.bin"))
    );
}

#[test]
fn the_overlay_survives_the_death_of_its_bootstraps() {
    let tmp = tempdir();
    let mut boot1 = OverlayNode::start(&[], 0);
    let mut boot2 = OverlayNode::start(&[boot1.addr], 0);
    let members: Vec<OverlayNode> = (0..3)
        .map(|_| OverlayNode::start(&[boot1.addr, boot2.addr], 0))
        .collect();
    let (torrent, ih) = torrent_in(tmp.path(), 2_000_000, None);
    let seeder = Node::start(
        &torrent,
        &tmp.path().join("seed"),
        &["-b", &boot1.addr.to_string()],
    );
    let provider = peer_addr(&seeder);
    assert!(wait_until(T, || local_providers(members[2].addr, &ih)
        .contains(&provider)));
    boot1.sigkill();
    boot2.sigkill();
    // A newcomer that knows one surviving member joins and downloads.
    let mut leecher = Node::start(
        &torrent,
        &tmp.path().join("leech"),
        &["-b", &members[0].addr.to_string(), "--exit-on-complete"],
    );
    assert_eq!(leecher.wait_exit(T), Some(0), "{}", leecher.log());
    assert_eq!(
        sha256(&tmp.path().join("leech/data.bin")),
        sha256(&tmp.path().join("seed/data.bin"))
    );
}

#[test]
fn a_killed_provider_disappears_and_a_restarted_one_comes_back() {
    let tmp = tempdir();
    let boot = OverlayNode::start(&[], 0);
    let watcher = OverlayNode::start(&[boot.addr], 0);
    let (torrent, ih) = torrent_in(tmp.path(), 500_000, None);
    let b = boot.addr.to_string();
    let mut seeder = Node::start(&torrent, &tmp.path().join("seed"), &["-b", &b]);
    let provider = peer_addr(&seeder);
    assert!(wait_until(T, || local_providers(watcher.addr, &ih).contains(&provider)));
    seeder.sigkill();
    // Health checks every second find its overlay node dead and withdraw
    // its providers, well before the 30 s TTL set for tests.
    let gone = std::time::Instant::now();
    assert!(wait_until(Duration::from_secs(20), || {
        !local_providers(watcher.addr, &ih).contains(&provider)
            && !local_providers(boot.addr, &ih).contains(&provider)
    }));
    assert!(gone.elapsed() < Duration::from_secs(20));
    // Restarted, it announces again and is found again.
    let again = Node::start(&torrent, &tmp.path().join("seed"), &["-b", &b]);
    let provider2 = peer_addr(&again);
    assert!(wait_until(T, || local_providers(watcher.addr, &ih)
        .contains(&provider2)));
}

#[test]
fn hybrid_mode_uses_the_tracker_when_the_overlay_is_empty() {
    let tmp = tempdir();
    let tracker = Tracker::start();
    let (torrent, _) = torrent_in(tmp.path(), 1_000_000, Some(&tracker.url));
    let extra = ["--discovery-mode", "hybrid", "--announce-interval", "1"];
    let _seeder = Node::start(&torrent, &tmp.path().join("seed"), &extra);
    let mut args = extra.to_vec();
    args.push("--exit-on-complete");
    let mut leecher = Node::start(&torrent, &tmp.path().join("leech"), &args);
    assert_eq!(leecher.wait_exit(T), Some(0), "{}", leecher.log());
    assert_eq!(
        sha256(&tmp.path().join("leech/data.bin")),
        sha256(&tmp.path().join("seed/data.bin"))
    );
}

#[test]
fn garbage_frames_are_refused_and_the_node_keeps_serving() {
    let node = OverlayNode::start(&[], 0);
    let frame = |body: &[u8]| {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body);
        f
    };
    let mut oversized = (64u32 << 20).to_be_bytes().to_vec();
    oversized.extend_from_slice(&[b'{'; 1000]);
    let cases: Vec<Vec<u8>> = vec![
        oversized,
        frame(b"{\"type\":\"lookup\"")[..10].to_vec(),
        frame(b"this is not json"),
        frame(br#"{"type":"lookup","info_hash":123,"limit":"all"}"#),
        frame(br#"{"type":"announce","info_hash":"zz","peer_id":"zz","port":0,"left":0}"#),
        frame(br#"{"type":"self_destruct"}"#),
        vec![0xff; 3],
    ];
    for bytes in cases {
        let reply = send_raw(node.addr, &bytes);
        if reply.len() > 4 {
            let body = &reply[4..];
            let m = Message::decode_body(body).unwrap();
            assert!(matches!(m, Message::Error { .. }), "{m:?}");
        }
    }
    // Still serving.
    let ping = Message::Ping { overlay_port: None };
    let reply = service::request(node.addr, &ping, Duration::from_secs(2), None).unwrap();
    assert!(matches!(reply, Message::Pong { .. }));
}

fn health(args: &[&str]) -> std::process::Output {
    std::process::Command::new(support::bin())
        .arg("health")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn health_answers_for_a_live_overlay_node_and_fails_otherwise() {
    let mut node = OverlayNode::start(&[], 0);
    let at = node.addr.to_string();
    let ok = health(&["--overlay", &at]);
    assert!(ok.status.success(), "{ok:?}");

    // Something listening that is not an overlay node: a clear failure, not a hang.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_addr = other.local_addr().unwrap().to_string();
    let silent = std::thread::spawn(move || {
        // Accept once and close without a word.
        let _ = other.accept();
    });
    let wrong = health(&["--overlay", &other_addr]);
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    assert!(!wrong.stderr.is_empty());
    silent.join().unwrap();

    node.sigkill();
    let dead = health(&["--overlay", &at]);
    assert_eq!(dead.status.code(), Some(1), "{dead:?}");
    assert!(
        String::from_utf8_lossy(&dead.stderr).contains(&at),
        "{dead:?}"
    );
}
