//! Pending outgoing dials must not shut out incoming peers: a seeder told
//! of more unreachable-but-accepting addresses than `--max-peers` (they
//! accept and never answer the handshake, so each dial holds its thread
//! for the whole handshake timeout) still serves a real leecher that
//! connects to it meanwhile. Everything stays on 127.0.0.1.

mod support;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(60);
const HANGING: usize = 8;

/// Listeners that accept and then say nothing, holding every socket until
/// dropped; `accepted` counts the connections.
struct Hanging {
    addrs: Vec<String>,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Hanging {
    fn start(n: usize) -> Hanging {
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let mut addrs = Vec::new();
        let mut threads = Vec::new();
        for _ in 0..n {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            addrs.push(l.local_addr().unwrap().to_string());
            let (accepted, stop, held) = (accepted.clone(), stop.clone(), held.clone());
            threads.push(std::thread::spawn(move || {
                // Bounded: the test ends it (stop) or LONG passes.
                let t0 = std::time::Instant::now();
                while !stop.load(Ordering::SeqCst) && t0.elapsed() < LONG {
                    match l.accept() {
                        Ok((s, _)) => {
                            held.lock().unwrap().push(s);
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            }));
        }
        Hanging {
            addrs,
            accepted,
            stop,
            threads,
        }
    }
}

impl Drop for Hanging {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn hanging_dials_do_not_refuse_an_incoming_leecher() {
    let tmp = tempdir();
    let content = tmp.path().join("seed/file.bin");
    make_file(&content, 2 * 1024 * 1024 + 77, 11);
    let torrent = tmp.path().join("file.torrent");
    create_torrent(&content, &torrent, &[]);
    let hanging = Hanging::start(HANGING);
    let mut args = vec!["--max-peers", "4"];
    for a in &hanging.addrs {
        args.extend(["--peer", a.as_str()]);
    }
    let seeder = Node::start(&torrent, &tmp.path().join("seed"), &args);
    let port = seeder.wait_port();
    // The seeder's dials hold their threads: wait until it has used its
    // whole dial budget (it dials no more while they hang).
    assert!(
        wait_until(LONG, || hanging.accepted.load(Ordering::SeqCst) >= 3),
        "the seeder never dialed: {}",
        seeder.log()
    );
    let mut leecher = Node::start(
        &torrent,
        &tmp.path().join("leech"),
        &["--peer", &format!("127.0.0.1:{port}"), "--exit-on-complete"],
    );
    assert_eq!(leecher.wait_exit(LONG), Some(0), "{}", leecher.log());
    assert_eq!(sha256(&tmp.path().join("leech/file.bin")), sha256(&content));
    let log = seeder.log();
    assert!(
        !log.contains("at the peer limit"),
        "the seeder refused an incoming peer while only dials were pending:\n{log}"
    );
    drop(hanging);
}
