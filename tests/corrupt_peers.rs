//! A leecher beside an honest btnode seeder and a hostile one that flips
//! the bits of every other piece: the leecher must finish with the right
//! bytes, and the corrupt peer must cost only a few failed pieces (it is
//! suspended as soon as a piece it contributed to fails, banned on the
//! evidence, and its data in flight is discarded). Loopback only.

mod support;

use std::time::Duration;

use support::hostile::FlippingSeeder;
use support::*;

const PIECE_LEN: u32 = 128 * 1024;
const FILE_LEN: usize = 64 * PIECE_LEN as usize;
const LONG: Duration = Duration::from_secs(120);
/// Failed pieces we accept before the corrupt peer is out.
const MAX_FAILED: u64 = 3;

#[test]
fn a_bit_flipping_seeder_costs_at_most_a_few_pieces() {
    let tmp = tempdir();
    let file = tmp.path().join("seed/file.bin");
    make_file(&file, FILE_LEN, 0xf11b);
    let content = std::fs::read(&file).unwrap();
    let torrent = tmp.path().join("file.torrent");
    create_torrent(&file, &torrent, &["--piece-length", &PIECE_LEN.to_string()]);
    let meta = btnode::storage::torrent_file::read(&torrent).unwrap();
    let honest = Node::start(&torrent, &tmp.path().join("seed"), &[]);
    assert!(
        wait_until(LONG, || honest.is_complete()),
        "seeder never verified its file; log:\n{}",
        honest.log()
    );
    let flipper = FlippingSeeder::start(meta.info_hash, content, PIECE_LEN, |p| p % 2 == 1);
    let dir = tmp.path().join("leech");
    let mut leecher = Node::start(
        &torrent,
        &dir,
        &[
            "--peer",
            &flipper.addr.to_string(),
            "--peer",
            &honest.addr(),
            "--exit-on-complete",
            "--discovery-mode",
            "tracker",
        ],
    );
    assert_eq!(
        leecher.wait_exit(LONG),
        Some(0),
        "leecher log:\n{}",
        leecher.log()
    );
    assert_eq!(sha256(&dir.join("file.bin")), sha256(&file));
    let status = leecher.status().expect("final status");
    let failed = status["hash_failures"].as_u64().unwrap();
    let wasted = status["wasted"].as_u64().unwrap();
    eprintln!(
        "pieces failed: {failed}, bytes wasted: {wasted}, blocks from the flipper: {} ({} corrupt)",
        flipper
            .blocks_served
            .load(std::sync::atomic::Ordering::SeqCst),
        flipper
            .corrupt_served
            .load(std::sync::atomic::Ordering::SeqCst),
    );
    assert!(
        failed <= MAX_FAILED,
        "{failed} pieces failed ({wasted} bytes wasted) before the corrupt peer was out; log:\n{}",
        leecher.log()
    );
    assert!(
        !honest.log().contains("unknown connection"),
        "a normal close was logged as a protocol violation:\n{}",
        honest.log()
    );
}
