//! Flags and environment → validated configuration, with every default in
//! one place, and the dispatch from a parsed command line to a subsystem.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

/// Environment variables read when the matching flag is absent (see
/// [`ENV_FLAGS`]); `BTNODE_LOG_LEVEL` applies to every subcommand.
pub const ENV_TORRENT: &str = "BTNODE_TORRENT";
pub const ENV_DATA_DIR: &str = "BTNODE_DATA_DIR";
pub const ENV_PORT: &str = "BTNODE_PORT";
pub const ENV_BOOTSTRAP: &str = "BTNODE_BOOTSTRAP";
pub const ENV_OVERLAY_PORT: &str = "BTNODE_OVERLAY_PORT";
pub const ENV_DISCOVERY_MODE: &str = "BTNODE_DISCOVERY_MODE";
pub const ENV_DNS: &str = "BTNODE_DNS";
pub const ENV_DNS_REGISTER: &str = "BTNODE_DNS_REGISTER";
pub const ENV_DNS_HTTP: &str = "BTNODE_DNS_HTTP";
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
///
/// argh has no environment support, so the variables of [`ENV_FLAGS`] are
/// turned into flags: a node command line (no subcommand) is parsed again
/// with `--flag value` put in front for every variable whose flag is
/// absent. A subcommand never reads them.
pub fn parse_cli(args: &[std::ffi::OsString]) -> Result<Cli, ParseExit> {
    parse_cli_with_env(args, |var| std::env::var(var).ok())
}

/// [`parse_cli`] with the environment given, for tests.
pub fn parse_cli_with_env(
    args: &[std::ffi::OsString],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Cli, ParseExit> {
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
    let cli = parse_argh(&name, &rest)?;
    if cli.command.is_some() {
        return Ok(cli);
    }
    let (injected, from_env) = env_flags(&rest, env);
    if injected.is_empty() {
        return Ok(cli);
    }
    let with_env: Vec<&str> = injected.iter().map(String::as_str).chain(rest).collect();
    parse_argh(&name, &with_env).map_err(|exit| match exit {
        ParseExit::Usage(text) => {
            let blamed: Vec<String> = from_env
                .iter()
                .filter(|(flag, _)| text.contains(flag))
                .map(|(flag, var)| format!("{flag} came from the environment: {var}"))
                .collect();
            ParseExit::Usage(if blamed.is_empty() {
                text
            } else {
                format!("{text}\n({})", blamed.join("; "))
            })
        }
        help => help,
    })
}

fn parse_argh(name: &str, args: &[&str]) -> Result<Cli, ParseExit> {
    <Cli as FromArgs>::from_args(&[name], args).map_err(|exit| match exit.status {
        Ok(()) => ParseExit::Help(exit.output),
        Err(()) => ParseExit::Usage(format!(
            "{}\nRun {name} --help for more information.",
            exit.output.trim_end()
        )),
    })
}

/// A node flag the environment may give, read only when the command line
/// lacks it. A `list` variable is comma separated and repeats the flag.
struct EnvFlag {
    var: &'static str,
    long: &'static str,
    short: Option<&'static str>,
    list: bool,
}

const fn env_flag(var: &'static str, long: &'static str, short: Option<&'static str>) -> EnvFlag {
    EnvFlag {
        var,
        long,
        short,
        list: false,
    }
}

/// Every environment variable that stands for a node flag.
const ENV_FLAGS: &[EnvFlag] = &[
    env_flag(ENV_TORRENT, "--torrent", Some("-t")),
    env_flag(ENV_DATA_DIR, "--dir", Some("-d")),
    env_flag(ENV_PORT, "--port", None),
    EnvFlag {
        list: true,
        ..env_flag(ENV_BOOTSTRAP, "--bootstrap", Some("-b"))
    },
    env_flag(ENV_OVERLAY_PORT, "--overlay-port", None),
    env_flag(ENV_DISCOVERY_MODE, "--discovery-mode", None),
    env_flag(ENV_DNS, "--dns", None),
    env_flag(ENV_DNS_REGISTER, "--dns-register", None),
    env_flag(ENV_DNS_HTTP, "--dns-http", None),
];

/// The flags to put in front of `args` for the variables set (blank counts
/// as unset), and for each flag the `VAR="value"` it came from.
fn env_flags(
    args: &[&str],
    env: impl Fn(&str) -> Option<String>,
) -> (Vec<String>, Vec<(&'static str, String)>) {
    let mut injected = Vec::new();
    let mut from_env = Vec::new();
    for f in ENV_FLAGS {
        let given = args.iter().any(|a| *a == f.long || Some(*a) == f.short);
        let Some(value) = env(f.var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        if given {
            continue;
        }
        let values: Vec<&str> = if f.list {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect()
        } else {
            vec![value.trim()]
        };
        for v in values {
            injected.push(f.long.to_string());
            injected.push(v.to_string());
        }
        from_env.push((f.long, format!("{}={value:?}", f.var)));
    }
    (injected, from_env)
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

impl NodeConfig {
    /// Validates a parsed node command line (the environment is already
    /// folded in by [`parse_cli`]).
    pub fn from_cli(cli: &Cli) -> Result<NodeConfig, CliError> {
        for b in &cli.bootstrap {
            check_host_port(b, "--bootstrap")?;
        }
        for p in &cli.peer {
            check_host_port(p, "--peer")?;
        }
        let discovery_mode = cli.discovery_mode.as_deref().map(str::parse).transpose()?;
        if cli.torrent.is_none() && cli.bootstrap.is_empty() && cli.overlay_port.is_none() {
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
        Ok(NodeConfig {
            torrent: cli.torrent.clone(),
            data_dir: cli.dir.clone().unwrap_or_else(|| PathBuf::from(".")),
            bind: cli.bind.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into()),
            peer_port: cli.port.unwrap_or(DEFAULT_PEER_PORT),
            peer_port_chosen: cli.port.is_some(),
            overlay_port: cli.overlay_port.unwrap_or(DEFAULT_OVERLAY_PORT),
            overlay_port_chosen: cli.overlay_port.is_some(),
            exit_on_complete: cli.exit_on_complete,
            bootstrap: cli.bootstrap.clone(),
            discovery_mode,
            dns: cli.dns.clone(),
            dns_register: cli.dns_register.clone(),
            dns_http: cli.dns_http.clone(),
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
        .or_else(|| {
            std::env::var(ENV_LOG_LEVEL)
                .ok()
                .filter(|v| !v.trim().is_empty())
        })
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
            crate::tracker::server::run(&args).map_err(|e| CliError::Failed(e.to_string()))
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Cli, ParseExit> {
        let argv: Vec<std::ffi::OsString> = std::iter::once("btnode")
            .chain(args.iter().copied())
            .map(Into::into)
            .collect();
        parse_cli_with_env(&argv, |var| {
            env.iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn environment_fills_absent_flags_and_the_command_line_wins() {
        let cli = parse(
            &["-d", "/from-flag"],
            &[
                (ENV_TORRENT, "a.torrent"),
                (ENV_DATA_DIR, "/from-env"),
                (ENV_BOOTSTRAP, "h1:1, h2:2,,"),
                (ENV_PORT, " 7000 "),
                (ENV_DNS, "  "),
            ],
        )
        .unwrap();
        assert_eq!(cli.torrent, Some(PathBuf::from("a.torrent")));
        assert_eq!(cli.dir, Some(PathBuf::from("/from-flag")));
        assert_eq!(cli.bootstrap, ["h1:1", "h2:2"]);
        assert_eq!(cli.port, Some(7000));
        assert_eq!(cli.dns, None, "a blank variable counts as unset");
        let config = NodeConfig::from_cli(&cli).unwrap();
        assert!(
            config.peer_port_chosen,
            "a port from the environment is chosen"
        );
        assert!(!config.overlay_port_chosen);
    }

    #[test]
    fn a_bad_variable_is_a_usage_error_that_names_it() {
        let Err(ParseExit::Usage(text)) = parse(&["-t", "x.torrent"], &[(ENV_PORT, "abc")]) else {
            panic!("BTNODE_PORT=abc must be a usage error");
        };
        assert!(text.contains("BTNODE_PORT=\"abc\""), "{text}");
    }

    #[test]
    fn subcommands_never_read_node_variables() {
        let cli = parse(
            &["tracker", "--listen", "127.0.0.1:0"],
            &[(ENV_PORT, "abc"), (ENV_TORRENT, "a.torrent")],
        )
        .unwrap();
        assert!(matches!(cli.command, Some(Command::Tracker(_))));
        assert_eq!(cli.torrent, None);
    }
}
