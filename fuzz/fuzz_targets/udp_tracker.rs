//! BEP 15 packets both ways: requests as the tracker reads them, replies
//! as the client reads them.
#![no_main]
use btnode::wire::udp_tracker::{decode_announce, decode_connect, decode_scrape, UdpRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = UdpRequest::decode(data);
    // The transaction id we would expect: the one in the packet, so the
    // fuzzer gets past the header check.
    let tid = data
        .get(4..8)
        .map_or(0, |b| u32::from_be_bytes(b.try_into().expect("4 bytes")));
    let _ = decode_connect(data, tid);
    let _ = decode_announce(data, tid, false);
    let _ = decode_announce(data, tid, true);
    let requested = data.first().map_or(0, |&b| b as usize % 80);
    let _ = decode_scrape(data, tid, requested);
});
