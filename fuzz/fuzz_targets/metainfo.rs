//! Torrent metainfo: never panics, and what it accepts is consistent.
#![no_main]
use btnode::core::metainfo::{self, Metainfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    let mut offset = 0;
    for f in &m.files {
        assert_eq!(f.offset, offset);
        offset += f.length;
        assert!(f.path.len() >= 1 && f.path.len() <= metainfo::MAX_PATH_DEPTH + 1);
        let _ = f.relative_path();
    }
    assert_eq!(offset, m.total_length);
    assert_eq!(
        m.num_pieces() as u64,
        m.total_length.div_ceil(m.piece_length)
    );
    let last = m.num_pieces() - 1;
    assert!(m.piece_len(last) > 0 && m.blocks_in_piece(last) > 0);
    assert!(m.trackers.len() <= metainfo::MAX_TRACKER_TIERS);
    assert!(m.tracker_urls().len() <= metainfo::MAX_TRACKERS);
});
