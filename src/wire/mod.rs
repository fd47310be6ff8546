//! Pure codecs: bytes in, typed messages out, and back. No sockets here.

pub mod frame;
pub mod metadata;
pub mod overlay;
pub mod peer;
pub mod pex;
pub mod sealed;
pub mod tracker;
pub mod udp_tracker;
