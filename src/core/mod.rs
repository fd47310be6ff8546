//! Vocabulary shared by every subsystem, with no I/O beyond reading a
//! torrent file: ids, bencode, bitfields, piece geometry, metainfo.

pub mod bencode;
pub mod bitfield;
pub mod geometry;
pub mod ids;
pub mod lww;
pub mod magnet;
pub mod metainfo;

pub use bitfield::Bitfield;
pub use geometry::{PieceGeometry, ValidPieceIndex};
pub use ids::{InfoHash, PeerId};
pub use magnet::{Magnet, MagnetError};
pub use metainfo::{Metainfo, BLOCK_SIZE};
