//! Entry point: parse flags, validate them into a config, run, map the
//! result to an exit code (0 done, 1 failed, 2 usage). Everything else lives
//! in the library.

use std::process::ExitCode;

use btnode::cli::{self, ParseExit};
use btnode::runtime::deadlock;

fn main() -> ExitCode {
    // Debug/test builds with `deadlock-detection` only; a no-op otherwise.
    deadlock::start_watchdog();
    deadlock::self_test_if_asked();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match cli::parse_cli(&args) {
        Ok(cli) => cli,
        Err(ParseExit::Help(text)) => {
            println!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(ParseExit::Usage(text)) => {
            eprintln!("btnode: {text}");
            return ExitCode::from(2);
        }
    };
    match cli::run_cli(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("btnode: {err:#}");
            ExitCode::from(err.exit_code())
        }
    }
}
