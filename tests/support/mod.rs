//! Process harness for integration tests: temp dirs, deterministic files,
//! real `btnode` processes (killed by PID on drop), status-file polling,
//! and `wait_until` instead of sleeps.

#![allow(dead_code)]

pub mod daemon;
pub mod hostile;
pub mod slowloris;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_btnode")
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Writes `len` deterministic pseudo-random bytes derived from `seed`.
pub fn make_file(path: &Path, len: usize, seed: u64) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, data).unwrap();
}

pub fn sha256(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("{:x}", h.finalize())
}

/// sha256 of every file under `root`, keyed by relative path.
pub fn tree_hashes(root: &Path) -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, root, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().to_string();
                out.push((rel, sha256(&p)));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// `btnode create` → the info-hash it printed (its first line).
pub fn create_torrent(content: &Path, out: &Path, extra: &[&str]) -> String {
    let printed = create_printed(content, out, extra);
    printed.lines().next().unwrap_or_default().to_string()
}

/// `btnode create` → the magnet link it printed (its second line).
pub fn create_magnet(content: &Path, out: &Path, extra: &[&str]) -> String {
    let printed = create_printed(content, out, extra);
    let link = printed.lines().nth(1).unwrap_or_default().to_string();
    assert!(link.starts_with("magnet:?xt=urn:btih:"), "{printed}");
    link
}

fn create_printed(content: &Path, out: &Path, extra: &[&str]) -> String {
    let o = Command::new(bin())
        .arg("create")
        .arg("-o")
        .arg(out)
        .args(extra)
        .arg(content)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "create failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

/// A running btnode process, killed (by its PID) and reaped on drop.
pub struct Node {
    pub child: Child,
    pub status_path: PathBuf,
    pub log_path: PathBuf,
}

impl Node {
    /// Starts `btnode -t torrent -d dir --bind 127.0.0.1 --port 0` plus `extra`.
    pub fn start(torrent: &Path, dir: &Path, extra: &[&str]) -> Node {
        Node::start_wrapped(&[], torrent, dir, extra)
    }

    /// As [`Node::start`], with btnode's command line appended to `wrapper`
    /// (a program that ends by exec-ing its arguments, so the child's PID is
    /// btnode's), e.g. `unshare` to give it a namespace of its own.
    pub fn start_wrapped(wrapper: &[&str], torrent: &Path, dir: &Path, extra: &[&str]) -> Node {
        Node::spawn(
            wrapper,
            torrent,
            dir,
            &["--port", "0", "--overlay-port", "0"],
            extra,
        )
    }

    /// As [`Node::start`] with no port flag or variable at all: the node
    /// takes the defaults (or falls back from them).
    pub fn start_default_ports(torrent: &Path, dir: &Path, extra: &[&str]) -> Node {
        Node::spawn(&[], torrent, dir, &[], extra)
    }

    fn spawn(wrapper: &[&str], torrent: &Path, dir: &Path, ports: &[&str], extra: &[&str]) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let tag = format!("{:x}", rand_u64());
        let status_path = dir.with_file_name(format!(
            "{}-{tag}.status.json",
            dir.file_name().unwrap().to_string_lossy()
        ));
        let log_path = status_path.with_extension("log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let child = cmd
            .arg("-t")
            .arg(torrent)
            .arg("-d")
            .arg(dir)
            .args(["--bind", "127.0.0.1"])
            .args(ports)
            .args(["--no-progress", "--log-level", "debug"])
            .arg("--status-file")
            .arg(&status_path)
            .args(extra)
            .envs(FAST_OVERLAY_ENV)
            .env_remove("BTNODE_PORT")
            .env_remove("BTNODE_OVERLAY_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Node {
            child,
            status_path,
            log_path,
        }
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&self.status_path).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn stat_u64(&self, key: &str) -> Option<u64> {
        self.status()?.get(key)?.as_u64()
    }

    /// The peerwire port, once the node wrote its first status.
    pub fn wait_port(&self) -> u16 {
        assert!(
            wait_until(Duration::from_secs(30), || self
                .stat_u64("peer_port")
                .is_some()),
            "node never wrote its status; log:\n{}",
            self.log()
        );
        self.stat_u64("peer_port").unwrap() as u16
    }

    pub fn overlay_addr(&self) -> std::net::SocketAddr {
        assert!(
            wait_until(Duration::from_secs(30), || self
                .stat_u64("overlay_port")
                .is_some()),
            "node has no overlay; log:\n{}",
            self.log()
        );
        format!("127.0.0.1:{}", self.stat_u64("overlay_port").unwrap())
            .parse()
            .unwrap()
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.wait_port())
    }

    pub fn is_complete(&self) -> bool {
        self.status()
            .and_then(|s| s.get("complete").and_then(|c| c.as_bool()))
            .unwrap_or(false)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits for the process to exit on its own; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        wait_exit(&mut self.child, timeout)
    }

    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn sigterm(&mut self) {
        sigterm(&self.child);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` (stdin closed, stdout piped, stderr dropped) and reads the
/// banner line a btnode server prints once it listens: its addresses.
pub fn spawn_with_banner(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// Waits for `child` to exit on its own; its exit code.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let mut code = None;
    wait_until(timeout, || match child.try_wait() {
        Ok(Some(s)) => {
            code = Some(s.code().unwrap_or(-1));
            true
        }
        _ => false,
    });
    code
}

pub fn sigterm(child: &Child) {
    // SAFETY: kill(2) on our own child's PID.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}

/// A `btnode tracker` on an ephemeral loopback port.
pub struct Tracker {
    pub child: Child,
    pub url: String,
}

impl Tracker {
    pub fn start() -> Tracker {
        Tracker::start_on("127.0.0.1:0")
    }

    /// `btnode tracker --listen LISTEN` (`[::1]:0` for IPv6 tests).
    pub fn start_on(listen: &str) -> Tracker {
        let (child, line) = spawn_with_banner(Command::new(bin()).args([
            "tracker",
            "--listen",
            listen,
            "--interval",
            "2",
        ]));
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected tracker banner {line:?}"))
            .to_string();
        Tracker { child, url }
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).unwrap();
    u64::from_le_bytes(b)
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("btnode-test")
        .tempdir()
        .unwrap()
}

/// Intervals short enough for tests (set on every overlay process).
pub const FAST_OVERLAY_ENV: [(&str, &str); 3] = [
    ("BTNODE_GOSSIP_INTERVAL_MS", "500"),
    ("BTNODE_HEALTH_INTERVAL_MS", "1000"),
    ("BTNODE_PROVIDER_TTL_MS", "30000"),
];

/// An overlay-only `btnode` (no torrent), killed and reaped on drop.
pub struct OverlayNode {
    pub child: Child,
    pub addr: std::net::SocketAddr,
}

impl OverlayNode {
    pub fn start(bootstrap: &[std::net::SocketAddr], port: u16) -> OverlayNode {
        OverlayNode::start_with(bootstrap, port, &[])
    }

    /// The same node with more flags (e.g. `--swarm-key-file PATH`).
    pub fn start_with(
        bootstrap: &[std::net::SocketAddr],
        port: u16,
        extra: &[&std::ffi::OsStr],
    ) -> OverlayNode {
        let mut cmd = Command::new(bin());
        cmd.args(["--bind", "127.0.0.1", "--overlay-port", &port.to_string()])
            .args(extra);
        for b in bootstrap {
            cmd.args(["-b", &b.to_string()]);
        }
        let (child, line) = spawn_with_banner(cmd.envs(FAST_OVERLAY_ENV));
        let addr = line
            .split_whitespace()
            .last()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected overlay banner {line:?}"));
        OverlayNode { child, addr }
    }

    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OverlayNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Providers in `at`'s own store (no forwarding), by peerwire address.
pub fn local_providers(
    at: std::net::SocketAddr,
    info_hash: &btnode::core::InfoHash,
) -> Vec<std::net::SocketAddr> {
    use btnode::overlay::service;
    use btnode::wire::overlay::Message;
    let msg = Message::Lookup {
        info_hash: *info_hash,
        limit: 200,
        local_only: true,
    };
    match service::request(at, &msg, Duration::from_secs(2), None) {
        Ok(Message::Providers { providers, .. }) => providers.into_iter().map(|p| p.addr).collect(),
        _ => vec![],
    }
}

/// Whether a real peer program is installed (`libtorrent`: Debian's
/// python3-libtorrent, which imports only under /usr/bin/python3). Missing
/// under `BTNODE_REQUIRE_PEERS=1` (CI) fails the test instead of skipping.
pub fn require(tool: &str) -> bool {
    let found = if tool == "libtorrent" {
        Command::new("/usr/bin/python3")
            .args(["-c", "import libtorrent"])
            .status()
            .is_ok_and(|s| s.success())
    } else {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !found {
        assert!(
            std::env::var("BTNODE_REQUIRE_PEERS").as_deref() != Ok("1"),
            "{tool} is required when BTNODE_REQUIRE_PEERS=1"
        );
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

/// A loopback TCP port free a moment ago (for programs that cannot be
/// told to pick one and report it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `bytes` to `addr`, half-closes, and returns whatever comes back
/// before the other side closes (at most 5 s of waiting).
pub fn send_raw(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}
