//! Download and upload policy as plain structs, with no I/O: the piece
//! picker, the choker, who to blame for failed pieces (`suspicion`), which
//! peer to evict when every slot is taken (`eviction`), and the torrent
//! state that connection threads and the node loop drive.

pub mod choker;
pub mod eviction;
pub mod metadata;
pub mod picker;
pub mod shares;
pub mod superseed;
pub mod suspicion;
pub mod torrent;
