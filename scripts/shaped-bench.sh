#!/usr/bin/env bash
# One seeder and N leechers on shaped links, started together: how close
# each client comes to the fluid bound (Kumar & Ross)
#   T_min = max(F/u_s, F/d_min, N·F/(u_s + Σ u_i)).
# Every host is a network namespace with a veth to a bridge (in a namespace
# of its own); `tbf` shapes each host's upload (its veth) and download (the
# bridge's end). The tracker (btnode's own) has its own namespace, unshaped.
# Traffic never leaves the namespaces this script makes; every namespace and
# process it started is removed on exit, even on failure.
#
#   scripts/shaped-bench.sh [CASE...]     cases: N (equal links) or Nm (mixed:
#                                         half the leechers at 10 Mbit/s up, half at 100)
#   SIZE_MIB=64 UP_MBIT=40 DOWN_MBIT=200 RUNS=3 CLIENTS="btnode btnode-super libtorrent http"
#   (btnode-super: the btnode seeder with --super-seed; the leechers as for btnode)
#
# Per run it prints T_all, each leecher's time, T_min, efficiency =
# T_min / T_all, the seeder's bytes sent over F (its interface counter) and
# the slowest/fastest leecher ratio; then the medians per client and case.
# Leechers keep seeding after they complete (as users' clients do) until the
# last one is done. Needs root (ip netns), python3-libtorrent for
# "libtorrent" (under /usr/bin/python3), curl for "http".
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(4 8 16 8m)
size_mib=${SIZE_MIB:-64}
up_mbit=${UP_MBIT:-40}
down_mbit=${DOWN_MBIT:-200}
runs=${RUNS:-3}
clients=${CLIENTS:-btnode btnode-super libtorrent http}
piece=${PIECE_LENGTH:-262144}
# The whole run of one client on one case, however slow.
run_limit=${RUN_LIMIT_S:-600}

[ "$(id -u)" = 0 ] || { echo "shaped-bench: needs root (ip netns)"; exit 1; }
cargo build --release -q
bin=$repo/target/release/btnode
lt_python=/usr/bin/python3

pre="sb$$"
work=$(mktemp -d -t btnode-shaped.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  for ns in $(ip netns list | awk '{print $1}' | grep "^$pre" || true); do
    ip netns del "$ns" 2>/dev/null || true
  done
  if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT INT TERM

# --- the network -----------------------------------------------------------
hub=${pre}hub
ip netns add "$hub"
ip -n "$hub" link add br0 type bridge
ip -n "$hub" link set br0 up
# host NAME IP UP_MBIT DOWN_MBIT (0 = unshaped)
host() {
  local ns=$pre$1
  ip netns add "$ns"
  ip -n "$ns" link add eth0 type veth peer name "${pre}$1" netns "$hub"
  ip -n "$ns" addr add "$2/16" dev eth0
  ip -n "$ns" link set lo up
  ip -n "$ns" link set eth0 up
  ip -n "$hub" link set "${pre}$1" master br0 up
  # burst: a few ms of the rate, at least 32 KiB; latency bounds the queue.
  local burst
  if [ "$3" != 0 ]; then
    burst=$(( $3 * 1000000 / 8 / 200 )); [ $burst -ge 32768 ] || burst=32768
    tc -n "$ns" qdisc add dev eth0 root tbf rate "${3}mbit" burst "$burst" latency 100ms
  fi
  if [ "$4" != 0 ]; then
    burst=$(( $4 * 1000000 / 8 / 200 )); [ $burst -ge 32768 ] || burst=32768
    tc -n "$hub" qdisc add dev "${pre}$1" root tbf rate "${4}mbit" burst "$burst" latency 100ms
  fi
}
in_ns() { local ns=$pre$1; shift; ip netns exec "$ns" "$@"; }
# In the background, as the process itself ($! is its PID, so a kill ends
# it, not a subshell around it).
bg_in_ns() { local ns=$pre$1; shift; ( exec ip netns exec "$ns" "$@" ) & }
tx_bytes() { in_ns "$1" cat /sys/class/net/eth0/statistics/tx_bytes; }

tracker_ip=10.77.0.1
seeder_ip=10.77.0.2
leecher_ip() { echo "10.77.1.$1"; }
max_n=0
for c in "${cases[@]}"; do n=${c%m}; [ "$n" -gt $max_n ] && max_n=$n; done
[ "$max_n" -le 200 ] || { echo "shaped-bench: at most 200 leechers"; exit 2; }
host t "$tracker_ip" 0 0
host s "$seeder_ip" "$up_mbit" "$down_mbit"
for i in $(seq 1 "$max_n"); do host "l$i" "$(leecher_ip "$i")" 0 0; done
# Leecher links are shaped per case (mixed or equal): set_leecher I UP DOWN.
set_leecher() {
  local burst_u=$(( $2 * 1000000 / 8 / 200 )) burst_d=$(( $3 * 1000000 / 8 / 200 ))
  [ $burst_u -ge 32768 ] || burst_u=32768
  [ $burst_d -ge 32768 ] || burst_d=32768
  tc -n "${pre}l$1" qdisc replace dev eth0 root tbf rate "${2}mbit" burst "$burst_u" latency 100ms
  tc -n "$hub" qdisc replace dev "${pre}l$1" root tbf rate "${3}mbit" burst "$burst_d" latency 100ms
}

# --- the file ----------------------------------------------------------------
mkdir -p "$work/seed"
head -c $((size_mib * 1048576)) /dev/urandom > "$work/seed/shared.bin"
want=$(sha256sum < "$work/seed/shared.bin" | cut -d' ' -f1)
ih=$("$bin" create -o "$work/shared.torrent" --piece-length "$piece" \
  --tracker "http://$tracker_ip:6969/announce" "$work/seed/shared.bin" | head -1)
file_bytes=$((size_mib * 1048576))

# The tracker's count of seeds for the torrent (0 until the seeder announced).
seeds_known() {
  in_ns t "$lt_python" - "$tracker_ip" "$ih" <<'EOF' 2>/dev/null || echo 0
import sys, urllib.request, urllib.parse
ip, ih = sys.argv[1], bytes.fromhex(sys.argv[2])
url = "http://%s:6969/scrape?info_hash=%s" % (ip, urllib.parse.quote(ih))
body = urllib.request.urlopen(url, timeout=2).read()
i = body.find(b"8:completei")
print(int(body[i + 11:body.index(b"e", i + 11)]) if i >= 0 else 0)
EOF
}

lt_script=$work/lt.py
cat > "$lt_script" <<'EOF'
# libtorrent peer: seed (save path holds the file) or leech; writes DONE_FILE
# when it has every piece and keeps seeding until killed.
import sys, time, libtorrent as lt
ip, torrent, save, done = sys.argv[1:5]
s = lt.session({
    "listen_interfaces": "%s:6881" % ip,
    "outgoing_interfaces": ip,
    "enable_dht": False, "enable_lsd": False, "enable_upnp": False,
    "enable_natpmp": False, "announce_to_all_trackers": True,
    "alert_mask": 0,
})
h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
written = False
while True:
    st = h.status()
    if st.is_seeding and not written:
        open(done, "w").write("%.6f\n" % time.time())
        written = True
    time.sleep(0.05)
EOF

# start_seeder CLIENT; start_leecher CLIENT I (both in the background)
start_seeder() {
  case $1 in
    btnode|btnode-super)
      local flags=(); [ "$1" = btnode-super ] && flags=(--super-seed)
      bg_in_ns s "$bin" -t "$work/shared.torrent" -d "$work/seed" --bind "$seeder_ip" --port 6881 \
        --discovery-mode tracker --no-progress "${flags[@]}" > "$work/run/seeder.log" 2>&1 ;;
    libtorrent)
      bg_in_ns s "$lt_python" "$lt_script" "$seeder_ip" "$work/shared.torrent" "$work/seed" \
        "$work/run/seeder.done" > "$work/run/seeder.log" 2>&1 ;;
    http)
      bg_in_ns s "$lt_python" -m http.server --bind "$seeder_ip" --directory "$work/seed" 8000 \
        > "$work/run/seeder.log" 2>&1 ;;
  esac
  pids+=($!); seeder_pid=$!
}
start_leecher() {
  local dir=$work/run/l$2 ip; ip=$(leecher_ip "$2")
  mkdir -p "$dir"
  case $1 in
    btnode|btnode-super)
      bg_in_ns "l$2" "$bin" -t "$work/shared.torrent" -d "$dir" --bind "$ip" --port 6881 \
        --discovery-mode tracker --no-progress --status-file "$dir/status.json" \
        > "$work/run/l$2.log" 2>&1 ;;
    libtorrent)
      bg_in_ns "l$2" "$lt_python" "$lt_script" "$ip" "$work/shared.torrent" "$dir" "$dir/done" \
        > "$work/run/l$2.log" 2>&1 ;;
    http)
      ( in_ns "l$2" curl -sf -o "$dir/shared.bin" "http://$seeder_ip:8000/shared.bin" \
          && "$lt_python" -c "import time; print('%.6f' % time.time())" > "$dir/done" ) \
          > "$work/run/l$2.log" 2>&1 & ;;
  esac
  pids+=($!); leecher_pids+=($!)
}
# Waits (polling every 50 ms, one process for all) until every leecher is
# done; prints each one's seconds since T0, or fails after LIMIT seconds.
# A btnode leecher is done when its status file (written at once on
# completion) says complete; the others write a done file with the time.
wait_leechers() {  # CLIENT N T0 LIMIT
  "$lt_python" - "$work/run" "$@" <<'PY'
import json, os, sys, time
run, client, n, t0, limit = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
done = {}
while len(done) < n:
    for i in range(1, n + 1):
        if i in done:
            continue
        d = os.path.join(run, "l%d" % i)
        try:
            if client.startswith("btnode"):
                if json.load(open(os.path.join(d, "status.json"))).get("complete"):
                    done[i] = time.time() - t0
            else:
                done[i] = float(open(os.path.join(d, "done")).read()) - t0
        except (OSError, ValueError):
            pass
    if time.time() - t0 > limit:
        print("FAIL: %d of %d leechers done after %.0f s" % (len(done), n, limit), file=sys.stderr)
        sys.exit(1)
    time.sleep(0.05)
print(" ".join("%.3f" % done[i] for i in range(1, n + 1)))
PY
}
seeder_ready() {
  case $1 in
    http) in_ns s curl -sf -o /dev/null -r 0-0 "http://$seeder_ip:8000/shared.bin" ;;
    *) [ "$(seeds_known)" -ge 1 ] ;;
  esac
}

results=$work/results.tsv
: > "$results"
run_case() {  # CLIENT CASE RUN
  local client=$1 case=$2 n=${2%m} mixed=0
  [ "$2" != "$n" ] && mixed=1
  rm -rf "$work/run"; mkdir -p "$work/run"
  # Leecher links for this case; T_min from the same numbers.
  local sum_up=0 i up
  for i in $(seq 1 "$n"); do
    up=$up_mbit
    if [ $mixed = 1 ]; then if [ $((i % 2)) = 1 ]; then up=10; else up=100; fi; fi
    set_leecher "$i" "$up" "$down_mbit"
    sum_up=$((sum_up + up))
  done
  local t_min
  t_min=$("$lt_python" -c "
F=$file_bytes*8/1e6; us=$up_mbit; n=$n
print('%.2f' % max(F/us, F/$down_mbit, n*F/(us+$sum_up)))")
  # A fresh tracker per run: the last run's peers must not look like seeds.
  [ -n "${tracker_pid:-}" ] && { kill "$tracker_pid" 2>/dev/null || true; wait "$tracker_pid" 2>/dev/null || true; }
  bg_in_ns t "$bin" tracker --listen "$tracker_ip:6969" > "$work/run/tracker.log" 2>&1
  tracker_pid=$!; pids+=($tracker_pid)
  leecher_pids=()
  start_seeder "$client"
  local start=$SECONDS
  until seeder_ready "$client"; do
    [ $((SECONDS - start)) -lt 60 ] || { echo "FAIL: $client seeder never ready"; tail "$work/run/seeder.log"; exit 1; }
    sleep 0.2
  done
  local tx0; tx0=$(tx_bytes s)
  t0=$("$lt_python" -c "import time; print('%.6f' % time.time())")
  for i in $(seq 1 "$n"); do start_leecher "$client" "$i"; done
  local times
  times=$(wait_leechers "$client" "$n" "$t0" "$run_limit") || { echo "FAIL: $client, case $case"; exit 1; }
  local tx1; tx1=$(tx_bytes s)
  for p in "${leecher_pids[@]}" "$seeder_pid"; do kill "$p" 2>/dev/null || true; done
  for p in "${leecher_pids[@]}" "$seeder_pid"; do wait "$p" 2>/dev/null || true; done
  for i in $(seq 1 "$n"); do
    local got; got=$(sha256sum < "$work/run/l$i/shared.bin" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "FAIL: $client leecher $i has a different copy"; exit 1; }
  done
  # shellcheck disable=SC2086 # the times are one word each
  "$lt_python" - "$client" "$case" "$3" "$t_min" "$((tx1 - tx0))" "$file_bytes" $times <<'EOF' | tee -a "$results"
import sys
client, case, run, t_min, sent, size = sys.argv[1:7]
times = sorted(float(t) for t in sys.argv[7:])
t_all, t_min = times[-1], float(t_min)
print("\t".join([client, case, run, "%.2f" % t_all, "%.2f" % t_min, "%.2f" % (t_min / t_all),
                 "%.2f" % (int(sent) / int(size)), "%.2f" % (times[-1] / times[0]),
                 " ".join("%.1f" % t for t in times)]))
EOF
}

echo "# ${size_mib} MiB, pieces ${piece} B, uplinks ${up_mbit} Mbit/s (mixed: 10/100), downlinks ${down_mbit} Mbit/s, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo -e "client\tcase\trun\tT_all\tT_min\tefficiency\tseeder_copies\tslow/fast\tleecher times (s)"
for c in "${cases[@]}"; do
  for client in $clients; do
    if [ "$client" = libtorrent ] && ! "$lt_python" -c "import libtorrent" 2>/dev/null; then
      echo "# libtorrent: skipped (python3-libtorrent missing)"; continue
    fi
    for r in $(seq 1 "$runs"); do run_case "$client" "$c" "$r"; done
  done
done
echo
echo "# medians over $runs run(s)"
"$lt_python" - "$results" <<'EOF'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    rows[(f[1], f[0])].append(f)
print("case\tclient\tT_all\tT_min\tefficiency\tseeder_copies\tslow/fast")
for (case, client), fs in rows.items():
    med = lambda i: statistics.median(float(f[i]) for f in fs)
    print("%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f" % (case, client, med(3), med(4), med(5), med(6), med(7)))
EOF
