//! Tracker announce/scrape codec (BEP 3, BEP 23, BEP 48).
