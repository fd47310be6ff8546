//! The DNS service with `dig` as the client: registration through REST,
//! answers, error codes, gossip between three servers, expiry, deletion,
//! malformed packets, amplification, and nodes resolving bootstraps.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

struct Dns {
    child: Child,
    udp: SocketAddr,
    http: SocketAddr,
}

impl Dns {
    fn start(peers: &[SocketAddr], udp_port: u16, http_port: u16) -> Dns {
        let mut cmd = Command::new(bin());
        cmd.args([
            "dns",
            "--udp",
            &format!("127.0.0.1:{udp_port}"),
            "--http",
            &format!("127.0.0.1:{http_port}"),
            "--gossip-interval-ms",
            "300",
        ]);
        for p in peers {
            cmd.args(["--peer", &p.to_string()]);
        }
        let (child, line) = spawn_with_banner(&mut cmd);
        let words: Vec<&str> = line.split_whitespace().collect();
        // "dns listening on udp ADDR http ADDR"
        assert_eq!(words.len(), 7, "unexpected banner {line:?}");
        Dns {
            child,
            udp: words[4].parse().unwrap(),
            http: words[6].parse().unwrap(),
        }
    }

    fn register(&self, name: &str, ip: &str, ttl: u32) -> i32 {
        let body = format!(r#"{{"name":"{name}","ip":"{ip}","ttl":{ttl}}}"#);
        minreq::post(format!("http://{}/records", self.http))
            .with_body(body)
            .with_timeout(5)
            .send()
            .unwrap()
            .status_code
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn have_dig() -> bool {
    let ok = Command::new("dig").arg("-v").output().is_ok();
    if !ok {
        assert!(
            std::env::var("BTNODE_REQUIRE_PEERS").as_deref() != Ok("1"),
            "dig (dnsutils) is required when BTNODE_REQUIRE_PEERS=1"
        );
        eprintln!("skipping: dig is not installed (apt-get install dnsutils)");
    }
    ok
}

/// `dig` output for NAME TYPE at `server`.
fn dig(server: SocketAddr, name: &str, qtype: &str) -> String {
    let out = Command::new("dig")
        .args([
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
            name,
        ])
        .args(qtype.split_whitespace())
        .args(["+time=2", "+tries=1"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn dig_short(server: SocketAddr, name: &str) -> Vec<String> {
    let out = Command::new("dig")
        .args([
            &format!("@{}", server.ip()),
            "-p",
            &server.port().to_string(),
            name,
            "A",
            "+short",
            "+time=2",
            "+tries=1",
        ])
        .output()
        .unwrap();
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .collect();
    v.sort();
    v
}

#[test]
fn registered_names_are_answered_and_errors_are_proper() {
    if !have_dig() {
        return;
    }
    let d = Dns::start(&[], 0, 0);
    assert_eq!(d.register("Boot.BTNode", "10.1.2.3", 60), 201);
    assert_eq!(d.register("boot.btnode", "10.1.2.4", 60), 201);
    assert_eq!(
        dig_short(d.udp, "boot.btnode"),
        vec!["10.1.2.3", "10.1.2.4"]
    );
    assert_eq!(dig_short(d.udp, "BOOT.btnode").len(), 2, "case-insensitive");
    let a = dig(d.udp, "boot.btnode", "A");
    assert!(a.contains("status: NOERROR") && a.contains(" aa"), "{a}");
    let nx = dig(d.udp, "nobody.btnode", "A");
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    let mx = dig(d.udp, "boot.btnode", "MX");
    assert!(mx.contains("status: NOTIMP"), "{mx}");
    let ch = dig(d.udp, "boot.btnode", "A -c CH");
    assert!(ch.contains("status: REFUSED"), "another class: {ch}");
    // Bad REST input is refused with 400.
    assert_eq!(d.register("bad..name", "10.0.0.1", 60), 400);
    assert_eq!(d.register("ok", "300.0.0.1", 60), 400);
}

#[test]
fn records_spread_expire_and_deletions_propagate_in_a_three_server_group() {
    if !have_dig() {
        return;
    }
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let http: Vec<SocketAddr> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{p}").parse().unwrap())
        .collect();
    let servers: Vec<Dns> = (0..3)
        .map(|i| {
            let peers: Vec<SocketAddr> = (0..3).filter(|j| *j != i).map(|j| http[j]).collect();
            Dns::start(&peers, 0, ports[i])
        })
        .collect();
    assert_eq!(servers[0].register("seed.btnode", "10.9.9.9", 60), 201);
    assert!(wait_until(Duration::from_secs(20), || {
        dig_short(servers[1].udp, "seed.btnode") == vec!["10.9.9.9"]
    }));
    // Deleted at server 1, gone at server 3.
    assert!(wait_until(Duration::from_secs(20), || {
        dig_short(servers[2].udp, "seed.btnode") == vec!["10.9.9.9"]
    }));
    let del = minreq::delete(format!("http://{}/records/seed.btnode", servers[0].http))
        .with_timeout(5)
        .send()
        .unwrap();
    assert_eq!(del.status_code, 200);
    assert!(wait_until(Duration::from_secs(20), || {
        dig_short(servers[2].udp, "seed.btnode").is_empty()
    }));
    // A record with a 1 s TTL expires everywhere.
    assert_eq!(servers[1].register("brief.btnode", "10.7.7.7", 1), 201);
    assert!(wait_until(Duration::from_secs(20), || {
        dig(servers[0].udp, "brief.btnode", "A").contains("status: NXDOMAIN")
            && dig(servers[1].udp, "brief.btnode", "A").contains("status: NXDOMAIN")
    }));
}

#[test]
fn malformed_packets_do_not_stop_the_server_or_amplify() {
    if !have_dig() {
        return;
    }
    let d = Dns::start(&[], 0, 0);
    d.register("alive.btnode", "10.0.0.8", 60);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut looped = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
    let mut long_label = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 200];
    long_label.extend_from_slice(&[b'x'; 200]);
    let mut state = 0x1234_5678u32;
    let random: Vec<Vec<u8>> = (0..50)
        .map(|i| {
            (0..(i * 7 % 300 + 1))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 17;
                    state ^= state << 5;
                    state as u8
                })
                .collect()
        })
        .collect();
    let mut cases = vec![vec![1u8, 2, 3], looped, long_label, vec![0; 12]];
    cases.extend(random);
    for case in &cases {
        sock.send_to(case, d.udp).unwrap();
        let mut buf = [0u8; 2048];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            assert!(
                n <= case.len().max(12) + 16,
                "reply of {n} bytes to {} bytes",
                case.len()
            );
        }
    }
    // Unknown names: the reply is the query echoed plus a header change.
    let mut q = vec![0x77, 0x77, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["nobody", "btnode"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    sock.send_to(&q, d.udp).unwrap();
    let mut buf = [0u8; 2048];
    let (n, _) = sock.recv_from(&mut buf).unwrap();
    assert!(n <= q.len(), "{n} > {}", q.len());
    assert_eq!(buf[3] & 0x0f, 3, "NXDOMAIN");
    assert_eq!(dig_short(d.udp, "alive.btnode"), vec!["10.0.0.8"]);
}

#[test]
fn nodes_resolve_bootstrap_names_through_the_service_and_fall_back_without_it() {
    if !have_dig() {
        return;
    }
    let d = Dns::start(&[], 0, 0);
    let boot = OverlayNode::start(&[], 0);
    assert_eq!(d.register("boot.btnode", "127.0.0.1", 60), 201);
    let joined = |dns: &str, bootstrap: String| {
        let (mut node, line) = spawn_with_banner(
            Command::new(bin())
                .args([
                    "--bind",
                    "127.0.0.1",
                    "--overlay-port",
                    "0",
                    "--dns",
                    dns,
                    "-b",
                    &bootstrap,
                ])
                .envs(FAST_OVERLAY_ENV),
        );
        let addr: SocketAddr = line.split_whitespace().last().unwrap().parse().unwrap();
        let ok = wait_until(Duration::from_secs(20), || members_of(addr) >= 1);
        let _ = node.kill();
        let _ = node.wait();
        ok
    };
    let port = boot.addr.port();
    assert!(
        joined(&d.udp.to_string(), format!("boot.btnode:{port}")),
        "joined through the DNS name"
    );
    // A node that registers itself is then reachable by name.
    let mut registered = Command::new(bin())
        .args([
            "--bind",
            "127.0.0.1",
            "--overlay-port",
            "0",
            "-b",
            &boot.addr.to_string(),
        ])
        .args([
            "--dns-register",
            "member.btnode",
            "--dns-http",
            &d.http.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let found = wait_until(Duration::from_secs(20), || {
        dig_short(d.udp, "member.btnode") == vec!["127.0.0.1"]
    });
    let _ = registered.kill();
    let _ = registered.wait();
    assert!(found, "--dns-register put the node's address in the DNS");
    // The DNS service is gone: `localhost` still resolves through the system.
    let dead = format!("127.0.0.1:{}", free_port());
    assert!(
        joined(&dead, format!("localhost:{port}")),
        "fell back to the system resolver"
    );
}

fn members_of(addr: SocketAddr) -> usize {
    use btnode::overlay::service;
    use btnode::wire::overlay::Message;
    match service::request(addr, &Message::Stats, Duration::from_secs(2), None) {
        Ok(Message::StatsReply { members, .. }) => members,
        _ => 0,
    }
}
