//! The command line: every flag and subcommand (argh), the environment
//! variables that stand for node flags, and every default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

/// Environment variables read when the matching flag is absent (see
/// `super::env`); `BTNODE_LOG_LEVEL` applies to every subcommand.
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
/// The swarm key file: a node flag in the table of `super::env`, and the
/// fallback of `dns`, `lookup`, `health` and `daemon` when they lack
/// `--swarm-key-file` (a container sets it once for all of them).
pub const ENV_SWARM_KEY_FILE: &str = "BTNODE_SWARM_KEY_FILE";
/// The daemon's (and its clients') API address and state directory; the
/// default API address is where clients look when neither `--api` nor
/// `BTNODE_API` says.
pub const ENV_API: &str = "BTNODE_API";
pub const ENV_STATE: &str = crate::api::client::ENV_STATE;
pub const DEFAULT_API: &str = "127.0.0.1:8900";

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
    /// the .torrent file to download and seed, or a magnet: link (env BTNODE_TORRENT)
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
    /// once complete, show each peer only a few pieces at a time (BEP 16 style), so each piece leaves this seed about once
    #[argh(switch)]
    pub super_seed: bool,
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
    /// the swarm key file (see `btnode keygen`): one 64-hex key a line, the first sends, all are accepted; without it the overlay is open (env BTNODE_SWARM_KEY_FILE)
    #[argh(option)]
    pub swarm_key_file: Option<PathBuf>,
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
    Daemon(Box<DaemonArgs>),
    Keygen(KeygenArgs),
    Add(super::control::AddArgs),
    List(super::control::ListArgs),
    Pause(super::control::PauseArgs),
    Resume(super::control::ResumeArgs),
    Remove(super::control::RemoveArgs),
    Status(super::control::StatusArgs),
}

#[derive(FromArgs, Debug)]
/// run many torrents in one process, driven over an HTTP API (see docs/API.md), with /metrics and a dashboard at /
#[argh(subcommand, name = "daemon")]
pub struct DaemonArgs {
    /// state directory: each torrent's metainfo, settings and fast-resume data, and the API token (env BTNODE_STATE)
    #[argh(option)]
    pub state: Option<PathBuf>,
    /// download root: every torrent's data lives under it (default ".", env BTNODE_DATA_DIR)
    #[argh(option, short = 'd')]
    pub dir: Option<PathBuf>,
    /// API listening address (default 127.0.0.1:8900, env BTNODE_API)
    #[argh(option)]
    pub api: Option<SocketAddr>,
    /// a host name the API answers to besides IP literals and localhost, repeatable
    #[argh(option)]
    pub api_host: Vec<String>,
    /// serve /metrics without the token
    #[argh(switch)]
    pub metrics_public: bool,
    /// a .torrent to add at start if the state does not hold it yet, repeatable
    #[argh(option, short = 't')]
    pub torrent: Vec<PathBuf>,
    /// peerwire listening port for every torrent (default 6881, or any free port when taken; 0 = any)
    #[argh(option)]
    pub port: Option<u16>,
    /// address to bind the peer and overlay listeners to (default 0.0.0.0)
    #[argh(option)]
    pub bind: Option<std::net::IpAddr>,
    /// overlay bootstrap node HOST:PORT, repeatable
    #[argh(option, short = 'b')]
    pub bootstrap: Vec<String>,
    /// overlay listening port (default 6000, or any free port when taken; 0 = any)
    #[argh(option)]
    pub overlay_port: Option<u16>,
    /// how to find peers: overlay, tracker or hybrid
    #[argh(option)]
    pub discovery_mode: Option<String>,
    /// DNS service HOST:PORT used to resolve bootstrap names
    #[argh(option)]
    pub dns: Option<String>,
    /// register the overlay address under NAME at the DNS service
    #[argh(option)]
    pub dns_register: Option<String>,
    /// the DNS service's REST API HOST:PORT for --dns-register
    #[argh(option)]
    pub dns_http: Option<String>,
    /// connect every torrent to this peer directly (HOST:PORT), repeatable
    #[argh(option)]
    pub peer: Vec<String>,
    /// most peer connections at once, over all torrents (default 50)
    #[argh(option)]
    pub max_peers: Option<usize>,
    /// regular upload slots of each torrent's choker (default 4)
    #[argh(option)]
    pub upload_slots: Option<usize>,
    /// super-seed every complete torrent: show each peer a few pieces at a time, so each piece leaves about once
    #[argh(switch)]
    pub super_seed: bool,
    /// seconds between tracker and overlay announces
    #[argh(option)]
    pub announce_interval: Option<u64>,
    /// cap on upload bytes per second over all torrents, split fairly between them (default: none)
    #[argh(option)]
    pub upload_rate_limit: Option<u64>,
    /// cap on download bytes per second over all torrents, split fairly between them (default: none)
    #[argh(option)]
    pub download_rate_limit: Option<u64>,
    /// log level (default info)
    #[argh(option)]
    pub log_level: Option<String>,
    /// the swarm key file (env BTNODE_SWARM_KEY_FILE)
    #[argh(option)]
    pub swarm_key_file: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
/// print a new random swarm key (32 bytes, 64 hex characters) for --swarm-key-file
#[argh(subcommand, name = "keygen")]
pub struct KeygenArgs {}

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
    /// the swarm key file, to ping a keyed overlay (env BTNODE_SWARM_KEY_FILE)
    #[argh(option)]
    pub swarm_key_file: Option<PathBuf>,
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
    /// the swarm key file: gossip is sealed and REST writes need the token derived from it (env BTNODE_SWARM_KEY_FILE)
    #[argh(option)]
    pub swarm_key_file: Option<PathBuf>,
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
    /// the swarm key file, to ask a keyed overlay (env BTNODE_SWARM_KEY_FILE)
    #[argh(option)]
    pub swarm_key_file: Option<PathBuf>,
}
