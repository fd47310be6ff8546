//! HTTP tracker replies (announce and scrape bodies), as the client reads them.
#![no_main]
use btnode::wire::tracker::{decode_scrape, AnnounceReply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = AnnounceReply::decode(data);
    let _ = decode_scrape(data);
});
