//! The subcommands that are not a node: each parses nothing (its flags are
//! in [`super::args`]) and owns its own I/O.

use std::time::Duration;

use std::net::SocketAddr;

use super::args::{CreateArgs, DnsArgs, HealthArgs, LookupArgs, TrackerArgs};
use super::CliError;

pub fn run_health(args: &HealthArgs) -> Result<(), CliError> {
    use crate::overlay::service;
    use crate::wire::overlay::Message;
    let timeout = Duration::from_secs(2);
    if let Some(http) = args.http {
        return match minreq::get(format!("http://{http}/records"))
            .with_timeout(2)
            .send()
        {
            Ok(r) if r.status_code == 200 => Ok(()),
            Ok(r) => Err(CliError::Failed(format!("{http}: HTTP {}", r.status_code))),
            Err(e) => Err(CliError::Failed(format!("{http}: {e}"))),
        };
    }
    let keys = super::configs::swarm_keys(args.swarm_key_file.as_deref())?;
    let ping = Message::Ping { overlay_port: None };
    match service::request_with(args.overlay, &ping, timeout, None, keys.as_deref()) {
        Ok(Message::Pong { .. }) => Ok(()),
        Ok(other) => Err(CliError::Failed(format!(
            "{}: answered {other:?}",
            args.overlay
        ))),
        Err(e) => Err(CliError::Failed(format!("{}: {e}", args.overlay))),
    }
}

pub fn run_create(args: &CreateArgs) -> Result<(), CliError> {
    use crate::core::Metainfo;
    use crate::storage::torrent_file::{self, CreateOptions};
    let opts = CreateOptions {
        piece_length: args.piece_length,
        trackers: args.tracker.clone(),
        comment: args.comment.clone(),
        private: args.private,
    };
    let bytes =
        torrent_file::create(&args.path, &opts).map_err(|e| CliError::Failed(e.to_string()))?;
    let meta = Metainfo::from_bytes(&bytes).map_err(|e| CliError::Failed(e.to_string()))?;
    std::fs::write(&args.output, &bytes)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", args.output.display())))?;
    println!("{}", meta.info_hash);
    println!("{}", crate::core::Magnet::of_metainfo(&meta).to_uri());
    Ok(())
}

/// `btnode lookup INFO_HASH --at HOST:PORT [--limit N]`.
pub fn run_lookup(args: &LookupArgs) -> Result<(), CliError> {
    use crate::core::InfoHash;
    use crate::overlay::rpc;
    use crate::wire::overlay::Message;
    use std::io::Write;
    use std::net::ToSocketAddrs;
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
    let msg = Message::Lookup {
        info_hash,
        limit: args.limit,
        local_only: false,
    };
    let keys = super::configs::swarm_keys(args.swarm_key_file.as_deref())?;
    match rpc::request_with(addr, &msg, Duration::from_secs(3), None, keys.as_deref()) {
        Ok(Message::Providers { providers, .. }) => {
            let mut out = std::io::stdout().lock();
            for p in providers {
                let line = serde_json::to_string(&p).expect("serializable");
                let _ = writeln!(out, "{line}");
            }
            Ok(())
        }
        Ok(Message::Error { message }) => Err(CliError::Failed(format!(
            "{addr} refused the lookup: {message}"
        ))),
        Ok(other) => Err(CliError::Failed(format!(
            "{addr} answered a lookup with {other:?}"
        ))),
        Err(e) => Err(CliError::Failed(format!("{addr}: {e}"))),
    }
}

/// `btnode dns`: serve until SIGINT/SIGTERM.
pub fn run_dns(args: &DnsArgs) -> Result<(), CliError> {
    use crate::dns::{DnsOptions, DnsServer};
    use std::io::Write;
    let failed = |e: std::io::Error| CliError::Failed(format!("dns: {e}"));
    let keys = super::configs::swarm_keys(args.swarm_key_file.as_deref())?;
    let server = DnsServer::start(DnsOptions {
        keys,
        udp: args.udp,
        http: args.http,
        peers: args.peer.clone(),
        gossip_interval: Duration::from_millis(args.gossip_interval_ms.max(100)),
        zone: args.zone.clone(),
    })
    .map_err(failed)?;
    let shown = |a: SocketAddr| {
        if a.ip().is_unspecified() {
            SocketAddr::new([127, 0, 0, 1].into(), a.port())
        } else {
            a
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "dns listening on udp {} http {}",
        shown(server.udp_addr),
        shown(server.http_addr)
    );
    let _ = out.flush();
    let signals = crate::runtime::signals::shutdown_on_signal().map_err(failed)?;
    let _ = signals.recv();
    server.shutdown();
    Ok(())
}

/// `btnode tracker`: print where it listens, serve until SIGINT/SIGTERM.
pub fn run_tracker(args: &TrackerArgs) -> std::io::Result<()> {
    use crate::tracker::server::{ServerOptions, TrackerServer};
    use std::io::Write;
    if args.interval == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--interval must be at least 1 second",
        ));
    }
    // Before binding, so a signal during start-up is not lost.
    let signals = crate::runtime::signals::shutdown_on_signal()?;
    let opts = ServerOptions::with_interval(Duration::from_secs(args.interval));
    let server = TrackerServer::start(args.listen, opts)?;
    // One write for both lines, and a closed stdout (a parent that read
    // what it needed and went) is no reason to stop serving.
    let [http, udp] = server.announce_urls();
    let banner = format!("tracker listening on {http}\ntracker listening on {udp}\n");
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(banner.as_bytes()).and_then(|()| out.flush()) {
        log::warn!("cannot print the banner: {e}");
    }
    drop(out);
    log::info!("tracker on {}", server.local_addr());
    let _ = signals.recv();
    server.shutdown();
    Ok(())
}
