//! Piece geometry: how a torrent's byte stream is cut into pieces and
//! blocks. The one place piece lengths are computed (metainfo validation,
//! the swarm's requests, the hash workers all ask here).
//!
//! Every piece is `piece_length` bytes except the last, which holds what is
//! left (`total_length - (n - 1) * piece_length`, never 0). Blocks are
//! [`BLOCK_SIZE`] bytes except a piece's last, likewise.
//!
//! A piece index from a peer is untrusted: [`PieceGeometry::validate`] is
//! the only way to make a [`ValidPieceIndex`], so code that takes one needs
//! no bounds check of its own.

use super::{Bitfield, BLOCK_SIZE};

/// The sizes of a torrent: total length, piece length, and the piece count
/// they imply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PieceGeometry {
    total_length: u64,
    piece_length: u64,
    num_pieces: u32,
}

/// A piece index checked against a [`PieceGeometry`]: below its piece
/// count. Only [`PieceGeometry::validate`] (and its iterator
/// [`PieceGeometry::pieces`]) make one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValidPieceIndex(u32);

impl ValidPieceIndex {
    pub fn get(self) -> u32 {
        self.0
    }

    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl PieceGeometry {
    /// `None` if `piece_length` is 0 or the piece count does not fit a
    /// `u32` (the peer wire's piece index). A `total_length` of 0 has no
    /// pieces (metainfo refuses such a torrent before it gets here).
    pub fn new(total_length: u64, piece_length: u64) -> Option<PieceGeometry> {
        if piece_length == 0 || piece_length > u32::MAX as u64 {
            return None;
        }
        let num_pieces = u32::try_from(total_length.div_ceil(piece_length)).ok()?;
        Some(PieceGeometry {
            total_length,
            piece_length,
            num_pieces,
        })
    }

    pub fn total_length(&self) -> u64 {
        self.total_length
    }

    /// The nominal piece length (every piece's but the last's).
    pub fn piece_length(&self) -> u64 {
        self.piece_length
    }

    pub fn num_pieces(&self) -> usize {
        self.num_pieces as usize
    }

    /// `Some` iff `index` names a piece of this torrent.
    pub fn validate(&self, index: u32) -> Option<ValidPieceIndex> {
        (index < self.num_pieces).then_some(ValidPieceIndex(index))
    }

    /// Every piece, in order.
    pub fn pieces(&self) -> impl Iterator<Item = ValidPieceIndex> {
        (0..self.num_pieces).map(ValidPieceIndex)
    }

    /// Offset of the piece's first byte in the torrent's byte stream.
    pub fn piece_offset(&self, piece: usize) -> u64 {
        piece as u64 * self.piece_length
    }

    /// Length of piece `piece` (the last one may be short). Panics past
    /// the last piece: indices from peers go through [`Self::validate`].
    pub fn piece_len(&self, piece: usize) -> u32 {
        assert!(piece < self.num_pieces(), "piece {piece} out of range");
        (self.total_length - self.piece_offset(piece)).min(self.piece_length) as u32
    }

    /// Length of a validated piece.
    pub fn len_of(&self, piece: ValidPieceIndex) -> u32 {
        self.piece_len(piece.as_usize())
    }

    /// Blocks in piece `piece`.
    pub fn blocks_in(&self, piece: usize) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// Length of block `block` (offset `block * BLOCK_SIZE`) of `piece`.
    pub fn block_len(&self, piece: usize, block: u32) -> u32 {
        (self.piece_len(piece) - block * BLOCK_SIZE).min(BLOCK_SIZE)
    }

    /// Whether `begin..begin + len` is a non-empty range inside `piece`.
    pub fn contains(&self, piece: ValidPieceIndex, begin: u32, len: u32) -> bool {
        len > 0
            && begin
                .checked_add(len)
                .is_some_and(|end| end <= self.len_of(piece))
    }

    /// Bytes of the pieces not set in `have`.
    pub fn left(&self, have: &Bitfield) -> u64 {
        let have_bytes: u64 = have.iter_ones().map(|p| self.piece_len(p) as u64).sum();
        self.total_length - have_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_last_piece_holds_the_rest() {
        let g = PieceGeometry::new(40_000, 16_384).unwrap();
        assert_eq!(g.num_pieces(), 3);
        assert_eq!(g.piece_len(0), 16_384);
        assert_eq!(g.piece_len(2), 40_000 - 32_768);
        assert_eq!(g.piece_offset(2), 32_768);
        assert_eq!(g.blocks_in(2), 1);
        assert_eq!(g.block_len(2, 0), 40_000 - 32_768);
    }

    #[test]
    fn exact_multiples_have_a_full_last_piece() {
        let g = PieceGeometry::new(4 * 32_768, 32_768).unwrap();
        assert_eq!(g.num_pieces(), 4);
        assert_eq!(g.piece_len(3), 32_768);
        assert_eq!(g.blocks_in(3), 2);
        assert_eq!(g.block_len(3, 1), BLOCK_SIZE);
    }

    #[test]
    fn one_short_piece_and_a_short_last_block() {
        let g = PieceGeometry::new(20_000, 1 << 20).unwrap();
        assert_eq!(g.num_pieces(), 1);
        assert_eq!(g.piece_len(0), 20_000);
        assert_eq!(g.blocks_in(0), 2);
        assert_eq!(g.block_len(0, 0), BLOCK_SIZE);
        assert_eq!(g.block_len(0, 1), 20_000 - BLOCK_SIZE);
    }

    #[test]
    fn zero_length_has_no_pieces_and_bad_lengths_are_refused() {
        let g = PieceGeometry::new(0, 16_384).unwrap();
        assert_eq!(g.num_pieces(), 0);
        assert_eq!(g.validate(0), None);
        assert_eq!(g.pieces().count(), 0);
        assert_eq!(PieceGeometry::new(100, 0), None);
        assert_eq!(PieceGeometry::new(u64::MAX, 1), None, "over u32 pieces");
    }

    #[test]
    fn only_indices_below_the_count_validate() {
        let g = PieceGeometry::new(3 * 16_384 + 1, 16_384).unwrap();
        assert_eq!(g.validate(3).map(ValidPieceIndex::get), Some(3));
        assert_eq!(g.validate(4), None);
        assert_eq!(g.validate(u32::MAX), None);
        let last = g.validate(3).unwrap();
        assert_eq!(g.len_of(last), 1);
        assert!(g.contains(last, 0, 1));
        assert!(!g.contains(last, 0, 2));
        assert!(!g.contains(last, 0, 0), "empty");
        assert!(!g.contains(last, u32::MAX, 2), "overflow");
    }

    #[test]
    fn left_counts_the_short_last_piece() {
        let g = PieceGeometry::new(40_000, 16_384).unwrap();
        let mut have = Bitfield::new(3);
        assert_eq!(g.left(&have), 40_000);
        have.set(2);
        assert_eq!(g.left(&have), 32_768);
        have.set(0);
        have.set(1);
        assert_eq!(g.left(&have), 0);
    }

    proptest! {
        #[test]
        fn pieces_and_blocks_tile_the_torrent(
            total in 1u64..(1 << 40),
            piece_kib in 1u64..(1 << 14),
        ) {
            let g = PieceGeometry::new(total, piece_kib * 1024).unwrap();
            let n = g.num_pieces();
            prop_assert!(n >= 1);
            let last = n - 1;
            // Every piece but the last is full; the last is not empty.
            prop_assert_eq!(g.piece_len(0) as u64, (piece_kib * 1024).min(total));
            prop_assert!(g.piece_len(last) > 0);
            prop_assert_eq!(g.piece_offset(last) + g.piece_len(last) as u64, total);
            // The blocks of the last piece add up to it.
            let blocks: u64 = (0..g.blocks_in(last)).map(|b| g.block_len(last, b) as u64).sum();
            prop_assert_eq!(blocks, g.piece_len(last) as u64);
            prop_assert!(g.validate(last as u32).is_some());
            prop_assert!(g.validate(n as u32).is_none());
        }
    }
}
