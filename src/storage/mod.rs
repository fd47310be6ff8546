//! Storage: what the peer layer and the hash pool need from a torrent's
//! bytes ([`PieceStore`]), with two stores: the torrent's files
//! memory-mapped as one byte stream ([`files`]) and an in-memory one for
//! tests ([`mem`]); and the SHA-1 worker pool that verifies pieces
//! ([`hasher`]); `.torrent` files on disk ([`torrent_file`]: read, create).
//!
//! Invariants the caller (the swarm state) upholds, which make the raw
//! access of both stores sound:
//! - a block is written by at most one thread at a time, and only while its
//!   piece is neither being hashed nor verified;
//! - a piece is read (hashed or uploaded) only when no block of it is being
//!   written: during hashing, or after it was verified.

use std::io::{self, BufRead};

pub mod files;
pub mod hasher;
pub mod mem;
pub mod resume;
pub mod torrent_file;

pub use files::{OpenReport, Storage, StorageError};
pub use hasher::{HashJob, HashPool, HashPurpose, HashQueue, HashResult, PieceHashes};
pub use mem::MemStorage;

/// Why [`PieceStore::recv_block`] did not store a block.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The peer's stream ended or failed: the connection's fault.
    #[error("{0}")]
    Read(#[from] io::Error),
    /// The bytes were read but could not be stored (a full disk): ours.
    #[error("{0}")]
    Store(StorageError),
}

/// A torrent's bytes, addressed by piece and offset in the piece, as the
/// connection threads and the hash workers use them. Blocks are stored
/// from the socket buffer with no copy of our own (the reader hands over
/// its buffered bytes) and read in place (the writer sends borrowed slices).
pub trait PieceStore: Send + Sync {
    /// Reads `len` bytes from `reader` and stores them as the block at
    /// `begin` of `piece` (bytes past the torrent's end are not read).
    /// A failure to store them (a full disk) still reads the block's
    /// bytes, so the stream stays at a frame boundary.
    ///
    /// # Safety
    /// The caller holds exclusive write access to this block (module doc).
    unsafe fn recv_block(
        &self,
        piece: usize,
        begin: u32,
        len: u32,
        reader: &mut dyn BufRead,
    ) -> Result<(), RecvError>;

    /// The slices that make up the block, in order (more than one when the
    /// block spans files).
    ///
    /// # Safety
    /// No thread writes this block while the slices are alive (module doc).
    unsafe fn block_slices(&self, piece: usize, begin: u32, len: u32) -> Vec<&[u8]>;

    /// Makes a piece ready to be written, before its first block arrives;
    /// an error (a full disk) means its blocks cannot be stored.
    fn prepare_piece(&self, piece: usize, len: u32) -> Result<(), StorageError>;

    /// A verified piece of length `len` will not be written again: its
    /// memory may be given back (a hint only).
    fn release_piece(&self, piece: usize, len: u32);

    /// Writes everything written so far to durable storage.
    fn flush(&self) -> io::Result<()>;

    /// Copies `data` into the block.
    ///
    /// # Safety
    /// As for [`PieceStore::recv_block`].
    unsafe fn write_block(&self, piece: usize, begin: u32, data: &[u8]) -> Result<(), RecvError> {
        let mut reader = data;
        self.recv_block(piece, begin, data.len() as u32, &mut reader)
    }

    /// SHA-1 of piece `piece` of length `len` as it is stored now.
    fn hash_piece(&self, piece: usize, len: u32) -> [u8; 20] {
        use sha1::{Digest, Sha1};
        let mut h = Sha1::new();
        // SAFETY: hashing happens only while nothing writes the piece.
        for slice in unsafe { self.block_slices(piece, 0, len) } {
            h.update(slice);
        }
        h.finalize().into()
    }
}
