//! Peerwire codec (BEP 3, with the BEP 10 extension handshake and BEP 11
//! peer exchange): pure functions from bytes to typed messages and back. No
//! sockets here; the connection threads in `crate::peer` feed these
//! functions.
//!
//! Extension messages are decoded here too, so the swarm sees typed values:
//! id 0 is the extension handshake, [`OUR_UT_PEX_ID`] (the id our
//! handshake asks peers to send `ut_pex` under, a constant on our side) is
//! peer exchange and [`OUR_UT_METADATA_ID`] is metadata exchange (BEP 9).
//! Outgoing ones travel under the id the *peer* gave, carried in
//! [`Message::Pex`] and [`Message::Metadata`]. An extension we do not speak, or a
//! payload that does not decode, stays a raw [`Message::Extended`]: not a
//! reason to drop the peer.
//!
//! Framing (length prefix, id, piece header, limits) is in [`super::frame`]:
//! the reader in `crate::peer` uses it to read a piece message in two steps
//! (its header, then the payload straight into storage) without a copy, and
//! every other message's body goes through [`decode_body`]; [`decode_frame`]
//! decodes a whole buffered frame with the same parser.

use super::frame::{self, FrameHead, PieceHead, Prefix, PIECE_FIELDS_LEN};
pub use super::frame::{max_frame_len, piece_header, PIECE_HEADER_LEN};
use crate::core::bencode::{self, Value};
use crate::core::{InfoHash, PeerId};
use crate::wire::metadata::{MetadataMessage, OUR_UT_METADATA_ID};
use crate::wire::pex::{PexMessage, OUR_UT_PEX_ID};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";
pub const HANDSHAKE_LEN: usize = 68;
/// Largest block we serve when asked (requests over this drop the peer).
pub const MAX_REQUEST_LEN: u32 = 128 * 1024;
/// Reserved bit for the extension protocol (BEP 10), byte 5.
pub const RESERVED_EXTENSION: u8 = 0x10;

pub mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    pub const PORT: u8 = 9;
    pub const EXTENDED: u8 = 20;
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("not the BitTorrent protocol")]
    NotBitTorrent,
    #[error("message of {len} bytes is over the {max} limit")]
    TooLong { len: u32, max: u32 },
    #[error("message id {id} has a bad length {len}")]
    BadLength { id: u8, len: usize },
    #[error("request for {0} bytes is over the limit")]
    RequestTooLarge(u32),
    #[error("bad extension handshake")]
    BadExtended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

impl Handshake {
    /// Our handshake: the extension protocol bit set.
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Handshake {
        let mut reserved = [0u8; 8];
        reserved[5] |= RESERVED_EXTENSION;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    pub fn supports_extensions(&self) -> bool {
        self.reserved[5] & RESERVED_EXTENSION != 0
    }

    pub fn encode(&self) -> [u8; HANDSHAKE_LEN] {
        let mut out = [0u8; HANDSHAKE_LEN];
        out[0] = 19;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    pub fn decode(bytes: &[u8; HANDSHAKE_LEN]) -> Result<Handshake, WireError> {
        if bytes[0] != 19 || &bytes[1..20] != PROTOCOL {
            return Err(WireError::NotBitTorrent);
        }
        let take20 = |r: std::ops::Range<usize>| -> [u8; 20] { bytes[r].try_into().unwrap() };
        Ok(Handshake {
            reserved: bytes[20..28].try_into().unwrap(),
            info_hash: InfoHash(take20(28..48)),
            peer_id: PeerId(take20(48..68)),
        })
    }
}

/// A block request (also the body of a cancel).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockRequest {
    pub index: u32,
    pub begin: u32,
    pub length: u32,
}

/// The extension handshake fields btnode reads and sends (BEP 10).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtendedHandshake {
    /// How many outstanding requests the peer accepts.
    pub reqq: Option<u32>,
    pub client: Option<String>,
    pub listen_port: Option<u16>,
    /// The id the sender wants `ut_pex` (BEP 11) messages sent with; in
    /// our own handshake, the id we read them under.
    pub ut_pex: Option<u8>,
    /// The id the sender wants `ut_metadata` (BEP 9) messages sent with.
    pub ut_metadata: Option<u8>,
    /// The size of the info dictionary the sender can serve. A claim over
    /// [`crate::wire::metadata::MAX_METADATA_SIZE`] is kept (the fetcher refuses the peer for it);
    /// a negative one reads as absent.
    pub metadata_size: Option<u64>,
    /// BEP 10 `yourip`: the receiver's address as the sender sees it
    /// (4 or 16 bytes on the wire).
    pub yourip: Option<IpAddr>,
    /// BEP 10 `ipv6`: the sender's own IPv6 address (16 bytes).
    pub ipv6: Option<Ipv6Addr>,
}

impl ExtendedHandshake {
    pub fn encode(&self) -> Vec<u8> {
        let mut m: Vec<(&str, Value)> = Vec::new();
        if let Some(id) = self.ut_metadata {
            m.push(("ut_metadata", Value::Int(id.into())));
        }
        if let Some(id) = self.ut_pex {
            m.push(("ut_pex", Value::Int(id.into())));
        }
        let mut d = vec![("m", Value::dict(m))];
        if let Some(size) = self.metadata_size {
            d.push((
                "metadata_size",
                Value::Int(size.min(i64::MAX as u64) as i64),
            ));
        }
        if let Some(q) = self.reqq {
            d.push(("reqq", Value::Int(q as i64)));
        }
        if let Some(v) = &self.client {
            d.push(("v", Value::bytes(v.as_bytes())));
        }
        if let Some(p) = self.listen_port {
            d.push(("p", Value::Int(p as i64)));
        }
        if let Some(ip) = self.yourip {
            let bytes = match ip.to_canonical() {
                IpAddr::V4(v4) => v4.octets().to_vec(),
                IpAddr::V6(v6) => v6.octets().to_vec(),
            };
            d.push(("yourip", Value::Bytes(bytes)));
        }
        if let Some(v6) = self.ipv6 {
            d.push(("ipv6", Value::Bytes(v6.octets().to_vec())));
        }
        bencode::encode(&Value::dict(d))
    }

    pub fn decode(payload: &[u8]) -> Result<ExtendedHandshake, WireError> {
        // Some clients append data after the dict; use the prefix only.
        let (v, _) = bencode::decode_prefix(payload).map_err(|_| WireError::BadExtended)?;
        if v.as_dict().is_none() {
            return Err(WireError::BadExtended);
        }
        Ok(ExtendedHandshake {
            reqq: v
                .get("reqq")
                .and_then(Value::as_int)
                .filter(|&q| q > 0)
                .map(|q| q.min(u32::MAX as i64) as u32),
            client: v.get("v").and_then(Value::as_str).map(str::to_string),
            listen_port: v
                .get("p")
                .and_then(Value::as_int)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0),
            // 0 means "disabled" (BEP 10); ids are one byte.
            ut_pex: extension_id(&v, "ut_pex"),
            ut_metadata: extension_id(&v, "ut_metadata"),
            metadata_size: v
                .get("metadata_size")
                .and_then(Value::as_int)
                .and_then(|n| u64::try_from(n).ok()),
            yourip: v.get("yourip").and_then(Value::as_bytes).and_then(ip_of),
            ipv6: v
                .get("ipv6")
                .and_then(Value::as_bytes)
                .and_then(|b| <[u8; 16]>::try_from(b).ok())
                .map(Ipv6Addr::from),
        })
    }
}

/// A compact address: 4 bytes IPv4, 16 bytes IPv6, anything else none.
fn ip_of(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => Some(Ipv4Addr::from(<[u8; 4]>::try_from(b).ok()?).into()),
        16 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(b).ok()?).into()),
        _ => None,
    }
}

/// The id a handshake's `m` dict gives `name`: one byte, 0 meaning disabled.
fn extension_id(hs: &Value, name: &str) -> Option<u8> {
    hs.get("m")
        .and_then(|m| m.get(name))
        .and_then(Value::as_int)
        .and_then(|id| u8::try_from(id).ok())
        .filter(|&id| id != 0)
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    Bitfield(Vec<u8>),
    Request(BlockRequest),
    Piece {
        index: u32,
        begin: u32,
        data: Vec<u8>,
    },
    Cancel(BlockRequest),
    Port(u16),
    /// BEP 10 extension handshake (extension id 0).
    ExtendedHandshake(ExtendedHandshake),
    /// BEP 11 peer exchange. `ext_id` is the id it travels under: ours
    /// ([`OUR_UT_PEX_ID`]) when received, the peer's when sent.
    Pex {
        ext_id: u8,
        pex: PexMessage,
    },
    /// BEP 9 metadata exchange. `ext_id` as for [`Message::Pex`]:
    /// [`OUR_UT_METADATA_ID`] when received, the peer's when sent.
    Metadata {
        ext_id: u8,
        msg: MetadataMessage,
    },
    /// Any other extension message, or one of the above whose payload did
    /// not decode (ignored, not an error).
    Extended {
        ext_id: u8,
        payload: Vec<u8>,
    },
    /// An id we do not know; skipped, as BEP 3 asks.
    Unknown(u8),
}

/// Decodes the body (id and payload, without the length prefix) of a frame.
pub fn decode_body(id: u8, body: &[u8]) -> Result<Message, WireError> {
    let bad = || WireError::BadLength {
        id,
        len: body.len(),
    };
    let u32_at = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().unwrap());
    let exact = |n: usize| if body.len() == n { Ok(()) } else { Err(bad()) };
    Ok(match id {
        id::CHOKE => exact(0).map(|_| Message::Choke)?,
        id::UNCHOKE => exact(0).map(|_| Message::Unchoke)?,
        id::INTERESTED => exact(0).map(|_| Message::Interested)?,
        id::NOT_INTERESTED => exact(0).map(|_| Message::NotInterested)?,
        id::HAVE => {
            exact(4)?;
            Message::Have(u32_at(0))
        }
        id::BITFIELD => Message::Bitfield(body.to_vec()),
        id::REQUEST | id::CANCEL => {
            exact(12)?;
            let r = BlockRequest {
                index: u32_at(0),
                begin: u32_at(4),
                length: u32_at(8),
            };
            if r.length > MAX_REQUEST_LEN {
                return Err(WireError::RequestTooLarge(r.length));
            }
            if id == id::REQUEST {
                Message::Request(r)
            } else {
                Message::Cancel(r)
            }
        }
        id::PIECE => {
            let Some(fields) = body.first_chunk::<PIECE_FIELDS_LEN>() else {
                return Err(bad());
            };
            let head = PieceHead::decode(fields, body.len());
            Message::Piece {
                index: head.index,
                begin: head.begin,
                data: body[PIECE_FIELDS_LEN..].to_vec(),
            }
        }
        id::PORT => {
            exact(2)?;
            Message::Port(u16::from_be_bytes([body[0], body[1]]))
        }
        id::EXTENDED => {
            if body.is_empty() {
                return Err(bad());
            }
            decode_extended(body[0], &body[1..])
        }
        other => Message::Unknown(other),
    })
}

/// Decodes an extension message (BEP 10) by its id, as
/// [`Message`]'s variants describe.
pub fn decode_extended(ext_id: u8, payload: &[u8]) -> Message {
    let typed = match ext_id {
        0 => ExtendedHandshake::decode(payload)
            .ok()
            .map(Message::ExtendedHandshake),
        OUR_UT_PEX_ID => PexMessage::decode(payload)
            .ok()
            .map(|pex| Message::Pex { ext_id, pex }),
        OUR_UT_METADATA_ID => MetadataMessage::decode(payload)
            .ok()
            .map(|msg| Message::Metadata { ext_id, msg }),
        _ => None,
    };
    typed.unwrap_or_else(|| Message::Extended {
        ext_id,
        payload: payload.to_vec(),
    })
}

/// Decodes one whole frame from the start of `buf`: `Ok(None)` when more
/// bytes are needed, otherwise the message and the bytes it used.
/// The length prefix and the head are read by [`super::frame`], as the
/// connection reader reads them.
pub fn decode_frame(buf: &[u8], max_len: u32) -> Result<Option<(Message, usize)>, WireError> {
    let Some(&prefix) = buf.first_chunk() else {
        return Ok(None);
    };
    let len = match frame::decode_prefix(prefix, max_len)? {
        Prefix::KeepAlive => return Ok(Some((Message::KeepAlive, frame::PREFIX_LEN))),
        Prefix::Message(len) => len,
    };
    let total = frame::PREFIX_LEN + len as usize;
    if buf.len() < total {
        return Ok(None);
    }
    let head = FrameHead::new(buf[frame::PREFIX_LEN], len)?;
    let body = &buf[frame::PREFIX_LEN + 1..total];
    let msg = decode_body(head.id, body)?;
    Ok(Some((msg, total)))
}

impl Message {
    /// Appends the framed message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let frame = |out: &mut Vec<u8>, id: u8, payload: &[&[u8]]| {
            let len = 1 + payload.iter().map(|p| p.len()).sum::<usize>();
            out.extend_from_slice(&(len as u32).to_be_bytes());
            out.push(id);
            for p in payload {
                out.extend_from_slice(p);
            }
        };
        let req = |r: &BlockRequest| {
            let mut b = [0u8; 12];
            b[..4].copy_from_slice(&r.index.to_be_bytes());
            b[4..8].copy_from_slice(&r.begin.to_be_bytes());
            b[8..].copy_from_slice(&r.length.to_be_bytes());
            b
        };
        match self {
            Message::KeepAlive => out.extend_from_slice(&[0, 0, 0, 0]),
            Message::Choke => frame(out, id::CHOKE, &[]),
            Message::Unchoke => frame(out, id::UNCHOKE, &[]),
            Message::Interested => frame(out, id::INTERESTED, &[]),
            Message::NotInterested => frame(out, id::NOT_INTERESTED, &[]),
            Message::Have(i) => frame(out, id::HAVE, &[&i.to_be_bytes()]),
            Message::Bitfield(b) => frame(out, id::BITFIELD, &[b]),
            Message::Request(r) => frame(out, id::REQUEST, &[&req(r)]),
            Message::Cancel(r) => frame(out, id::CANCEL, &[&req(r)]),
            Message::Piece { index, begin, data } => {
                out.extend_from_slice(&piece_header(*index, *begin, data.len() as u32));
                out.extend_from_slice(data);
            }
            Message::Port(p) => frame(out, id::PORT, &[&p.to_be_bytes()]),
            Message::ExtendedHandshake(hs) => frame(out, id::EXTENDED, &[&[0], &hs.encode()]),
            Message::Pex { ext_id, pex } => frame(out, id::EXTENDED, &[&[*ext_id], &pex.encode()]),
            Message::Metadata { ext_id, msg } => {
                frame(out, id::EXTENDED, &[&[*ext_id], &msg.encode()])
            }
            Message::Extended { ext_id, payload } => {
                frame(out, id::EXTENDED, &[&[*ext_id], payload])
            }
            Message::Unknown(id) => frame(out, *id, &[]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::metadata::MAX_METADATA_SIZE;
    use proptest::prelude::*;

    fn all_messages() -> Vec<Message> {
        let r = BlockRequest {
            index: 3,
            begin: 16384,
            length: 16384,
        };
        vec![
            Message::KeepAlive,
            Message::Choke,
            Message::Unchoke,
            Message::Interested,
            Message::NotInterested,
            Message::Have(7),
            Message::Bitfield(vec![0xff, 0x80]),
            Message::Request(r),
            Message::Piece {
                index: 1,
                begin: 0,
                data: vec![9; 100],
            },
            Message::Cancel(r),
            Message::Port(6881),
            Message::ExtendedHandshake(ExtendedHandshake {
                reqq: Some(500),
                client: Some("x".into()),
                listen_port: None,
                ut_pex: Some(3),
                ut_metadata: Some(2),
                metadata_size: Some(31_337),
                yourip: Some("10.1.2.3".parse().unwrap()),
                ipv6: Some("2001:db8::7".parse().unwrap()),
            }),
            Message::Metadata {
                ext_id: OUR_UT_METADATA_ID,
                msg: MetadataMessage::Data {
                    piece: 1,
                    total_size: 16_400,
                    data: vec![7; 16],
                },
            },
            Message::Pex {
                ext_id: OUR_UT_PEX_ID,
                pex: PexMessage {
                    added: vec!["10.0.0.1:6881".parse().unwrap()],
                    dropped: vec!["[2001:db8::1]:51413".parse().unwrap()],
                },
            },
            Message::Extended {
                ext_id: 77,
                payload: vec![1, 2, 3],
            },
        ]
    }

    #[test]
    fn every_message_round_trips_when_split_at_every_offset() {
        for msg in all_messages() {
            let mut bytes = Vec::new();
            msg.encode(&mut bytes);
            for cut in 0..bytes.len() {
                assert_eq!(
                    decode_frame(&bytes[..cut], 1 << 20),
                    Ok(None),
                    "{msg:?} cut {cut}"
                );
            }
            assert_eq!(
                decode_frame(&bytes, 1 << 20),
                Ok(Some((msg.clone(), bytes.len())))
            );
        }
    }

    #[test]
    fn known_bytes() {
        let mut out = Vec::new();
        Message::Have(258).encode(&mut out);
        assert_eq!(out, [0, 0, 0, 5, 4, 0, 0, 1, 2]);
        out.clear();
        Message::Interested.encode(&mut out);
        assert_eq!(out, [0, 0, 0, 1, 2]);
    }

    #[test]
    fn handshake_round_trip_and_rejects_other_protocols() {
        let h = Handshake::new(InfoHash([1; 20]), PeerId([2; 20]));
        let bytes = h.encode();
        assert_eq!(bytes[0], 19);
        assert_eq!(Handshake::decode(&bytes), Ok(h));
        assert!(h.supports_extensions());
        let mut bad = bytes;
        bad[5] = b'x';
        assert_eq!(Handshake::decode(&bad), Err(WireError::NotBitTorrent));
    }

    #[test]
    fn limits_are_enforced() {
        let huge = [0xff, 0xff, 0xff, 0xff, 7];
        assert!(matches!(
            decode_frame(&huge, max_frame_len(10)),
            Err(WireError::TooLong { .. })
        ));
        let mut out = Vec::new();
        Message::Request(BlockRequest {
            index: 0,
            begin: 0,
            length: MAX_REQUEST_LEN + 1,
        })
        .encode(&mut out);
        assert!(matches!(
            decode_frame(&out, 1 << 20),
            Err(WireError::RequestTooLarge(_))
        ));
        // A have with a wrong length.
        assert!(decode_frame(&[0, 0, 0, 2, 4, 0], 100).is_err());
        // Unknown ids are skipped, not errors.
        assert_eq!(
            decode_frame(&[0, 0, 0, 3, 99, 1, 2], 100),
            Ok(Some((Message::Unknown(99), 7)))
        );
    }

    #[test]
    fn extension_handshake_carries_yourip_and_ipv6() {
        let hs = ExtendedHandshake {
            yourip: Some("::1".parse().unwrap()),
            ipv6: Some("2001:db8::1".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(ExtendedHandshake::decode(&hs.encode()), Ok(hs));
        // A v4-mapped address goes out as 4 bytes.
        let mapped = ExtendedHandshake {
            yourip: Some("::ffff:10.0.0.9".parse().unwrap()),
            ..Default::default()
        };
        let back = ExtendedHandshake::decode(&mapped.encode()).unwrap();
        assert_eq!(back.yourip, Some("10.0.0.9".parse().unwrap()));
        // Wrong lengths read as absent.
        let bad = b"d4:ipv63:abc1:mde6:youripi5ee";
        let hs = ExtendedHandshake::decode(bad).unwrap();
        assert_eq!((hs.yourip, hs.ipv6), (None, None));
    }

    #[test]
    fn extension_handshake_carries_the_ut_pex_id_both_ways() {
        let hs = ExtendedHandshake {
            reqq: None,
            client: None,
            listen_port: Some(6881),
            ut_pex: Some(1),
            ..Default::default()
        };
        assert_eq!(ExtendedHandshake::decode(&hs.encode()), Ok(hs));
        // As libtorrent sends it, with other extensions; 0 disables one.
        let theirs = b"d1:md11:lt_donthavei7e6:ut_pexi2ee1:pi51413ee";
        assert_eq!(ExtendedHandshake::decode(theirs).unwrap().ut_pex, Some(2));
        let disabled = b"d1:md6:ut_pexi0eee";
        assert_eq!(ExtendedHandshake::decode(disabled).unwrap().ut_pex, None);
    }

    /// The typed extension messages put the same bytes on the wire as the
    /// raw frame of their payload did before they were typed.
    #[test]
    fn extension_messages_are_typed_by_our_ids_and_encode_as_raw_frames() {
        let hs = ExtendedHandshake {
            reqq: Some(2048),
            client: Some("btnode".into()),
            listen_port: Some(6881),
            ut_pex: Some(OUR_UT_PEX_ID),
            ..Default::default()
        };
        let pex = PexMessage {
            added: vec!["10.0.0.1:6881".parse().unwrap()],
            dropped: vec![],
        };
        let raw = |ext_id: u8, payload: Vec<u8>| {
            let mut out = Vec::new();
            Message::Extended { ext_id, payload }.encode(&mut out);
            out
        };
        let typed = |m: Message| {
            let mut out = Vec::new();
            m.encode(&mut out);
            out
        };
        assert_eq!(
            typed(Message::ExtendedHandshake(hs.clone())),
            raw(0, hs.encode())
        );
        // Sent under the peer's id (7), read back raw: 7 is not ours.
        let sent = typed(Message::Pex {
            ext_id: 7,
            pex: pex.clone(),
        });
        assert_eq!(sent, raw(7, pex.encode()));
        assert_eq!(
            decode_frame(&sent, 1 << 20).unwrap().unwrap().0,
            Message::Extended {
                ext_id: 7,
                payload: pex.encode()
            }
        );
        // Under our id it is peer exchange; garbage stays raw.
        assert_eq!(
            decode_extended(OUR_UT_PEX_ID, &pex.encode()),
            Message::Pex {
                ext_id: OUR_UT_PEX_ID,
                pex
            }
        );
        for (ext_id, junk) in [(0, &b"l"[..]), (OUR_UT_PEX_ID, b"d5:added1:xe")] {
            assert_eq!(
                decode_extended(ext_id, junk),
                Message::Extended {
                    ext_id,
                    payload: junk.to_vec()
                }
            );
        }
    }

    #[test]
    fn extension_handshake_carries_ut_metadata_and_its_size() {
        let hs = ExtendedHandshake {
            ut_metadata: Some(OUR_UT_METADATA_ID),
            metadata_size: Some(40_000),
            ut_pex: Some(1),
            ..Default::default()
        };
        let bytes = hs.encode();
        assert_eq!(
            bytes,
            b"d1:md11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei40000ee"
        );
        assert_eq!(ExtendedHandshake::decode(&bytes), Ok(hs));
        // As libtorrent sends it; a hostile size is kept for the fetcher
        // to refuse, a negative one dropped.
        let theirs = b"d1:md11:ut_metadatai3ee13:metadata_sizei1073741824ee";
        let hs = ExtendedHandshake::decode(theirs).unwrap();
        assert_eq!(hs.ut_metadata, Some(3));
        assert_eq!(hs.metadata_size, Some(1 << 30));
        assert!(hs.metadata_size.unwrap() > MAX_METADATA_SIZE);
        let negative = b"d1:md11:ut_metadatai3ee13:metadata_sizei-5ee";
        assert_eq!(
            ExtendedHandshake::decode(negative).unwrap().metadata_size,
            None
        );
    }

    #[test]
    fn metadata_messages_are_typed_under_our_id_only() {
        let msg = MetadataMessage::Request { piece: 4 };
        let mut frame = Vec::new();
        Message::Metadata {
            ext_id: 9,
            msg: msg.clone(),
        }
        .encode(&mut frame);
        // [len][20][ext id 9][dict]
        assert_eq!(&frame[4..6], &[id::EXTENDED, 9]);
        assert_eq!(&frame[6..], &msg.encode()[..]);
        assert_eq!(
            decode_extended(OUR_UT_METADATA_ID, &msg.encode()),
            Message::Metadata {
                ext_id: OUR_UT_METADATA_ID,
                msg: msg.clone()
            }
        );
        assert!(matches!(
            decode_extended(9, &msg.encode()),
            Message::Extended { ext_id: 9, .. }
        ));
        assert!(matches!(
            decode_extended(OUR_UT_METADATA_ID, b"d8:msg_typei7e5:piecei0ee"),
            Message::Extended { .. }
        ));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_frame(&bytes, 1 << 16);
            if !bytes.is_empty() {
                let _ = decode_body(bytes[0], &bytes[1..]);
                let _ = ExtendedHandshake::decode(&bytes);
                let _ = MetadataMessage::decode(&bytes);
            }
        }
    }
}
