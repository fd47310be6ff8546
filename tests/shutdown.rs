//! A node stops within a bound whatever its peers are doing: SIGTERM while
//! many dials hang in their handshake (listeners that accept and never
//! answer) and a rate-limited download is in progress must exit 0 within
//! 5 s with every verified piece flushed, which a restart then finds on
//! disk. Everything stays on 127.0.0.1.

mod support;

use std::time::{Duration, Instant};

use support::hostile::HangListener;
use support::*;

const PIECE_LEN: u32 = 32 * 1024;
const FILE_LEN: usize = 64 * PIECE_LEN as usize;
const LONG: Duration = Duration::from_secs(60);
/// The bound the issue sets for a stop.
const STOP_BOUND: Duration = Duration::from_secs(5);

#[test]
fn sigterm_with_hanging_dials_and_a_throttled_download_exits_promptly_and_keeps_pieces() {
    let tmp = tempdir();
    let file = tmp.path().join("seed/file.bin");
    make_file(&file, FILE_LEN, 0x5107);
    let torrent = tmp.path().join("file.torrent");
    create_torrent(&file, &torrent, &["--piece-length", &PIECE_LEN.to_string()]);
    let seeder = Node::start(&torrent, &tmp.path().join("seed"), &[]);
    assert!(
        wait_until(LONG, || seeder.is_complete()),
        "seeder never verified its file; log:\n{}",
        seeder.log()
    );
    let hangs: Vec<HangListener> = (0..20).map(|_| HangListener::start()).collect();
    let mut args = vec![
        "--peer".to_string(),
        seeder.addr(),
        // 64 KiB/s: two pieces a second, so the download is surely still
        // running when the signal comes.
        "--download-rate-limit".to_string(),
        "65536".to_string(),
        "--discovery-mode".to_string(),
        "tracker".to_string(),
    ];
    for h in &hangs {
        args.push("--peer".into());
        args.push(h.addr.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = tmp.path().join("leech");
    let mut leecher = Node::start(&torrent, &dir, &args);
    assert!(
        wait_until(LONG, || hangs
            .iter()
            .all(|h| h.accepted.load(std::sync::atomic::Ordering::SeqCst) > 0)
            && leecher.stat_u64("pieces_have").is_some_and(|n| n >= 2)),
        "the leecher never dialed every hanging peer and got two pieces; log:\n{}",
        leecher.log()
    );
    assert!(!leecher.is_complete(), "the download finished too soon");
    let signalled = Instant::now();
    leecher.sigterm();
    let code = leecher.wait_exit(STOP_BOUND + Duration::from_secs(15));
    let took = signalled.elapsed();
    eprintln!("stopped {took:?} after SIGTERM with exit code {code:?}");
    assert_eq!(code, Some(0), "log:\n{}", leecher.log());
    assert!(
        took <= STOP_BOUND,
        "the node took {took:?} to stop (bound {STOP_BOUND:?}); log:\n{}",
        leecher.log()
    );
    let status = leecher.status().expect("a final status file");
    assert_eq!(status["state"], "stopped");
    let have = status["pieces_have"].as_u64().unwrap();
    assert!((2..64).contains(&have), "pieces at stop: {have}");
    // A restart with no peers finds every piece it had verified.
    let restarted = Node::start(&torrent, &dir, &["--discovery-mode", "tracker"]);
    assert!(
        wait_until(LONG, || restarted
            .status()
            .is_some_and(|s| s["pieces_resumed"].as_u64() == Some(have))),
        "the restart did not find the {have} pieces verified before the stop; status {:?}; log:\n{}",
        restarted.status(),
        restarted.log()
    );
}
