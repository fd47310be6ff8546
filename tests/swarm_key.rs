//! The swarm key with real processes on loopback: keyed overlay nodes drop
//! a keyless stranger's frames before parsing them (nothing reaches a
//! store, no member is learnt, no answer comes back), a captured frame
//! replayed is refused, a keyed member cannot speak for addresses it does
//! not own, a key rolls through a running 5-node overlay without a lookup
//! going unanswered, and a keyed DNS refuses writes without the token.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use btnode::core::lww::now_ms;
use btnode::core::{InfoHash, PeerId};
use btnode::overlay::rpc::request_with;
use btnode::wire::overlay::{self as wire, Entry, Message, ProviderMeta};
use btnode::wire::sealed::{self, Context, Keyring, DNS_WRITE_TOKEN};
use support::*;

const T: Duration = Duration::from_secs(30);

/// A fresh key from `btnode keygen` (64 hex characters and a newline).
fn keygen() -> String {
    let out = Command::new(bin()).arg("keygen").output().unwrap();
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert_eq!(key.len(), 64, "{key:?}");
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    key
}

fn key_file(dir: &Path, name: &str, keys: &[&str]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, keys.join("\n") + "\n").unwrap();
    path
}

fn ring(keys: &[&str]) -> Keyring {
    Keyring::parse(&keys.join("\n")).unwrap()
}

/// An overlay-only node with a swarm key file, killed on drop.
type KeyedNode = OverlayNode;

fn keyed(bootstrap: &[SocketAddr], port: u16, key_file: &Path) -> KeyedNode {
    OverlayNode::start_with(
        bootstrap,
        port,
        &["--swarm-key-file".as_ref(), key_file.as_os_str()],
    )
}

fn ask(at: SocketAddr, msg: &Message, keys: Option<&Keyring>) -> Option<Message> {
    request_with(at, msg, Duration::from_secs(2), None, keys).ok()
}

/// (members, auth_failures) from a keyed node's stats.
fn stats(at: SocketAddr, keys: &Keyring) -> (usize, u64) {
    match ask(at, &Message::Stats, Some(keys)) {
        Some(Message::StatsReply {
            members,
            auth_failures,
            ..
        }) => (members, auth_failures),
        other => panic!("{at}: no stats: {other:?}"),
    }
}

fn lookup(at: SocketAddr, ih: InfoHash, keys: Option<&Keyring>, local: bool) -> Vec<SocketAddr> {
    let msg = Message::Lookup {
        info_hash: ih,
        limit: 200,
        local_only: local,
    };
    match ask(at, &msg, keys) {
        Some(Message::Providers { providers, .. }) => providers.iter().map(|p| p.addr).collect(),
        _ => vec![],
    }
}

fn member_list(at: SocketAddr, keys: &Keyring) -> Vec<SocketAddr> {
    match ask(at, &Message::Members { ttl: 0 }, Some(keys)) {
        Some(Message::MemberList { members }) => members,
        other => panic!("{at}: no member list: {other:?}"),
    }
}

fn announce(ih: InfoHash, port: u16, overlay_port: Option<u16>) -> Message {
    Message::Announce {
        info_hash: ih,
        peer_id: PeerId([7; 20]),
        port,
        left: 0,
        overlay_port,
    }
}

fn forged_entry(ih: InfoHash, addr: &str, overlay: &str) -> Entry {
    Entry {
        info_hash: ih,
        meta: ProviderMeta {
            addr: addr.parse().unwrap(),
            peer_id: PeerId([6; 20]),
            left: 0,
            last_seen: now_ms(),
            gone: false,
            overlay: Some(overlay.parse().unwrap()),
        },
    }
}

fn three_keyed(file: &Path, keys: &Keyring) -> Vec<KeyedNode> {
    let a = keyed(&[], 0, file);
    let b = keyed(&[a.addr], 0, file);
    let c = keyed(&[a.addr], 0, file);
    let nodes = vec![a, b, c];
    assert!(
        wait_until(T, || nodes.iter().all(|n| stats(n.addr, keys).0 >= 2)),
        "the keyed nodes never learnt each other"
    );
    nodes
}

#[test]
fn a_keyless_stranger_reaches_no_store_learns_no_members_and_gets_no_answer() {
    let tmp = tempdir();
    let key = keygen();
    let keys = ring(&[&key]);
    let file = key_file(tmp.path(), "swarm.key", &[&key]);
    let nodes = three_keyed(&file, &keys);
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    // A member's own announce spreads to every keyed store.
    let ih = InfoHash([0x11; 20]);
    let honest: SocketAddr = "127.0.0.1:7001".parse().unwrap();
    assert!(matches!(
        ask(
            addrs[0],
            &announce(ih, 7001, Some(addrs[0].port())),
            Some(&keys)
        ),
        Some(Message::Ok { .. })
    ));
    assert!(wait_until(T, || addrs.iter().all(|a| lookup(
        *a,
        ih,
        Some(&keys),
        true
    )
    .contains(&honest))));

    // The stranger: valid-looking frames with no key.
    let forged_ih = InfoHash([0x66; 20]);
    let stranger_overlay: SocketAddr = "127.0.0.1:6999".parse().unwrap();
    let frames = [
        announce(ih, 7666, Some(6999)),
        announce(forged_ih, 7666, Some(6999)),
        Message::Sync {
            overlay_port: 6999,
            digest: 1,
            entries: vec![
                forged_entry(ih, "10.6.6.6:6666", "10.6.6.6:6000"),
                forged_entry(forged_ih, "127.0.0.1:7667", "127.0.0.1:6999"),
            ],
            members: vec![stranger_overlay, "10.6.6.6:6000".parse().unwrap()],
            full: true,
        },
        Message::Lookup {
            info_hash: ih,
            limit: 50,
            local_only: false,
        },
        Message::Members { ttl: 3 },
        Message::Ping {
            overlay_port: Some(6999),
        },
    ];
    for at in &addrs {
        let before = stats(*at, &keys).1;
        for m in &frames {
            assert!(
                send_raw(*at, &m.encode()).is_empty(),
                "{at} answered a keyless {m:?}"
            );
            // Through the client too: no reply it could read.
            assert!(ask(*at, m, None).is_none(), "{at} answered {m:?}");
        }
        let after = stats(*at, &keys).1;
        assert!(
            after >= before + 2 * frames.len() as u64,
            "{at}: auth failures {before} -> {after}"
        );
    }
    // A keyless btnode bootstrapping from the keyed ones learns nobody.
    let stranger = OverlayNode::start(&addrs, 0);
    let tried = stats(addrs[0], &keys).1;
    assert!(
        wait_until(T, || stats(addrs[0], &keys).1 > tried + 2),
        "the keyless node never tried to join"
    );
    // Given the gossip rounds a few intervals to carry anything it sent.
    std::thread::sleep(Duration::from_secs(2));
    match ask(stranger.addr, &Message::Stats, None) {
        Some(Message::StatsReply { members, .. }) => {
            assert_eq!(members, 0, "the keyless node learnt members")
        }
        other => panic!("the keyless node's own stats: {other:?}"),
    }
    assert!(lookup(stranger.addr, ih, None, false).is_empty());
    for at in &addrs {
        let list = member_list(*at, &keys);
        assert!(
            !list.contains(&stranger.addr) && !list.contains(&stranger_overlay),
            "{at} lists the stranger: {list:?}"
        );
        for asked in [true, false] {
            let found = lookup(*at, ih, Some(&keys), asked);
            assert_eq!(found, vec![honest], "{at} (local_only {asked})");
            assert!(lookup(*at, forged_ih, Some(&keys), asked).is_empty());
        }
    }
}

#[test]
fn a_replayed_captured_frame_is_refused() {
    let tmp = tempdir();
    let key = keygen();
    let keys = ring(&[&key]);
    let file = key_file(tmp.path(), "swarm.key", &[&key]);
    let node = keyed(&[], 0, &file);
    let ih = InfoHash([0x22; 20]);
    let nonce = sealed::fresh_nonce();
    let captured = wire::encode_sealed(
        &announce(ih, 7002, None),
        &keys,
        &Context::request(sealed::OVERLAY_REQUEST),
        now_ms(),
        nonce,
    );
    let first = send_raw(node.addr, &captured);
    assert!(!first.is_empty(), "the original frame got no answer");
    let body = &first[4..];
    let opened = keys
        .open(&Context::reply(sealed::OVERLAY_REPLY, nonce), body)
        .expect("the reply is sealed to our nonce");
    assert!(matches!(
        Message::decode_body(opened.payload),
        Ok(Message::Ok { .. })
    ));
    assert_eq!(
        lookup(node.addr, ih, Some(&keys), true),
        vec!["127.0.0.1:7002".parse::<SocketAddr>().unwrap()]
    );
    // Withdraw it, then replay the captured announce: refused, unparsed.
    assert!(ask(
        node.addr,
        &Message::Withdraw {
            info_hash: ih,
            port: 7002
        },
        Some(&keys)
    )
    .is_some());
    assert!(lookup(node.addr, ih, Some(&keys), true).is_empty());
    let before = stats(node.addr, &keys).1;
    assert!(send_raw(node.addr, &captured).is_empty());
    assert_eq!(stats(node.addr, &keys).1, before + 1);
    assert!(lookup(node.addr, ih, Some(&keys), true).is_empty());
    // A frame stamped outside the window is refused the same way.
    let old = wire::encode_sealed(
        &announce(ih, 7003, None),
        &keys,
        &Context::request(sealed::OVERLAY_REQUEST),
        now_ms() - 120_000,
        sealed::fresh_nonce(),
    );
    assert!(send_raw(node.addr, &old).is_empty());
    // And a frame under another key.
    let other = ring(&[&keygen()]);
    assert!(ask(node.addr, &Message::Stats, Some(&other)).is_none());
    assert_eq!(stats(node.addr, &keys).1, before + 3);
}

/// The nonce cache is per node: a frame captured on its way to one node
/// can be replayed to another within the window, from another address.
/// An `announce` binds to whoever sends it, so the replayer would become a
/// provider, but it is never listed: its origin never answers a sealed
/// request of ours (it does not hold the key).
#[test]
fn a_frame_replayed_to_another_node_from_another_address_lists_nothing() {
    use socket2::{Domain, Socket, Type};
    let tmp = tempdir();
    let key = keygen();
    let keys = ring(&[&key]);
    let file = key_file(tmp.path(), "swarm.key", &[&key]);
    let nodes = three_keyed(&file, &keys);
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let ih = InfoHash([0x77; 20]);
    let captured = wire::encode_sealed(
        &announce(ih, 7020, Some(addrs[0].port())),
        &keys,
        &Context::request(sealed::OVERLAY_REQUEST),
        now_ms(),
        sealed::fresh_nonce(),
    );
    assert!(!send_raw(addrs[0], &captured).is_empty());
    let honest: SocketAddr = "127.0.0.1:7020".parse().unwrap();
    assert!(wait_until(T, || addrs.iter().all(|a| lookup(
        *a,
        ih,
        Some(&keys),
        true
    )
    .contains(&honest))));
    // The replay, from 127.0.0.2 to node b.
    let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = "127.0.0.2:0".parse().unwrap();
    sock.bind(&from.into()).unwrap();
    sock.connect(&addrs[1].into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&captured).unwrap();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    assert!(!reply.is_empty(), "b had not seen the frame: it takes it");
    let replayer: SocketAddr = "127.0.0.2:7020".parse().unwrap();
    // At once (b merged it, and heard from its would-be origin)...
    let found = lookup(addrs[1], ih, Some(&keys), true);
    assert!(
        !found.contains(&replayer),
        "b lists the replayer: {found:?}"
    );
    // ...and later: pings to that origin fail, it is never vouched for.
    std::thread::sleep(Duration::from_secs(3));
    for at in &addrs {
        for local in [true, false] {
            let found = lookup(*at, ih, Some(&keys), local);
            assert!(
                !found.contains(&replayer),
                "{at} lists the replayer: {found:?}"
            );
            assert!(found.contains(&honest), "{at}");
        }
    }
}

/// Even a key holder speaks only for addresses on its own host: sync
/// entries whose provider is not on its origin's host, or whose origin is
/// not a live member, never reach a lookup.
#[test]
fn a_keyed_member_cannot_speak_for_addresses_it_does_not_own() {
    let tmp = tempdir();
    let key = keygen();
    let keys = ring(&[&key]);
    let file = key_file(tmp.path(), "swarm.key", &[&key]);
    let nodes = three_keyed(&file, &keys);
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let ih = InfoHash([0x33; 20]);
    let honest: SocketAddr = "127.0.0.1:7004".parse().unwrap();
    // The honest provider's origin is a live member (node b).
    let sync = Message::Sync {
        overlay_port: addrs[1].port(),
        digest: 1,
        entries: vec![
            forged_entry(ih, &honest.to_string(), &addrs[1].to_string()),
            // Provider on another host than its origin.
            forged_entry(ih, "10.9.9.9:6881", &addrs[1].to_string()),
            // Origin on the provider's host, but no overlay node there.
            forged_entry(ih, "10.9.9.9:6882", "10.9.9.9:6000"),
            // Origin on our host, but not a member.
            forged_entry(ih, "127.0.0.1:7005", "127.0.0.1:1"),
        ],
        members: vec![],
        full: false,
    };
    assert!(matches!(
        ask(addrs[0], &sync, Some(&keys)),
        Some(Message::SyncReply { .. })
    ));
    assert!(
        wait_until(T, || addrs.iter().all(|a| lookup(
            *a,
            ih,
            Some(&keys),
            true
        )
        .contains(&honest))),
        "the honest entry did not spread"
    );
    // Gossip rounds to spread anything else.
    std::thread::sleep(Duration::from_secs(2));
    for at in &addrs {
        for local in [true, false] {
            assert_eq!(lookup(*at, ih, Some(&keys), local), vec![honest], "{at}");
        }
    }
}

/// old → [old,new] → [new,old] → [new], one node restarted at a time, while
/// a provider keeps announcing with the sending key of the stage: every
/// node answers every lookup after every restart.
#[test]
fn a_key_rolls_through_a_running_5_node_overlay_without_losing_lookups() {
    let tmp = tempdir();
    let (old, new) = (keygen(), keygen());
    let stages: [&[&str]; 4] = [&[&old], &[&old, &new], &[&new, &old], &[&new]];
    let files: Vec<PathBuf> = stages
        .iter()
        .enumerate()
        .map(|(i, keys)| key_file(tmp.path(), &format!("stage{i}.key"), keys))
        .collect();
    let mut nodes: Vec<KeyedNode> = Vec::new();
    for _ in 0..5 {
        let boot: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
        nodes.push(keyed(&boot, 0, &files[0]));
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();
    let ih = InfoHash([0x44; 20]);
    let provider: SocketAddr = "127.0.0.1:7010".parse().unwrap();
    // The client (provider and asker) holds what the nodes of the stage
    // hold: it sends with a key every node already accepts (old until all
    // hold new) and opens replies under every key a node still sends.
    // Announced to one node that stays up (with it as the origin): every
    // other node, the one just restarted under the next ring too, must
    // get the entry by gossip across mixed keyrings, and answer a
    // forwarded lookup within moments.
    let answering = |keys: &Keyring, through: usize, what: &str| {
        let via = addrs[through];
        assert!(
            matches!(
                ask(via, &announce(ih, 7010, Some(via.port())), Some(keys)),
                Some(Message::Ok { .. })
            ),
            "{what}: {via} refused the announce"
        );
        // A forwarded lookup answers within moments (a node just started
        // lists the provider once its origin has answered one of its pings).
        for a in &addrs {
            assert!(
                wait_until(Duration::from_secs(5), || lookup(*a, ih, Some(keys), false)
                    .contains(&provider)),
                "{what}: {a} does not answer the lookup"
            );
        }
        for a in &addrs {
            assert!(
                wait_until(T, || lookup(*a, ih, Some(keys), true).contains(&provider)),
                "{what}: gossip did not bring the provider to {a}"
            );
        }
    };
    let client_for = |stage: usize| ring(stages[if stage < 2 { 0 } else { stage }]);
    answering(&client_for(0), 0, "before the roll");
    for (stage, file) in files.iter().enumerate().skip(1) {
        let client = client_for(stage);
        for i in 0..5 {
            nodes[i].sigkill();
            let boot: Vec<SocketAddr> = addrs.iter().copied().filter(|a| *a != addrs[i]).collect();
            nodes[i] = keyed(&boot, addrs[i].port(), file);
            let what = format!("stage {stage}, node {i} restarted");
            answering(&client, (i + 1) % 5, &what);
        }
    }
    // Only the new key opens now.
    let old_only = ring(stages[0]);
    for a in &addrs {
        assert!(ask(*a, &Message::Stats, Some(&old_only)).is_none());
    }
}

// The DNS service under the key.

struct Dns {
    child: Child,
    http: SocketAddr,
}

impl Dns {
    fn start(peers: &[SocketAddr], key_file: Option<&Path>) -> Dns {
        let mut cmd = Command::new(bin());
        cmd.args([
            "dns",
            "--udp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--gossip-interval-ms",
            "200",
        ]);
        if let Some(f) = key_file {
            cmd.arg("--swarm-key-file").arg(f);
        }
        for p in peers {
            cmd.args(["--peer", &p.to_string()]);
        }
        let (child, line) = spawn_with_banner(&mut cmd);
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.len(), 7, "unexpected banner {line:?}");
        Dns {
            child,
            http: words[6].parse().unwrap(),
        }
    }

    fn post(&self, body: &str, token: Option<&str>) -> i32 {
        let mut r = minreq::post(format!("http://{}/records", self.http))
            .with_body(body.to_string())
            .with_timeout(5);
        if let Some(t) = token {
            r = r.with_header("Authorization", format!("Bearer {t}"));
        }
        r.send().unwrap().status_code
    }

    fn delete(&self, path: &str, token: Option<&str>) -> i32 {
        let mut r = minreq::delete(format!("http://{}/records/{path}", self.http)).with_timeout(5);
        if let Some(t) = token {
            r = r.with_header("Authorization", format!("Bearer {t}"));
        }
        r.send().unwrap().status_code
    }

    fn get(&self, name: &str) -> (i32, String) {
        let r = minreq::get(format!("http://{}/records/{name}", self.http))
            .with_timeout(5)
            .send()
            .unwrap();
        (r.status_code, r.as_str().unwrap_or("").to_string())
    }
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_keyed_dns_needs_the_token_to_write_and_gossips_only_sealed() {
    let tmp = tempdir();
    let key = keygen();
    let keys = ring(&[&key]);
    let file = key_file(tmp.path(), "swarm.key", &[&key]);
    let token = keys.sending().token(DNS_WRITE_TOKEN);
    let wrong = ring(&[&keygen()]).sending().token(DNS_WRITE_TOKEN);
    let a = Dns::start(&[], Some(&file));
    let b = Dns::start(&[a.http], Some(&file));
    // A keyless server peered with a: its gossip is refused, ours too.
    let open = Dns::start(&[a.http], None);
    let rec = r#"{"name":"boot.btnode","ip":"10.1.2.3","ttl":60}"#;
    assert_eq!(a.post(rec, None), 401);
    assert_eq!(a.post(rec, Some(&wrong)), 401);
    assert_eq!(a.post(rec, Some("not hex")), 401);
    assert_eq!(a.get("boot.btnode").0, 404, "a refused write wrote");
    assert_eq!(a.post(rec, Some(&token)), 201);
    // Reads stay open, and sealed gossip carries the record to b.
    assert!(a.get("boot.btnode").1.contains("10.1.2.3"));
    assert!(
        wait_until(T, || b.get("boot.btnode").1.contains("10.1.2.3")),
        "sealed gossip did not reach b"
    );
    // A stranger's unsealed gossip is refused and merges nothing.
    let forged = r#"{"records":[{"name":"boot.btnode","ip":"10.6.6.6","ttl":600,"timestamp":99999999999999,"deleted":false}]}"#;
    let r = minreq::post(format!("http://{}/gossip", a.http))
        .with_body(forged)
        .with_timeout(5)
        .send()
        .unwrap();
    assert_eq!(r.status_code, 401);
    assert!(
        !r.as_str().unwrap().contains("10.1.2.3"),
        "it answered records"
    );
    assert!(!a.get("boot.btnode").1.contains("10.6.6.6"));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        open.get("boot.btnode").0,
        404,
        "the keyless server learnt a record"
    );
    // Deletes need the token too.
    assert_eq!(a.delete("boot.btnode", None), 401);
    assert!(a.get("boot.btnode").1.contains("10.1.2.3"));
    assert_eq!(a.delete("boot.btnode/10.1.2.3", Some(&token)), 200);
    assert_eq!(a.get("boot.btnode").0, 404);
    assert!(
        wait_until(T, || b.get("boot.btnode").0 == 404),
        "the delete did not gossip to b"
    );
    // A node registering itself sends the token from its key file.
    let boot = keyed(&[], 0, &file);
    let mut member = Command::new(bin())
        .args(["--bind", "127.0.0.1", "--overlay-port", "0"])
        .args(["-b", &boot.addr.to_string()])
        .args([
            "--dns-register",
            "member.btnode",
            "--dns-http",
            &a.http.to_string(),
        ])
        .arg("--swarm-key-file")
        .arg(&file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let registered = wait_until(T, || a.get("member.btnode").1.contains("127.0.0.1"));
    let _ = member.kill();
    let _ = member.wait();
    assert!(registered, "--dns-register with the key file was refused");
}

/// `btnode lookup` and `btnode health` with and without the key file.
#[test]
fn the_cli_speaks_to_a_keyed_node_only_with_the_key() {
    let tmp = tempdir();
    let key = keygen();
    let file = key_file(tmp.path(), "swarm.key", &[&key]);
    let node = keyed(&[], 0, &file);
    let at = node.addr.to_string();
    let ih = InfoHash([0x55; 20]).to_hex();
    let run = |args: &[&str], key: Option<&Path>| {
        let mut c = Command::new(bin());
        c.args(args).env_remove("BTNODE_SWARM_KEY_FILE");
        if let Some(k) = key {
            c.env("BTNODE_SWARM_KEY_FILE", k);
        }
        c.output().unwrap()
    };
    let keyed = run(&["lookup", &ih, "--at", &at], Some(&file));
    assert!(keyed.status.success(), "{:?}", keyed);
    let keyless = run(&["lookup", &ih, "--at", &at], None);
    assert_eq!(keyless.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&keyless.stderr).contains("swarm-key-file"));
    assert!(run(&["health", "--overlay", &at], Some(&file))
        .status
        .success());
    assert_eq!(
        run(&["health", "--overlay", &at], None).status.code(),
        Some(1)
    );
    let bad = key_file(tmp.path(), "bad.key", &["0123"]);
    let out = run(&["lookup", &ih, "--at", &at], Some(&bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hex"));
}
