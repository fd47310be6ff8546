//! Two nodes on one host with default ports (issue 10, item 10): a port the
//! user did not choose falls back to a free one with a warning, and the port
//! actually bound is the one announced; a port the user chose stays an
//! error. Tests run in parallel, so the defaults may be held by anyone:
//! nothing here needs them free.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{create_torrent, make_file, sha256, tempdir, Node};

/// Holds `port` on loopback if it is free, so a default is surely taken.
fn hold(port: u16) -> Option<TcpListener> {
    TcpListener::bind(("127.0.0.1", port)).ok()
}

#[test]
fn two_nodes_with_default_ports_on_one_host_trade_the_file() {
    let tmp = tempdir();
    let content = tmp.path().join("seed").join("a.bin");
    make_file(&content, 3 << 20, 10);
    let torrent = tmp.path().join("a.torrent");
    create_torrent(&content, &torrent, &[]);
    let mut seeder = Node::start_default_ports(&torrent, &tmp.path().join("seed"), &[]);
    let seeder_peer = seeder.wait_port();
    let seeder_overlay = seeder.overlay_addr();
    // Whoever has the defaults now (the seeder or another test), the
    // leecher cannot have them.
    let _held = (
        hold(support_defaults::PEER),
        hold(support_defaults::OVERLAY),
    );
    let mut leech = Node::start_default_ports(
        &torrent,
        &tmp.path().join("leech"),
        &["-b", &seeder_overlay.to_string()],
    );
    assert!(
        support::wait_until(Duration::from_secs(60), || leech.is_complete()),
        "leech never completed; leech log:\n{}\nseeder log:\n{}",
        leech.log(),
        seeder.log()
    );
    assert_eq!(
        sha256(&tmp.path().join("leech").join("a.bin")),
        sha256(&content)
    );
    let log = leech.log();
    assert!(
        log.contains("is in use; listening on"),
        "no fallback warning in:\n{log}"
    );
    let status = leech.status().unwrap();
    let (peer, overlay) = (
        status["peer_port"].as_u64().unwrap() as u16,
        status["overlay_port"].as_u64().unwrap() as u16,
    );
    assert_ne!(peer, support_defaults::PEER);
    assert_ne!(overlay, support_defaults::OVERLAY);
    assert_ne!(peer, seeder_peer);
    // The leech announced the peer port it really bound.
    let hash = info_hash(&torrent);
    let leech_addr: std::net::SocketAddr = format!("127.0.0.1:{peer}").parse().unwrap();
    assert!(
        support::wait_until(Duration::from_secs(20), || {
            support::local_providers(seeder_overlay, &hash).contains(&leech_addr)
        }),
        "the seeder's overlay never learned {leech_addr}: {:?}",
        support::local_providers(seeder_overlay, &hash)
    );
    leech.sigterm();
    seeder.sigterm();
    assert_eq!(leech.wait_exit(Duration::from_secs(10)), Some(0));
    assert_eq!(seeder.wait_exit(Duration::from_secs(10)), Some(0));
}

fn info_hash(torrent: &Path) -> btnode::core::InfoHash {
    btnode::storage::torrent_file::read(torrent)
        .unwrap()
        .info_hash
}

mod support_defaults {
    pub const PEER: u16 = btnode::cli::DEFAULT_PEER_PORT;
    pub const OVERLAY: u16 = btnode::cli::DEFAULT_OVERLAY_PORT;
}

/// Flags and one environment variable of one invocation.
type Case<'a> = (&'a [&'a str], Option<(&'a str, &'a str)>);

#[test]
fn a_port_the_user_chose_stays_an_error_when_taken() {
    let tmp = tempdir();
    let content = tmp.path().join("seed").join("a.bin");
    make_file(&content, 64 << 10, 11);
    let torrent = tmp.path().join("a.torrent");
    create_torrent(&content, &torrent, &[]);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let cases: [Case; 4] = [
        (&["--port", &port], None),
        (&["--overlay-port", &port], None),
        (&[], Some(("BTNODE_PORT", &port))),
        (&[], Some(("BTNODE_OVERLAY_PORT", &port))),
    ];
    for (i, (flags, env)) in cases.iter().enumerate() {
        let dir = tmp.path().join(format!("n{i}"));
        let mut cmd = Command::new(support::bin());
        cmd.env_remove("BTNODE_PORT")
            .env_remove("BTNODE_OVERLAY_PORT");
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd
            .arg("-t")
            .arg(&torrent)
            .arg("-d")
            .arg(&dir)
            .args(["--bind", "127.0.0.1", "--no-progress"])
            .args(*flags)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?} {env:?}: {stderr}");
        assert!(stderr.contains("in use"), "{flags:?} {env:?}: {stderr}");
    }
}
