//! The gossip overlay: provider store, membership, gossip and lookup.

use crate::config::{CliError, LookupArgs, NodeConfig};

pub fn run_lookup(_args: &LookupArgs) -> Result<(), CliError> {
    Err(CliError::Failed("the overlay is not built yet".into()))
}

/// Runs an overlay-only node until `shutdown` fires.
pub fn run_node(
    _config: &NodeConfig,
    _shutdown: crossbeam_channel::Receiver<()>,
) -> Result<(), CliError> {
    Err(CliError::Failed("the overlay is not built yet".into()))
}
