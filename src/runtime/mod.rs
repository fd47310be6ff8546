//! What every subsystem's I/O and the process stand on: the bounded
//! listener service and its HTTP reader, the lock-cycle watchdog, binding a
//! port with fallback. Depends on nothing else in the crate.

pub mod deadlock;
pub mod http;
pub mod listener;
pub mod ports;
pub mod signals;
pub mod wake;

#[cfg(test)]
mod tests {
    /// The layering is a fact, not a convention: nothing here imports the
    /// rest of the crate.
    #[test]
    fn runtime_imports_nothing_else_from_the_crate() {
        let needle = concat!("crate", "::");
        for (file, src) in [
            ("mod.rs", include_str!("mod.rs")),
            ("listener.rs", include_str!("listener.rs")),
            ("http.rs", include_str!("http.rs")),
            ("deadlock.rs", include_str!("deadlock.rs")),
            ("ports.rs", include_str!("ports.rs")),
            ("signals.rs", include_str!("signals.rs")),
            ("wake.rs", include_str!("wake.rs")),
        ] {
            for (n, line) in src.lines().enumerate() {
                assert!(
                    !line.contains(needle) || line.trim_start().starts_with("//"),
                    "runtime/{file}:{}: {line}",
                    n + 1
                );
            }
        }
    }
}
