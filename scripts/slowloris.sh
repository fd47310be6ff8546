#!/usr/bin/env bash
# Slowloris against every btnode listener (overlay, tracker HTTP, DNS REST)
# on loopback, and the numbers: real requests served/attempted during each
# attack with their latency, the server's thread count under attack, and
# how fast SIGTERM exits with the slow connections open. The attacks are
# the integration tests in tests/slowloris.rs (140 overlay connections, or
# 400 HTTP ones, each sending a prefix and then one byte every 1.5 s, from
# 127.0.0.2 or from the client's own 127.0.0.1); this prints what they
# measured.
#   scripts/slowloris.sh            (debug build, as the tests run)
#   PROFILE=--release scripts/slowloris.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test ${PROFILE:-} --test slowloris -- --nocapture --test-threads 1 2>&1 |
    grep -E '(served|threads|exit codes|failed after|test result)'
