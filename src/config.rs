//! Flags and environment → validated configuration, with every default in
//! one place, and the dispatch from a parsed command line to a subsystem.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

/// Environment variables read when the matching flag is absent.
pub const ENV_TORRENT: &str = "BTNODE_TORRENT";
pub const ENV_DATA_DIR: &str = "BTNODE_DATA_DIR";
pub const ENV_PORT: &str = "BTNODE_PORT";
pub const ENV_BOOTSTRAP: &str = "BTNODE_BOOTSTRAP";
pub const ENV_OVERLAY_PORT: &str = "BTNODE_OVERLAY_PORT";
pub const ENV_DISCOVERY_MODE: &str = "BTNODE_DISCOVERY_MODE";
pub const ENV_DNS: &str = "BTNODE_DNS";
pub const ENV_DNS_REGISTER: &str = "BTNODE_DNS_REGISTER";
pub const ENV_LOG_LEVEL: &str = "BTNODE_LOG_LEVEL";

pub const DEFAULT_PEER_PORT: u16 = 6881;
pub const DEFAULT_OVERLAY_PORT: u16 = 6000;
pub const DEFAULT_MAX_PEERS: usize = 50;
pub const DEFAULT_UPLOAD_SLOTS: usize = 4;
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(FromArgs, Debug)]
/// btnode: a BitTorrent node that finds peers through a gossip overlay, a
/// tracker, or both. Without a subcommand it downloads and seeds `-t FILE`
/// into `-d DIR` (or runs an overlay-only node when only `-b` is given).
pub struct Cli {
    /// the .torrent file to download and seed (env BTNODE_TORRENT)
    #[argh(option, short = 't')]
    pub torrent: Option<PathBuf>,
    /// data directory: where the torrent's files live (default ".", env BTNODE_DATA_DIR)
    #[argh(option, short = 'd')]
    pub dir: Option<PathBuf>,
    /// peerwire listening port (default 6881, or any free port when that is taken; 0 = any free port; env BTNODE_PORT)
    #[argh(option)]
    pub port: Option<u16>,
    /// address to bind listeners to (default 0.0.0.0)
    #[argh(option)]
    pub bind: Option<std::net::IpAddr>,
    /// exit 0 once every piece is verified and flushed, instead of seeding
    #[argh(switch)]
    pub exit_on_complete: bool,
    /// log level: error, warn, info, debug, trace (default info, env BTNODE_LOG_LEVEL)
    #[argh(option)]
    pub log_level: Option<String>,
    /// overlay bootstrap node HOST:PORT, repeatable (env BTNODE_BOOTSTRAP, comma separated)
    #[argh(option, short = 'b')]
    pub bootstrap: Vec<String>,
    /// overlay listening port (default 6000, or any free port when that is taken; 0 = any free port; env BTNODE_OVERLAY_PORT)
    #[argh(option)]
    pub overlay_port: Option<u16>,
    /// how to find peers: overlay, tracker or hybrid (env BTNODE_DISCOVERY_MODE)
    #[argh(option)]
    pub discovery_mode: Option<String>,
    /// DNS service HOST:PORT used to resolve bootstrap names (env BTNODE_DNS)
    #[argh(option)]
    pub dns: Option<String>,
    /// register this node's overlay address under NAME at the DNS service (env BTNODE_DNS_REGISTER)
    #[argh(option)]
    pub dns_register: Option<String>,
    /// the DNS service's REST API HOST:PORT for --dns-register (default: the --dns host, port 8080; env BTNODE_DNS_HTTP)
    #[argh(option)]
    pub dns_http: Option<String>,
    /// connect to this peer directly (HOST:PORT), repeatable
    #[argh(option)]
    pub peer: Vec<String>,
    /// most peer connections at once (default 50)
    #[argh(option)]
    pub max_peers: Option<usize>,
    /// regular upload slots of the choker (default 4; one optimistic slot is added)
    #[argh(option)]
    pub upload_slots: Option<usize>,
    /// seconds between tracker and overlay announces (default: the tracker's interval, or 60)
    #[argh(option)]
    pub announce_interval: Option<u64>,
    /// write a JSON status snapshot here every second and at exit
    #[argh(option)]
    pub status_file: Option<PathBuf>,
    /// cap on upload bytes per second, all peers together (default: none)
    #[argh(option)]
    pub upload_rate_limit: Option<u64>,
    /// cap on download bytes per second, all peers together (default: none)
    #[argh(option)]
    pub download_rate_limit: Option<u64>,
    /// print progress as log lines even on a terminal
    #[argh(switch)]
    pub no_progress: bool,
    #[argh(subcommand)]
    pub command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum Command {
    Create(CreateArgs),
    Tracker(TrackerArgs),
    Dns(DnsArgs),
    Lookup(LookupArgs),
    Health(HealthArgs),
}

#[derive(FromArgs, Debug)]
/// exit 0 if a local btnode answers (for container health checks): pings the overlay, or GETs the DNS REST API
#[argh(subcommand, name = "health")]
pub struct HealthArgs {
    /// overlay address to ping (default 127.0.0.1:6000)
    #[argh(option, default = "\"127.0.0.1:6000\".parse().unwrap()")]
    pub overlay: SocketAddr,
    /// check a DNS service's REST API at this address instead
    #[argh(option)]
    pub http: Option<SocketAddr>,
}

#[derive(FromArgs, Debug)]
/// make a .torrent from a file (single-file torrent) or a folder (multi-file)
#[argh(subcommand, name = "create")]
pub struct CreateArgs {
    /// where to write the .torrent
    #[argh(option, short = 'o')]
    pub output: PathBuf,
    /// piece length in bytes (default: about 1000-2000 pieces, 16 KiB to 16 MiB)
    #[argh(option)]
    pub piece_length: Option<u64>,
    /// tracker announce URL, repeatable (one tier each)
    #[argh(option)]
    pub tracker: Vec<String>,
    /// free-text comment
    #[argh(option)]
    pub comment: Option<String>,
    /// mark the torrent private
    #[argh(switch)]
    pub private: bool,
    /// the file or folder to share
    #[argh(positional)]
    pub path: PathBuf,
}

#[derive(FromArgs, Debug)]
/// run a small HTTP tracker (announce at /announce, scrape at /scrape)
#[argh(subcommand, name = "tracker")]
pub struct TrackerArgs {
    /// address to listen on (default 0.0.0.0:6969; port 0 = any free port)
    #[argh(option, default = "\"0.0.0.0:6969\".parse().unwrap()")]
    pub listen: SocketAddr,
    /// announce interval told to clients, in seconds (default 60)
    #[argh(option, default = "60")]
    pub interval: u64,
    /// log level (default info)
    #[argh(option)]
    pub log_level: Option<String>,
}

#[derive(FromArgs, Debug)]
/// run a DNS server for overlay names (UDP) with a REST API to register them
#[argh(subcommand, name = "dns")]
pub struct DnsArgs {
    /// UDP address for DNS queries (default 0.0.0.0:8053)
    #[argh(option, default = "\"0.0.0.0:8053\".parse().unwrap()")]
    pub udp: SocketAddr,
    /// HTTP address of the REST API (default 0.0.0.0:8080)
    #[argh(option, default = "\"0.0.0.0:8080\".parse().unwrap()")]
    pub http: SocketAddr,
    /// another DNS server's HTTP HOST:PORT to gossip records with, repeatable
    #[argh(option)]
    pub peer: Vec<String>,
    /// milliseconds between gossip rounds with peers (default 2000)
    #[argh(option, default = "2000")]
    pub gossip_interval_ms: u64,
    /// only names under this suffix are answered (NXDOMAIN when unknown); others are REFUSED (default: all names)
    #[argh(option)]
    pub zone: Option<String>,
    /// log level (default info)
    #[argh(option)]
    pub log_level: Option<String>,
}

#[derive(FromArgs, Debug)]
/// ask one overlay node for the providers of INFO_HASH; prints one JSON object per line
#[argh(subcommand, name = "lookup")]
pub struct LookupArgs {
    /// the info-hash, 40 hex characters
    #[argh(positional)]
    pub info_hash: String,
    /// overlay node to ask, HOST:PORT
    #[argh(option)]
    pub at: String,
    /// most providers to return (default 50)
    #[argh(option, default = "50")]
    pub limit: usize,
}

/// What parsing the command line ended in, when it did not give a [`Cli`].
#[derive(Debug, PartialEq, Eq)]
pub enum ParseExit {
    /// `--help`: print this on stdout, exit 0.
    Help(String),
    /// A wrong or missing flag: print this on stderr, exit 2.
    Usage(String),
}

/// Parses `args` (the program name first). argh's own `from_env` exits 1
/// on a wrong flag; the README promises 2 for every usage error.
pub fn parse_cli(args: &[std::ffi::OsString]) -> Result<Cli, ParseExit> {
    let strings = args
        .iter()
        .map(|a| {
            a.to_str().map(str::to_string).ok_or_else(|| {
                ParseExit::Usage(format!(
                    "argument {:?} is not valid UTF-8",
                    a.to_string_lossy()
                ))
            })
        })
        .collect::<Result<Vec<String>, ParseExit>>()?;
    let name = strings
        .first()
        .and_then(|p| std::path::Path::new(p).file_name()?.to_str())
        .unwrap_or("btnode")
        .to_string();
    let rest: Vec<&str> = strings.iter().skip(1).map(String::as_str).collect();
    <Cli as FromArgs>::from_args(&[&name], &rest).map_err(|exit| match exit.status {
        Ok(()) => ParseExit::Help(exit.output),
        Err(()) => ParseExit::Usage(format!(
            "{}\nRun {name} --help for more information.",
            exit.output.trim_end()
        )),
    })
}

/// How a node finds peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiscoveryMode {
    Overlay,
    Tracker,
    Hybrid,
}

impl std::str::FromStr for DiscoveryMode {
    type Err = CliError;
    fn from_str(s: &str) -> Result<Self, CliError> {
        match s {
            "overlay" => Ok(DiscoveryMode::Overlay),
            "tracker" => Ok(DiscoveryMode::Tracker),
            "hybrid" => Ok(DiscoveryMode::Hybrid),
            other => Err(CliError::Usage(format!(
                "--discovery-mode must be overlay, tracker or hybrid, not {other:?}"
            ))),
        }
    }
}

/// Everything a node needs, validated.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub torrent: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub bind: std::net::IpAddr,
    pub peer_port: u16,
    /// The user gave `--port` or BTNODE_PORT: a taken port is then an
    /// error; otherwise the node falls back to a free port.
    pub peer_port_chosen: bool,
    pub overlay_port: u16,
    /// As `peer_port_chosen`, for `--overlay-port` / BTNODE_OVERLAY_PORT.
    pub overlay_port_chosen: bool,
    pub exit_on_complete: bool,
    pub bootstrap: Vec<String>,
    /// `None` means: hybrid when the torrent names a tracker, overlay otherwise.
    pub discovery_mode: Option<DiscoveryMode>,
    pub dns: Option<String>,
    pub dns_register: Option<String>,
    pub dns_http: Option<String>,
    pub direct_peers: Vec<String>,
    pub max_peers: usize,
    pub upload_slots: usize,
    pub announce_interval: Option<Duration>,
    pub status_file: Option<PathBuf>,
    pub upload_rate_limit: Option<u64>,
    pub download_rate_limit: Option<u64>,
    pub progress: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Wrong or missing flags: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed: exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Result<Option<T>, CliError> {
    match env(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| CliError::Usage(format!("environment {name}={v:?} is not valid"))),
    }
}

impl NodeConfig {
    pub fn from_cli(cli: &Cli) -> Result<NodeConfig, CliError> {
        let torrent = cli
            .torrent
            .clone()
            .or_else(|| env(ENV_TORRENT).map(PathBuf::from));
        let mut bootstrap = cli.bootstrap.clone();
        if bootstrap.is_empty() {
            if let Some(list) = env(ENV_BOOTSTRAP) {
                bootstrap = list
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
        }
        for b in &bootstrap {
            check_host_port(b, "--bootstrap")?;
        }
        for p in &cli.peer {
            check_host_port(p, "--peer")?;
        }
        let discovery_mode = match &cli.discovery_mode {
            Some(m) => Some(m.parse()?),
            None => env_parse::<String>(ENV_DISCOVERY_MODE)?
                .map(|m| m.parse())
                .transpose()?,
        };
        if torrent.is_none() && bootstrap.is_empty() && cli.overlay_port.is_none() {
            return Err(CliError::Usage(
                "nothing to do: give -t FILE.torrent (download and seed), -b HOST:PORT \
                 (overlay-only node), or a subcommand; see --help"
                    .into(),
            ));
        }
        let max_peers = cli.max_peers.unwrap_or(DEFAULT_MAX_PEERS);
        if max_peers == 0 {
            return Err(CliError::Usage("--max-peers must be at least 1".into()));
        }
        if cli.announce_interval == Some(0) {
            return Err(CliError::Usage(
                "--announce-interval must be at least 1".into(),
            ));
        }
        let peer_port = match cli.port {
            Some(p) => Some(p),
            None => env_parse(ENV_PORT)?,
        };
        let overlay_port = match cli.overlay_port {
            Some(p) => Some(p),
            None => env_parse(ENV_OVERLAY_PORT)?,
        };
        Ok(NodeConfig {
            torrent,
            data_dir: cli
                .dir
                .clone()
                .or_else(|| env(ENV_DATA_DIR).map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from(".")),
            bind: cli.bind.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
            peer_port: peer_port.unwrap_or(DEFAULT_PEER_PORT),
            peer_port_chosen: peer_port.is_some(),
            overlay_port: overlay_port.unwrap_or(DEFAULT_OVERLAY_PORT),
            overlay_port_chosen: overlay_port.is_some(),
            exit_on_complete: cli.exit_on_complete,
            bootstrap,
            discovery_mode,
            dns: cli.dns.clone().or_else(|| env(ENV_DNS)),
            dns_register: cli.dns_register.clone().or_else(|| env(ENV_DNS_REGISTER)),
            dns_http: cli.dns_http.clone().or_else(|| env("BTNODE_DNS_HTTP")),
            direct_peers: cli.peer.clone(),
            max_peers,
            upload_slots: cli.upload_slots.unwrap_or(DEFAULT_UPLOAD_SLOTS),
            announce_interval: cli.announce_interval.map(Duration::from_secs),
            status_file: cli.status_file.clone(),
            // 0 means no limit (handy for `${RATE:-0}` in compose files).
            upload_rate_limit: cli.upload_rate_limit.filter(|&r| r > 0),
            download_rate_limit: cli.download_rate_limit.filter(|&r| r > 0),
            progress: !cli.no_progress,
        })
    }
}

/// `host:port` with a non-empty host and a numeric port (names are resolved later).
fn check_host_port(s: &str, flag: &str) -> Result<(), CliError> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(CliError::Usage(format!(
            "{flag} wants HOST:PORT, got {s:?}"
        ))),
    }
}

/// Sets up logging to stderr at `level` (default info).
pub fn init_logging(level: Option<&str>) -> Result<(), CliError> {
    let level = level
        .map(str::to_string)
        .or_else(|| env(ENV_LOG_LEVEL))
        .unwrap_or_else(|| "info".into());
    let filter: log::LevelFilter = level.parse().map_err(|_| {
        CliError::Usage(format!(
            "--log-level {level:?}: use error, warn, info, debug or trace"
        ))
    })?;
    let config = simplelog::ConfigBuilder::new()
        .set_time_format_rfc3339()
        .set_target_level(log::LevelFilter::Error)
        .build();
    // Ignored: a second call (tests) keeps the first logger.
    let _ = simplelog::WriteLogger::init(filter, config, std::io::stderr());
    Ok(())
}

pub fn run_cli(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Some(Command::Create(args)) => run_create(&args),
        Some(Command::Tracker(args)) => {
            init_logging(args.log_level.as_deref())?;
            run_tracker(&args).map_err(|e| CliError::Failed(e.to_string()))
        }
        Some(Command::Dns(args)) => {
            init_logging(args.log_level.as_deref())?;
            crate::dns::run(&args)
        }
        Some(Command::Lookup(args)) => crate::overlay::run_lookup(&args),
        Some(Command::Health(args)) => run_health(&args),
        None => {
            let config = NodeConfig::from_cli(&cli)?;
            init_logging(cli.log_level.as_deref())?;
            crate::node::run(config)
        }
    }
}

fn run_health(args: &HealthArgs) -> Result<(), CliError> {
    use crate::overlay::{service, wire::Message};
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
    let ping = Message::Ping { overlay_port: None };
    match service::request(args.overlay, &ping, timeout, None) {
        Ok(Message::Pong { .. }) => Ok(()),
        Ok(other) => Err(CliError::Failed(format!(
            "{}: answered {other:?}",
            args.overlay
        ))),
        Err(e) => Err(CliError::Failed(format!("{}: {e}", args.overlay))),
    }
}

fn run_create(args: &CreateArgs) -> Result<(), CliError> {
    use crate::core::metainfo::{self, CreateOptions, Metainfo};
    let opts = CreateOptions {
        piece_length: args.piece_length,
        trackers: args.tracker.clone(),
        comment: args.comment.clone(),
        private: args.private,
    };
    let bytes = metainfo::create(&args.path, &opts).map_err(|e| CliError::Failed(e.to_string()))?;
    let meta = Metainfo::from_bytes(&bytes).map_err(|e| CliError::Failed(e.to_string()))?;
    std::fs::write(&args.output, &bytes)
        .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", args.output.display())))?;
    println!("{}", meta.info_hash);
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
