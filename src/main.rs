//! Entry point: parse flags, validate them into a config, run, map the
//! result to an exit code. Everything else lives in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli: btnode::config::Cli = argh::from_env();
    match btnode::config::run_cli(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("btnode: {err:#}");
            ExitCode::from(err.exit_code())
        }
    }
}
