//! Bencode: both forms decode the same input alike, and a decoded value
//! re-encodes canonically to bytes that decode to the same value.
#![no_main]
use btnode::core::bencode::{self, Doc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let owned = bencode::decode(data);
    let doc = Doc::parse(data);
    assert_eq!(owned.is_ok(), doc.is_ok());
    if let (Ok(v), Ok(d)) = (&owned, &doc) {
        assert_eq!(&d.root().to_value(), v);
        assert_eq!(d.root().span(), 0..data.len());
        let again = bencode::encode(v);
        assert_eq!(bencode::decode(&again).as_ref(), Ok(v));
    }
    if let Ok((_, used)) = bencode::decode_prefix(data) {
        assert!(used <= data.len());
    }
    if let Ok(Some(span)) = bencode::top_level_span(data, b"info") {
        assert!(span.end <= data.len());
        assert!(bencode::decode(&data[span]).is_ok());
    }
});
