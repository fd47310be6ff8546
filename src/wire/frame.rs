//! Peerwire framing (BEP 3): the 4-byte length prefix, the message id, and
//! the 8 bytes (`index`, `begin`) that open a piece message. Pure functions
//! on bytes, shared by the connection reader (which reads these few bytes
//! from the socket, then streams a piece's payload straight into storage or
//! reads any other body for [`super::peer::decode_body`]) and by
//! [`super::peer::decode_frame`], which decodes a whole buffered frame.
//!
//! The limits live here, once: a length over the torrent's largest frame
//! ([`max_frame_len`]) is refused on the prefix alone, before anything is
//! allocated or waited for, and a piece frame too short for its header is
//! refused on its id, before its header is read.

use super::peer::{id, WireError};
use crate::core::BLOCK_SIZE;

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;
/// Size of a piece message header: length, id, index, begin.
pub const PIECE_HEADER_LEN: usize = 13;
/// Bytes of a piece message after its id and before its data: index, begin.
pub const PIECE_FIELDS_LEN: usize = 8;
/// The smallest length prefix of a piece message: id, index, begin.
const PIECE_MIN_LEN: u32 = 1 + PIECE_FIELDS_LEN as u32;

/// Why a frame is refused from its first bytes. The texts are what the
/// connection logs when it drops the peer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes")]
    TooLong { len: u32, max: u32 },
    /// A piece message whose length prefix (`len`) leaves no room for
    /// `index` and `begin`.
    #[error("short piece message")]
    ShortPiece { len: u32 },
}

/// As [`super::peer::decode_frame`] reports them: the message decoder's
/// own errors.
impl From<FrameError> for WireError {
    fn from(e: FrameError) -> WireError {
        match e {
            FrameError::TooLong { len, max } => WireError::TooLong { len, max },
            FrameError::ShortPiece { len } => WireError::BadLength {
                id: id::PIECE,
                len: (len as usize).saturating_sub(1),
            },
        }
    }
}

/// Largest frame accepted from a peer of a torrent with `num_pieces` pieces:
/// a block plus header, or the bitfield, whichever is larger.
pub fn max_frame_len(num_pieces: usize) -> u32 {
    (BLOCK_SIZE + PIECE_MIN_LEN).max(num_pieces.div_ceil(8) as u32 + 1)
}

/// What a length prefix announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefix {
    KeepAlive,
    /// A message of this many bytes (its id and payload), at least 1.
    Message(u32),
}

/// Decodes a length prefix, refusing one over `max_len`.
pub fn decode_prefix(bytes: [u8; PREFIX_LEN], max_len: u32) -> Result<Prefix, FrameError> {
    let len = u32::from_be_bytes(bytes);
    if len > max_len {
        return Err(FrameError::TooLong { len, max: max_len });
    }
    Ok(if len == 0 {
        Prefix::KeepAlive
    } else {
        Prefix::Message(len)
    })
}

/// A message's length (from its prefix) and id: what decides how the rest
/// of the frame is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub id: u8,
    /// The prefix: id plus payload.
    pub len: u32,
}

impl FrameHead {
    /// The head of a message of `len` bytes (at least 1, see
    /// [`Prefix::Message`]) with id `id`; a piece message must hold at
    /// least its `index` and `begin`.
    pub fn new(id: u8, len: u32) -> Result<FrameHead, FrameError> {
        if id == id::PIECE && len < PIECE_MIN_LEN {
            return Err(FrameError::ShortPiece { len });
        }
        Ok(FrameHead { id, len })
    }

    /// Bytes after the id.
    pub fn body_len(&self) -> usize {
        self.len as usize - 1
    }

    pub fn is_piece(&self) -> bool {
        self.id == id::PIECE
    }
}

/// The fields of a piece message before its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceHead {
    pub index: u32,
    pub begin: u32,
    /// Bytes of block data that follow.
    pub data_len: u32,
}

impl PieceHead {
    /// Decodes `index` and `begin` of a piece message whose body (after the
    /// id) is `body_len` bytes, at least [`PIECE_FIELDS_LEN`].
    pub fn decode(fields: &[u8; PIECE_FIELDS_LEN], body_len: usize) -> PieceHead {
        debug_assert!(body_len >= PIECE_FIELDS_LEN);
        PieceHead {
            index: u32::from_be_bytes(fields[..4].try_into().expect("4 bytes")),
            begin: u32::from_be_bytes(fields[4..].try_into().expect("4 bytes")),
            data_len: (body_len - PIECE_FIELDS_LEN) as u32,
        }
    }

    /// The piece header of a message whose [`FrameHead`] said piece.
    pub fn of(head: &FrameHead, fields: &[u8; PIECE_FIELDS_LEN]) -> PieceHead {
        debug_assert!(head.is_piece());
        PieceHead::decode(fields, head.body_len())
    }
}

/// The 13 bytes before a block's data in a piece message.
pub fn piece_header(index: u32, begin: u32, data_len: u32) -> [u8; PIECE_HEADER_LEN] {
    let mut h = [0u8; PIECE_HEADER_LEN];
    h[..4].copy_from_slice(&(PIECE_MIN_LEN + data_len).to_be_bytes());
    h[4] = id::PIECE;
    h[5..9].copy_from_slice(&index.to_be_bytes());
    h[9..13].copy_from_slice(&begin.to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_zero_prefix_is_a_keep_alive_and_the_limit_is_inclusive() {
        assert_eq!(decode_prefix([0; 4], 10), Ok(Prefix::KeepAlive));
        assert_eq!(decode_prefix([0, 0, 0, 10], 10), Ok(Prefix::Message(10)));
        assert_eq!(
            decode_prefix([0, 0, 0, 11], 10),
            Err(FrameError::TooLong { len: 11, max: 10 })
        );
        let e = decode_prefix([0xff; 4], max_frame_len(8)).unwrap_err();
        assert_eq!(e.to_string(), format!("frame of {} bytes", u32::MAX));
    }

    #[test]
    fn a_piece_frame_must_hold_its_index_and_begin() {
        assert_eq!(
            FrameHead::new(id::PIECE, 8),
            Err(FrameError::ShortPiece { len: 8 })
        );
        assert_eq!(
            FrameHead::new(id::PIECE, 5).unwrap_err().to_string(),
            "short piece message"
        );
        let head = FrameHead::new(id::PIECE, 9).unwrap();
        assert!(head.is_piece());
        assert_eq!(
            PieceHead::of(&head, &[0; 8]),
            PieceHead {
                index: 0,
                begin: 0,
                data_len: 0
            }
        );
        // Other ids are checked by the message decoder, not here.
        assert_eq!(FrameHead::new(id::HAVE, 1).unwrap().body_len(), 0);
    }

    #[test]
    fn known_piece_header_bytes() {
        let h = piece_header(258, 16384, 16384);
        assert_eq!(h, [0, 0, 64, 9, 7, 0, 0, 1, 2, 0, 0, 64, 0]);
        let prefix = decode_prefix(h[..4].try_into().unwrap(), max_frame_len(1));
        assert_eq!(prefix, Ok(Prefix::Message(16393)));
    }

    #[test]
    fn max_frame_covers_a_block_or_a_big_bitfield() {
        assert_eq!(max_frame_len(8), BLOCK_SIZE + 9);
        assert_eq!(max_frame_len(1_000_000), 125_001);
    }

    proptest! {
        #[test]
        fn piece_headers_round_trip(index: u32, begin: u32, data_len in 0..=BLOCK_SIZE) {
            let h = piece_header(index, begin, data_len);
            let max = max_frame_len(1);
            let Ok(Prefix::Message(len)) = decode_prefix(h[..4].try_into().unwrap(), max) else {
                panic!("a block's frame is within the limit");
            };
            let head = FrameHead::new(h[4], len).unwrap();
            prop_assert!(head.is_piece());
            let piece = PieceHead::of(&head, h[5..].try_into().unwrap());
            prop_assert_eq!(piece, PieceHead { index, begin, data_len });
        }

        #[test]
        fn any_head_bytes_decode_or_are_refused_without_panicking(
            bytes: [u8; 5],
            max in 0u32..1 << 20,
        ) {
            match decode_prefix(bytes[..4].try_into().unwrap(), max) {
                Ok(Prefix::KeepAlive) => prop_assert_eq!(&bytes[..4], &[0; 4]),
                Ok(Prefix::Message(len)) => {
                    prop_assert!(len >= 1 && len <= max);
                    match FrameHead::new(bytes[4], len) {
                        Ok(head) => {
                            prop_assert_eq!(head.body_len() + 1, len as usize);
                            prop_assert!(!head.is_piece() || head.body_len() >= PIECE_FIELDS_LEN);
                        }
                        Err(FrameError::ShortPiece { len: l }) => {
                            prop_assert!(bytes[4] == id::PIECE && l < 9)
                        }
                        Err(e) => prop_assert!(false, "{e}"),
                    }
                }
                Err(FrameError::TooLong { len, max: m }) => prop_assert!(len > m),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
