//! A [`PieceStore`] in memory: the torrent's bytes in one buffer, no disk.
//! For tests that run whole connections (many peers in one process) and
//! for anything else that wants a torrent without files. Its access rules
//! are the mapped store's (the `storage` module doc): blocks are written in
//! place by the one thread the swarm state handed them to.

use std::cell::UnsafeCell;
use std::io::{self, BufRead};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{PieceStore, RecvError, StorageError};

pub struct MemStorage {
    bytes: Box<[UnsafeCell<u8>]>,
    piece_length: u64,
    /// Set: every piece fails to be prepared, as on a full disk.
    full: AtomicBool,
}

// SAFETY: shared access follows the rules in the `storage` module doc,
// which the swarm state enforces, exactly as for the mapped files.
unsafe impl Sync for MemStorage {}

impl MemStorage {
    /// `total_length` zero bytes in pieces of `piece_length`.
    pub fn new(piece_length: u64, total_length: u64) -> MemStorage {
        assert!(piece_length > 0, "pieces have a length");
        MemStorage {
            bytes: (0..total_length).map(|_| UnsafeCell::new(0)).collect(),
            piece_length,
            full: AtomicBool::new(false),
        }
    }

    /// A store holding `data` (a seeder's copy).
    pub fn with_contents(piece_length: u64, data: &[u8]) -> MemStorage {
        assert!(piece_length > 0, "pieces have a length");
        MemStorage {
            bytes: data.iter().map(|&b| UnsafeCell::new(b)).collect(),
            piece_length,
            full: AtomicBool::new(false),
        }
    }

    /// From now on `prepare_piece` fails as a full disk does (or, with
    /// false, no longer does).
    pub fn set_full(&self, full: bool) {
        self.full.store(full, Ordering::SeqCst);
    }

    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// A copy of every byte.
    ///
    /// # Safety
    /// No block is being written meanwhile (no connection is receiving).
    pub unsafe fn contents(&self) -> Vec<u8> {
        std::slice::from_raw_parts(self.base(), self.bytes.len()).to_vec()
    }

    fn base(&self) -> *mut u8 {
        UnsafeCell::raw_get(self.bytes.as_ptr())
    }

    /// Offset and length of the block's bytes inside the buffer (cut at
    /// the torrent's end, as the mapped store does).
    fn range(&self, piece: usize, begin: u32, len: u32) -> (usize, usize) {
        let total = self.bytes.len() as u64;
        let start = (piece as u64 * self.piece_length + begin as u64).min(total);
        let end = (start + len as u64).min(total);
        (start as usize, (end - start) as usize)
    }
}

impl PieceStore for MemStorage {
    unsafe fn recv_block(
        &self,
        piece: usize,
        begin: u32,
        len: u32,
        reader: &mut dyn BufRead,
    ) -> Result<(), RecvError> {
        let (start, n) = self.range(piece, begin, len);
        reader.read_exact(std::slice::from_raw_parts_mut(self.base().add(start), n))?;
        Ok(())
    }

    unsafe fn block_slices(&self, piece: usize, begin: u32, len: u32) -> Vec<&[u8]> {
        let (start, n) = self.range(piece, begin, len);
        vec![std::slice::from_raw_parts(self.base().add(start), n)]
    }

    fn prepare_piece(&self, _piece: usize, _len: u32) -> Result<(), StorageError> {
        if self.full.load(Ordering::SeqCst) {
            return Err(StorageError::Io {
                path: PathBuf::from("(memory)"),
                source: io::Error::from_raw_os_error(libc::ENOSPC),
            });
        }
        Ok(())
    }

    fn release_piece(&self, _piece: usize, _len: u32) {}

    fn flush(&self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_land_in_place_and_the_last_piece_is_cut_at_the_end() {
        let s = MemStorage::new(8, 20);
        let data: Vec<u8> = (1..=20).collect();
        unsafe {
            s.write_block(0, 0, &data[..8]).unwrap();
            s.write_block(1, 4, &data[12..16]).unwrap();
            s.write_block(1, 0, &data[8..12]).unwrap();
            s.write_block(2, 0, &data[16..]).unwrap();
            assert_eq!(s.contents(), data);
            assert_eq!(s.block_slices(2, 0, 8), vec![&data[16..]]);
        }
        use sha1::{Digest, Sha1};
        let want: [u8; 20] = Sha1::digest(&data[8..16]).into();
        assert_eq!(s.hash_piece(1, 8), want);
        let seeded = MemStorage::with_contents(8, &data);
        assert_eq!(seeded.hash_piece(1, 8), want);
        assert_eq!((seeded.len(), seeded.is_empty()), (20, false));
        assert!(seeded.prepare_piece(0, 8).is_ok());
        seeded.set_full(true);
        assert!(seeded.prepare_piece(0, 8).is_err());
    }

    #[test]
    fn a_short_read_is_an_error() {
        let s = MemStorage::new(8, 8);
        let mut short: &[u8] = &[1, 2, 3];
        let e = unsafe { s.recv_block(0, 0, 8, &mut short) }.unwrap_err();
        assert!(matches!(e, RecvError::Read(e) if e.kind() == io::ErrorKind::UnexpectedEof));
    }
}
