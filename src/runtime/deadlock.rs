//! Lock-cycle watchdog: with the `deadlock-detection` feature (on in every
//! `cargo test` build, and in the `btnode` binary those tests spawn), a
//! thread asks parking_lot every second whether threads wait on each other's
//! locks in a cycle, and if so logs each thread's backtrace and exits with
//! [`EXIT_CODE`]. Without the feature every function here is a no-op and
//! parking_lot keeps no bookkeeping, so release builds pay nothing.
//!
//! Owns nothing but its thread; must not take any lock of the crate.

use std::time::Duration;

/// Exit status of a process the watchdog stops (as a panic's, it is a bug).
pub const EXIT_CODE: i32 = 101;
/// How often the watchdog looks.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// With detection on, `BTNODE_DEADLOCK_SELFTEST=1` makes the binary deadlock
/// two threads on purpose at start, so tests can prove detection is on in
/// the binary they run.
pub const ENV_SELFTEST: &str = "BTNODE_DEADLOCK_SELFTEST";

/// Whether this build detects lock cycles.
pub const fn enabled() -> bool {
    cfg!(feature = "deadlock-detection")
}

/// The lock cycles that appeared since the last call, one description each
/// (thread ids and backtraces). Always empty without detection.
#[cfg(feature = "deadlock-detection")]
pub fn cycles() -> Vec<String> {
    parking_lot::deadlock::check_deadlock()
        .iter()
        .map(|cycle| {
            let mut text = format!("{} threads wait on each other:", cycle.len());
            for t in cycle {
                text.push_str(&format!(
                    "\n--- thread {:?}\n{:?}",
                    t.thread_id(),
                    t.backtrace()
                ));
            }
            text
        })
        .collect()
}

#[cfg(not(feature = "deadlock-detection"))]
pub fn cycles() -> Vec<String> {
    Vec::new()
}

/// Starts the watchdog thread (no-op without detection). On a cycle it logs
/// an error and exits the process with [`EXIT_CODE`]: a node that cannot
/// make progress must not look alive.
pub fn start_watchdog() {
    if !enabled() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("deadlock-watchdog".into())
        .spawn(|| loop {
            std::thread::sleep(INTERVAL);
            let found = cycles();
            if found.is_empty() {
                continue;
            }
            for c in &found {
                log::error!("deadlock: {c}");
                eprintln!("btnode: deadlock: {c}");
            }
            std::process::exit(EXIT_CODE);
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the deadlock watchdog: {e}");
    }
}

/// With detection on and [`ENV_SELFTEST`] set: two threads take two locks
/// in opposite orders, so the watchdog must stop the process.
pub fn self_test_if_asked() {
    if !enabled() || std::env::var(ENV_SELFTEST).as_deref() != Ok("1") {
        return;
    }
    use parking_lot::Mutex;
    use std::sync::{Arc, Barrier};
    let locks = Arc::new((Mutex::new(()), Mutex::new(())));
    let barrier = Arc::new(Barrier::new(2));
    for first in [true, false] {
        let (locks, barrier) = (locks.clone(), barrier.clone());
        std::thread::spawn(move || {
            let (a, b) = (&locks.0, &locks.1);
            let (x, y) = if first { (a, b) } else { (b, a) };
            let _held = x.lock();
            barrier.wait();
            let _never = y.lock();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unit tests are a test build: detection must be on here.
    #[test]
    fn test_builds_detect_lock_cycles() {
        assert!(enabled(), "cargo test must build with deadlock-detection");
    }
}
