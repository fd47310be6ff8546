//! Composition root: builds the subsystems, wires their channels, handles
//! signals and shutdown.

use crate::config::{CliError, NodeConfig};

pub fn run(_config: NodeConfig) -> Result<(), CliError> {
    Err(CliError::Failed("the node is not built yet".into()))
}
