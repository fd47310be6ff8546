#!/usr/bin/env bash
# One seeder -> one leecher of the same file on loopback, for btnode and for
# the BitTorrent clients people run, in one run with the pairs alternating:
#   btnode -> btnode, libtorrent -> libtorrent, Transmission -> Transmission,
#   aria2 -> aria2, rqbit -> rqbit (only when `rqbit` is on PATH),
#   btnode -> libtorrent and libtorrent -> btnode          (seeder -> leecher)
# For each transfer: seconds from the leecher's start until it has every piece
# verified (its own signal: btnode's status file, libtorrent's is_seeding,
# aria2's on-bt-download-complete hook, Transmission's torrent-done script),
# MB/s (1e6 bytes), and the leecher's peak RssAnon (summed over its process
# tree, sampled every 50 ms). Every copy is checked against the source's
# sha256, then deleted. Prints the per-round numbers and a table of medians.
#
#   scripts/bench-peers.sh [SIZE_MIB]          (default 1024)
#   SIZE_MIB=64 ROUNDS=1 scripts/bench-peers.sh
#   PIECE=256k scripts/bench-peers.sh          (piece length: 256k, 1m, or bytes)
# Environment: SIZE_MIB (the first argument wins), PIECE (the piece length of
# the torrent; default: btnode create's choice), ROUNDS (3), TIMEOUT
# (seconds per transfer, 300), PAIRS (a subset, e.g. "bt:bt lt:lt"; kinds are
# bt lt tr a2 rq, seeder first), TR_NETNS=0 (see Transmission below),
# BENCH_DIR (target/bench-peers: the seed file is made once and kept there).
#
# Same conditions for every client: plain TCP (libtorrent's and
# Transmission's uTP off; btnode speaks TCP only), no protocol encryption
# (libtorrent pe_disabled, Transmission "tolerated", aria2's default plain
# payload), no DHT/LSD/PEX/UPnP, sparse files, otherwise each client's
# defaults. Each transfer gets a fresh seeder that has verified its data
# before the clock starts, and a fresh `btnode tracker` (interval 1 s).
# btnode and libtorrent are also given the seeder's address directly; aria2,
# Transmission and rqbit find it through the tracker. The times include each
# leecher's start-up (process start, tracker announce, connect, unchoke).
#
# Transmission 3.00 never dials a peer in 127.0.0.0/8 (its "martian" rule),
# so two Transmissions cannot meet on 127.0.0.1. As root, that pair runs in a
# private network namespace made for this run (deleted at exit) whose own
# loopback device also carries 198.18.0.1 (RFC 2544 benchmarking range): the
# bytes still travel over a loopback device, nothing leaves the namespace,
# and the host's network is untouched. Without root (or with TR_NETNS=0) the
# row is "libtorrent -> Transmission" on 127.0.0.1, the libtorrent seeder
# dialling the Transmission leecher, and says so. Seen here with 3.00: a
# Transmission leecher becomes interested, and a Transmission seeder unchokes,
# only on its 10 s rechoke pulse, so its rows start with up to 10 s idle.
# libtorrent's RssAnon includes its Python interpreter's.
# shellcheck disable=SC2317 # the client functions are called by name (${kind}_seed...)
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-${SIZE_MIB:-1024}}
rounds=${ROUNDS:-3}
piece=${PIECE:-}
case $piece in
  "") piece_bytes="" ;;
  *[kK]) piece_bytes=$((${piece%?} * 1024)) ;;
  *[mM]) piece_bytes=$((${piece%?} * 1048576)) ;;
  *) piece_bytes=$piece ;;
esac
timeout_s=${TIMEOUT:-300}
work=${BENCH_DIR:-target/bench-peers}
mkdir -p "$work"
work=$(cd "$work" && pwd)
cargo build --release -q
bin=$PWD/target/release/btnode
lt_python=/usr/bin/python3 # Debian's python3-libtorrent imports only here

# ---------------------------------------------------------------- plumbing
declare -A LIVE=() # PIDs this script started and has not reaped yet
NS="" # the network namespace, once made
cleanup() {
  local pid
  for pid in "${!LIVE[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${!LIVE[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  [ -z "$NS" ] || ip netns del "$NS" 2>/dev/null || true
  rm -rf "$work/run"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A sleep without a fork: read with a timeout from a pipe nobody writes to.
mkfifo "$work/.sleep.$$"
exec {sleep_fd}<>"$work/.sleep.$$"
rm -f "$work/.sleep.$$"
poll_sleep() { read -r -t "$1" -u "$sleep_fd" _ || true; }

started() { LIVE[$1]=1; }
# stop_pid PID GRACE: let PID exit by itself for GRACE s, then SIGTERM, then
# SIGKILL 15 s later; reaps it.
stop_pid() {
  local pid=$1 limit=$((SECONDS + $2))
  [ -n "$pid" ] || return 0
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < limit)); do poll_sleep 0.05; done
  kill -TERM "$pid" 2>/dev/null || true
  limit=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < limit)); do poll_sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  unset "LIVE[$pid]"
}

free_port() {
  "$lt_python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for PID SECS CMD...: polls CMD until it succeeds; fails when PID has
# exited or SECS have passed.
wait_for() {
  local pid=$1 limit=$((SECONDS + $2))
  shift 2
  until "$@"; do
    kill -0 "$pid" 2>/dev/null || return 1
    ((SECONDS < limit)) || return 1
    poll_sleep 0.1
  done
}

# file_has FILE TEXT, with builtins only (it runs in the sampling loop).
file_has() {
  local s=""
  [ -e "$1" ] || return 1
  IFS= read -r -d '' s 2>/dev/null <"$1" || true
  [[ $s == *"$2"* ]]
}

# Sets REPLY to the RssAnon (kB) of PID $1, 0 once it is gone.
anon_kb() {
  local k v _
  REPLY=0
  while read -r k v _; do
    if [[ $k == RssAnon: ]]; then REPLY=$v; return 0; fi
  done 2>/dev/null </proc/"$1"/status || true
}

# Sets TREE to PID $1 and all its descendants (children of children...).
tree_of() {
  local -A kids=()
  local pid ppid i=0
  while read -r pid ppid; do kids[$ppid]+="$pid "; done < <(ps -e -o pid=,ppid=)
  TREE=("$1")
  while ((i < ${#TREE[@]})); do
    # shellcheck disable=SC2206 # word splitting of the PID list is intended
    TREE+=(${kids[${TREE[i]}]:-})
    i=$((i + 1))
  done
}

now_us() { echo "${EPOCHREALTIME/./}"; } # microseconds since the epoch

# -------------------------------------------------------------- seed data
data="$work/seed/bench-$size_mib.bin"
name=$(basename "$data")
seed_dir=$(dirname "$data")
if [ ! -s "$data" ] || [ "$(stat -c %s "$data")" -ne $((size_mib * 1048576)) ]; then
  mkdir -p "$seed_dir"
  echo "making $size_mib MiB of random data in $data"
  head -c $((size_mib * 1048576)) /dev/urandom >"$data"
  rm -f "$work/bench-$size_mib".*
fi
tag=$size_mib${piece_bytes:+-p$piece_bytes}
base_torrent="$work/bench-$tag.torrent"
placeholder=http://127.0.0.1:1/announce # replaced per transfer by retrack
if [ ! -s "$base_torrent" ] || [ ! -s "$work/bench-$tag.infohash" ]; then
  "$bin" create --tracker "$placeholder" ${piece_bytes:+--piece-length "$piece_bytes"} \
    -o "$base_torrent" "$data" >"$work/bench-$tag.infohash"
fi
if [ ! -s "$work/bench-$size_mib.sha256" ]; then
  sha256sum "$data" | cut -d' ' -f1 >"$work/bench-$size_mib.sha256"
fi
info_hash=$(sed -n 1p "$work/bench-$tag.infohash" | tr -d '[:space:]')
# shellcheck disable=SC2001 # a back-reference: %-escape every byte for /scrape
info_hash_q=$(sed 's/../%&/g' <<<"$info_hash")
source_sha=$(cat "$work/bench-$size_mib.sha256")

# retrack DEST URL: the cached torrent with its announce URL replaced (the
# info dictionary, and so the info-hash, is unchanged).
retrack() {
  "$lt_python" - "$base_torrent" "$1" "$placeholder" "$2" <<'PY'
import sys
src, dst, old, new = sys.argv[1:]
b = open(src, "rb").read()
old_b, new_b = b"%d:%s" % (len(old), old.encode()), b"%d:%s" % (len(new), new.encode())
assert b.count(old_b) == 1, "placeholder announce URL not found once"
open(dst, "wb").write(b.replace(old_b, new_b))
PY
}

# ------------------------------------------------------- per-transfer state
# NSX: command prefix that runs in the pair's network (empty, or `ip netns
# exec NS`); ADDR: the address everyone binds; run: this transfer's folder.
NSX=()
ADDR=127.0.0.1
run="$work/run"
leech_dir="$run/leech"
torrent="$run/t.torrent"
SEED_PID="" LEECH_PID="" TRACKER_PID="" SEED_PORT="" LEECH_PORT="" SEED_DIAL=""
TRACKER=""

start_tracker() {
  local port
  port=$(free_port)
  TRACKER="http://$ADDR:$port"
  "${NSX[@]}" "$bin" tracker --listen "$ADDR:$port" --interval 1 --log-level warn \
    >"$run/tracker.log" 2>&1 &
  TRACKER_PID=$!
  started "$TRACKER_PID"
  retrack "$torrent" "$TRACKER/announce"
  wait_for "$TRACKER_PID" 10 "${NSX[@]}" curl -s -o /dev/null --max-time 1 "$TRACKER/scrape"
}

# Succeeds once the tracker counts a seeder (an announce with left=0).
tracker_has_seeder() {
  "${NSX[@]}" curl -s --max-time 2 "$TRACKER/scrape?info_hash=$info_hash_q" |
    grep -aE '8:completei[1-9][0-9]*e' >/dev/null # not -q: an early exit would fail the pipe
}

# ------------------------------------------------------------------ btnode
bt_seed() {
  "$bin" -t "$torrent" -d "$seed_dir" --bind "$ADDR" --port "$SEED_PORT" --overlay-port 0 \
    --no-progress --discovery-mode tracker --status-file "$run/seed.status" --log-level warn \
    >"$run/seed.log" 2>&1 &
  SEED_PID=$!
}
bt_seed_ready() { file_has "$run/seed.status" '"state": "seeding"'; }
bt_leech() {
  "$bin" -t "$torrent" -d "$leech_dir" --bind "$ADDR" --port "$LEECH_PORT" --overlay-port 0 \
    --no-progress --discovery-mode tracker --peer "$ADDR:$SEED_PORT" --exit-on-complete \
    --status-file "$run/leech.status" --log-level warn >"$run/leech.log" 2>&1 &
  LEECH_PID=$!
}
bt_leech_done() { file_has "$run/leech.status" '"complete": true'; }

# -------------------------------------------------------------- libtorrent
lt_script="$work/lt_peer.py"
cat >"$lt_script" <<'PY'
"""A libtorrent peer for bench-peers.sh (python3-libtorrent).

usage: lt_peer.py seed|leech TORRENT DIR PORT FLAG [--peer HOST:PORT]...
  seed   check DIR's data, create FLAG once seeding, serve until SIGTERM
  leech  download into DIR, create FLAG once every piece is verified, exit 0
The --peer addresses are dialled (again) while no peer is connected.
"""
import signal
import sys
import time

import libtorrent as lt


def listening(port):
    """Whether a local TCP socket listens on PORT (read from /proc/net)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def main(argv):
    mode, torrent, save, port, flag = argv[:5]
    peers = [(a.rsplit(":", 1)[0], int(a.rsplit(":", 1)[1])) for a in argv[6::2]]
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    s = lt.session({
        "listen_interfaces": "127.0.0.1:%s" % port,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        # Plain BitTorrent over TCP, as for every other pair.
        "enable_outgoing_utp": False, "enable_incoming_utp": False,
        "out_enc_policy": 2, "in_enc_policy": 2,  # pe_disabled
        "allow_multiple_connections_per_ip": True,
        "max_failcount": 1000, "min_reconnect_time": 1,
        "alert_mask": 0,
    })
    h = s.add_torrent({"ti": lt.torrent_info(torrent), "save_path": save})
    flagged, last_dial = False, 0.0
    while not stop:
        st = h.status()
        if st.is_seeding and not flagged:
            open(flag, "w").close()
            flagged = True
            if mode == "leech":
                return 0
        now = time.monotonic()
        if peers and st.num_peers == 0 and now - last_dial >= 0.2:
            last_dial = now
            for p in peers:
                # Dial once the port listens: libtorrent backs off from an
                # address that refused it. No test connection: Transmission
                # refuses a second incoming handshake from an address while
                # the first (even a closed one) is pending.
                if listening(p[1]):
                    h.connect_peer(p)
        time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
PY
lt_run() { # lt_run MODE DIR PORT FLAG [PEER]
  local peer=()
  [ -z "${5:-}" ] || peer=(--peer "$5")
  exec "$lt_python" "$lt_script" "$1" "$torrent" "$2" "$3" "$4" "${peer[@]}"
}
lt_seed() {
  lt_run seed "$seed_dir" "$SEED_PORT" "$run/ready.flag" "$SEED_DIAL" >"$run/seed.log" 2>&1 &
  SEED_PID=$!
}
lt_seed_ready() { [ -e "$run/ready.flag" ]; }
lt_leech() {
  lt_run leech "$leech_dir" "$LEECH_PORT" "$run/done.flag" "$ADDR:$SEED_PORT" >"$run/leech.log" 2>&1 &
  LEECH_PID=$!
}
lt_leech_done() { [ -e "$run/done.flag" ]; }

# ------------------------------------------------------------------- aria2
a2_run() { # a2_run DIR PORT EXTRA...
  local dir=$1 port=$2
  shift 2
  exec aria2c --no-conf --dir "$dir" --listen-port="$port" --interface="$ADDR" \
    --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false \
    --file-allocation=none --auto-file-renaming=false --allow-overwrite=true \
    --console-log-level=warn --summary-interval=0 --show-console-readout=false "$@" "$torrent"
}
a2_seed() {
  a2_run "$seed_dir" "$SEED_PORT" --seed-ratio=0.0 --check-integrity=true --bt-seed-unverified=false \
    >"$run/seed.log" 2>&1 &
  SEED_PID=$!
}
a2_seed_ready() { tracker_has_seeder; }
a2_leech() {
  printf '#!/bin/sh\n: > "%s"\n' "$run/done.flag" >"$run/a2-done.sh"
  chmod +x "$run/a2-done.sh"
  a2_run "$leech_dir" "$LEECH_PORT" --seed-time=0 --on-bt-download-complete="$run/a2-done.sh" \
    >"$run/leech.log" 2>&1 &
  LEECH_PID=$!
}
a2_leech_done() { [ -e "$run/done.flag" ]; }

# ------------------------------------------------------------ Transmission
# transmission-daemon in the foreground, the torrent in its watch folder (read
# at start-up, so no RPC round trips), a torrent-done script for the finish.
tr_daemon() { # tr_daemon ROLE DIR PORT DONE_SCRIPT
  local cfg="$run/tr-$1"
  mkdir -p "$cfg/watch"
  cp "$torrent" "$cfg/watch/"
  cat >"$cfg/settings.json" <<EOF
{
  "bind-address-ipv4": "$ADDR", "bind-address-ipv6": "::1",
  "peer-port": $3, "peer-port-random-on-start": false, "port-forwarding-enabled": false,
  "rpc-enabled": true, "rpc-bind-address": "127.0.0.1", "rpc-port": $(free_port),
  "rpc-authentication-required": false, "rpc-whitelist-enabled": true, "rpc-whitelist": "127.0.0.1",
  "dht-enabled": false, "lpd-enabled": false, "pex-enabled": false, "utp-enabled": false,
  "encryption": 0,
  "download-dir": "$2", "incomplete-dir-enabled": false, "rename-partial-files": false,
  "watch-dir-enabled": true, "watch-dir": "$cfg/watch",
  "ratio-limit-enabled": false, "idle-seeding-limit-enabled": false,
  "speed-limit-down-enabled": false, "speed-limit-up-enabled": false, "alt-speed-enabled": false,
  "script-torrent-done-enabled": $([ -n "$4" ] && echo true || echo false),
  "script-torrent-done-filename": "$4",
  "message-level": 1
}
EOF
  exec "${NSX[@]}" transmission-daemon -f -g "$cfg"
}
tr_seed() {
  tr_daemon seed "$seed_dir" "$SEED_PORT" "" >"$run/seed.log" 2>&1 &
  SEED_PID=$!
}
tr_seed_ready() { tracker_has_seeder; }
tr_leech() {
  printf '#!/bin/sh\n: > "%s"\n' "$run/done.flag" >"$run/tr-done.sh"
  chmod +x "$run/tr-done.sh"
  tr_daemon leech "$leech_dir" "$LEECH_PORT" "$run/tr-done.sh" >"$run/leech.log" 2>&1 &
  LEECH_PID=$!
}
tr_leech_done() { [ -e "$run/done.flag" ]; }

# ------------------------------------------------------------------- rqbit
# Untested here (rqbit is not packaged for Debian): finds peers through the
# tracker, listens on its default ports, keeps its state inside $run.
rq_run() { # rq_run ROLE ARGS...
  local home="$run/rq-$1"
  shift
  mkdir -p "$home"
  exec env HOME="$home" XDG_CONFIG_HOME="$home" XDG_DATA_HOME="$home" XDG_CACHE_HOME="$home" \
    rqbit --disable-dht --disable-dht-persistence --http-api-listen-addr "127.0.0.1:$(free_port)" \
    download "$@" "$torrent"
}
rq_seed() {
  rq_run seed -o "$seed_dir" --overwrite >"$run/seed.log" 2>&1 &
  SEED_PID=$!
}
rq_seed_ready() { tracker_has_seeder; }
rq_leech() {
  rq_run leech -o "$leech_dir" --exit-on-finish >"$run/leech.log" 2>&1 &
  LEECH_PID=$!
}
rq_leech_done() { false; } # its exit 0 (--exit-on-finish) is the signal

# Whether a leecher of this kind exits by itself once complete (it gets time
# to flush and say goodbye before it is sent SIGTERM).
exits_when_done() { [ "$1" != tr ]; }

# ----------------------------------------------------------- which pairs
have() {
  case $1 in
    bt) return 0 ;;
    lt) "$lt_python" -c 'import libtorrent' 2>/dev/null ;;
    tr) command -v transmission-daemon >/dev/null ;;
    a2) command -v aria2c >/dev/null ;;
    rq) command -v rqbit >/dev/null ;;
  esac
}
client_name() {
  case $1 in
    bt) echo btnode ;; lt) echo libtorrent ;; tr) echo Transmission ;; a2) echo aria2 ;; rq) echo rqbit ;;
  esac
}
tr_addr=198.18.0.1
make_netns() {
  [ "${TR_NETNS:-1}" != 0 ] && [ "$(id -u)" = 0 ] && command -v ip >/dev/null || return 1
  ip netns add "btbench-$$" 2>/dev/null || return 1
  NS="btbench-$$"
  ip -n "$NS" link set lo up && ip -n "$NS" addr add "$tr_addr/32" dev lo
}

notes=()
pairs=()
declare -A label=()
for p in ${PAIRS:-bt:bt lt:lt tr:tr a2:a2 rq:rq bt:lt lt:bt}; do
  s=${p%:*} l=${p#*:}
  if ! have "$s" || ! have "$l"; then
    missing=$s
    ! have "$s" || missing=$l
    notes+=("skipped $(client_name "$s") -> $(client_name "$l"): $(client_name "$missing") is not installed")
    continue
  fi
  if [ "$p" = tr:tr ]; then
    if [ -z "$NS" ] && ! make_netns; then
      if have lt; then
        notes+=("Transmission -> Transmission needs a network namespace (root and ip; TR_NETNS=0 turns it off): measured libtorrent -> Transmission instead")
        p=lt:tr s=lt
      else
        notes+=("skipped Transmission -> Transmission: no network namespace and no libtorrent to seed")
        continue
      fi
    fi
  fi
  pairs+=("$p")
  label[$p]="$(client_name "$s") -> $(client_name "$l")"
  case $p in
    tr:tr) label[$p]+=" (in a netns, on $tr_addr)" ;;
    lt:tr) label[$p]+=" (lt dials; TR never dials 127/8)" ;;
  esac
done
[ ${#pairs[@]} -gt 0 ] || { echo "no pair to measure" >&2; exit 1; }
label_width=0
for p in "${pairs[@]}"; do [ "${#label[$p]}" -le "$label_width" ] || label_width=${#label[$p]}; done

# ------------------------------------------------------------ one transfer
results="$work/results-$$.tsv"
: >"$results"
failed=0

# measure: polls the leecher every 50 ms until its done-check succeeds (or it
# exits 0, or it fails, or the timeout); sums RssAnon over its process tree.
# Sets OUT_STATUS (ok, timeout, exit-N), OUT_US, OUT_PEAK_KB.
measure() {
  local kind=$1 t0=$2 deadline=$((SECONDS + timeout_s)) peak=0 n=0 sum pid rc
  OUT_STATUS=timeout OUT_US=""
  TREE=("$LEECH_PID")
  while :; do
    if "${kind}_leech_done"; then
      OUT_STATUS=ok OUT_US=$(($(now_us) - t0))
      break
    fi
    if ! kill -0 "$LEECH_PID" 2>/dev/null; then
      rc=0
      wait "$LEECH_PID" || rc=$?
      unset "LIVE[$LEECH_PID]"
      LEECH_PID=""
      if [ "$rc" = 0 ]; then OUT_STATUS=ok OUT_US=$(($(now_us) - t0)); else OUT_STATUS=exit-$rc; fi
      break
    fi
    sum=0
    for pid in "${TREE[@]}"; do
      anon_kb "$pid"
      sum=$((sum + REPLY))
    done
    if ((sum > peak)); then peak=$sum; fi
    if ((SECONDS >= deadline)); then break; fi
    n=$((n + 1))
    if ((n % 20 == 0)); then tree_of "$LEECH_PID"; fi
    poll_sleep 0.05
  done
  OUT_PEAK_KB=$peak
}

transfer() { # transfer ROUND PAIR
  local round=$1 pair=$2 s=${2%:*} l=${2#*:} t0 status secs grace got
  rm -rf "$run"
  mkdir -p "$leech_dir"
  if [ "$pair" = tr:tr ]; then NSX=(ip netns exec "$NS") ADDR=$tr_addr; else NSX=() ADDR=127.0.0.1; fi
  SEED_PORT=$(free_port) LEECH_PORT=$(free_port) SEED_DIAL="" SEED_PID="" LEECH_PID=""
  OUT_US="" OUT_PEAK_KB=""
  # Transmission accepts loopback peers but never dials them: the seeder dials.
  [ "$pair" != lt:tr ] || SEED_DIAL="127.0.0.1:$LEECH_PORT"
  printf '  round %d  %-*s ' "$round" "$label_width" "${label[$pair]}"
  status=""
  if ! start_tracker; then
    status=tracker-failed
  else
    "${s}_seed"
    started "$SEED_PID"
    if ! wait_for "$SEED_PID" "$timeout_s" "${s}_seed_ready"; then
      status=seeder-not-ready
    fi
  fi
  if [ -z "$status" ]; then
    t0=$(now_us)
    "${l}_leech"
    started "$LEECH_PID"
    measure "$l" "$t0"
    status=$OUT_STATUS
    grace=0
    if [ "$status" = ok ] && exits_when_done "$l"; then grace=60; fi
    stop_pid "$LEECH_PID" "$grace"
  fi
  stop_pid "$SEED_PID" 0
  stop_pid "$TRACKER_PID" 0
  if [ "$status" = ok ]; then
    got=$(sha256sum "$leech_dir/$name" 2>/dev/null | cut -d' ' -f1 || true)
    if [ "$got" != "$source_sha" ]; then
      echo "ERROR: ${label[$pair]}: the leecher's copy does not match the source (sha256 ${got:-missing})" >&2
      status=sha256-MISMATCH
      failed=1
    fi
  fi
  if [ "$status" = ok ]; then
    secs=$(printf '%d.%06d' $((OUT_US / 1000000)) $((OUT_US % 1000000)))
    printf '%7.2f s  %7.1f MB/s  %6.1f MiB RssAnon\n' "$secs" \
      "$(awk -v s="$secs" -v b=$((size_mib * 1048576)) 'BEGIN { print b / s / 1e6 }')" \
      "$(awk -v k="$OUT_PEAK_KB" 'BEGIN { print k / 1024 }')"
  else
    secs=""
    echo "$status (logs: seeder and leecher tails below)"
    tail -n 5 "$run/seed.log" "$run/leech.log" 2>/dev/null | sed 's/^/      /' || true
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$pair" "$status" "$secs" "${OUT_PEAK_KB:-}" >>"$results"
  # The seed folder keeps only the data (no client leaves anything, but be sure
  # no resume file of a seeder lingers between transfers).
  rm -f "$seed_dir/$name.aria2"
  rm -rf "$run"
}

# ---------------------------------------------------------------- the run
versions() {
  echo "btnode $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1) (target/release of this tree)"
  ! have lt || echo "libtorrent $("$lt_python" -c 'import libtorrent; print(libtorrent.__version__)')"
  ! have tr || transmission-daemon -V 2>&1 | head -n 1
  ! have a2 || aria2c --version | head -n 1
  ! have rq || echo "rqbit $(rqbit --version 2>&1 | head -n 1)"
}
echo "file       $size_mib MiB ($name, piece length ${piece_bytes:-default}${piece_bytes:+ B}), 1 seeder -> 1 leecher, loopback, $rounds round(s), timeout $timeout_s s"
echo "machine    $(nproc) cores, $(uname -r)"
echo "conditions TCP only, no encryption, a fresh verified seeder per transfer; time = leecher start -> all pieces verified"
versions | sed 's/^/client     /'
for n in "${notes[@]}"; do echo "note       $n"; done
for r in $(seq 1 "$rounds"); do
  echo "round $r"
  for p in "${pairs[@]}"; do transfer "$r" "$p"; done
done

# ---------------------------------------------------------------- summary
labels_file="$work/labels-$$.tsv"
for p in "${pairs[@]}"; do printf '%s\t%s\n' "$p" "${label[$p]}"; done >"$labels_file"
python3 - "$results" "$labels_file" "$size_mib" <<'PY'
import statistics
import sys

results, labels_file, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
size = mib * 1048576
labels = dict(line.rstrip("\n").split("\t") for line in open(labels_file))
w = max(len(v) for v in labels.values())
rows = {}
for line in open(results):
    rnd, pair, status, secs, kb = line.rstrip("\n").split("\t")
    rows.setdefault(pair, []).append((int(rnd), status, float(secs) if secs else None, int(kb or 0)))

print("\nper round (seconds / MB/s / peak leecher RssAnon MiB)")
for pair, runs in rows.items():
    cells = []
    for rnd, status, secs, kb in runs:
        cells.append(f"{secs:.2f}s {size / secs / 1e6:.0f}MB/s {kb / 1024:.1f}MiB" if status == "ok" else status)
    print(f"  {labels[pair]:<{w}}  " + " | ".join(cells))

med = {}
print(f"\nmedians over the rounds that completed ({mib} MiB file; seeder -> leecher)")
print(f"  {'seeder -> leecher':<{w}} {'ok':>5} {'seconds':>8} {'MB/s':>8} {'RssAnon MiB':>12}")
for pair, runs in rows.items():
    ok = [r for r in runs if r[1] == "ok"]
    if ok:
        secs = statistics.median(r[2] for r in ok)
        mbs = statistics.median(size / r[2] / 1e6 for r in ok)
        anon = statistics.median(r[3] for r in ok) / 1024
        med[pair] = (secs, mbs, anon)
        print(f"  {labels[pair]:<{w}} {len(ok):>2}/{len(runs):<2} {secs:>8.2f} {mbs:>8.1f} {anon:>12.1f}")
    else:
        print(f"  {labels[pair]:<{w}} {0:>2}/{len(runs):<2} {'-':>8} {'-':>8} {'-':>12}")

if "bt:bt" in med:
    others = {p: m for p, m in med.items() if p.split(":")[0] == p.split(":")[1] and p != "bt:bt"}
    if others:
        best = max(others, key=lambda p: others[p][1])
        print(f"\nbtnode -> btnode throughput: {med['bt:bt'][1] / others[best][1]:.2f}x the best other "
              f"same-client pair ({labels[best]}, {others[best][1]:.1f} MB/s)")
    if "lt:lt" in med:
        print(f"btnode leecher peak RssAnon: {med['bt:bt'][2]:.1f} MiB vs libtorrent's "
              f"{med['lt:lt'][2]:.1f} MiB ({med['bt:bt'][2] / med['lt:lt'][2]:.2f}x)")
PY
rm -f "$labels_file"
echo "raw results: $results"
exit "$failed"
