//! IPv6 (BEP 7) on `::1`: a tracker, a seeder and a leecher that know no
//! IPv4 address at all. Skips (with a message) on a machine without `::1`.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

fn have_ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// A btnode bound to `::1` only; killed and reaped on drop.
struct V6Node {
    child: Child,
    log: PathBuf,
    status: PathBuf,
}

impl V6Node {
    fn start(torrent: &Path, dir: &Path, extra: &[&str]) -> V6Node {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.with_extension("log");
        let status = dir.with_extension("status.json");
        let child = Command::new(bin())
            .arg("-t")
            .arg(torrent)
            .arg("-d")
            .arg(dir)
            .args(["--bind", "::1", "--port", "0", "--overlay-port", "0"])
            .args(["--no-progress", "--log-level", "debug"])
            .args(["--discovery-mode", "tracker", "--announce-interval", "1"])
            .arg("--status-file")
            .arg(&status)
            .args(extra)
            .env_remove("BTNODE_PORT")
            .env_remove("BTNODE_OVERLAY_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        V6Node { child, log, status }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `[::1]:port` once the node has written its status.
    fn addr(&self) -> String {
        let mut port = None;
        let found = wait_until(Duration::from_secs(30), || {
            let text = std::fs::read_to_string(&self.status).unwrap_or_default();
            port = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("peer_port").and_then(|p| p.as_u64()));
            port.is_some()
        });
        assert!(found, "no status; log:\n{}", self.log());
        format!("[::1]:{}", port.unwrap())
    }
}

impl Drop for V6Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn an_ipv6_only_swarm_on_loopback_completes() {
    if !have_ipv6_loopback() {
        eprintln!("skipping: this machine has no ::1");
        return;
    }
    let tmp = tempdir();
    let tracker = Tracker::start_on("[::1]:0");
    let url = tracker.url.clone();
    assert!(url.starts_with("http://[::1]:"), "{url}");
    let content = tmp.path().join("seed/shared.bin");
    make_file(&content, 1024 * 1024 + 21, 9);
    let torrent = tmp.path().join("shared.torrent");
    create_torrent(
        &content,
        &torrent,
        &["--tracker", &url, "--piece-length", "65536"],
    );
    let seeder = V6Node::start(&torrent, &tmp.path().join("seed"), &[]);
    let mut leecher = V6Node::start(&torrent, &tmp.path().join("leech"), &["--exit-on-complete"]);
    let code = wait_exit(&mut leecher.child, Duration::from_secs(90));
    assert_eq!(
        code,
        Some(0),
        "{}\n--- seeder\n{}",
        leecher.log(),
        seeder.log()
    );
    assert_eq!(
        sha256(&tmp.path().join("leech/shared.bin")),
        sha256(&content)
    );
    assert!(
        leecher.log().contains("tracker http://[::1]:"),
        "{}",
        leecher.log()
    );
    drop(tracker);
}

/// A free port on `::1`.
fn free_port6() -> u16 {
    TcpListener::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `tests/interop/lt_client.py`: libtorrent listening on `[::1]` only.
fn libtorrent6(mode: &str, torrent: &Path, dir: &Path, port: u16, peers: &[String]) -> Child {
    std::fs::create_dir_all(dir).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop/lt_client.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script)
        .arg(mode)
        .arg(torrent)
        .arg(dir)
        .arg(port.to_string())
        .args(["--listen", "::1"]);
    for p in peers {
        cmd.args(["--peer", p]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn btnode_and_libtorrent_trade_over_ipv6_both_ways() {
    if !have_ipv6_loopback() {
        eprintln!("skipping: this machine has no ::1");
        return;
    }
    if !require("libtorrent") {
        return;
    }
    let tmp = tempdir();
    let content = tmp.path().join("seed/shared.bin");
    make_file(&content, 2_000_000, 11);
    let torrent = tmp.path().join("shared.torrent");
    create_torrent(&content, &torrent, &["--piece-length", "65536"]);
    let want = sha256(&content);
    // libtorrent seeds on [::1], btnode leeches.
    let port = free_port6();
    let mut lt_seed = libtorrent6("seed", &torrent, &tmp.path().join("seed"), port, &[]);
    let peer = format!("[::1]:{port}");
    let mut leecher = V6Node::start(
        &torrent,
        &tmp.path().join("from-lt"),
        &["--peer", &peer, "--exit-on-complete"],
    );
    let code = wait_exit(&mut leecher.child, Duration::from_secs(120));
    assert_eq!(code, Some(0), "{}", leecher.log());
    assert_eq!(sha256(&tmp.path().join("from-lt/shared.bin")), want);
    let _ = lt_seed.kill();
    let _ = lt_seed.wait();
    // btnode seeds on [::1], libtorrent leeches.
    let seeder = V6Node::start(&torrent, &tmp.path().join("seed"), &[]);
    let mut lt = libtorrent6(
        "leech",
        &torrent,
        &tmp.path().join("to-lt"),
        free_port6(),
        &[seeder.addr()],
    );
    let code = wait_exit(&mut lt, Duration::from_secs(120));
    let _ = lt.kill();
    let _ = lt.wait();
    assert_eq!(
        code,
        Some(0),
        "libtorrent did not complete; seeder:\n{}",
        seeder.log()
    );
    assert_eq!(sha256(&tmp.path().join("to-lt/shared.bin")), want);
}
