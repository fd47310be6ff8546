//! BEP 9 `ut_metadata` payloads: decode, and re-encode to the same message.
#![no_main]
use btnode::wire::metadata::{MetadataMessage, METADATA_PIECE_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = MetadataMessage::decode(data) {
        if let MetadataMessage::Data { data, .. } = &m {
            assert!(data.len() <= METADATA_PIECE_LEN);
        }
        assert_eq!(MetadataMessage::decode(&m.encode()).as_ref(), Ok(&m));
    }
});
