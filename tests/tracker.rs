//! The HTTP tracker and its client over real loopback sockets, and swarms
//! that find each other through `btnode tracker`.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use btnode::core::{InfoHash, PeerId};
use btnode::tracker::client::{self, AnnounceRequest, Event, TrackerError};
use btnode::tracker::server::{ServerOptions, TrackerServer};
use support::*;

fn request(port: u16, left: u64, event: Option<Event>) -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([9; 20]),
        peer_id: PeerId([port as u8; 20]),
        port,
        uploaded: 0,
        downloaded: 0,
        left,
        event,
        numwant: None,
    }
}

fn start(opts: ServerOptions) -> (TrackerServer, String) {
    let s = TrackerServer::start("127.0.0.1:0".parse().unwrap(), opts).unwrap();
    let url = format!("http://{}/announce", s.local_addr());
    (s, url)
}

const T: Duration = Duration::from_secs(5);

#[test]
fn announce_stop_expire_and_scrape_over_http() {
    let (server, url) = start(ServerOptions {
        interval: Duration::from_secs(1),
        peer_timeout: Duration::from_millis(1500),
    });
    let a = client::announce(&url, &request(4001, 100, Some(Event::Started)), T).unwrap();
    assert!(a.peers.is_empty());
    assert_eq!(a.interval, Duration::from_secs(1));
    let b = client::announce(&url, &request(4002, 0, Some(Event::Completed)), T).unwrap();
    assert_eq!(
        b.peers,
        vec!["127.0.0.1:4001".parse::<SocketAddr>().unwrap()]
    );
    assert_eq!((b.complete, b.incomplete), (Some(1), Some(1)));

    let s = client::scrape(&url, &[InfoHash([9; 20])], T).unwrap();
    let e = s[&InfoHash([9; 20])];
    assert_eq!((e.complete, e.incomplete, e.downloaded), (1, 1, 1));

    client::announce(&url, &request(4001, 100, Some(Event::Stopped)), T).unwrap();
    let b = client::announce(&url, &request(4002, 0, None), T).unwrap();
    assert!(b.peers.is_empty(), "stopped removes at once");

    // 4002 stops announcing; a newcomer stops seeing it after the timeout.
    assert!(wait_until(Duration::from_secs(10), || {
        client::announce(&url, &request(4003, 1, None), T)
            .map(|r| r.peers.is_empty())
            .unwrap_or(false)
    }));
    server.shutdown();
}

#[test]
fn dictionary_replies_carry_peer_ids() {
    let (server, url) = start(ServerOptions::with_interval(Duration::from_secs(60)));
    client::announce(&url, &request(5001, 1, None), T).unwrap();
    let q = btnode::wire::tracker::AnnounceRequest {
        info_hash: InfoHash([9; 20]),
        peer_id: PeerId([2; 20]),
        port: 5002,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: None,
        numwant: None,
        compact: false,
        no_peer_id: false,
    }
    .to_query();
    let body = http_get(server.local_addr(), &format!("/announce?{q}"));
    let reply = btnode::wire::tracker::AnnounceReply::decode(&body).unwrap();
    assert_eq!(reply.peers.len(), 1);
    assert_eq!(reply.peers[0].peer_id, Some(PeerId([5001u16 as u8; 20])));
    server.shutdown();
}

fn http_get(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    all[split + 4..].to_vec()
}

#[test]
fn malformed_requests_get_a_failure_reason_and_the_server_keeps_serving() {
    let (server, url) = start(ServerOptions::with_interval(Duration::from_secs(60)));
    let addr = server.local_addr();
    for path in [
        "/announce",
        "/announce?info_hash=short&peer_id=x&port=1",
        "/announce?info_hash=%zz",
        "/announce?%%%%",
        "/nothing-here",
    ] {
        let body = http_get(addr, path);
        assert!(
            String::from_utf8_lossy(&body).contains("failure reason"),
            "{path}: {:?}",
            String::from_utf8_lossy(&body)
        );
    }
    let mut req = request(6001, 1, None);
    req.port = 6001;
    assert!(client::announce(&url, &req, T).is_ok());
    // The client surfaces a failure reason as such.
    match client::announce(&format!("http://{addr}/nothing-here"), &req, T) {
        Err(TrackerError::Status(404)) | Err(TrackerError::Failure(_)) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        client::announce("udp://tracker.example:80", &req, T),
        Err(TrackerError::UnsupportedScheme(_))
    ));
    server.shutdown();
}

#[test]
fn the_tracker_binary_serves_announces() {
    let tracker = Tracker::start();
    let r = client::announce(&tracker.url, &request(7001, 1, None), T).unwrap();
    assert!(r.peers.is_empty());
    let r = client::announce(&tracker.url, &request(7002, 1, None), T).unwrap();
    assert_eq!(r.peers.len(), 1);
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
