//! Lock order of the overlay under concurrent use, through the public API
//! only, and proof that the `btnode` binary the other tests spawn runs with
//! lock-cycle detection (issue 10, item 1).

mod support;

use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use btnode::core::{InfoHash, PeerId};
use btnode::overlay::{Overlay, OverlayConfig};
use btnode::runtime::deadlock;

fn config(bootstrap: Vec<String>) -> OverlayConfig {
    let mut c = OverlayConfig::with_defaults(IpAddr::from([127, 0, 0, 1]), 0, bootstrap);
    c.gossip_interval = Duration::from_millis(20);
    c.health_interval = Duration::from_secs(60);
    c.push = true;
    c
}

/// Two overlays: `a`'s own announce/withdraw calls (discovery's side) race
/// its gossip thread, which `b`'s announces keep pushing to `b`. Bounded in
/// time and operations; a lock cycle or a stall fails.
#[test]
fn announces_and_gossip_run_concurrently_without_a_lock_cycle() {
    const RUN: Duration = Duration::from_secs(4);
    const MAX_OPS: u64 = 100_000;
    let b = Arc::new(Overlay::start(config(vec![])).unwrap());
    let a = Arc::new(Overlay::start(config(vec![b.local_addr().to_string()])).unwrap());
    assert!(
        support::wait_until(Duration::from_secs(5), || a.member_count() > 0
            && b.member_count() > 0),
        "the two overlays never met"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut counts = Vec::new();
    let mut workers = Vec::new();
    // `a` mostly withdraws what it never announced: the lock pattern of
    // announce/withdraw without changing its store, so `a` and `b` stay in
    // sync and `a`'s pushes (news from `b`) take the digest-only path.
    for (node, base, announce_every) in [
        (a.clone(), 1u8, 16u16),
        (a.clone(), 2, 16),
        (a.clone(), 3, 16),
        (b.clone(), 4, 1),
    ] {
        let stop = stop.clone();
        let ops = Arc::new(AtomicU64::new(0));
        counts.push(ops.clone());
        workers.push(std::thread::spawn(move || {
            let mut n = 0u16;
            while !stop.load(Ordering::SeqCst) && ops.load(Ordering::SeqCst) < MAX_OPS {
                let hash = InfoHash([base; 20]);
                let port = 7000 + u16::from(base) * 100 + n % 50;
                if n.is_multiple_of(announce_every) {
                    node.announce(hash, PeerId([base; 20]), port, 0);
                } else {
                    node.withdraw(InfoHash([0xee; 20]), port);
                }
                n = n.wrapping_add(1);
                ops.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let start = Instant::now();
    let read = || -> Vec<u64> { counts.iter().map(|c| c.load(Ordering::SeqCst)).collect() };
    let (mut last, mut last_change) = (read(), vec![Instant::now(); counts.len()]);
    let mut cycles = Vec::new();
    let mut stuck = None;
    while start.elapsed() < RUN && read().iter().all(|&n| n < MAX_OPS) {
        std::thread::sleep(Duration::from_millis(50));
        cycles = deadlock::cycles();
        if !cycles.is_empty() {
            break;
        }
        let now = read();
        for i in 0..now.len() {
            if now[i] != last[i] {
                last_change[i] = Instant::now();
            } else if last_change[i].elapsed() > Duration::from_secs(2) {
                stuck = Some((i, now[i]));
            }
        }
        last = now;
        if stuck.is_some() {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    // A cycle formed just before the end shows as workers that never stop.
    let finished = support::wait_until(Duration::from_secs(5), || {
        workers.iter().all(|w| w.is_finished())
    });
    if cycles.is_empty() {
        cycles = deadlock::cycles();
    }
    // Stuck threads are left behind (never joined): the process ends anyway.
    assert!(cycles.is_empty(), "lock cycle:\n{}", cycles.join("\n"));
    assert_eq!(
        stuck, None,
        "a worker (index, operations) made no progress for 2 s"
    );
    assert!(finished, "workers did not stop within 5 s: stuck on a lock");
    for w in workers {
        w.join().unwrap();
    }
    let ops: u64 = read().iter().sum();
    eprintln!("{ops} announce/withdraw operations");
}

/// The binary built for the tests has detection on: asked to deadlock two
/// threads on purpose, its watchdog must stop it with the deadlock status.
#[test]
fn the_tested_binary_stops_on_a_lock_cycle() {
    let dir = support::tempdir();
    let mut child = Command::new(support::bin())
        .args(["--bind", "127.0.0.1", "--overlay-port", "0"])
        .env(deadlock::ENV_SELFTEST, "1")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut code = None;
    support::wait_until(Duration::from_secs(10), || {
        code = child.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    });
    if code.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        code,
        Some(Some(deadlock::EXIT_CODE)),
        "the watchdog did not stop the binary; stderr:\n{stderr}"
    );
    assert!(stderr.contains("deadlock"), "stderr:\n{stderr}");
}
