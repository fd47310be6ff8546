//! Tracker client (announce and scrape over HTTP with minreq).
