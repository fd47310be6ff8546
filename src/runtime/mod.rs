//! Process-level machinery shared by every subsystem: the lock-cycle
//! watchdog, binding a port with fallback.

pub mod deadlock;
pub mod ports;
