//! DNS queries as the UDP server answers them.
#![no_main]
use btnode::dns::records::{Record, Records};
use btnode::dns::server::answer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = 1_000_000;
    let mut records = Records::default();
    for (name, ip) in [("boot", [10, 0, 0, 1]), ("boot.btnode", [10, 0, 0, 2])] {
        let r = Record {
            name: name.to_string(),
            ip: std::net::Ipv4Addr::from(ip).into(),
            ttl: 60,
            timestamp: now,
            deleted: false,
        };
        records.merge(r, now);
    }
    if let Some(reply) = answer(data, &records, now, data.len(), Some("btnode")) {
        assert!(reply.len() >= 12);
    }
    let _ = answer(data, &records, now, 0, None);
});
