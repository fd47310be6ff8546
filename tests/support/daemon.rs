//! A `btnode daemon` process for tests: its API address read from what it
//! prints, calls through the crate's own API client types, killed by PID
//! on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use btnode::api::{SessionInfo, TorrentDetail, TorrentSummary};

use super::{bin, wait_until, FAST_OVERLAY_ENV};

pub struct Daemon {
    pub child: Child,
    pub state: PathBuf,
    pub root: PathBuf,
    pub api: String,
    pub token: String,
    pub peer_port: u16,
    out_path: PathBuf,
    log_path: PathBuf,
}

impl Daemon {
    /// `btnode daemon --state STATE -d ROOT` on loopback, every port
    /// ephemeral, plus `extra`; waits until its API answers.
    pub fn start(state: &Path, root: &Path, extra: &[&str]) -> Daemon {
        std::fs::create_dir_all(state).unwrap();
        let out_path = state.with_extension("out");
        let log_path = state.with_extension("log");
        let child = Command::new(bin())
            .arg("daemon")
            .arg("--state")
            .arg(state)
            .arg("-d")
            .arg(root)
            .args(["--api", "127.0.0.1:0", "--bind", "127.0.0.1"])
            .args(["--port", "0", "--overlay-port", "0", "--log-level", "debug"])
            .args(extra)
            .envs(FAST_OVERLAY_ENV)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out_path).unwrap())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child,
            state: state.to_path_buf(),
            root: root.to_path_buf(),
            api: String::new(),
            token: String::new(),
            peer_port: 0,
            out_path,
            log_path,
        };
        let printed = || std::fs::read_to_string(&d.out_path).unwrap_or_default();
        assert!(
            wait_until(Duration::from_secs(30), || printed().contains("peerwire")),
            "daemon did not start; log:\n{}",
            d.log()
        );
        let out = printed();
        let line = |prefix: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in {out:?}"))
                .trim()
                .to_string()
        };
        d.api = line("api listening on ");
        d.peer_port = line("peerwire listening on port ").parse().unwrap();
        d.token = std::fs::read_to_string(state.join("api-token"))
            .unwrap()
            .trim()
            .to_string();
        d
    }

    pub fn peer_addr(&self) -> String {
        format!("127.0.0.1:{}", self.peer_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// A request with the token; (status, body).
    pub fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> (i32, String) {
        let url = format!("{}{path}", self.api);
        let mut req = match method {
            "GET" => minreq::get(url),
            "POST" => minreq::post(url),
            "DELETE" => minreq::delete(url),
            m => panic!("method {m}"),
        }
        .with_header("Authorization", format!("Bearer {}", self.token))
        .with_timeout(10);
        if let Some(b) = body {
            req = req.with_body(b.to_vec());
        }
        let resp = req.send().expect("the API answers");
        (resp.status_code, resp.as_str().unwrap_or("").to_string())
    }

    pub fn add(&self, torrent: &Path, query: &str) -> String {
        let bytes = std::fs::read(torrent).unwrap();
        let (status, body) = self.call("POST", &format!("/api/v1/torrents{query}"), Some(&bytes));
        assert_eq!(status, 201, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["info_hash"].as_str().unwrap().to_string()
    }

    pub fn list(&self) -> Vec<TorrentSummary> {
        let (status, body) = self.call("GET", "/api/v1/torrents", None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn torrent(&self, hash: &str) -> TorrentSummary {
        self.list()
            .into_iter()
            .find(|t| t.info_hash == hash)
            .unwrap_or_else(|| panic!("{hash} not listed"))
    }

    pub fn detail(&self, hash: &str) -> TorrentDetail {
        let (status, body) = self.call("GET", &format!("/api/v1/torrents/{hash}"), None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn session(&self) -> SessionInfo {
        let (status, body) = self.call("GET", "/api/v1/session", None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Waits until torrent `hash` is complete; false on timeout.
    pub fn wait_complete(&self, hash: &str, timeout: Duration) -> bool {
        wait_until(timeout, || {
            let t = self.torrent(hash);
            // A magnet link's torrent has no pieces until its metadata came.
            t.pieces_total > 0 && t.pieces_have == t.pieces_total
        })
    }

    pub fn sigterm_and_wait(&mut self) -> Option<i32> {
        super::sigterm(&self.child);
        super::wait_exit(&mut self.child, Duration::from_secs(30))
    }

    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.sigkill();
    }
}
