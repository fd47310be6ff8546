//! Process-level machinery shared by every subsystem.

pub mod deadlock;
