//! The distributed DNS service: a UDP DNS server for overlay names, a REST
//! API to register them, and record gossip between servers.

use crate::config::{CliError, DnsArgs};

pub fn run(_args: &DnsArgs) -> Result<(), CliError> {
    Err(CliError::Failed("the dns service is not built yet".into()))
}
