//! The per-subsystem configs the command line builds from the node's
//! flags: each subsystem takes its own struct and never sees [`Cli`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::args::{Cli, DEFAULT_OVERLAY_PORT};

/// Milliseconds from the environment variable `name` (unset, empty, 0 or
/// not a number: `default`).
fn env_ms(name: &str, default: Duration) -> Duration {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .map(Duration::from_millis)
        .unwrap_or(default)
}

/// The node's overlay: its flags, the defaults, the tuning from the
/// environment (BTNODE_GOSSIP_INTERVAL_MS, BTNODE_HEALTH_INTERVAL_MS,
/// BTNODE_PROVIDER_TTL_MS, BTNODE_OVERLAY_PUSH=0), and bootstrap names
/// resolved through `--dns` first, then the system resolver.
pub fn overlay_config(c: &Cli, bind: IpAddr) -> crate::overlay::OverlayConfig {
    use crate::overlay::{OverlayConfig, Resolver};
    use std::net::ToSocketAddrs;
    let port = c.overlay_port.unwrap_or(DEFAULT_OVERLAY_PORT);
    let mut cfg = OverlayConfig::with_defaults(bind, port, c.bootstrap.clone());
    // A port the user gave (flag or BTNODE_OVERLAY_PORT) must be had;
    // the default falls back to a free one.
    cfg.port_chosen = c.overlay_port.is_some();
    cfg.gossip_interval = env_ms("BTNODE_GOSSIP_INTERVAL_MS", cfg.gossip_interval);
    cfg.health_interval = env_ms("BTNODE_HEALTH_INTERVAL_MS", cfg.health_interval);
    cfg.provider_ttl = env_ms("BTNODE_PROVIDER_TTL_MS", cfg.provider_ttl);
    cfg.push = std::env::var("BTNODE_OVERLAY_PUSH").as_deref() != Ok("0");
    let dns: Option<SocketAddr> = c
        .dns
        .as_deref()
        .and_then(|d| d.to_socket_addrs().ok()?.next());
    cfg.resolver = Resolver::new(move |spec| {
        crate::dns::resolve_host_port(spec, dns, Duration::from_millis(800))
    });
    cfg
}

/// `--dns-register NAME`: where to register (`--dns-http`, or the `--dns`
/// host on port 8080); `None` (with a warning when a name was given but no
/// service) when the node does not register.
pub fn dns_registration(c: &Cli) -> Option<crate::dns::RegisterConfig> {
    let name = c.dns_register.clone()?;
    let http = c.dns_http.clone().or_else(|| {
        let host = c.dns.as_deref()?.rsplit_once(':')?.0.to_string();
        Some(format!("{host}:8080"))
    });
    let Some(http) = http else {
        log::warn!("--dns-register needs --dns or --dns-http");
        return None;
    };
    Some(crate::dns::RegisterConfig { name, http })
}
