//! Memory-mapped file set and the SHA-1 worker pool.
