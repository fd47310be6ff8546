//! The daemon's session: the torrents it runs and what it keeps of them
//! across restarts. [`state`] is the state directory on disk (each
//! torrent's metainfo, settings and fast-resume data) and the check that
//! keeps a torrent's data directory inside the download root.

pub mod state;
pub mod torrents;

pub use torrents::{Session, SessionConfig};
