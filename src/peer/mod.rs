//! Thread-per-connection peerwire I/O.
