//! Storage: the torrent's files memory-mapped as one byte stream
//! ([`files`]), the SHA-1 worker pool that verifies pieces ([`hasher`]), and
//! `.torrent` files on disk ([`torrent_file`]: read, create).

pub mod files;
pub mod hasher;
pub mod torrent_file;

pub use files::{OpenReport, Storage, StorageError};
pub use hasher::{HashJob, HashPool, HashPurpose, HashResult, PieceHashes};
