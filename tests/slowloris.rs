//! Slowloris against every listener of real `btnode` processes: many
//! connections that send a prefix and then one byte every 1.5 s. Real
//! requests (from 127.0.0.1) must be served throughout; the server's thread
//! count stays bounded; SIGTERM with the slow connections open exits 0.
//! Attackers bind 127.0.0.2 unless the test says otherwise. Each attack is
//! bounded in connections and time; numbers are printed (run with
//! `--nocapture` to see them).

mod support;

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use btnode::core::{InfoHash, PeerId};
use btnode::tracker::client::{self, AnnounceRequest};
use support::slowloris::{summary, threads_of, Attack};
use support::*;

const ATTACKER: [u8; 4] = [127, 0, 0, 2];
const TICK: Duration = Duration::from_millis(1500);
/// Real requests made during each attack, one every `GAP`.
const REAL: usize = 10;
const GAP: Duration = Duration::from_millis(700);

fn attacker() -> IpAddr {
    IpAddr::from(ATTACKER)
}

/// `REAL` timed calls of `real`, spaced by `GAP`; (served, latencies ms).
fn real_requests(what: &str, mut real: impl FnMut() -> Result<(), String>) -> usize {
    let mut lat = Vec::new();
    let mut served = 0;
    for i in 0..REAL {
        let t = Instant::now();
        match real() {
            Ok(()) => {
                served += 1;
                lat.push(t.elapsed().as_millis());
            }
            Err(e) => eprintln!("{what}: request {i} failed after {:?}: {e}", t.elapsed()),
        }
        std::thread::sleep(GAP);
    }
    println!(
        "{what}: served {served}/{REAL}, latency {}",
        summary(&mut lat)
    );
    served
}

fn lookup(at: SocketAddr) -> Result<(), String> {
    let out = Command::new(bin())
        .args(["lookup", &"ab".repeat(20), "--at", &at.to_string()])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn overlay_attack(from: IpAddr, to: SocketAddr, conns: usize, secs: u64) -> Attack {
    Attack {
        from,
        to,
        conns,
        // A frame of 100 bytes that never finishes arriving.
        prefix: vec![0, 0, 0, 100],
        drip: b'x',
        tick: TICK,
        duration: Duration::from_secs(secs),
        reconnect: true,
    }
}

#[test]
fn overlay_lookups_are_served_during_a_slowloris_from_another_address() {
    let node = OverlayNode::start(&[], 0);
    let attack = overlay_attack(attacker(), node.addr, 140, 12).start();
    assert!(attack.wait_opened(140, Duration::from_secs(10)));
    let served = real_requests("overlay lookup (attacker on 127.0.0.2)", || {
        lookup(node.addr)
    });
    let pid = node.child.id();
    println!(
        "overlay node threads during the attack: {}",
        threads_of(pid)
    );
    attack.stop();
    assert_eq!(
        served, REAL,
        "every real lookup is served during the attack"
    );
}

/// The attacker shares the real client's address: per-address caps cannot
/// tell them apart, but a newcomer from an address at its cap displaces
/// that address's oldest connection, and every connection has one whole
/// deadline, so a slow one cannot hold its place.
#[test]
fn overlay_lookups_get_through_a_slowloris_from_their_own_address() {
    let node = OverlayNode::start(&[], 0);
    let me = IpAddr::from([127, 0, 0, 1]);
    let attack = overlay_attack(me, node.addr, 140, 12).start();
    assert!(attack.wait_opened(140, Duration::from_secs(10)));
    let served = real_requests("overlay lookup (attacker on 127.0.0.1)", || {
        lookup(node.addr)
    });
    attack.stop();
    assert!(served >= REAL - 1, "served {served}/{REAL}");
}

fn announce_req(port: u16) -> AnnounceRequest {
    let mut id = [b'-'; 20];
    id[..2].copy_from_slice(&port.to_be_bytes());
    AnnounceRequest {
        info_hash: InfoHash([7; 20]),
        peer_id: PeerId(id),
        port,
        uploaded: 0,
        downloaded: 0,
        left: 1,
        event: None,
        numwant: None,
    }
}

/// Two kinds of slow request: a head that never ends, and a complete head
/// announcing a body that arrives a byte at a time.
fn http_attacks(
    to: SocketAddr,
    path: &str,
    conns: usize,
    secs: u64,
) -> Vec<support::slowloris::Running> {
    let slow_head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-a: ");
    let slow_body = format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n");
    [slow_head, slow_body]
        .into_iter()
        .map(|p| {
            Attack {
                from: attacker(),
                to,
                conns: conns / 2,
                prefix: p.into_bytes(),
                drip: b'a',
                tick: TICK,
                duration: Duration::from_secs(secs),
                reconnect: true,
            }
            .start()
        })
        .collect()
}

/// Far more connections than any bound of ours, far fewer than the
/// threads an unbounded server would need to hold them.
const HTTP_ATTACK_CONNS: usize = 400;
/// Threads a bounded HTTP front may have (connection cap plus the
/// process's own few).
const THREAD_BOUND: usize = 128 + 24;

#[test]
fn tracker_announces_are_served_during_a_slowloris() {
    let tracker = Tracker::start();
    let addr: SocketAddr = tracker.url["http://".len()..]
        .trim_end_matches("/announce")
        .parse()
        .unwrap();
    let attacks = http_attacks(addr, "/announce", HTTP_ATTACK_CONNS, 12);
    for a in &attacks {
        assert!(a.wait_opened(HTTP_ATTACK_CONNS / 2, Duration::from_secs(20)));
    }
    let mut port = 5000;
    let mut most_threads = 0;
    let pid = tracker.child.id();
    let served = real_requests("tracker announce (attacker on 127.0.0.2)", || {
        port += 1;
        most_threads = most_threads.max(threads_of(pid));
        client::announce(&tracker.url, &announce_req(port), Duration::from_secs(3))
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    println!("tracker threads during the attack: at most {most_threads}");
    drop(attacks);
    assert_eq!(served, REAL);
    assert!(most_threads <= THREAD_BOUND, "{most_threads} threads");
}

struct Dns {
    child: Child,
    http: SocketAddr,
}

impl Dns {
    fn start() -> Dns {
        let (child, line) = spawn_with_banner(Command::new(bin()).args([
            "dns",
            "--udp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ]));
        // "dns listening on udp ADDR http ADDR"
        let http = line
            .split_whitespace()
            .last()
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected banner {line:?}"));
        Dns { child, http }
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn register(http: SocketAddr, n: usize) -> Result<(), String> {
    let body = format!(r#"{{"name":"real-{n}","ip":"10.0.0.1","ttl":60}}"#);
    let resp = minreq::post(format!("http://{http}/records"))
        .with_body(body)
        .with_timeout(3)
        .send()
        .map_err(|e| e.to_string())?;
    match resp.status_code {
        201 => Ok(()),
        s => Err(format!("status {s}")),
    }
}

#[test]
fn dns_api_is_served_during_a_slowloris() {
    let dns = Dns::start();
    let attacks = http_attacks(dns.http, "/records", HTTP_ATTACK_CONNS, 12);
    for a in &attacks {
        assert!(a.wait_opened(HTTP_ATTACK_CONNS / 2, Duration::from_secs(20)));
    }
    let mut n = 0;
    let mut most_threads = 0;
    let pid = dns.child.id();
    let served = real_requests("dns register (attacker on 127.0.0.2)", || {
        n += 1;
        most_threads = most_threads.max(threads_of(pid));
        register(dns.http, n)
    });
    println!("dns threads during the attack: at most {most_threads}");
    drop(attacks);
    assert_eq!(served, REAL);
    assert!(most_threads <= THREAD_BOUND, "{most_threads} threads");
}

#[test]
fn sigterm_with_many_slow_connections_open_exits_0_promptly() {
    let mut node = OverlayNode::start(&[], 0);
    let mut tracker = Tracker::start();
    let mut dns = Dns::start();
    let taddr: SocketAddr = tracker.url["http://".len()..]
        .trim_end_matches("/announce")
        .parse()
        .unwrap();
    let me = IpAddr::from([127, 0, 0, 1]);
    let mut attacks = vec![
        overlay_attack(attacker(), node.addr, 60, 30).start(),
        overlay_attack(me, node.addr, 60, 30).start(),
    ];
    attacks.extend(http_attacks(taddr, "/announce", 120, 30));
    attacks.extend(http_attacks(dns.http, "/records", 120, 30));
    for a in &attacks {
        assert!(a.wait_opened(60, Duration::from_secs(20)));
    }
    let start = Instant::now();
    sigterm(&node.child);
    sigterm(&tracker.child);
    sigterm(&dns.child);
    let codes = [
        wait_exit(&mut node.child, Duration::from_secs(5)),
        wait_exit(&mut tracker.child, Duration::from_secs(5)),
        wait_exit(&mut dns.child, Duration::from_secs(5)),
    ];
    println!("exit codes {codes:?} after {:?}", start.elapsed());
    drop(attacks);
    assert_eq!(codes, [Some(0), Some(0), Some(0)], "overlay, tracker, dns");
}
