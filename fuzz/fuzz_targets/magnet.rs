//! Magnet links (BEP 9): parse, and what parses prints back to the same link.
#![no_main]
use btnode::core::magnet::{Magnet, MAX_MAGNET_LEN, MAX_MAGNET_PEERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Magnet::parse(text) {
        assert!(m.peers.len() <= MAX_MAGNET_PEERS);
        let uri = m.to_uri();
        if uri.len() <= MAX_MAGNET_LEN {
            assert_eq!(Magnet::parse(&uri).as_ref(), Ok(&m), "{uri}");
        }
    }
});
