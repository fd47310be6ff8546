#!/usr/bin/env bash
# Runs btnode's whole test suite on a fresh machine: installs what the tests
# need when it is missing (Debian packages, the Rust toolchain's components),
# then fmt, clippy and every test. Used by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real BitTorrent peers, a foreign tracker and DNS tools for interop tests.
need_pkgs=()
command -v transmission-cli >/dev/null || need_pkgs+=(transmission-cli)
command -v transmission-daemon >/dev/null || need_pkgs+=(transmission-daemon)
command -v aria2c >/dev/null || need_pkgs+=(aria2)
command -v opentracker >/dev/null || need_pkgs+=(opentracker)
command -v mktorrent >/dev/null || need_pkgs+=(mktorrent)
command -v dig >/dev/null || need_pkgs+=(dnsutils)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# Headless browser for the dashboard test (tests/dashboard.rs).
command -v chromium >/dev/null || need_pkgs+=(chromium)
/usr/bin/python3 -c 'import libtorrent' 2>/dev/null || need_pkgs+=(python3-libtorrent)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing: ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    echo "missing (tests that need them will skip): ${need_pkgs[*]}"
  fi
fi

rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy

cargo fmt --check
cargo clippy --all-targets -- -D warnings
# Two cores: run two test threads; each integration test bounds its own time.
cargo test --all-targets -- --test-threads=2
# Every fuzz target for a bounded time (30 s each, two at a time); fails on a
# crash, hang or OOM. FUZZ_SECONDS=0 skips it.
if [ "${FUZZ_SECONDS:-30}" != 0 ]; then bash scripts/fuzz.sh; fi
# The compose swarm under faults, on the Docker engine (skips without one
# unless BTNODE_REQUIRE_PEERS=1).
bash scripts/swarm-test.sh
