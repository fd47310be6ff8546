//! The gossip overlay: decentralised discovery that replaces the tracker.
//!
//! - [`store`]: providers per torrent, LWW on `last_seen`, TTL, tombstones.
//! - [`membership`]: known overlay nodes, liveness, delta bookkeeping.
//! - the wire format, `crate::wire::overlay`: framed JSON messages with typed ids (docs/OVERLAY.md).
//! - [`rpc`]: one request and its reply (the client side).
//! - [`handler`]: the answer to one request (the server side, no sockets).
//! - [`gossip`]: push–pull with a fanout of members; [`health`]: discovery,
//!   pings, dropping dead members.
//! - [`service`]: the running node (`Overlay`: listener, threads, stop).
//!
//! Imports only `core` and `runtime`: the caller gives it an
//! [`OverlayConfig`] (with a [`Resolver`] for bootstrap names), and the node
//! composition hands provider addresses to the peer layer.

mod gossip;
pub mod handler;
mod health;
pub mod membership;
pub mod rpc;
pub mod service;
pub mod store;

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

pub use rpc::RequestError;
pub use service::{Overlay, OverlayError};
pub use store::ProviderMeta;

use crate::wire::sealed::Keyring;

/// Turns a bootstrap `HOST:PORT` into addresses; asked again on every
/// discovery round, so a name can point at whichever members are alive.
#[derive(Clone)]
pub struct Resolver(Arc<ResolveFn>);

type ResolveFn = dyn Fn(&str) -> Vec<SocketAddr> + Send + Sync;

impl Resolver {
    pub fn new(f: impl Fn(&str) -> Vec<SocketAddr> + Send + Sync + 'static) -> Resolver {
        Resolver(Arc::new(f))
    }

    /// The system resolver (IP literals pass through).
    pub fn system() -> Resolver {
        Resolver::new(|spec| match spec.to_socket_addrs() {
            Ok(a) => a.collect(),
            Err(e) => {
                log::warn!("cannot resolve {spec}: {e}");
                vec![]
            }
        })
    }

    pub fn resolve(&self, spec: &str) -> Vec<SocketAddr> {
        (self.0)(spec)
    }
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

#[derive(Clone, Debug)]
pub struct OverlayConfig {
    pub bind: IpAddr,
    pub port: u16,
    /// The user chose `port`: when it is taken, `Overlay::start` fails
    /// instead of listening on a free port (see `runtime::ports`).
    pub port_chosen: bool,
    /// HOST:PORT, names allowed.
    pub bootstrap: Vec<String>,
    /// How bootstrap names become addresses.
    pub resolver: Resolver,
    pub gossip_interval: Duration,
    pub health_interval: Duration,
    pub provider_ttl: Duration,
    /// Health checks and lookups.
    pub rpc_timeout: Duration,
    pub gossip_timeout: Duration,
    pub fanout: usize,
    /// Push news at once (otherwise only periodic gossip rounds).
    pub push: bool,
    /// The swarm key (`--swarm-key-file`): with one, every frame in and
    /// out is sealed, and one that does not open is dropped unparsed.
    /// `None`: an open overlay.
    pub keys: Option<Arc<Keyring>>,
}

impl OverlayConfig {
    /// SPEC defaults: gossip 8 s, health 10 s, TTL 90 s, 800 ms / 1200 ms
    /// timeouts, fanout 3, push on, the system resolver. (The command line
    /// layers the environment's tuning on top: see `config::overlay_config`.)
    pub fn with_defaults(bind: IpAddr, port: u16, bootstrap: Vec<String>) -> OverlayConfig {
        OverlayConfig {
            bind,
            port,
            port_chosen: true,
            bootstrap,
            resolver: Resolver::system(),
            gossip_interval: Duration::from_secs(8),
            health_interval: Duration::from_secs(10),
            provider_ttl: Duration::from_secs(90),
            rpc_timeout: Duration::from_millis(800),
            gossip_timeout: Duration::from_millis(1200),
            fanout: 3,
            push: true,
            keys: None,
        }
    }
}
