//! Storage: the torrent's files memory-mapped as one byte stream
//! ([`files`]), and the SHA-1 worker pool that verifies pieces ([`hasher`]).

pub mod files;
pub mod hasher;

pub use files::{OpenReport, Storage, StorageError};
pub use hasher::{HashJob, HashPool, HashPurpose, HashResult, PieceHashes};
