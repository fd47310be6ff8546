//! Download and upload policy as plain structs, with no I/O: the piece
//! picker, the choker, and the torrent state that connection threads and
//! the node loop drive.

pub mod choker;
pub mod picker;
pub mod torrent;
