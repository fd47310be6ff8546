//! `https://` trackers: a CA and a server certificate the test makes with
//! `openssl`, a TLS-terminating front (rustls, in this file) before a
//! `btnode tracker`, and a swarm whose only tracker is the https URL.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;

/// Makes `ca.pem` (a self-signed CA) and `server.pem`/`server.key` (for
/// IP 127.0.0.1, signed by that CA) in `dir`; None if `openssl` is missing.
fn make_pki(dir: &Path, name: &str) -> Option<PathBuf> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&d)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(())
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=btnode test CA",
    ])?;
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ])?;
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ])?;
    Some(d)
}

/// A TLS front on an ephemeral loopback port: each connection's request
/// head goes to `backend` in plain HTTP, the reply comes back over TLS.
struct TlsFront {
    addr: SocketAddr,
    /// Connections accepted (TLS handshake attempted or not).
    accepted: Arc<AtomicUsize>,
    /// Requests that made it through TLS to the backend.
    forwarded: Arc<AtomicUsize>,
}

impl TlsFront {
    fn start(pki: &Path, backend: SocketAddr) -> TlsFront {
        let certs: Vec<_> =
            rustls_pemfile::certs(&mut &std::fs::read(pki.join("server.pem")).unwrap()[..])
                .collect::<Result<_, _>>()
                .unwrap();
        let key =
            rustls_pemfile::private_key(&mut &std::fs::read(pki.join("server.key")).unwrap()[..])
                .unwrap()
                .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let forwarded = Arc::new(AtomicUsize::new(0));
        let (a, f) = (accepted.clone(), forwarded.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                a.fetch_add(1, Ordering::SeqCst);
                let (config, f) = (config.clone(), f.clone());
                std::thread::spawn(move || {
                    let _ = proxy_one(config, tcp, backend, &f);
                });
            }
        });
        TlsFront {
            addr,
            accepted,
            forwarded,
        }
    }
}

fn proxy_one(
    config: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    backend: SocketAddr,
    forwarded: &AtomicUsize,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut b = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut b)?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&b[..n]);
    }
    forwarded.fetch_add(1, Ordering::SeqCst);
    let mut up = TcpStream::connect(backend)?;
    up.set_read_timeout(Some(Duration::from_secs(10)))?;
    up.write_all(&head)?;
    let mut reply = Vec::new();
    up.read_to_end(&mut reply)?;
    tls.write_all(&reply)?;
    tls.conn.send_close_notify();
    tls.flush()
}

fn backend_of(tracker: &Tracker) -> SocketAddr {
    tracker
        .url
        .trim_start_matches("http://")
        .trim_end_matches("/announce")
        .parse()
        .unwrap()
}

/// Starts `btnode` with `SSL_CERT_FILE` set to `ca` (through `env`, which
/// execs, so the child's PID stays btnode's).
fn node_trusting(ca: &Path, torrent: &Path, dir: &Path, extra: &[&str]) -> Node {
    let var = format!("SSL_CERT_FILE={}", ca.display());
    Node::start_wrapped(&["env", &var], torrent, dir, extra)
}

#[test]
fn a_swarm_finds_itself_through_an_https_tracker() {
    let tmp = tempdir();
    let Some(pki) = make_pki(tmp.path(), "pki") else {
        eprintln!("skipping: no openssl on this machine");
        return;
    };
    let tracker = Tracker::start();
    let front = TlsFront::start(&pki, backend_of(&tracker));
    let url = format!("https://{}/announce", front.addr);
    let content = tmp.path().join("seed/shared.bin");
    make_file(&content, 1024 * 1024 + 13, 5);
    let torrent = tmp.path().join("shared.torrent");
    create_torrent(
        &content,
        &torrent,
        &["--tracker", &url, "--piece-length", "65536"],
    );
    let ca = pki.join("ca.pem");
    let seed_extra = ["--announce-interval", "1", "--discovery-mode", "tracker"];
    let _seeder = node_trusting(&ca, &torrent, &tmp.path().join("seed"), &seed_extra);
    let mut leecher = node_trusting(
        &ca,
        &torrent,
        &tmp.path().join("leech"),
        &[
            "--announce-interval",
            "1",
            "--discovery-mode",
            "tracker",
            "--exit-on-complete",
        ],
    );
    assert_eq!(
        leecher.wait_exit(Duration::from_secs(90)),
        Some(0),
        "{}",
        leecher.log()
    );
    assert_eq!(
        sha256(&tmp.path().join("leech/shared.bin")),
        sha256(&content)
    );
    assert!(front.forwarded.load(Ordering::SeqCst) >= 2);
}

#[test]
fn an_untrusted_certificate_fails_the_announce_with_a_clear_error() {
    let tmp = tempdir();
    let (Some(pki), Some(other)) = (make_pki(tmp.path(), "pki"), make_pki(tmp.path(), "other"))
    else {
        eprintln!("skipping: no openssl on this machine");
        return;
    };
    let tracker = Tracker::start();
    let front = TlsFront::start(&pki, backend_of(&tracker));
    let url = format!("https://{}/announce", front.addr);
    let content = tmp.path().join("seed/shared.bin");
    make_file(&content, 200 * 1024, 6);
    let torrent = tmp.path().join("shared.torrent");
    create_torrent(
        &content,
        &torrent,
        &["--tracker", &url, "--piece-length", "65536"],
    );
    // Trusts only a CA that did not sign the front's certificate.
    let node = node_trusting(
        &other.join("ca.pem"),
        &torrent,
        &tmp.path().join("seed"),
        &["--announce-interval", "1", "--discovery-mode", "tracker"],
    );
    assert!(
        wait_until(Duration::from_secs(30), || {
            front.accepted.load(Ordering::SeqCst) >= 2 && node.log().contains("certificate")
        }),
        "{}",
        node.log()
    );
    let log = node.log();
    assert!(
        log.contains(&url) || log.contains(&front.addr.to_string()),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // No request got past TLS, and the node is still running.
    assert_eq!(front.forwarded.load(Ordering::SeqCst), 0);
    let mut node = node;
    assert_eq!(node.wait_exit(Duration::from_millis(100)), None, "{log}");
}
