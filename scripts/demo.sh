#!/usr/bin/env bash
# A local swarm that really shares a file: builds btnode, makes a file, starts
# `btnode tracker`, one seeder and three leechers on loopback, shows progress,
# checks the sha256 of every copy, and cleans up (also on Ctrl-C).
#   scripts/demo.sh [SIZE_MIB]   (default 64)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-64}
cargo build --release -q
bin=$PWD/target/release/btnode
work=$(mktemp -d -t btnode-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

echo "== making a ${size_mib} MiB file in $work"
mkdir -p "$work/seed"
head -c $((size_mib * 1048576)) /dev/urandom > "$work/seed/demo.bin"

"$bin" tracker --listen 127.0.0.1:0 > "$work/tracker.out" 2> "$work/tracker.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/tracker.out" ] && break; sleep 0.05; done
url=$(grep -o 'http://[^ ]*' "$work/tracker.out" | head -1)
echo "== tracker at $url"

"$bin" create -o "$work/demo.torrent" --tracker "$url" "$work/seed/demo.bin" > /dev/null
echo "== torrent info-hash $("$bin" create -o /dev/null --tracker "$url" "$work/seed/demo.bin" | sed -n 1p)"

# The seeder uploads at most a quarter of the file per second, so the demo
# lasts a few seconds and the leechers trade pieces among themselves.
"$bin" -t "$work/demo.torrent" -d "$work/seed" --bind 127.0.0.1 --port 0 --overlay-port 0 --no-progress \
  --announce-interval 2 --upload-rate-limit $((size_mib * 1048576 / 4)) \
  --status-file "$work/seed.json" 2> "$work/seed.log" &
pids+=($!)
for i in 1 2 3; do
  "$bin" -t "$work/demo.torrent" -d "$work/leech$i" --bind 127.0.0.1 --port 0 --overlay-port 0 --no-progress \
    --announce-interval 2 --status-file "$work/leech$i.json" 2> "$work/leech$i.log" &
  pids+=($!)
done

echo "== seeder + 3 leechers running"
deadline=$((SECONDS + 300))
while :; do
  line=""; done_count=0
  for i in 1 2 3; do
    read -r have total < <(python3 -c "import json,sys
try:
  s=json.load(open('$work/leech$i.json')); print(s['pieces_have'], s['pieces_total'])
except Exception: print(0, 1)")
    line+=$(printf "leecher%d %3d%%   " "$i" $((100 * have / total)))
    [ "$have" -eq "$total" ] && done_count=$((done_count + 1))
  done
  printf "\r%s" "$line"
  [ "$done_count" -eq 3 ] && break
  if [ $SECONDS -ge $deadline ]; then echo; echo "timed out; logs in $work"; trap - EXIT; exit 1; fi
  sleep 0.5
done
echo

want=$(sha256sum < "$work/seed/demo.bin" | cut -d' ' -f1)
ok=1
for i in 1 2 3; do
  got=$(sha256sum < "$work/leech$i/demo.bin" | cut -d' ' -f1)
  if [ "$got" = "$want" ]; then echo "leecher$i sha256 OK  $got"; else echo "leecher$i sha256 MISMATCH $got"; ok=0; fi
done
[ $ok -eq 1 ] || exit 1
echo "== all copies match the seed ($want)"
python3 - "$work" <<'PY'
import json, sys
for name in ["seed", "leech1", "leech2", "leech3"]:
    s = json.load(open(f"{sys.argv[1]}/{name}.json"))
    print(f"{name:7} uploaded {s['uploaded'] / 1048576:7.1f} MiB  downloaded {s['downloaded'] / 1048576:7.1f} MiB")
PY
