#!/usr/bin/env bash
# A local btnode cluster on loopback with no tracker: two overlay-only
# bootstraps, one seeder and N-1 leechers that find each other through the
# overlay. Shows progress, waits for all, checks every sha256, cleans up on
# exit or Ctrl-C.
#   scripts/cluster.sh N [SIZE_MIB]   (defaults 5, 32)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5}; size_mib=${2:-32}
[ "$n" -ge 2 ] || { echo "usage: $0 N (N >= 2)"; exit 2; }
cargo build --release -q
bin=$PWD/target/release/btnode
work=$(mktemp -d -t btnode-cluster.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

start_bootstrap() {  # $1 = name, rest = -b args
  local name=$1; shift
  "$bin" --bind 127.0.0.1 --overlay-port 0 "$@" > "$work/$name.out" 2> "$work/$name.log" &
  pids+=($!)
  for _ in $(seq 1 100); do [ -s "$work/$name.out" ] && break; sleep 0.05; done
  awk '{print $NF}' "$work/$name.out"
}
b1=$(start_bootstrap boot1)
b2=$(start_bootstrap boot2 -b "$b1")
echo "== bootstraps $b1 $b2"

mkdir -p "$work/node0"
head -c $((size_mib * 1048576)) /dev/urandom > "$work/node0/data.bin"
"$bin" create -o "$work/data.torrent" "$work/node0/data.bin" > /dev/null
for i in $(seq 0 $((n - 1))); do
  extra=()
  # The seeder uploads at most a quarter of the file per second, so the
  # leechers trade pieces among themselves.
  [ "$i" -eq 0 ] && extra=(--upload-rate-limit $((size_mib * 1048576 / 4)))
  "$bin" -t "$work/data.torrent" -d "$work/node$i" --bind 127.0.0.1 --port 0 --overlay-port 0 \
    -b "$b1" -b "$b2" --no-progress --status-file "$work/node$i.json" "${extra[@]}" \
    2> "$work/node$i.log" &
  pids+=($!)
done
echo "== 1 seeder + $((n - 1)) leechers, discovery through the overlay only"

deadline=$((SECONDS + 600))
while :; do
  summary=$(python3 - "$work" "$n" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
done = 0; parts = []
for i in range(1, n):
    try:
        s = json.load(open(f"{work}/node{i}.json"))
        pct = 100 * s["pieces_have"] // s["pieces_total"]
    except Exception:
        pct = 0
    done += pct == 100
    parts.append(f"{pct:3d}%")
print(done, " ".join(parts))
PY
)
  printf "\r%s" "${summary#* }"
  [ "${summary%% *}" -eq $((n - 1)) ] && break
  if [ $SECONDS -ge $deadline ]; then echo; echo "timed out"; exit 1; fi
  sleep 0.5
done
echo
want=$(sha256sum < "$work/node0/data.bin" | cut -d' ' -f1)
bad=0
for i in $(seq 1 $((n - 1))); do
  got=$(sha256sum < "$work/node$i/data.bin" | cut -d' ' -f1)
  [ "$got" = "$want" ] || { echo "node$i MISMATCH"; bad=1; }
done
[ $bad -eq 0 ] || exit 1
echo "== all $((n - 1)) leechers hold the file (sha256 $want)"
