//! `btnode add/list/pause/resume/remove/status`: the daemon's API from the
//! command line ([`crate::api::client`]). Each command finds the daemon
//! (`--api`, else `BTNODE_API`, else 127.0.0.1:8900) and its token
//! (`BTNODE_TOKEN`, else `--state DIR`/`BTNODE_STATE` → `DIR/api-token`),
//! makes one request and prints the answer; the formatting is in pure
//! functions so it is tested without a daemon.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use argh::FromArgs;

use super::CliError;
use crate::api::client::{find_token, ApiClient, ClientError};
use crate::api::{SessionInfo, TorrentSummary};
use crate::core::Magnet;
use crate::node::status::human;

use super::args::{DEFAULT_API, ENV_API};

/// Longest name shown in the table; longer ones end in `…`.
const NAME_WIDTH: usize = 40;

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> CliError {
        CliError::Failed(e.to_string())
    }
}

#[derive(FromArgs, Debug)]
/// add a .torrent or a magnet link to the running daemon; prints its info-hash
#[argh(subcommand, name = "add")]
pub struct AddArgs {
    /// the .torrent file, or a magnet link ('magnet:?xt=urn:btih:…', quoted)
    #[argh(positional)]
    pub file: PathBuf,
    /// data directory relative to the daemon's download root (default: the root)
    #[argh(option)]
    pub dir: Option<String>,
    /// add without starting it
    #[argh(switch)]
    pub paused: bool,
    /// the daemon's API address HOST:PORT (default 127.0.0.1:8900, env BTNODE_API)
    #[argh(option)]
    pub api: Option<String>,
    /// the daemon's state directory, for its api-token (env BTNODE_STATE; BTNODE_TOKEN overrides)
    #[argh(option)]
    pub state: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
/// list the daemon's torrents
#[argh(subcommand, name = "list")]
pub struct ListArgs {
    /// print the JSON array instead of a table
    #[argh(switch)]
    pub json: bool,
    /// redraw every second until Ctrl-C
    #[argh(switch)]
    pub watch: bool,
    /// with --watch: stop after N redraws
    #[argh(option)]
    pub count: Option<u64>,
    /// the daemon's API address HOST:PORT (default 127.0.0.1:8900, env BTNODE_API)
    #[argh(option)]
    pub api: Option<String>,
    /// the daemon's state directory, for its api-token (env BTNODE_STATE; BTNODE_TOKEN overrides)
    #[argh(option)]
    pub state: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
/// pause a torrent of the daemon
#[argh(subcommand, name = "pause")]
pub struct PauseArgs {
    /// the torrent's info-hash, 40 hex characters
    #[argh(positional)]
    pub hash: String,
    /// the daemon's API address HOST:PORT (default 127.0.0.1:8900, env BTNODE_API)
    #[argh(option)]
    pub api: Option<String>,
    /// the daemon's state directory, for its api-token (env BTNODE_STATE; BTNODE_TOKEN overrides)
    #[argh(option)]
    pub state: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
/// resume a paused torrent of the daemon
#[argh(subcommand, name = "resume")]
pub struct ResumeArgs {
    /// the torrent's info-hash, 40 hex characters
    #[argh(positional)]
    pub hash: String,
    /// the daemon's API address HOST:PORT (default 127.0.0.1:8900, env BTNODE_API)
    #[argh(option)]
    pub api: Option<String>,
    /// the daemon's state directory, for its api-token (env BTNODE_STATE; BTNODE_TOKEN overrides)
    #[argh(option)]
    pub state: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
/// remove a torrent from the daemon (its files stay unless --delete-data)
#[argh(subcommand, name = "remove")]
pub struct RemoveArgs {
    /// the torrent's info-hash, 40 hex characters
    #[argh(positional)]
    pub hash: String,
    /// also delete the torrent's downloaded files
    #[argh(switch)]
    pub delete_data: bool,
    /// the daemon's API address HOST:PORT (default 127.0.0.1:8900, env BTNODE_API)
    #[argh(option)]
    pub api: Option<String>,
    /// the daemon's state directory, for its api-token (env BTNODE_STATE; BTNODE_TOKEN overrides)
    #[argh(option)]
    pub state: Option<PathBuf>,
}

#[derive(FromArgs, Debug)]
/// show the daemon's session: version, uptime, ports, overlay, rates, counters
#[argh(subcommand, name = "status")]
pub struct StatusArgs {
    /// print the JSON object instead of text
    #[argh(switch)]
    pub json: bool,
    /// the daemon's API address HOST:PORT (default 127.0.0.1:8900, env BTNODE_API)
    #[argh(option)]
    pub api: Option<String>,
    /// the daemon's state directory, for its api-token (env BTNODE_STATE; BTNODE_TOKEN overrides)
    #[argh(option)]
    pub state: Option<PathBuf>,
}

/// The API address: the flag, else `BTNODE_API`, else the default.
pub fn api_addr(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> String {
    flag.map(str::to_string)
        .or_else(|| env(ENV_API).filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_API.to_string())
}

fn client(api: Option<&str>, state: Option<&std::path::Path>) -> Result<ApiClient, CliError> {
    let addr = api_addr(api, |v| std::env::var(v).ok());
    let token = find_token(state)?;
    Ok(ApiClient::new(&addr, &token))
}

pub fn run_add(args: &AddArgs) -> Result<(), CliError> {
    let api = client(args.api.as_deref(), args.state.as_deref())?;
    // A magnet link is sent as it is; the daemon parses it (and says what
    // is wrong with it).
    if let Some(link) = args.file.to_str().filter(|t| Magnet::is_magnet(t)) {
        let hash = api.add(link.as_bytes(), args.dir.as_deref(), args.paused)?;
        println!("{hash}");
        return Ok(());
    }
    let max = crate::api::server::DEFAULT_MAX_BODY as u64;
    // Checked before reading, so a wrong file (an ISO given by mistake) is
    // neither read into memory nor sent to be refused with 413.
    let len = std::fs::metadata(&args.file)
        .map_err(|e| CliError::Failed(format!("{}: {e}", args.file.display())))?
        .len();
    if len > max {
        return Err(CliError::Failed(format!(
            "{}: {} is more than a .torrent can be (the daemon takes at most {})",
            args.file.display(),
            human(len),
            human(max)
        )));
    }
    let metainfo = std::fs::read(&args.file)
        .map_err(|e| CliError::Failed(format!("{}: {e}", args.file.display())))?;
    let hash = api.add(&metainfo, args.dir.as_deref(), args.paused)?;
    println!("{hash}");
    Ok(())
}

pub fn run_list(args: &ListArgs) -> Result<(), CliError> {
    let api = client(args.api.as_deref(), args.state.as_deref())?;
    if !args.watch {
        return print_list(&api.list()?, args.json);
    }
    if args.count == Some(0) {
        return Ok(());
    }
    let mut drawn = 0u64;
    loop {
        let list = api.list()?;
        // Clear the screen and go home, then draw: one frame per second.
        print!("\x1b[2J\x1b[H");
        print_list(&list, args.json)?;
        drawn += 1;
        if args.count.is_some_and(|n| drawn >= n) {
            return Ok(());
        }
        // The redraw period itself, not a stand-in for waiting on something.
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn print_list(list: &[TorrentSummary], json: bool) -> Result<(), CliError> {
    let text = if json {
        let mut s = serde_json::to_string_pretty(list)
            .map_err(|e| CliError::Failed(format!("cannot write JSON: {e}")))?;
        s.push('\n');
        s
    } else {
        format_table(list)
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Failed(format!("stdout: {e}")))
}

pub fn run_pause(args: &PauseArgs) -> Result<(), CliError> {
    let api = client(args.api.as_deref(), args.state.as_deref())?;
    Ok(api.pause(&args.hash)?)
}

pub fn run_resume(args: &ResumeArgs) -> Result<(), CliError> {
    let api = client(args.api.as_deref(), args.state.as_deref())?;
    Ok(api.resume(&args.hash)?)
}

pub fn run_remove(args: &RemoveArgs) -> Result<(), CliError> {
    let api = client(args.api.as_deref(), args.state.as_deref())?;
    Ok(api.remove(&args.hash, args.delete_data)?)
}

pub fn run_status(args: &StatusArgs) -> Result<(), CliError> {
    let api = client(args.api.as_deref(), args.state.as_deref())?;
    let info = api.session()?;
    if args.json {
        let s = serde_json::to_string_pretty(&info)
            .map_err(|e| CliError::Failed(format!("cannot write JSON: {e}")))?;
        println!("{s}");
    } else {
        print!("{}", format_status(&info));
    }
    Ok(())
}

/// `1h02m`, `4m57s`, `45s`, `3d04h`.
pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}

fn rate(bytes_per_sec: u64) -> String {
    format!("{}/s", human(bytes_per_sec))
}

/// At most `width` characters (not bytes: names are UTF-8), `…` marking a cut.
fn clip(name: &str, width: usize) -> String {
    if name.chars().count() <= width {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The `btnode list` table: one line per torrent, columns padded to their
/// widest cell, numbers right-aligned. The full info-hash comes last, for
/// copying into `pause/resume/remove`.
pub fn format_table(list: &[TorrentSummary]) -> String {
    const HEAD: [&str; 9] = [
        "NAME", "SIZE", "DONE", "STATE", "DOWN", "UP", "PEERS", "ETA", "HASH",
    ];
    // Which columns are right-aligned (numbers).
    const RIGHT: [bool; 9] = [false, true, true, false, true, true, true, true, false];
    let rows: Vec<[String; 9]> = list
        .iter()
        .map(|t| {
            // Control characters in a name would garble the terminal.
            let name: String = t
                .name
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            [
                clip(&name, NAME_WIDTH),
                human(t.size),
                format!("{:.1}%", (t.progress * 100.0).clamp(0.0, 100.0)),
                t.state.clone(),
                rate(t.down_rate),
                rate(t.up_rate),
                t.peers.to_string(),
                t.eta_secs.map_or_else(|| "-".to_string(), format_duration),
                t.info_hash.clone(),
            ]
        })
        .collect();
    let mut widths = HEAD.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 9]| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if RIGHT[i] {
                out.push_str(&" ".repeat(pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i + 1 < cells.len() {
                    out.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(HEAD);
    for row in &rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    if rows.is_empty() {
        out.push_str("(no torrents)\n");
    }
    out
}

/// The `btnode status` text: one `label  value` line each.
pub fn format_status(s: &SessionInfo) -> String {
    let overlay = match &s.overlay_addr {
        Some(addr) => format!("{addr} ({} members)", s.overlay_members),
        None => "none".to_string(),
    };
    let c = &s.counters;
    let lines = [
        ("version", s.version.clone()),
        ("uptime", format_duration(s.uptime_secs)),
        ("peer port", s.peer_port.to_string()),
        ("overlay", overlay),
        (
            "DNS registration",
            s.dns_registration.clone().unwrap_or_else(|| "none".into()),
        ),
        ("torrents", s.torrents.to_string()),
        ("down", rate(s.down_rate)),
        ("up", rate(s.up_rate)),
        (
            "gossip",
            format!(
                "{} in, {} out",
                human(c.gossip_bytes_in),
                human(c.gossip_bytes_out)
            ),
        ),
        (
            "tracker",
            format!(
                "{} announces, {} failed",
                c.tracker_announces, c.tracker_failures
            ),
        ),
        ("DNS queries", c.dns_queries.to_string()),
    ];
    let width = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    lines
        .iter()
        .map(|(label, value)| format!("{label:<width$}  {value}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::SessionCounters;

    fn summary(name: &str, hash: char) -> TorrentSummary {
        TorrentSummary {
            info_hash: hash.to_string().repeat(40),
            name: name.into(),
            size: 6_114_656_256,
            progress: 0.4375,
            pieces_have: 10206,
            pieces_total: 23326,
            state: "downloading".into(),
            down_rate: 11_534_336,
            up_rate: 524_288,
            peers: 37,
            eta_secs: Some(297),
            downloaded: 0,
            uploaded: 0,
            pieces_verified: 0,
            hash_failures: 0,
            pieces_checked_at_start: 0,
        }
    }

    #[test]
    fn table_has_a_header_and_aligned_human_columns() {
        let mut done = summary("small", 'b');
        done.size = 1000;
        done.progress = 1.0;
        done.state = "seeding".into();
        done.down_rate = 0;
        done.peers = 2;
        done.eta_secs = None;
        let table = format_table(&[summary("ubuntu.iso", 'a'), done]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3, "{table}");
        assert_eq!(
            lines[0],
            "NAME           SIZE    DONE  STATE              DOWN           UP  PEERS    ETA  HASH"
        );
        assert_eq!(
            lines[1],
            format!(
                "ubuntu.iso  5.7 GiB   43.8%  downloading  11.0 MiB/s  512.0 KiB/s     37  4m57s  {}",
                "a".repeat(40)
            )
        );
        assert_eq!(
            lines[2],
            format!(
                "small        1000 B  100.0%  seeding           0 B/s  512.0 KiB/s      2      -  {}",
                "b".repeat(40)
            )
        );
        // Every line is as wide as the header up to the hash column.
        let hash_col = lines[0].find("HASH").unwrap();
        for l in &lines[1..] {
            assert_eq!(l.chars().count(), hash_col + 40, "{l}");
        }
    }

    #[test]
    fn table_clips_long_names_and_defangs_control_characters() {
        let long = "ü".repeat(60);
        let table = format_table(&[summary(&long, 'a'), summary("evil\x1b[2Jname", 'b')]);
        let lines: Vec<&str> = table.lines().collect();
        let expected = format!("{}…", "ü".repeat(NAME_WIDTH - 1));
        assert!(lines[1].starts_with(&expected), "{}", lines[1]);
        assert!(!table.contains('\x1b'));
        assert!(lines[2].starts_with("evil?[2Jname "), "{}", lines[2]);
    }

    #[test]
    fn empty_table_says_so() {
        let table = format_table(&[]);
        assert!(table.starts_with("NAME"));
        assert!(table.ends_with("(no torrents)\n"));
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(45), "45s");
        assert_eq!(format_duration(297), "4m57s");
        assert_eq!(format_duration(3600), "1h00m");
        assert_eq!(format_duration(3 * 86_400 + 4 * 3600 + 59), "3d04h");
    }

    #[test]
    fn status_text_names_every_field() {
        let info = SessionInfo {
            version: "0.1.0".into(),
            uptime_secs: 3725,
            peer_port: 6881,
            overlay_addr: Some("192.168.1.5:7000".into()),
            overlay_members: 12,
            dns_registration: None,
            torrents: 3,
            down_rate: 2048,
            up_rate: 0,
            counters: SessionCounters {
                gossip_bytes_in: 1_048_576,
                gossip_bytes_out: 10,
                tracker_announces: 42,
                tracker_failures: 1,
                dns_queries: 7,
                overlay_auth_failures: 0,
            },
        };
        let text = format_status(&info);
        for want in [
            "version           0.1.0\n",
            "uptime            1h02m\n",
            "peer port         6881\n",
            "overlay           192.168.1.5:7000 (12 members)\n",
            "DNS registration  none\n",
            "torrents          3\n",
            "down              2.0 KiB/s\n",
            "up                0 B/s\n",
            "gossip            1.0 MiB in, 10 B out\n",
            "tracker           42 announces, 1 failed\n",
            "DNS queries       7\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn api_address_flag_then_env_then_default() {
        let env = |v: &str| (v == ENV_API).then(|| "10.0.0.1:9000".to_string());
        assert_eq!(api_addr(Some("127.0.0.1:1"), env), "127.0.0.1:1");
        assert_eq!(api_addr(None, env), "10.0.0.1:9000");
        assert_eq!(api_addr(None, |_| None), DEFAULT_API);
        assert_eq!(api_addr(None, |_| Some(" ".into())), DEFAULT_API);
    }

    #[test]
    fn subcommands_parse() {
        let a = AddArgs::from_args(
            &["add"],
            &["x.torrent", "--dir", "isos", "--paused", "--api", "h:1"],
        )
        .unwrap();
        assert_eq!(a.file, PathBuf::from("x.torrent"));
        assert_eq!(a.dir.as_deref(), Some("isos"));
        assert!(a.paused);
        assert_eq!(a.api.as_deref(), Some("h:1"));
        let l =
            ListArgs::from_args(&["list"], &["--watch", "--count", "2", "--state", "s"]).unwrap();
        assert!(l.watch && !l.json);
        assert_eq!(l.count, Some(2));
        assert_eq!(l.state, Some(PathBuf::from("s")));
        let r = RemoveArgs::from_args(&["remove"], &["abc", "--delete-data"]).unwrap();
        assert!(r.delete_data);
        assert_eq!(r.hash, "abc");
        assert!(PauseArgs::from_args(&["pause"], &[]).is_err());
    }
}
