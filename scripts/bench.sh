#!/usr/bin/env bash
# Loopback throughput and memory of one btnode seeder → one btnode leecher.
# Prints seconds, MB/s, this machine's single-core SHA-1 rate measured in the
# same run, and the leecher's peak anonymous memory (RssAnon) and peak RSS.
#   scripts/bench.sh [SIZE_MIB]   (default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
work=${BENCH_DIR:-target/bench}
mkdir -p "$work"
cargo build --release -q
bin=$PWD/target/release/btnode

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

data="$work/seed/bench-$size_mib.bin"
if [ ! -s "$data" ] || [ "$(stat -c %s "$data")" -ne $((size_mib * 1048576)) ]; then
  mkdir -p "$work/seed"
  head -c $((size_mib * 1048576)) /dev/urandom > "$data"
fi
torrent="$work/bench-$size_mib.torrent"
[ -s "$torrent" ] || "$bin" create -o "$torrent" "$data" >/dev/null

# Single-core SHA-1 rate (OpenSSL through Python's hashlib), same run.
sha1_mbs=$(python3 - <<'PY'
import hashlib, os, time
buf = os.urandom(16 << 20)
h = hashlib.sha1(); t = time.perf_counter(); n = 0
while time.perf_counter() - t < 2.0:
    h.update(buf); n += len(buf)
print(f"{n / (time.perf_counter() - t) / 1e6:.0f}")
PY
)

port_seed=$((20000 + RANDOM % 20000))
"$bin" -t "$torrent" -d "$work/seed" --bind 127.0.0.1 --port "$port_seed" --overlay-port 0 --no-progress \
  --status-file "$work/seed.status" --log-level warn &
pids+=($!)
# Wait until the seeder has verified its data and listens.
for _ in $(seq 1 600); do
  grep -q '"state": "seeding"' "$work/seed.status" 2>/dev/null && break
  sleep 0.1
done

rm -rf "$work/leech" "$work/leech.status"; mkdir -p "$work/leech"
start=$(date +%s.%N)
"$bin" -t "$torrent" -d "$work/leech" --bind 127.0.0.1 --port 0 --overlay-port 0 --no-progress \
  --peer "127.0.0.1:$port_seed" --exit-on-complete --log-level warn \
  --status-file "$work/leech.status" &
leech=$!
pids+=($leech)
peak_anon=0; peak_rss=0; complete_at=""
while kill -0 "$leech" 2>/dev/null; do
  if [ -z "$complete_at" ] && grep -q '"complete": true' "$work/leech.status" 2>/dev/null; then
    complete_at=$(date +%s.%N)
  fi
  if s=$(cat /proc/$leech/status 2>/dev/null); then
    a=$(awk '/^RssAnon:/{print $2}' <<<"$s"); r=$(awk '/^VmRSS:/{print $2}' <<<"$s")
    [ -n "$a" ] && [ "$a" -gt "$peak_anon" ] && peak_anon=$a
    [ -n "$r" ] && [ "$r" -gt "$peak_rss" ] && peak_rss=$r
  fi
  sleep 0.02
done
wait "$leech"
end=$(date +%s.%N)
# The last status is written after the final flush; if the loop never saw
# "complete" before the exit, completion and exit coincide.
[ -n "$complete_at" ] || complete_at=$end

cmp -s "$data" "$work/leech/$(basename "$data")" || { echo "MISMATCH: leecher copy differs"; exit 1; }
python3 - "$start" "$complete_at" "$end" "$size_mib" "$sha1_mbs" "$peak_anon" "$peak_rss" <<'PY'
import sys
start, done, end, mib, sha1, anon, rss = map(float, sys.argv[1:])
secs = done - start
mbs = mib * 1048576 / secs / 1e6
print(f"file            {mib:.0f} MiB, 1 seeder -> 1 leecher on loopback")
print(f"seconds         {secs:.2f} until every piece is verified")
print(f"seconds to exit {end - start:.2f} (includes flushing the file to disk)")
print(f"throughput      {mbs:.0f} MB/s")
print(f"sha1 1-core     {sha1:.0f} MB/s")
print(f"ratio           {mbs / sha1:.2f} of single-core SHA-1 (target >= 0.50)")
print(f"leecher RssAnon {anon / 1024:.1f} MiB peak (target < 64)")
print(f"leecher VmRSS   {rss / 1024:.1f} MiB peak (target < 256)")
PY
