//! The subcommands that are not a node: each parses nothing (its flags are
//! in [`super::args`]) and owns its own I/O.

use std::time::Duration;

use super::args::{CreateArgs, HealthArgs};
use super::CliError;

pub fn run_health(args: &HealthArgs) -> Result<(), CliError> {
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
    Ok(())
}
