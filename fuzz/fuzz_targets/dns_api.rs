//! The DNS REST API's request handling (method, path, JSON body), without
//! HTTP: the first byte picks the method, up to the first newline is the
//! path, the rest is the body.
#![no_main]
use btnode::dns::api::handle;
use btnode::dns::records::Records;
use libfuzzer_sys::fuzz_target;
use parking_lot::RwLock;

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let method = ["GET", "POST", "DELETE", "PUT"][m as usize % 4];
    let (path, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let Ok(path) = std::str::from_utf8(path) else {
        return;
    };
    let records = RwLock::new(Records::default());
    let now = 1_000_000;
    let _ = handle(method, path, body, &records, now);
    // The same body as gossip and as a registration, the two JSON bodies.
    let _ = handle("POST", "/gossip", body, &records, now + 1);
    let _ = handle("POST", "/records", body, &records, now + 2);
    let _ = handle("GET", "/records", b"", &records, now + 3);
});
