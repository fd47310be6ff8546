//! The tracker (HTTP and UDP) and its client over real loopback sockets, the
//! `btnode tracker` binary, and a swarm that finds itself through it.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use btnode::core::bencode;
use btnode::core::{InfoHash, PeerId};
use btnode::tracker::client::{self, AnnounceRequest, Event, TrackerError};
use btnode::tracker::server::{ServerOptions, TrackerServer};
use btnode::wire::tracker::{percent_encode, AnnounceReply};
use support::*;

const T: Duration = Duration::from_secs(5);
const HASH: InfoHash = InfoHash([9; 20]);

/// A peer id unique to each port.
fn id(port: u16) -> PeerId {
    let mut id = [b'-'; 20];
    id[..2].copy_from_slice(&port.to_be_bytes());
    PeerId(id)
}

fn request(port: u16, left: u64, event: Option<Event>) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: HASH,
        peer_id: id(port),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event,
        numwant: None,
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn start(opts: ServerOptions) -> (TrackerServer, String) {
    let s = TrackerServer::start("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let url = format!("http://{}/announce", s.local_addr());
    (s, url)
}

fn start_default() -> (TrackerServer, String) {
    start(ServerOptions::with_interval(Duration::from_secs(60)))
}

/// One HTTP/1.0 GET over a fresh connection; the body.
fn http_get(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&all)));
    all[split + 4..].to_vec()
}

fn failure_reason(body: &[u8]) -> Option<String> {
    let v = bencode::decode(body).ok()?;
    Some(v.get("failure reason")?.as_str()?.to_string())
}

/// The raw announce query for `port`, dictionary form unless told otherwise.
fn dict_query(port: u16, extra: &str) -> String {
    format!(
        "/announce?info_hash={}&peer_id={}&port={port}&left=1&compact=0{extra}",
        percent_encode(&HASH.0),
        percent_encode(&id(port).0)
    )
}

#[test]
fn two_peers_get_each_other_in_compact_replies() {
    let (server, url) = start_default();
    let a = client::announce(&url, &request(4001, 100, Some(Event::Started)), T).unwrap();
    assert!(a.peers.is_empty(), "nobody else yet, and never oneself");
    assert_eq!(a.interval, Duration::from_secs(60));
    let b = client::announce(&url, &request(4002, 0, Some(Event::Started)), T).unwrap();
    assert_eq!(b.peers, vec![local(4001)]);
    assert_eq!((b.complete, b.incomplete), (Some(1), Some(1)));
    let a = client::announce(&url, &request(4001, 100, None), T).unwrap();
    assert_eq!(a.peers, vec![local(4002)]);
    server.shutdown();
}

#[test]
fn two_peers_get_each_other_in_dictionary_replies() {
    let (server, _) = start_default();
    let addr = server.local_addr();
    http_get(addr, &dict_query(5001, ""));
    let b = AnnounceReply::decode(&http_get(addr, &dict_query(5002, ""))).unwrap();
    assert_eq!(b.peers.len(), 1);
    assert_eq!(
        (b.peers[0].addr, b.peers[0].peer_id),
        (local(5001), Some(id(5001)))
    );
    let a = AnnounceReply::decode(&http_get(addr, &dict_query(5001, ""))).unwrap();
    assert_eq!(
        (a.peers[0].addr, a.peers[0].peer_id),
        (local(5002), Some(id(5002)))
    );
    let a = AnnounceReply::decode(&http_get(addr, &dict_query(5001, "&no_peer_id=1"))).unwrap();
    assert_eq!((a.peers[0].addr, a.peers[0].peer_id), (local(5002), None));
    server.shutdown();
}

#[test]
fn forged_ip_parameter_is_ignored() {
    let (server, url) = start_default();
    let addr = server.local_addr();
    http_get(addr, &dict_query(5101, "&ip=10.1.2.3"));
    let b = client::announce(&url, &request(5102, 1, None), T).unwrap();
    assert_eq!(b.peers, vec![local(5101)]);
    server.shutdown();
}

#[test]
fn stopped_removes_the_peer_at_once() {
    let (server, url) = start_default();
    client::announce(&url, &request(4101, 1, Some(Event::Started)), T).unwrap();
    assert_eq!(
        client::announce(&url, &request(4102, 1, None), T)
            .unwrap()
            .peers,
        vec![local(4101)]
    );
    client::announce(&url, &request(4101, 1, Some(Event::Stopped)), T).unwrap();
    let b = client::announce(&url, &request(4102, 1, None), T).unwrap();
    assert!(b.peers.is_empty(), "stopped removes at once");
    assert_eq!((b.complete, b.incomplete), (Some(0), Some(1)));
    server.shutdown();
}

#[test]
fn silent_peers_expire() {
    let (server, url) = start(ServerOptions {
        peer_timeout: Duration::from_millis(800),
        ..ServerOptions::with_interval(Duration::from_secs(1))
    });
    let announced = Instant::now();
    client::announce(&url, &request(4201, 1, None), T).unwrap();
    // 4201 goes silent; a newcomer stops seeing it once the timeout passes
    // (and not before).
    assert!(wait_until(Duration::from_secs(10), || {
        client::announce(&url, &request(4202, 1, None), T)
            .unwrap()
            .peers
            .is_empty()
    }));
    assert!(announced.elapsed() >= Duration::from_millis(800));
    server.shutdown();
}

#[test]
fn failure_reason_is_surfaced_as_failure() {
    let (server, url) = start(ServerOptions {
        max_torrents: 1,
        ..ServerOptions::with_interval(Duration::from_secs(60))
    });
    client::announce(&url, &request(4301, 1, None), T).unwrap();
    let mut other = request(4301, 1, None);
    other.info_hash = InfoHash([8; 20]);
    match client::announce(&url, &other, T) {
        Err(TrackerError::Failure(reason)) => assert!(reason.contains("full"), "{reason}"),
        other => panic!("expected a failure reason, got {other:?}"),
    }
    // A 404 carrying a failure reason is a failure too, not a bare status.
    let wrong = format!("http://{}/nothing-here", server.local_addr());
    assert!(matches!(
        client::announce(&wrong, &request(4301, 1, None), T),
        Err(TrackerError::Failure(_))
    ));
    server.shutdown();
}

#[test]
fn scrape_counts_seeders_leechers_and_completed_downloads() {
    let (server, url) = start_default();
    client::announce(&url, &request(4401, 10, Some(Event::Started)), T).unwrap();
    client::announce(&url, &request(4402, 10, Some(Event::Started)), T).unwrap();
    client::announce(&url, &request(4402, 0, Some(Event::Completed)), T).unwrap();
    let unknown = InfoHash([7; 20]);
    let s = client::scrape(&url, &[HASH, unknown], T).unwrap();
    let e = s[&HASH];
    assert_eq!((e.complete, e.incomplete, e.downloaded), (1, 1, 1));
    assert_eq!((s[&unknown].complete, s[&unknown].downloaded), (0, 0));
    let all = client::scrape(&url, &[], T).unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), vec![&HASH]);
    assert!(matches!(
        client::scrape(&format!("http://{}/a", server.local_addr()), &[HASH], T),
        Err(TrackerError::NoScrape)
    ));
    server.shutdown();
}

#[test]
fn malformed_requests_get_a_failure_reason_and_the_server_keeps_serving() {
    let (server, url) = start_default();
    let addr = server.local_addr();
    let hash = percent_encode(&HASH.0);
    let peer = percent_encode(&id(1).0);
    let long = "x".repeat(5000);
    for path in [
        "/announce".to_string(),
        format!("/announce?peer_id={peer}&port=1"),
        format!("/announce?info_hash=short&peer_id={peer}&port=1"),
        format!("/announce?info_hash={hash}&peer_id={peer}&port=0"),
        format!("/announce?info_hash={hash}&peer_id={peer}&port=70000"),
        format!("/announce?info_hash={hash}&peer_id={peer}&port=http"),
        format!("/announce?info_hash={hash}&peer_id={peer}&port=1&left=-5"),
        format!("/announce?info_hash={hash}&peer_id={peer}&port=1&event=bogus"),
        "/announce?%%%%".to_string(),
        format!("/announce?{long}"),
        "/scrape?info_hash=short".to_string(),
        "/nothing-here".to_string(),
    ] {
        let body = http_get(addr, &path);
        assert!(
            failure_reason(&body).is_some(),
            "{path}: {:?}",
            String::from_utf8_lossy(&body)
        );
    }
    // Not even HTTP: whatever the server answers, nobody panics.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(b"\x00\xff\r\n\r\n").unwrap();
    let _ = s.read_to_end(&mut Vec::new());

    client::announce(&url, &request(4501, 1, None), T).unwrap();
    let b = client::announce(&url, &request(4502, 1, None), T).unwrap();
    assert_eq!(b.peers, vec![local(4501)]);
    server.shutdown();
}

#[test]
fn shutdown_joins_and_closes_the_port() {
    let (server, _) = start_default();
    let addr = server.local_addr();
    server.shutdown();
    assert!(wait_until(T, || TcpStream::connect(addr).is_err()));
}

/// A parent that closes the tracker's stdout before the banner is written
/// (it read what it wanted, or never cared) must not stop the tracker:
/// it keeps answering over HTTP and UDP.
#[test]
fn the_tracker_binary_keeps_serving_when_its_stdout_is_closed() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_btnode"))
        .args(["tracker", "--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let http = format!("http://127.0.0.1:{port}/announce");
    let udp = format!("udp://127.0.0.1:{port}/announce");
    let served = wait_until(Duration::from_secs(30), || {
        client::announce(&http, &request(4701, 1, None), T).is_ok()
    });
    let udp_reply = client::announce(&udp, &request(4702, 1, None), T);
    let alive = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    assert!(served, "the tracker never answered over HTTP");
    assert_eq!(udp_reply.unwrap().peers, vec![local(4701)]);
    assert!(alive, "the tracker exited");
}

#[test]
fn the_tracker_binary_announces_and_exits_cleanly_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_btnode"))
        .args(["tracker", "--listen", "127.0.0.1:0", "--interval", "7"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    // Read on a thread so a silent binary fails the test instead of hanging it.
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no banner from `btnode tracker`");
        }
    };
    let url = line
        .trim_end()
        .strip_prefix("tracker listening on ")
        .unwrap_or_else(|| panic!("unexpected banner {line:?}"))
        .to_string();
    let port: u16 = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/announce"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected URL {url:?}"));
    assert_ne!(port, 0, "the banner shows the bound port");

    let first = client::announce(&url, &request(4601, 1, None), T);
    let second = client::announce(&url, &request(4602, 1, None), T);

    // SIGTERM to the child we started, by its PID.
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(first.unwrap().interval, Duration::from_secs(7));
    assert_eq!(second.unwrap().peers, vec![local(4601)]);
    let status = status.expect("the tracker exits within 10 s of SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn one_seeder_four_leechers_through_the_tracker() {
    let tmp = tempdir();
    let tracker = Tracker::start();
    let content = tmp.path().join("seed/shared.bin");
    make_file(&content, 5 * 1024 * 1024 + 7, 77);
    let torrent = tmp.path().join("shared.torrent");
    create_torrent(
        &content,
        &torrent,
        &["--tracker", &tracker.url, "--piece-length", "65536"],
    );
    let _seeder = Node::start(
        &torrent,
        &tmp.path().join("seed"),
        &["--announce-interval", "1", "--upload-rate-limit", "4000000"],
    );
    let mut leechers: Vec<Node> = (0..4)
        .map(|i| {
            Node::start(
                &torrent,
                &tmp.path().join(format!("leech{i}")),
                &["--announce-interval", "1", "--exit-on-complete"],
            )
        })
        .collect();
    let want = sha256(&content);
    for (i, l) in leechers.iter_mut().enumerate() {
        assert_eq!(
            l.wait_exit(Duration::from_secs(120)),
            Some(0),
            "{}",
            l.log()
        );
        assert_eq!(
            sha256(&tmp.path().join(format!("leech{i}/shared.bin"))),
            want
        );
    }
}
