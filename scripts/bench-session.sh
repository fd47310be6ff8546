#!/usr/bin/env bash
# One daemon holding N torrents (8 MiB each), all seeded by one other
# daemon, on loopback: time until all complete, and the leecher's peak RSS,
# thread count and open file descriptors (sampled every 0.2 s from /proc).
# Usage: scripts/bench-session.sh [N ...]   (default: 1 10 50)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
BIN=$PWD/target/release/btnode
COUNTS=("${@:-1 10 50}")
[ $# -eq 0 ] && COUNTS=(1 10 50)
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

wait_line() { # file pattern
  for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for $2 in $1" >&2; return 1
}

printf '%-9s %-12s %-14s %-12s %-10s\n' torrents "all done s" "peak RSS MiB" "threads max" "fds max"
for n in "${COUNTS[@]}"; do
  run="$WORK/$n"; mkdir -p "$run/seed" "$run/leech"
  args=()
  for i in $(seq "$n"); do
    head -c $((8 << 20)) /dev/urandom > "$run/seed/f$i.bin"
    "$BIN" create -o "$run/f$i.torrent" "$run/seed/f$i.bin" >/dev/null
    args+=(-t "$run/f$i.torrent")
  done
  "$BIN" daemon --state "$run/s-state" -d "$run/seed" --api 127.0.0.1:0 --bind 127.0.0.1 \
    --port 0 --overlay-port 0 --discovery-mode tracker --log-level warn "${args[@]}" >"$run/s.out" 2>"$run/s.err" &
  PIDS+=($!)
  wait_line "$run/s.out" peerwire
  sport=$(sed -n 's/peerwire listening on port //p' "$run/s.out")
  "$BIN" daemon --state "$run/l-state" -d "$run/leech" --api 127.0.0.1:0 --bind 127.0.0.1 \
    --port 0 --overlay-port 0 --discovery-mode tracker --log-level warn --peer "127.0.0.1:$sport" \
    --max-peers 200 >"$run/l.out" 2>"$run/l.err" &
  lpid=$!; PIDS+=($lpid)
  wait_line "$run/l.out" peerwire
  api=$(sed -n 's/api listening on //p' "$run/l.out")
  # The seeder must have verified its data before the clock starts.
  sapi=$(sed -n 's/api listening on //p' "$run/s.out")
  stok=$(cat "$run/s-state/api-token")
  for _ in $(seq 600); do
    seeding=$(curl -s -H "Authorization: Bearer $stok" "$sapi/api/v1/torrents" | { grep -o "\"state\":\"seeding\"" || true; } | wc -l)
    [ "$seeding" -eq "$n" ] && break; sleep 0.1
  done
  tok=$(cat "$run/l-state/api-token")
  start=$(date +%s.%N)
  for i in $(seq "$n"); do
    curl -s -o /dev/null -H "Authorization: Bearer $tok" --data-binary @"$run/f$i.torrent" "$api/api/v1/torrents"
  done
  threads=0; fds=0; done_all=0
  for _ in $(seq 3000); do
    t=$(awk '/^Threads:/{print $2}' /proc/$lpid/status); [ "$t" -gt "$threads" ] && threads=$t
    f=$(ls /proc/$lpid/fd | wc -l); [ "$f" -gt "$fds" ] && fds=$f
    complete=$(curl -s -H "Authorization: Bearer $tok" "$api/api/v1/torrents" \
      | python3 -c 'import json,sys; print(sum(t["pieces_have"]==t["pieces_total"] for t in json.load(sys.stdin)))')
    if [ "$complete" -eq "$n" ]; then done_all=1; break; fi
    sleep 0.2
  done
  end=$(date +%s.%N)
  rss=$(awk '/^VmHWM:/{printf "%.1f", $2/1024}' /proc/$lpid/status)
  [ "$done_all" = 1 ] || { echo "$n torrents: not complete after 600 s" >&2; exit 1; }
  for i in $(seq "$n"); do cmp -s "$run/seed/f$i.bin" "$run/leech/f$i.bin" || { echo "f$i differs" >&2; exit 1; }; done
  printf '%-9s %-12.2f %-14s %-12s %-10s\n' "$n" "$(echo "$end - $start" | bc)" "$rss" "$threads" "$fds"
  kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; PIDS=(); rm -rf "$run"
done
