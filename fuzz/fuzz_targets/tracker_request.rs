//! The embedded tracker's request parsing (announce and scrape query
//! strings), with a parsed announce applied to a registry through the HTTP
//! front's handlers.
#![no_main]
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use btnode::tracker::http::{announce_body, scrape_body};
use btnode::tracker::registry::{Registry, ServerOptions};
use btnode::wire::tracker::{announce_query, parse_announce_query, parse_query};
use libfuzzer_sys::fuzz_target;
use parking_lot::Mutex;

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_query(query);
    let now = Instant::now();
    let registry = Mutex::new(Registry::new(ServerOptions::default(), now));
    let _ = announce_body(query, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), now, &registry);
    if let Ok((req, http)) = parse_announce_query(query) {
        let again = parse_announce_query(&announce_query(&req, &http));
        assert_eq!(again.expect("re-encoded query parses"), (req, http));
    }
    let _ = scrape_body(query, now, &registry);
});
