//! The command line as a user meets it: every usage error exits 2 with a
//! message, and `btnode lookup` says what went wrong when the address is
//! not a working overlay node (issue 10, item 12).

mod support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const HASH: &str = "0123456789abcdef0123456789abcdef01234567";

fn btnode(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = support::tempdir();
    Command::new(support::bin())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Arguments and environment of one invocation.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);

#[test]
fn every_usage_error_exits_2_with_a_message() {
    let cases: &[Case] = &[
        (&["--port", "abc"], &[]),
        (&["--port", "70000", "-t", "x.torrent"], &[]),
        (&["--overlay-port", "-1", "-b", "127.0.0.1:1"], &[]),
        (&["--no-such-flag"], &[]),
        (&["-t"], &[]),
        (&["--max-peers", "0", "-t", "x.torrent"], &[]),
        (
            &["--discovery-mode", "carrier-pigeon", "-t", "x.torrent"],
            &[],
        ),
        (&["--bootstrap", "nocolon", "-t", "x.torrent"], &[]),
        (&["--log-level", "loud", "-t", "x.torrent"], &[]),
        (&["-t", "x.torrent"], &[("BTNODE_PORT", "abc")]),
        (&[], &[]),
        (&["lookup"], &[]),
        (&["lookup", "not-a-hash", "--at", "127.0.0.1:1"], &[]),
        (
            &["lookup", HASH, "--at", "127.0.0.1:1", "--limit", "many"],
            &[],
        ),
        (&["tracker", "--listen", "nowhere"], &[]),
        (&["create", "-o"], &[]),
        (&["frobnicate"], &[]),
    ];
    for (args, env) in cases {
        let out = btnode(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "btnode {args:?} (env {env:?}) should exit 2; stderr: {stderr}"
        );
        assert!(
            stderr.trim().len() > 10,
            "btnode {args:?}: no message on stderr: {stderr:?}"
        );
    }
}

#[test]
fn help_exits_0_on_stdout() {
    let out = btnode(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--overlay-port"));
}

fn lookup_at(addr: std::net::SocketAddr) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let out = btnode(&["lookup", HASH, "--at", &addr.to_string()], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code(), stderr, start.elapsed())
}

/// Accepts connections on a loopback port and hands each to `serve`.
fn fake_server(serve: fn(TcpStream)) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming().take(4).flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
    addr
}

#[test]
fn lookup_at_a_closed_port_says_nothing_listens() {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, stderr, _) = lookup_at(addr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("refused"), "{stderr}");
    assert!(!stderr.contains("fill whole buffer"), "{stderr}");
}

#[test]
fn lookup_at_a_server_that_closes_at_once_says_so() {
    let addr = fake_server(drop);
    let (code, stderr, _) = lookup_at(addr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("closed the connection without answering"),
        "{stderr}"
    );
    assert!(!stderr.contains("fill whole buffer"), "{stderr}");
}

#[test]
fn lookup_at_a_server_that_sends_garbage_says_it_is_not_an_overlay_node() {
    let addr = fake_server(|mut s| {
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    });
    let (code, stderr, _) = lookup_at(addr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not an overlay node"), "{stderr}");
    // A frame-sized length with a body that is not a message.
    let addr = fake_server(|mut s| {
        let _ = s.write_all(&[0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
    });
    let (code, stderr, _) = lookup_at(addr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("not an overlay node"), "{stderr}");
}

#[test]
fn lookup_at_a_server_that_never_answers_times_out() {
    let addr = fake_server(|s| {
        std::thread::sleep(Duration::from_secs(10));
        drop(s);
    });
    let (code, stderr, took) = lookup_at(addr);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no answer within"), "{stderr}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
}
