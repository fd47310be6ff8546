//! Overlay shutdown with silent nodes: bootstraps that accept and never
//! answer must not hold the process past a few seconds after SIGTERM
//! (discovery, health and gossip check the stop flag before every request,
//! and the join is bounded). Loopback only; kills only the PIDs it started.

mod support;

use std::time::{Duration, Instant};

use support::hostile::HangListener;
use support::*;

#[test]
fn eight_silent_bootstraps_do_not_delay_exit_after_sigterm() {
    let silent: Vec<HangListener> = (0..8).map(|_| HangListener::start()).collect();
    let addrs: Vec<_> = silent.iter().map(|h| h.addr).collect();
    let mut node = OverlayNode::start(&addrs, 0);
    // Discovery is now waiting on the first silent bootstrap.
    assert!(
        silent[0].wait_contacted(Duration::from_secs(5)),
        "the node never contacted its first bootstrap"
    );
    let start = Instant::now();
    sigterm(&node.child);
    let code = wait_exit(&mut node.child, Duration::from_secs(20));
    let took = start.elapsed();
    println!("exit after SIGTERM with 8 silent bootstraps: {took:?}");
    assert_eq!(code, Some(0), "exit status (after {took:?})");
    assert!(took < Duration::from_secs(5), "exit took {took:?}");
}

#[test]
fn a_torrent_node_with_eight_silent_bootstraps_exits_within_5_s_of_sigterm() {
    let silent: Vec<HangListener> = (0..8).map(|_| HangListener::start()).collect();
    let tmp = tempdir();
    let content = tmp.path().join("content.bin");
    make_file(&content, 100_000, 7);
    let torrent = tmp.path().join("content.torrent");
    create_torrent(&content, &torrent, &[]);
    let mut extra = vec![];
    for h in &silent {
        extra.push("-b".to_string());
        extra.push(h.addr.to_string());
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let mut node = Node::start(&torrent, &tmp.path().join("dl"), &extra);
    assert!(
        silent[0].wait_contacted(Duration::from_secs(5)),
        "the node never contacted its first bootstrap"
    );
    let start = Instant::now();
    node.sigterm();
    let code = node.wait_exit(Duration::from_secs(30));
    let took = start.elapsed();
    println!("torrent mode: exit after SIGTERM with 8 silent bootstraps: {took:?}");
    assert_eq!(
        code,
        Some(0),
        "exit status (after {took:?})\n{}",
        node.log()
    );
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?}\n{}",
        node.log()
    );
}
