//! The gossip overlay: decentralised discovery that replaces the tracker.
//!
//! - [`store`]: providers per torrent, LWW on `last_seen`, TTL, tombstones.
//! - [`membership`]: known overlay nodes, liveness, delta bookkeeping.
//! - [`wire`]: framed JSON messages (docs/OVERLAY.md).
//! - [`service`]: the running node (listener, gossip, health, discovery).
//!
//! Never imports `peer`: the node composition hands provider addresses to
//! the peer layer.

pub mod membership;
pub mod service;
pub mod store;
pub mod wire;

use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::cli::{CliError, LookupArgs};
use crate::core::InfoHash;
use crate::node::NodeConfig;
pub use service::{Overlay, OverlayError, RequestError};
pub use store::ProviderMeta;

#[derive(Clone, Debug)]
pub struct OverlayConfig {
    pub bind: IpAddr,
    pub port: u16,
    /// The user chose `port`: when it is taken, `Overlay::start` fails
    /// instead of listening on a free port (see `runtime::ports`).
    pub port_chosen: bool,
    /// HOST:PORT, names allowed.
    pub bootstrap: Vec<String>,
    /// DNS service used to resolve bootstrap names first.
    pub dns: Option<SocketAddr>,
    pub gossip_interval: Duration,
    pub health_interval: Duration,
    pub provider_ttl: Duration,
    /// Health checks and lookups.
    pub rpc_timeout: Duration,
    pub gossip_timeout: Duration,
    pub fanout: usize,
    /// Push news at once (otherwise only periodic gossip rounds).
    pub push: bool,
}

fn env_ms(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(default)
}

impl OverlayConfig {
    /// SPEC defaults (gossip 8 s, health 10 s, TTL 90 s, 800 ms / 1200 ms
    /// timeouts, fanout 3), each overridable through the environment:
    /// BTNODE_GOSSIP_INTERVAL_MS, BTNODE_HEALTH_INTERVAL_MS,
    /// BTNODE_PROVIDER_TTL_MS, BTNODE_OVERLAY_PUSH=0.
    pub fn with_defaults(bind: IpAddr, port: u16, bootstrap: Vec<String>) -> OverlayConfig {
        OverlayConfig {
            bind,
            port,
            port_chosen: true,
            bootstrap,
            dns: None,
            gossip_interval: env_ms("BTNODE_GOSSIP_INTERVAL_MS", Duration::from_secs(8)),
            health_interval: env_ms("BTNODE_HEALTH_INTERVAL_MS", Duration::from_secs(10)),
            provider_ttl: env_ms("BTNODE_PROVIDER_TTL_MS", Duration::from_secs(90)),
            rpc_timeout: Duration::from_millis(800),
            gossip_timeout: Duration::from_millis(1200),
            fanout: 3,
            push: std::env::var("BTNODE_OVERLAY_PUSH").as_deref() != Ok("0"),
        }
    }

    pub fn from_node_config(c: &NodeConfig) -> OverlayConfig {
        let mut cfg = OverlayConfig::with_defaults(c.bind, c.overlay_port, c.bootstrap.clone());
        cfg.port_chosen = c.overlay_port_chosen;
        cfg.dns = c
            .dns
            .as_deref()
            .and_then(|d| d.to_socket_addrs().ok()?.next());
        cfg
    }
}

/// `host:port` → addresses, asking the DNS service first when one is
/// configured, then the system resolver.
pub fn resolve_bootstrap(spec: &str, dns: Option<SocketAddr>) -> Vec<SocketAddr> {
    crate::dns::resolve_host_port(spec, dns, Duration::from_millis(800))
}

/// `btnode -b HOST:PORT` (no torrent): an overlay-only node until shutdown.
pub fn run_node(
    config: &NodeConfig,
    shutdown: crossbeam_channel::Receiver<()>,
) -> Result<(), CliError> {
    let overlay = Overlay::start(OverlayConfig::from_node_config(config))
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let mut shown = overlay.local_addr();
    if shown.ip().is_unspecified() {
        shown.set_ip(IpAddr::from([127, 0, 0, 1]));
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "overlay listening on {shown}");
    let _ = out.flush();
    log::info!("overlay-only node on {shown}");
    let _registration = crate::dns::register_self(config, overlay.local_addr());
    let _ = shutdown.recv();
    overlay.shutdown();
    Ok(())
}

/// `btnode lookup INFO_HASH --at HOST:PORT [--limit N]`.
pub fn run_lookup(args: &LookupArgs) -> Result<(), CliError> {
    let info_hash = InfoHash::from_hex(&args.info_hash)
        .ok_or_else(|| CliError::Usage("INFO_HASH must be 40 hex characters".into()))?;
    let addr = args
        .at
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            CliError::Usage(format!("--at {:?} is not a reachable HOST:PORT", args.at))
        })?;
    let msg = wire::Message::Lookup {
        info_hash: info_hash.to_hex(),
        limit: args.limit,
        local_only: false,
    };
    match service::request(addr, &msg, Duration::from_secs(3), None) {
        Ok(wire::Message::Providers { providers, .. }) => {
            let mut out = std::io::stdout().lock();
            for p in providers {
                let line = serde_json::to_string(&p).expect("serializable");
                let _ = writeln!(out, "{line}");
            }
            Ok(())
        }
        Ok(wire::Message::Error { message }) => Err(CliError::Failed(format!(
            "{addr} refused the lookup: {message}"
        ))),
        Ok(other) => Err(CliError::Failed(format!(
            "{addr} answered a lookup with {other:?}"
        ))),
        Err(e) => Err(CliError::Failed(format!("{addr}: {e}"))),
    }
}
