//! What a tracker's reply may and may not make a node do (issue 10): a
//! hybrid leecher asks the tracker as soon as the overlay has nothing to
//! offer, a reply with an unusable interval still gives its peers, `interval
//! 0` does not make the node hammer the tracker, and a redirect loop is left
//! alone for a while. The trackers here are scripted HTTP servers on
//! loopback that record when each request came.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use support::hostile::HangListener;
use support::*;

/// A loopback HTTP server answering every request with `reply(port)`,
/// where `port` is the server's own; records each request's arrival.
struct ScriptedTracker {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ScriptedTracker {
    fn start(reply: impl Fn(u16) -> Vec<u8> + Send + 'static) -> ScriptedTracker {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, halt) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            // Bounded: the test stops it, and it never outlives 5 minutes.
            let until = Instant::now() + Duration::from_secs(300);
            while !halt.load(Ordering::Relaxed) && Instant::now() < until {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&buf)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                log.lock().push((Instant::now(), line));
                let _ = s.write_all(&reply(addr.port()));
            }
        });
        ScriptedTracker {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/announce", self.addr)
    }

    fn times(&self) -> Vec<Instant> {
        self.requests.lock().iter().map(|(t, _)| *t).collect()
    }

    /// Waits for the first request, then for `window` more; each request's
    /// arrival as time since the first. (The wait is the measurement: it
    /// counts what arrives in the window.)
    fn requests_after_first(&self, window: Duration) -> Vec<Duration> {
        assert!(wait_until(Duration::from_secs(30), || !self
            .times()
            .is_empty()));
        let first = self.times()[0];
        wait_until(window + Duration::from_secs(1), || {
            first.elapsed() >= window
        });
        self.times()
            .iter()
            .map(|t| t.duration_since(first))
            .collect()
    }
}

impl Drop for ScriptedTracker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn http_ok(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A bencoded reply with `interval` as given and one compact IPv4 peer.
fn reply_with(interval: &str, peer: Option<SocketAddr>) -> Vec<u8> {
    let mut body = format!("d8:interval{interval}5:peers").into_bytes();
    match peer {
        Some(SocketAddr::V4(a)) => {
            body.extend_from_slice(b"6:");
            body.extend_from_slice(&a.ip().octets());
            body.extend_from_slice(&a.port().to_be_bytes());
        }
        _ => body.extend_from_slice(b"0:"),
    }
    body.push(b'e');
    body
}

fn torrent_for(dir: &Path, len: usize, tracker: &str) -> (std::path::PathBuf, String) {
    let content = dir.join("seed/file.bin");
    make_file(&content, len, 41);
    let torrent = dir.join("file.torrent");
    create_torrent(&content, &torrent, &["--tracker", tracker]);
    (torrent, sha256(&content))
}

#[test]
fn a_reply_with_an_unusable_interval_still_gives_its_peers() {
    let tmp = tempdir();
    let seeder_addr = Arc::new(Mutex::new(None::<SocketAddr>));
    let shared = seeder_addr.clone();
    let tracker = ScriptedTracker::start(move |_| http_ok(&reply_with("i-1e", *shared.lock())));
    let (torrent, want) = torrent_for(tmp.path(), 1 << 20, &tracker.url());
    // The seeder stays off the tracker; only the scripted reply names it.
    let seeder = Node::start(
        &torrent,
        &tmp.path().join("seed"),
        &["--discovery-mode", "overlay"],
    );
    *seeder_addr.lock() = Some(seeder.addr().parse().unwrap());
    let mut leecher = Node::start(
        &torrent,
        &tmp.path().join("leech"),
        &["--discovery-mode", "tracker", "--exit-on-complete"],
    );
    assert_eq!(
        leecher.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        leecher.log()
    );
    assert_eq!(sha256(&tmp.path().join("leech/file.bin")), want);
    // Exiting at once on completion still tells the tracker, which counts
    // downloads by `completed`, before `stopped`.
    let events: Vec<String> = tracker
        .requests
        .lock()
        .iter()
        .filter_map(|(_, line)| {
            ["started", "completed", "stopped"]
                .into_iter()
                .find(|e| line.contains(&format!("event={e}")))
                .map(str::to_string)
        })
        .collect();
    assert_eq!(events, ["started", "completed", "stopped"]);
}

#[test]
fn interval_zero_does_not_make_the_node_hammer_the_tracker() {
    let tmp = tempdir();
    let tracker = ScriptedTracker::start(|_| http_ok(&reply_with("i0e", None)));
    let (torrent, _) = torrent_for(tmp.path(), 64 * 1024, &tracker.url());
    let _leecher = Node::start(
        &torrent,
        &tmp.path().join("leech"),
        &["--discovery-mode", "tracker"],
    );
    // Before the fix the node re-announced every 5 s: three requests here.
    let window = Duration::from_millis(11_500);
    let times = tracker.requests_after_first(window);
    let within = times.iter().filter(|t| **t <= window).count();
    assert!(
        within <= 2,
        "{within} announces in {window:?}: {:?}",
        tracker.requests.lock()
    );
}

#[test]
fn a_redirect_loop_is_left_alone_for_a_while() {
    let tmp = tempdir();
    let tracker = ScriptedTracker::start(|port| {
        format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{port}/announce?again\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .into_bytes()
    });
    let (torrent, _) = torrent_for(tmp.path(), 64 * 1024, &tracker.url());
    let leecher = Node::start(
        &torrent,
        &tmp.path().join("leech"),
        &["--discovery-mode", "tracker"],
    );
    // One attempt follows a few redirects within a second; before the fix
    // the next attempt came 15 s later.
    let times = tracker.requests_after_first(Duration::from_secs(17));
    let late: Vec<_> = times
        .into_iter()
        .filter(|t| *t > Duration::from_secs(5))
        .collect();
    assert!(
        late.is_empty(),
        "{} requests came back after the loop: {:?}",
        late.len(),
        tracker.requests.lock()
    );
    let log = leecher.log();
    assert_eq!(
        log.matches("redirected in a loop").count(),
        1,
        "the failure is logged once:\n{log}"
    );
}

/// A new user's default: a torrent with a tracker, no bootstrap (hybrid
/// mode). The overlay has nobody to ask, so the tracker is asked at once:
/// before the fix every node waited a fixed 5 s first.
#[test]
fn a_hybrid_node_without_bootstrap_asks_the_tracker_at_once() {
    let tmp = tempdir();
    let tracker = Tracker::start();
    let (torrent, want) = torrent_for(tmp.path(), 4 << 20, &tracker.url);
    let info_hash = btnode::storage::torrent_file::read(&torrent)
        .unwrap()
        .info_hash;
    let seeder = Node::start(&torrent, &tmp.path().join("seed"), &[]);
    seeder.wait_port();
    let seeder_started = Instant::now();
    let listed = || {
        btnode::tracker::client::scrape(&tracker.url, &[info_hash], Duration::from_secs(2))
            .ok()
            .and_then(|m| m.get(&info_hash).map(|s| s.complete))
            .unwrap_or(0)
            >= 1
    };
    assert!(
        wait_until(Duration::from_secs(30), listed),
        "{}",
        seeder.log()
    );
    let seeder_listed = seeder_started.elapsed();
    let started = Instant::now();
    let mut leecher = Node::start(&torrent, &tmp.path().join("leech"), &["--exit-on-complete"]);
    assert_eq!(
        leecher.wait_exit(Duration::from_secs(60)),
        Some(0),
        "{}",
        leecher.log()
    );
    let took = started.elapsed();
    assert_eq!(sha256(&tmp.path().join("leech/file.bin")), want);
    // The old fixed grace alone was 5 s, for the seeder and the leecher each.
    assert!(
        seeder_listed < Duration::from_secs(4) && took < Duration::from_secs(4),
        "seeder listed after {seeder_listed:?}, leecher done after {took:?}"
    );
    eprintln!("seeder listed after {seeder_listed:?}; 4 MiB leech done in {took:?}");
}

/// Trackers that accept and never answer must not hold shutdown: each
/// request can take its whole timeout, and before the fix a round of four
/// such trackers plus the `stopped` round kept a node ~40 s after SIGTERM.
#[test]
fn trackers_that_never_answer_do_not_hold_shutdown() {
    let tmp = tempdir();
    let silent: Vec<HangListener> = (0..4).map(|_| HangListener::start()).collect();
    let urls: Vec<String> = silent
        .iter()
        .map(|h| format!("http://{}/announce", h.addr))
        .collect();
    let content = tmp.path().join("seed/file.bin");
    make_file(&content, 64 * 1024, 43);
    let torrent = tmp.path().join("file.torrent");
    let mut args = vec![];
    for u in &urls {
        args.extend(["--tracker", u.as_str()]);
    }
    create_torrent(&content, &torrent, &args);
    let mut node = Node::start(
        &torrent,
        &tmp.path().join("leech"),
        &["--discovery-mode", "tracker"],
    );
    assert!(
        silent[0].wait_contacted(Duration::from_secs(20)),
        "the node never asked the tracker"
    );
    let asked = Instant::now();
    node.sigterm();
    let code = node.wait_exit(Duration::from_secs(20));
    let took = asked.elapsed();
    assert_eq!(code, Some(0), "{}", node.log());
    assert!(
        took < Duration::from_secs(6),
        "took {took:?} to stop with silent trackers:\n{}",
        node.log()
    );
    eprintln!("stopped {took:?} after SIGTERM with four silent trackers");
}
