//! Peerwire codec (BEP 3).
