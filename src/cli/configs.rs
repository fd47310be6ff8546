//! The per-subsystem configs the command line builds from the node's
//! flags: each subsystem takes its own struct and never sees [`Cli`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::args::{Cli, DEFAULT_OVERLAY_PORT, ENV_SWARM_KEY_FILE};
use super::CliError;
use crate::wire::sealed::{Keyring, DNS_WRITE_TOKEN};

/// The swarm keyring from `--swarm-key-file` (or, when the flag is absent,
/// `BTNODE_SWARM_KEY_FILE`); `None` when neither names a file: an open
/// overlay and DNS. A file that cannot be read or holds a bad line fails
/// the command (a typo must not silently run an open node).
pub fn swarm_keys(flag: Option<&Path>) -> Result<Option<Arc<Keyring>>, CliError> {
    let path: Option<PathBuf> = flag.map(Path::to_path_buf).or_else(|| {
        std::env::var(ENV_SWARM_KEY_FILE)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| PathBuf::from(v.trim()))
    });
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::Failed(format!("--swarm-key-file {}: {e}", path.display())))?;
    let keys = Keyring::parse(&text)
        .map_err(|e| CliError::Failed(format!("--swarm-key-file {}: {e}", path.display())))?;
    log::info!(
        "swarm key: {} key(s), sending with id {}",
        keys.keys().len(),
        crate::core::ids::to_hex(&keys.sending().id())
    );
    Ok(Some(Arc::new(keys)))
}

/// A fresh random key for `btnode keygen`, as its file line.
pub fn keygen() -> Result<String, CliError> {
    let mut bytes = [0u8; crate::wire::sealed::KEY_LEN];
    getrandom::getrandom(&mut bytes)
        .map_err(|e| CliError::Failed(format!("no randomness from the OS: {e}")))?;
    Ok(crate::wire::sealed::SwarmKey::new(bytes).to_hex())
}

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
pub fn overlay_config(
    c: &Cli,
    bind: IpAddr,
    keys: Option<Arc<Keyring>>,
) -> crate::overlay::OverlayConfig {
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
    cfg.keys = keys;
    cfg
}

/// `--dns-register NAME`: where to register (`--dns-http`, or the `--dns`
/// host on port 8080); `None` (with a warning when a name was given but no
/// service) when the node does not register.
pub fn dns_registration(c: &Cli, keys: Option<&Keyring>) -> Option<crate::dns::RegisterConfig> {
    let name = c.dns_register.clone()?;
    let http = c.dns_http.clone().or_else(|| {
        let host = c.dns.as_deref()?.rsplit_once(':')?.0.to_string();
        Some(format!("{host}:8080"))
    });
    let Some(http) = http else {
        log::warn!("--dns-register needs --dns or --dns-http");
        return None;
    };
    Some(crate::dns::RegisterConfig {
        name,
        http,
        token: keys.map(|k| k.sending().token(DNS_WRITE_TOKEN)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_load_refuse_bad_ones_and_keygen_makes_valid_keys() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (keygen().unwrap(), keygen().unwrap());
        assert_ne!(a, b);
        let path = dir.path().join("swarm.key");
        std::fs::write(&path, format!("{b}\n{a}\n")).unwrap();
        let ring = swarm_keys(Some(&path)).unwrap().unwrap();
        assert_eq!(ring.keys().len(), 2);
        assert_eq!(ring.sending().to_hex(), b);
        std::fs::write(&path, "not a key\n").unwrap();
        let Err(CliError::Failed(text)) = swarm_keys(Some(&path)) else {
            panic!("a bad key file must fail the command");
        };
        assert!(text.contains("line 1") && text.contains("64 hex"), "{text}");
        let missing = dir.path().join("nope");
        assert!(matches!(
            swarm_keys(Some(&missing)),
            Err(CliError::Failed(_))
        ));
    }
}
