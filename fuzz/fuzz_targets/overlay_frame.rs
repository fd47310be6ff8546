//! Overlay frames: length-prefixed JSON messages read from a stream.
#![no_main]
use btnode::wire::overlay::{read_frame, Message};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok((m, used)) = read_frame(&mut r) {
        assert!(used >= 4);
        let again = m.encode();
        let _ = Message::decode_body(&again[4..]).expect("re-encoded frame decodes");
    }
    let _ = Message::decode_body(data);
});
