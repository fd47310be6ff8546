//! BEP 11 peer exchange payloads.
#![no_main]
use btnode::wire::pex::{PexMessage, MAX_PEX_PEERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = PexMessage::decode(data) {
        assert!(m.added.len() <= MAX_PEX_PEERS && m.dropped.len() <= MAX_PEX_PEERS);
    }
});
