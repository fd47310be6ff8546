//! Sealed (swarm key) frames: a raw frame body opened under a two-key ring,
//! checked for freshness, then decoded; and the seal of whatever opens (or
//! of the input as a payload) opens again to the same bytes.
#![no_main]
use btnode::wire::overlay::{read_raw_frame, Message};
use btnode::wire::sealed::{Context, Keyring, ReplayGuard, SwarmKey, OVERLAY_REQUEST};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ring = Keyring::new(vec![SwarmKey::new([1; 32]), SwarmKey::new([2; 32])]).unwrap();
    let ctx = Context::request(OVERLAY_REQUEST);
    let mut guard = ReplayGuard::new(30_000, 8);
    let mut r = data;
    while let Ok(body) = read_raw_frame(&mut r) {
        if let Ok(opened) = ring.open(&ctx, &body) {
            let _ = guard.check(opened.timestamp_ms, opened.nonce, opened.timestamp_ms);
            let _ = Message::decode_body(opened.payload);
        }
    }
    let _ = ring.open(&ctx, data);
    // Round trip: anything sealed opens to itself, under the sending key.
    let now = u64::from_le_bytes(data.get(..8).unwrap_or(&[0; 8]).try_into().unwrap());
    let sealed = ring.seal(&ctx, data, now, [7; 16]);
    let opened = ring.open(&ctx, &sealed).expect("a sealed frame opens");
    assert_eq!(opened.payload, data);
    assert_eq!((opened.key_index, opened.timestamp_ms), (0, now));
    assert!(guard.len() <= 8);
});
