//! SIGINT/SIGTERM → a shutdown channel. A second signal exits at once.

use crossbeam_channel::Receiver;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Returns a receiver that gets `()` on the first SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> std::io::Result<Receiver<()>> {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                seen += 1;
                if seen > 1 {
                    eprintln!("btnode: second signal, exiting now");
                    std::process::exit(128 + sig);
                }
                log::info!("signal {sig}: shutting down");
                let _ = tx.try_send(());
            }
        })?;
    Ok(rx)
}
