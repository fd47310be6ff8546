//! Peer wire frames: a stream of length-prefixed messages, cut anywhere.
#![no_main]
use btnode::wire::peer::{decode_body, decode_frame, max_frame_len};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // The first two bytes pick the torrent size (and so the frame limit).
    let pieces = u16::from_be_bytes([data[0], data[1]]) as usize + 1;
    let max = max_frame_len(pieces);
    let mut buf = &data[2..];
    while let Ok(Some((_msg, used))) = decode_frame(buf, max) {
        assert!(used > 0 && used <= buf.len());
        buf = &buf[used..];
    }
    if let Some((&id, body)) = data.split_first() {
        let _ = decode_body(id, body);
    }
});
