//! The command line layer: flags and environment ([`args`], [`env`]) →
//! validated per-subsystem configs, and every subcommand's entry point
//! ([`commands`]). Nothing below it imports it.

pub mod args;
pub mod commands;
pub mod configs;
pub mod control;
pub mod daemon;
pub mod env;

use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use crate::node::{DiscoveryMode, NodeConfig, NodeError};
pub use args::*;
use env::env_flags;

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
/// argh has no environment support, so the variables of `env::ENV_FLAGS` are
/// turned into flags: a node command line (no subcommand), or a daemon's
/// after the word `daemon`, is parsed again with `--flag value` put in
/// front for every variable whose flag is absent. Other subcommands never
/// read them.
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
    // Where the node flags begin: the whole line for a node, after the
    // word `daemon` for a daemon; no other subcommand takes them.
    let flags_at = match &cli.command {
        None => 0,
        Some(Command::Daemon(_)) => match rest.iter().position(|a| *a == "daemon") {
            Some(i) => i + 1,
            None => return Ok(cli),
        },
        Some(_) => return Ok(cli),
    };
    let (injected, from_env) = env_flags(&rest[flags_at..], env);
    if injected.is_empty() {
        return Ok(cli);
    }
    let with_env: Vec<&str> = rest[..flags_at]
        .iter()
        .copied()
        .chain(injected.iter().map(String::as_str))
        .chain(rest[flags_at..].iter().copied())
        .collect();
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

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Wrong or missing flags: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// The command ran and failed: exit code 1.
    #[error("{0}")]
    Failed(String),
}

impl From<NodeError> for CliError {
    fn from(e: NodeError) -> CliError {
        CliError::Failed(e.0)
    }
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

/// Validates a parsed node command line (the environment is already folded
/// in by [`parse_cli`]) into what the node runs with.
pub fn node_config(cli: &Cli) -> Result<NodeConfig, CliError> {
    if cli.torrent.is_none() && cli.bootstrap.is_empty() && cli.overlay_port.is_none() {
        return Err(CliError::Usage(
            "nothing to do: give -t FILE.torrent or -t MAGNET_LINK (download and seed), -b HOST:PORT \
             (overlay-only node), or a subcommand; see --help"
                .into(),
        ));
    }
    if let Some(link) = cli.torrent.as_deref().and_then(|t| t.to_str()) {
        if crate::core::Magnet::is_magnet(link) {
            crate::core::Magnet::parse(link).map_err(|e| CliError::Usage(format!("-t: {e}")))?;
        }
    }
    flags_config(cli)
}

/// The node flags of `cli` as a config, with no check that there is
/// anything to do (the daemon's torrents come from its state).
pub fn flags_config(cli: &Cli) -> Result<NodeConfig, CliError> {
    for b in &cli.bootstrap {
        check_host_port(b, "--bootstrap")?;
    }
    for p in &cli.peer {
        check_host_port(p, "--peer")?;
    }
    let discovery_mode = cli
        .discovery_mode
        .as_deref()
        .map(str::parse::<DiscoveryMode>)
        .transpose()
        .map_err(CliError::Usage)?;
    let max_peers = cli.max_peers.unwrap_or(DEFAULT_MAX_PEERS);
    if max_peers == 0 {
        return Err(CliError::Usage("--max-peers must be at least 1".into()));
    }
    if cli.announce_interval == Some(0) {
        return Err(CliError::Usage(
            "--announce-interval must be at least 1".into(),
        ));
    }
    let bind = cli.bind.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let keys = configs::swarm_keys(cli.swarm_key_file.as_deref())?;
    Ok(NodeConfig {
        torrent: cli.torrent.clone(),
        data_dir: cli.dir.clone().unwrap_or_else(|| PathBuf::from(".")),
        bind,
        peer_port: cli.port.unwrap_or(DEFAULT_PEER_PORT),
        peer_port_chosen: cli.port.is_some(),
        dns_registration: configs::dns_registration(cli, keys.as_deref()),
        overlay: configs::overlay_config(cli, bind, keys),
        exit_on_complete: cli.exit_on_complete,
        discovery_mode,
        direct_peers: cli.peer.clone(),
        max_peers,
        upload_slots: cli.upload_slots.unwrap_or(DEFAULT_UPLOAD_SLOTS),
        super_seed: cli.super_seed,
        announce_interval: cli.announce_interval.map(Duration::from_secs),
        status_file: cli.status_file.clone(),
        // 0 means no limit (handy for `${RATE:-0}` in compose files).
        upload_rate_limit: cli.upload_rate_limit.filter(|&r| r > 0),
        download_rate_limit: cli.download_rate_limit.filter(|&r| r > 0),
        progress: !cli.no_progress,
        resume_file: None,
    })
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
        Some(Command::Create(args)) => commands::run_create(&args),
        Some(Command::Tracker(args)) => {
            init_logging(args.log_level.as_deref())?;
            commands::run_tracker(&args).map_err(|e| CliError::Failed(e.to_string()))
        }
        Some(Command::Dns(args)) => {
            init_logging(args.log_level.as_deref())?;
            commands::run_dns(&args)
        }
        Some(Command::Lookup(args)) => commands::run_lookup(&args),
        Some(Command::Health(args)) => commands::run_health(&args),
        Some(Command::Keygen(_)) => {
            println!("{}", configs::keygen()?);
            Ok(())
        }
        Some(Command::Add(args)) => control::run_add(&args),
        Some(Command::List(args)) => control::run_list(&args),
        Some(Command::Pause(args)) => control::run_pause(&args),
        Some(Command::Resume(args)) => control::run_resume(&args),
        Some(Command::Remove(args)) => control::run_remove(&args),
        Some(Command::Status(args)) => control::run_status(&args),
        Some(Command::Daemon(args)) => {
            init_logging(args.log_level.as_deref())?;
            daemon::run_daemon(*args)
        }
        None => {
            // Logging first: building the configs may warn.
            init_logging(cli.log_level.as_deref())?;
            let config = node_config(&cli)?;
            Ok(crate::node::run(config)?)
        }
    }
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
        let config = node_config(&cli).unwrap();
        assert!(
            config.peer_port_chosen,
            "a port from the environment is chosen"
        );
        assert!(!config.overlay.port_chosen);
    }

    #[test]
    fn the_swarm_key_file_comes_from_the_flag_or_the_environment() {
        let cli = parse(&["-b", "h:1"], &[(ENV_SWARM_KEY_FILE, "/run/secrets/k")]).unwrap();
        assert_eq!(cli.swarm_key_file, Some(PathBuf::from("/run/secrets/k")));
        let cli = parse(
            &["-b", "h:1", "--swarm-key-file", "/mine"],
            &[(ENV_SWARM_KEY_FILE, "/run/secrets/k")],
        )
        .unwrap();
        assert_eq!(cli.swarm_key_file, Some(PathBuf::from("/mine")));
        assert!(matches!(
            parse(&["keygen"], &[]).unwrap().command,
            Some(Command::Keygen(_))
        ));
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

    #[test]
    fn the_daemon_reads_node_variables_and_its_command_line_wins() {
        let cli = parse(
            &["daemon", "--state", "/s", "--port", "7001"],
            &[
                (ENV_PORT, "7000"),
                (ENV_BOOTSTRAP, "h1:1,h2:2"),
                (ENV_DATA_DIR, "/root-from-env"),
                (ENV_TORRENT, "a.torrent"),
            ],
        )
        .unwrap();
        let Some(Command::Daemon(d)) = cli.command else {
            panic!("not a daemon: {cli:?}");
        };
        assert_eq!(d.port, Some(7001));
        assert_eq!(d.bootstrap, ["h1:1", "h2:2"]);
        assert_eq!(d.dir, Some(PathBuf::from("/root-from-env")));
        assert_eq!(d.torrent, [PathBuf::from("a.torrent")]);
        let Err(ParseExit::Usage(text)) = parse(&["daemon"], &[(ENV_OVERLAY_PORT, "x")]) else {
            panic!("BTNODE_OVERLAY_PORT=x must be a usage error");
        };
        assert!(text.contains("BTNODE_OVERLAY_PORT"), "{text}");
    }
}
