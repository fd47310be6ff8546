//! BEP 10 extension handshake payloads.
#![no_main]
use btnode::wire::peer::ExtendedHandshake;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = ExtendedHandshake::decode(data) {
        let _ = ExtendedHandshake::decode(&h.encode()).expect("re-encoded handshake decodes");
    }
});
