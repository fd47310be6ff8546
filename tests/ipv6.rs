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

/// `btnode tracker --listen [::1]:0`; its HTTP announce URL.
fn v6_tracker() -> (Child, String) {
    let (child, line) = spawn_with_banner(Command::new(bin()).args([
        "tracker",
        "--listen",
        "[::1]:0",
        "--interval",
        "2",
    ]));
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("unexpected tracker banner {line:?}"))
        .to_string();
    (child, url)
}

/// A btnode bound to `::1` only; killed and reaped on drop.
struct V6Node {
    child: Child,
    log: PathBuf,
}

impl V6Node {
    fn start(torrent: &Path, dir: &Path, extra: &[&str]) -> V6Node {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.with_extension("log");
        let child = Command::new(bin())
            .arg("-t")
            .arg(torrent)
            .arg("-d")
            .arg(dir)
            .args(["--bind", "::1", "--port", "0", "--overlay-port", "0"])
            .args(["--no-progress", "--log-level", "debug"])
            .args(["--discovery-mode", "tracker", "--announce-interval", "1"])
            .args(extra)
            .env_remove("BTNODE_PORT")
            .env_remove("BTNODE_OVERLAY_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        V6Node { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
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
    let (mut tracker, url) = v6_tracker();
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
    let _ = tracker.kill();
    let _ = tracker.wait();
}
