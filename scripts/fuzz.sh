#!/usr/bin/env bash
# Runs every cargo-fuzz (libFuzzer) target in fuzz/ for a bounded time and
# fails on any crash, hang or out-of-memory. Called by scripts/test.sh after
# the tests (the CI path); run it by hand to fuzz longer:
#
#   FUZZ_SECONDS=600 scripts/fuzz.sh                   # every target, 10 min each
#   FUZZ_SECONDS=3600 FUZZ_TARGETS="metainfo bencode" scripts/fuzz.sh
#
# Knobs (environment): FUZZ_SECONDS per target (30), FUZZ_TARGETS (all),
# FUZZ_JOBS targets at once (2), FUZZ_RSS_MB memory limit per process
# (1024; also caps any single allocation), FUZZ_TIMEOUT seconds per input (10),
# FUZZ_FIXTURES a folder of .torrent seeds besides the vendored tests/fixtures.
# Corpora grow in fuzz/corpus/TARGET (seeded afresh from btnode's encoders
# and the fixture torrents by examples/fuzz_seeds.rs); a failing input is
# kept in fuzz/artifacts/TARGET/ and can be replayed with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-...
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP lets cargo-fuzz use
# the nightly flags it needs, and `-s none` skips the sanitizer (which
# stable cannot build); Rust's own checks and debug assertions stay on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-2}
rss=${FUZZ_RSS_MB:-1024}
timeout=${FUZZ_TIMEOUT:-10}
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

started=$(date +%s)
if [ -n "${FUZZ_TARGETS:-}" ]; then
  targets=$FUZZ_TARGETS
  for t in $targets; do (cd fuzz && cargo fuzz build -s none "$t" 2>&1 | tail -n 2); done
else
  targets=$(cd fuzz && cargo fuzz list)
  (cd fuzz && cargo fuzz build -s none 2>&1 | tail -n 2)
fi
echo "fuzz: built in $(( $(date +%s) - started )) s"

# Seeds: written at run time, so none are kept in the repository.
fixtures=()
for d in ${FUZZ_FIXTURES:-} ${BTNODE_FIXTURES:-} tests/fixtures; do
  if [ -d "$d" ]; then fixtures+=("$d"); fi
done
cargo run --quiet --example fuzz_seeds -- fuzz/corpus "${fixtures[@]}"

bin_dir=fuzz/target/$(rustc -vV | sed -n 's/^host: //p')/release
logs=$(mktemp -d)
run_one() {
  local t=$1
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  if "$bin_dir/$t" "fuzz/corpus/$t" \
      -max_total_time="$seconds" -rss_limit_mb="$rss" -timeout="$timeout" \
      -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 \
      >"$logs/$t.log" 2>&1; then
    echo ok >"$logs/$t.rc"
  else
    echo "failed ($?)" >"$logs/$t.rc"
  fi
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -n 1)
  printf 'fuzz: %-16s %-12s %12s execs in %s s\n' "$t" "$(cat "$logs/$t.rc")" "${execs:-?}" "$seconds"
}

running=0
for t in $targets; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then wait -n || true; running=$((running - 1)); fi
done
wait

failed=0
for t in $targets; do
  if [ "$(cat "$logs/$t.rc")" != ok ]; then
    failed=1
    echo "---- fuzz target $t failed; log tail:"
    grep -v '^#' "$logs/$t.log" | tail -n 30
    ls "fuzz/artifacts/$t/" 2>/dev/null | sed 's/^/  artifact: /'
  fi
done
echo "fuzz: done in $(( $(date +%s) - started )) s"
exit "$failed"
