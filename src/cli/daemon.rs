//! `btnode daemon`: a session of many torrents (its state in `--state`,
//! their data under `-d`), the HTTP API, `/metrics` and the dashboard,
//! until SIGINT/SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use super::{flags_config, Cli, CliError, DaemonArgs, DEFAULT_API, ENV_API, ENV_STATE};
use crate::api::server::{ApiConfig, ApiServer, Pages};
use crate::api::{auth, dashboard, metrics, Control, ControlError};
use crate::runtime::signals;
use crate::session::{Session, SessionConfig};

/// A non-blank environment variable.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub fn run_daemon(args: DaemonArgs) -> Result<(), CliError> {
    let state_dir = args
        .state
        .clone()
        .or_else(|| env_var(ENV_STATE).map(PathBuf::from))
        .ok_or_else(|| {
            CliError::Usage("btnode daemon needs --state DIR (or BTNODE_STATE)".into())
        })?;
    // BTNODE_DATA_DIR and the other node variables became flags in
    // `parse_cli`.
    let root = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    let api_addr: SocketAddr = match (args.api, env_var(ENV_API)) {
        (Some(a), _) => a,
        (None, Some(v)) => v.trim().parse().map_err(|_| {
            CliError::Usage(format!("{ENV_API}={v:?}: want IP:PORT, e.g. {DEFAULT_API}"))
        })?,
        (None, None) => DEFAULT_API.parse().expect("a valid default"),
    };
    let cli = Cli {
        torrent: None,
        dir: Some(root.clone()),
        port: args.port,
        bind: args.bind,
        exit_on_complete: false,
        log_level: None,
        bootstrap: args.bootstrap.clone(),
        overlay_port: args.overlay_port,
        discovery_mode: args.discovery_mode.clone(),
        dns: args.dns.clone(),
        dns_register: args.dns_register.clone(),
        dns_http: args.dns_http.clone(),
        peer: args.peer.clone(),
        max_peers: args.max_peers,
        upload_slots: args.upload_slots,
        super_seed: args.super_seed,
        announce_interval: args.announce_interval,
        status_file: None,
        upload_rate_limit: args.upload_rate_limit,
        download_rate_limit: args.download_rate_limit,
        no_progress: true,
        swarm_key_file: args.swarm_key_file.clone(),
        command: None,
    };
    let node = flags_config(&cli)?;
    let shutdown = signals::shutdown_on_signal()
        .map_err(|e| CliError::Failed(format!("cannot install signal handlers: {e}")))?;
    let session = Session::start(SessionConfig {
        node,
        state_dir: state_dir.clone(),
        download_root: root,
    })?;
    for path in &args.torrent {
        let bytes = std::fs::read(path)
            .map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))?;
        match session.add_torrent(&bytes, None, false) {
            Ok(ih) => log::info!("{}: {ih}", path.display()),
            Err(ControlError::Conflict(_)) => {}
            Err(e) => {
                session.shutdown();
                return Err(CliError::Failed(format!("{}: {e}", path.display())));
            }
        }
    }
    let token = auth::load_or_create_token(&state_dir)
        .map_err(|e| CliError::Failed(format!("API token in {}: {e}", state_dir.display())))?;
    let mut api_config = ApiConfig::new(api_addr, token);
    api_config.allowed_hosts = args.api_host.clone();
    api_config.metrics_public = args.metrics_public;
    let control: Arc<dyn Control> = session.clone();
    let pages = pages(control.clone());
    let api = match ApiServer::start_with_pages(api_config, control, pages) {
        Ok(api) => api,
        Err(e) => {
            session.shutdown();
            return Err(CliError::Failed(format!("API on {api_addr}: {e}")));
        }
    };
    if !api_addr.ip().is_loopback() {
        log::warn!("the API listens on {api_addr}, beyond loopback: anyone who can reach it and holds the token controls this daemon");
    }
    let mut out = std::io::stdout();
    let _ = writeln!(out, "api listening on http://{}", api.local_addr());
    let _ = writeln!(out, "peerwire listening on port {}", session.peer_port());
    if let Some(o) = session.overlay_addr() {
        let _ = writeln!(out, "overlay listening on {o}");
    }
    let _ = out.flush();
    let _ = shutdown.recv();
    log::info!("stopping");
    api.stop();
    session.shutdown();
    Ok(())
}

/// `/metrics` (the server checks the token unless `--metrics-public`)
/// and the dashboard's files.
fn pages(control: Arc<dyn Control>) -> Pages {
    Arc::new(move |path: &str| {
        if path == "/metrics" {
            Some(metrics::metrics_response(
                &control.session(),
                &control.list(),
            ))
        } else {
            dashboard::page(path)
        }
    })
}
