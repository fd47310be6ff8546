//! The embedded tracker's request parsing (announce and scrape query
//! strings), with a parsed announce applied to a registry.
#![no_main]
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use btnode::tracker::server::{Registry, ServerOptions};
use btnode::wire::tracker::{parse_query, parse_scrape_query, AnnounceRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_query(query);
    let now = Instant::now();
    let mut registry = Registry::new(ServerOptions::default(), now);
    if let Ok(req) = AnnounceRequest::from_query(query) {
        let _ = registry.announce(&req, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), now);
        let _ = AnnounceRequest::from_query(&req.to_query()).expect("re-encoded query parses");
    }
    if let Ok(hashes) = parse_scrape_query(query) {
        let _ = registry.scrape(&hashes, now);
    }
});
