//! Trackers: the client a node announces with, and a small server.
//!
//! Client side: `client` (announce and scrape, HTTP(S) through ureq, `udp://`
//! dispatched to `udp`), `udp` (BEP 15 transport), `announce` (what both
//! transports share: response, scrape counts, errors), `schedule` (which
//! tracker to ask when; no I/O). Server side: `registry` (the peers per
//! torrent), `http` and `udp_server` (its two fronts), `server` (starts
//! both on one port). Every announce is `wire::tracker::AnnounceRequest`,
//! on both sides and both transports.
//!
//! Imports: `wire`, `core`, `runtime` only (never `peer`, `node` or
//! `config`). Within: `client` → `udp` → `announce` → `schedule`;
//! `server` → `http`, `udp_server` → `registry`.

pub mod announce;
pub mod client;
pub mod http;
pub mod registry;
pub mod schedule;
pub mod server;
pub mod udp;
pub mod udp_server;
