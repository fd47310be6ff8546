#!/usr/bin/env bash
# Prints parse time and peak allocation against input size for the parsers
# of untrusted bytes (metainfo, bencode): see examples/parse_bench.rs.
# Cost should grow in proportion to size; compare the rows of one input.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release --example parse_bench
