//! Metadata exchange (BEP 9, `ut_metadata`): the payload of the extension
//! message a peer without the `.torrent` uses to fetch the info dictionary
//! in 16 KiB pieces. A bencoded dict `{msg_type, piece, total_size}`,
//! followed, in a `data` message, by the raw bytes of the piece.

use crate::core::bencode::{self, Value};

/// The extension id we ask peers to send `ut_metadata` under (libtorrent's too).
pub const OUR_UT_METADATA_ID: u8 = 2;
/// Every piece but the last is exactly this long (BEP 9).
pub const METADATA_PIECE_LEN: usize = 16 * 1024;
/// Largest info dictionary we fetch or believe a peer about: far above any
/// real torrent's (a few MiB at most), far below what would hurt.
pub const MAX_METADATA_SIZE: u64 = 16 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataMessage {
    /// `msg_type` 0: send me this piece.
    Request { piece: u32 },
    /// `msg_type` 1: a piece, with the size of the whole dictionary.
    Data {
        piece: u32,
        total_size: u64,
        data: Vec<u8>,
    },
    /// `msg_type` 2: I will not send this piece.
    Reject { piece: u32 },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("ut_metadata message is not a bencoded dictionary")]
    NotADict,
    #[error("ut_metadata message lacks a valid `{0}`")]
    Field(&'static str),
    #[error("ut_metadata message type {0} is unknown")]
    UnknownType(i64),
    #[error("ut_metadata data of {0} bytes is longer than a piece")]
    DataTooLong(usize),
    #[error("ut_metadata {0} carries trailing bytes")]
    Trailing(&'static str),
}

impl MetadataMessage {
    pub fn piece(&self) -> u32 {
        match self {
            MetadataMessage::Request { piece }
            | MetadataMessage::Data { piece, .. }
            | MetadataMessage::Reject { piece } => *piece,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let head = |t: i64, piece: u32, total: Option<u64>| {
            let mut d = vec![
                ("msg_type", Value::Int(t)),
                ("piece", Value::Int(piece.into())),
            ];
            if let Some(total) = total {
                d.push(("total_size", Value::Int(total as i64)));
            }
            bencode::encode(&Value::dict(d))
        };
        match self {
            MetadataMessage::Request { piece } => head(0, *piece, None),
            MetadataMessage::Data {
                piece,
                total_size,
                data,
            } => {
                let mut out = head(1, *piece, Some(*total_size));
                out.extend_from_slice(data);
                out
            }
            MetadataMessage::Reject { piece } => head(2, *piece, None),
        }
    }

    /// Decodes a payload (after the extension id). The piece index and the
    /// total size are only range-checked here (non-negative, within
    /// `u32`/[`MAX_METADATA_SIZE`]'s type); whether they fit the metadata
    /// is the fetcher's question.
    pub fn decode(payload: &[u8]) -> Result<MetadataMessage, MetadataError> {
        // Read in place (8 bytes per value): junk keys cost little.
        let (doc, used) =
            bencode::Doc::parse_prefix(payload).map_err(|_| MetadataError::NotADict)?;
        let root = doc.root();
        if root.entries().is_none() {
            return Err(MetadataError::NotADict);
        }
        let int = |k: &'static str| {
            root.get(k)
                .and_then(|n| n.as_int())
                .ok_or(MetadataError::Field(k))
        };
        let msg_type = int("msg_type")?;
        let piece = u32::try_from(int("piece")?).map_err(|_| MetadataError::Field("piece"))?;
        let rest = &payload[used..];
        match msg_type {
            0 | 2 if !rest.is_empty() => Err(MetadataError::Trailing(if msg_type == 0 {
                "request"
            } else {
                "reject"
            })),
            0 => Ok(MetadataMessage::Request { piece }),
            2 => Ok(MetadataMessage::Reject { piece }),
            1 => {
                let total_size = u64::try_from(int("total_size")?)
                    .map_err(|_| MetadataError::Field("total_size"))?;
                if rest.len() > METADATA_PIECE_LEN {
                    return Err(MetadataError::DataTooLong(rest.len()));
                }
                Ok(MetadataMessage::Data {
                    piece,
                    total_size,
                    data: rest.to_vec(),
                })
            }
            other => Err(MetadataError::UnknownType(other)),
        }
    }
}

/// How many pieces an info dictionary of `size` bytes is cut into.
pub fn piece_count(size: u64) -> u32 {
    size.div_ceil(METADATA_PIECE_LEN as u64) as u32
}

/// The length of piece `piece` of a dictionary of `size` bytes (0 past the end).
pub fn piece_len(size: u64, piece: u32) -> usize {
    let start = u64::from(piece) * METADATA_PIECE_LEN as u64;
    size.saturating_sub(start).min(METADATA_PIECE_LEN as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bytes_both_ways() {
        let req = MetadataMessage::Request { piece: 0 };
        assert_eq!(req.encode(), b"d8:msg_typei0e5:piecei0ee");
        let data = MetadataMessage::Data {
            piece: 1,
            total_size: 16390,
            data: b"abcdef".to_vec(),
        };
        let bytes = b"d8:msg_typei1e5:piecei1e10:total_sizei16390eeabcdef";
        assert_eq!(data.encode(), bytes);
        assert_eq!(MetadataMessage::decode(bytes), Ok(data));
        let reject = MetadataMessage::Reject { piece: 7 };
        assert_eq!(reject.encode(), b"d8:msg_typei2e5:piecei7ee");
        for m in [req, reject] {
            assert_eq!(MetadataMessage::decode(&m.encode()), Ok(m));
        }
        // Keys in any order, extra keys ignored (libtorrent adds none, others might).
        assert_eq!(
            MetadataMessage::decode(b"d5:piecei3e1:xi1e8:msg_typei0ee"),
            Ok(MetadataMessage::Request { piece: 3 })
        );
    }

    #[test]
    fn malformed_messages_are_errors() {
        let cases: [(&[u8], MetadataError); 8] = [
            (b"le", MetadataError::NotADict),
            (b"d8:msg_typei0e", MetadataError::NotADict),
            (b"d5:piecei0ee", MetadataError::Field("msg_type")),
            (b"d8:msg_typei0ee", MetadataError::Field("piece")),
            (b"d8:msg_typei0e5:piecei-1ee", MetadataError::Field("piece")),
            (
                b"d8:msg_typei1e5:piecei0ee",
                MetadataError::Field("total_size"),
            ),
            (b"d8:msg_typei9e5:piecei0ee", MetadataError::UnknownType(9)),
            (
                b"d8:msg_typei0e5:piecei0eex",
                MetadataError::Trailing("request"),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                MetadataMessage::decode(bytes),
                Err(want),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let mut long = b"d8:msg_typei1e5:piecei0e10:total_sizei99999ee".to_vec();
        long.extend(vec![0; METADATA_PIECE_LEN + 1]);
        assert_eq!(
            MetadataMessage::decode(&long),
            Err(MetadataError::DataTooLong(METADATA_PIECE_LEN + 1))
        );
    }

    #[test]
    fn pieces_cut_the_size() {
        assert_eq!(piece_count(1), 1);
        assert_eq!(piece_count(16384), 1);
        assert_eq!(piece_count(16385), 2);
        assert_eq!(piece_len(16385, 0), 16384);
        assert_eq!(piece_len(16385, 1), 1);
        assert_eq!(piece_len(16385, 2), 0);
        assert_eq!(piece_count(MAX_METADATA_SIZE), 1024);
    }
}
