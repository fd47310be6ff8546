#!/usr/bin/env bash
# The compose swarm under real faults, on this machine's Docker engine:
#   1. 8 leechers complete, every copy's sha256 matches;
#   2. two seeders, one killed mid-transfer: all complete;
#   3. half the leechers cut off (docker network disconnect) for 30 s, then
#      reconnected: the overlay converges again and all complete;
#   4. the bootstrap killed once the swarm formed: a leecher started after
#      still joins through surviving members and completes;
#   5. a rolling restart of the leechers mid-transfer: each resumes without
#      re-downloading verified pieces.
# It prints the time until all leechers complete, the time from killing a
# node until no live node lists it, and from healing the partition until
# every node's lookup sees every provider. Each scenario is bounded in time;
# containers, volumes and networks are removed on exit, even on failure.
# Then it times a clean run with 4, 8 and 16 leecher replicas (BENCH_MIB,
# default 256).
#   scripts/swarm-test.sh                 the five scenarios (SIZE_MIB, default 32), then the timing
#   SWARM_BENCH=only scripts/swarm-test.sh   only the 4/8/16 timing
#   SWARM_BENCH=0 scripts/swarm-test.sh      only the scenarios
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

if ! docker info >/dev/null 2>&1; then
  if [ "${BTNODE_REQUIRE_PEERS:-}" = 1 ]; then echo "swarm-test: no Docker engine"; exit 1; fi
  echo "swarm-test: skipped (no Docker engine)"; exit 0
fi
compose_bin=(docker-compose)
command -v docker-compose >/dev/null || compose_bin=(docker compose)

scripts/docker-build.sh
bin=$repo/target/release/btnode
size_mib=${SIZE_MIB:-32}
bench_mib=${BENCH_MIB:-256}
bench_mode=${SWARM_BENCH:-1}

work=$(mktemp -d -t btnode-swarm.XXXXXX)
# A data folder holding shared.bin (MiB given) and shared.torrent; sets the
# globals the scenarios check against.
make_data() {
  data=$work/data-$1
  mkdir -p "$data"
  head -c $(($1 * 1048576)) /dev/urandom > "$data/shared.bin"
  ih=$("$bin" create -o "$data/shared.torrent" --piece-length 262144 "$data/shared.bin" | sed -n 1p)
  want=$(sha256sum < "$data/shared.bin" | cut -d' ' -f1)
  pieces=$(( ($1 * 1048576 + 262143) / 262144 ))
  # The seeder daemon's state (its API token among it); made here because
  # a Swarm stack does not create a bind mount's source.
  mkdir -p "$work/state-$1"
  export BTNODE_DATA=$data BTNODE_STATE=$work/state-$1
}
# The swarm key, a Docker secret in compose.yaml; the same variable makes
# this script's own `btnode lookup` calls keyed.
"$bin" keygen > "$work/swarm.key"
chmod 600 "$work/swarm.key"
export BTNODE_SWARM_KEY_FILE=$work/swarm.key
project=btnodetest$$
# The seeder daemon's API on the host's loopback: a free port, not 8900.
SEEDER_API_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export SEEDER_API_PORT
# Faster timers than the defaults so faults are noticed within the bounds.
export BTNODE_GOSSIP_INTERVAL_MS=2000 BTNODE_HEALTH_INTERVAL_MS=2000

compose() { "${compose_bin[@]}" -p "$project" -f "$repo/compose.yaml" -f "$repo/compose.two-seeders.yaml" "$@"; }
down() { compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || true; }
stack=""; swarm_ours=""
stack_down() {
  [ -n "$stack" ] || return 0
  docker stack rm "$stack" >/dev/null 2>&1 || true
  # Services go first; their containers exit a moment later.
  for _ in $(seq 1 30); do
    [ -z "$(docker ps -q --filter "label=com.docker.stack.namespace=$stack")" ] && break
    sleep 1
  done
  docker ps -aq --filter "label=com.docker.stack.namespace=$stack" | xargs -r docker rm -fv >/dev/null 2>&1 || true
  stack=""
  [ -n "$swarm_ours" ] && docker swarm leave --force >/dev/null 2>&1 || true
  swarm_ours=""
}
cleanup() { down; stack_down; rm -rf "$work"; }
trap cleanup EXIT INT TERM

cids() { docker ps -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1"; }
ip_of() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
status() { docker cp "$1:$2" - 2>/dev/null | tar -xO 2>/dev/null || true; }
leecher_status() { status "$1" /downloads/status.json; }
field() { python3 -c "import json,sys
try: print(json.load(sys.stdin)['$1'])
except Exception: print('')"; }
is_complete() { [ "$(leecher_status "$1" | field complete)" = True ]; }
fail() { echo "FAIL: $*"; docker ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}} {{.Status}}'; exit 1; }

# poll_until LIMIT WHAT CMD...: runs CMD every 0.5 s until it succeeds and
# sets $waited to the seconds taken; after LIMIT seconds fails with WHAT.
poll_until() {
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@"; do
    [ $((SECONDS - start)) -ge "$limit" ] && fail "$what"
    sleep 0.5
  done
  waited=$((SECONDS - start))
}
# The leecher containers: of the compose project, or of the Swarm stack
# while scenario 6 runs.
leechers() {
  if [ -n "$stack" ]; then
    docker ps -q --filter "label=com.docker.swarm.service.name=${stack}_leecher"
  else
    cids leecher
  fi
}
# wait_complete LIMIT [MIN]: waits until at least MIN (default 1) leecher
# containers run and every one is complete; prints the seconds taken.
wait_complete() {
  local limit=$1 min=${2:-1} start=$SECONDS
  while :; do
    local all=1 n=0
    for c in $(leechers); do
      n=$((n + 1))
      is_complete "$c" || { all=0; break; }
    done
    [ $all = 1 ] && [ $n -ge "$min" ] && { echo $((SECONDS - start)); return 0; }
    [ $((SECONDS - start)) -ge "$limit" ] && return 1
    sleep 1
  done
}
check_copies() {
  for c in $(leechers); do
    got=$(docker cp "$c:/downloads/shared.bin" - | tar -xO | sha256sum | cut -d' ' -f1)
    [ "$got" = "$want" ] || fail "leecher $c has a different copy ($got)"
  done
  echo "   every copy's sha256 matches ($(leechers | wc -l) leechers)"
}
# Providers a node's lookup returns (peerwire addresses), one per line.
lookup_at() { "$bin" lookup "$ih" --at "$1:6000" --limit 200 2>/dev/null | field_addr; }
field_addr() { python3 -c "import json,sys
for l in sys.stdin:
    try: print(json.loads(l)['addr'])
    except Exception: pass"; }
percent_of() { local h; h=$(leecher_status "$1" | field pieces_have); echo $(( ${h:-0} * 100 / pieces )); }
wait_any_progress() {  # $1 = percent
  local start=$SECONDS
  while [ $((SECONDS - start)) -lt 120 ]; do
    for c in $(cids leecher); do [ "$(percent_of "$c")" -ge "$1" ] && return 0; done
    sleep 0.5
  done
  return 1
}
up() { compose up -d --scale leecher="$1" dns bootstrap seeder leecher >/dev/null 2>&1 || fail "compose up"; }

bench() {
  make_data "$bench_mib"
  echo "== completion time, ${bench_mib} MiB file, one seeder"
  for n in 4 8 16; do
    down
    up "$n"
    t=$(wait_complete 900) || fail "$n leechers did not complete"
    check_copies
    echo "   $n replicas: all complete in ${t} s"
    # 16 copies of the file: free each run's volumes before the next.
    down
  done
  rm -rf "$data"
}
if [ "$bench_mode" = only ]; then
  bench
  exit 0
fi

make_data "$size_mib"
rate=$((size_mib * 1048576 / 10))   # the seeder alone needs ~10 s

echo "== 1. eight leechers"
up 8
t=$(wait_complete 300) || fail "8 leechers did not complete"
echo "   all complete in ${t} s"
check_copies
# Every container's health check (btnode health, no shell in the image).
project_ps() { docker ps -q --filter "label=com.docker.compose.project=$project" "$@"; }
all_healthy() { [ "$(project_ps --filter health=healthy | wc -l)" -eq "$(project_ps | wc -l)" ]; }
poll_until 60 "not every container is healthy" all_healthy
echo "   every container reports healthy ($(project_ps | wc -l))"
# Keyed: the seeder's overlay answers a lookup with the key and drops one
# without it (no reply at all).
seeder_ip=$(ip_of "$(cids seeder)")
[ -n "$(lookup_at "$seeder_ip")" ] || fail "no keyed lookup answer at the seeder"
if BTNODE_SWARM_KEY_FILE= "$bin" lookup "$ih" --at "$seeder_ip:6000" >/dev/null 2>&1; then
  fail "a keyless lookup was answered"
fi
echo "   the overlay answers keyed lookups and drops keyless ones"
# The seeder is a daemon: its API (token from the state it keeps on the
# host) lists the torrent as seeding, and the dashboard is served.
api=127.0.0.1:$SEEDER_API_PORT
seeding() { "$bin" list --json --api "$api" --state "$BTNODE_STATE" 2>/dev/null | grep -q '"state": *"seeding"'; }
poll_until 30 "the seeder's API does not list its torrent as seeding" seeding
curl -fsS "http://$api/" | grep -q "<title>btnode" || fail "the seeder serves no dashboard at http://$api/"
echo "   the seeder daemon's API and dashboard answer on $api"
# MTTR: kill one leecher; time until no live node lists it.
victim=$(cids leecher | head -1); vip=$(ip_of "$victim")
docker kill "$victim" >/dev/null
nobody_lists_victim() {
  for c in $(cids leecher) $(cids seeder) $(cids bootstrap); do
    lookup_at "$(ip_of "$c")" | grep -q "^$vip:" && return 1
  done
  return 0
}
poll_until 120 "a killed node is still listed after 120 s" nobody_lists_victim
echo "   killed node gone from every live node's lookup in $waited s"
down

echo "== 2. two seeders, one killed mid-transfer"
SEEDER_RATE=$rate compose up -d --scale leecher=4 dns bootstrap seeder seeder2 leecher >/dev/null 2>&1 || fail "compose up"
wait_any_progress 15 || fail "no progress"
docker kill "$(cids seeder)" >/dev/null
echo "   seeder killed at $(for c in $(cids leecher); do percent_of "$c"; done | sort -n | tail -1)% (most advanced leecher)"
t=$(wait_complete 300) || fail "leechers did not complete after a seeder died"
echo "   all complete ${t} s after the kill"
check_copies
down

echo "== 3. half the leechers partitioned for 30 s"
SEEDER_RATE=$rate up 6
net=$(docker network ls -q --filter "label=com.docker.compose.project=$project" | head -1)
wait_any_progress 10 || fail "no progress"
cut=$(cids leecher | head -3)
for c in $cut; do docker network disconnect "$net" "$c"; done
echo "   3 leechers disconnected"
sleep 30   # the fault's duration is the scenario, not a wait for a condition
for c in $cut; do docker network connect "$net" "$c"; done
providers=$(( $(cids leecher | wc -l) + 1 ))
every_lookup_sees_all() {
  for c in $(cids leecher) $(cids seeder); do
    [ "$(lookup_at "$(ip_of "$c")" | sort -u | wc -l)" -ge "$providers" ] || return 1
  done
}
poll_until 120 "the overlay did not converge after the partition healed" every_lookup_sees_all
echo "   partition healed: every node's lookup sees all $providers providers after $waited s"
t=$(wait_complete 300) || fail "leechers did not complete after the partition"
check_copies
down

echo "== 4. bootstrap killed, a newcomer still joins"
up 3
wait_complete 300 >/dev/null || fail "first leechers did not complete"
docker kill "$(cids bootstrap)" >/dev/null
compose up -d --no-recreate --scale leecher=4 leecher >/dev/null 2>&1 || fail "scale up"
t=$(wait_complete 300) || fail "the newcomer did not complete without the bootstrap"
echo "   newcomer complete ${t} s after joining without the bootstrap"
check_copies
down

echo "== 5. rolling restart of the leechers mid-transfer"
SEEDER_RATE=$((size_mib * 1048576 / 20)) up 3
wait_any_progress 20 || fail "no progress"
for c in $(cids leecher); do
  docker restart -t 5 "$c" >/dev/null
  echo "   restarted a leecher: $(percent_of "$c")% verified on resume"
done
t=$(wait_complete 300) || fail "leechers did not complete after restarts"
check_copies
for c in $(cids leecher); do
  s=$(leecher_status "$c")
  resumed=$(echo "$s" | field pieces_resumed); fetched=$(echo "$s" | field pieces_downloaded)
  [ $((resumed + fetched)) -eq "$pieces" ] || fail "leecher $c: resumed $resumed + fetched $fetched != $pieces"
  echo "   leecher resumed $resumed verified pieces and fetched only the other $fetched"
done
down

echo "== 6. the same compose.yaml deployed as a Docker Swarm stack"
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" = inactive ]; then
  # A single-node swarm of our own, left again on exit.
  docker swarm init --advertise-addr 127.0.0.1 >/dev/null || fail "docker swarm init"
  swarm_ours=1
  stack=btnodetest$$
  docker stack deploy -c compose.yaml "$stack" >/dev/null 2>&1 || fail "docker stack deploy"
  docker service scale -d "${stack}_leecher=4" >/dev/null || fail "docker service scale"
  t=$(wait_complete 300 4) || fail "the stack's leechers did not complete"
  echo "   4 stack replicas complete in ${t} s"
  check_copies
  stack_down
else
  echo "   skipped: this engine is already part of a swarm (not ours to change)"
fi
rm -rf "$data"
echo "swarm-test: all scenarios passed"
[ "$bench_mode" = 0 ] || bench
