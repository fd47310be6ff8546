//! Vocabulary shared by every subsystem, with no I/O beyond reading a
//! torrent file: ids, bencode, bitfields, metainfo.

pub mod bencode;
pub mod bitfield;
pub mod ids;
pub mod lww;
pub mod metainfo;

pub use bitfield::Bitfield;
pub use ids::{InfoHash, PeerId};
pub use metainfo::{Metainfo, BLOCK_SIZE};
