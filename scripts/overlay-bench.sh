#!/usr/bin/env bash
# Overlay convergence and cost on this machine, for N = 10, 50, 100 (up to
# 500) overlay-only nodes on loopback, each on its own address
# (127.1.x.y, so per-source connection caps count one node, as between
# hosts) (default intervals: gossip 8 s, health 10 s):
# time from an announce at one node until every node's own store has it
# (with push, and with push disabled = pure periodic gossip, in rounds),
# lookup latency p50/p99, steady-state gossip bytes per node per second,
# memory per node (RssAnon), threads and open file descriptors per node
# and CPU per node in the steady state, and how many members the nodes
# knew when the announce was pushed (min / median); each
# size without a swarm key and with one (every frame sealed, HMAC-SHA256:
# docs/OVERLAY.md), so the table shows what the key costs. Every process it
# starts is stopped by PID.
#   scripts/overlay-bench.sh [N ...]   (default 10 50 100)
#   BENCH_KEYS="none key" (default; "none" or "key" for one of them)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
BIN=$PWD/target/release/btnode python3 - "${@:-10 50 100}" <<'PY'
import hashlib, hmac, json, os, random, resource, socket, struct, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

BIN = os.environ["BIN"]
GOSSIP_S = 8.0
TICK = os.sysconf("SC_CLK_TCK")
sizes = [int(x) for a in sys.argv[1:] for x in a.split()]
modes = os.environ.get("BENCH_KEYS", "none key").split()
KEY = None  # the swarm key's bytes while a keyed overlay runs
# One pipe per node is kept open (its first line names its port).
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
POOL = ThreadPoolExecutor(32)
# Each node's log (its stderr), kept for a failed run.
LOG_DIR = os.environ.get("BENCH_LOG_DIR") or tempfile.mkdtemp(prefix="btnode-bench-logs-")
os.makedirs(LOG_DIR, exist_ok=True)

def node_ip(i):
    return "127.1.%d.%d" % (i // 250, i % 250 + 1)

def tag(key, label, bound, signed):
    m = hmac.new(key, bytes([len(label)]) + label + bound, hashlib.sha256)
    m.update(signed)
    return m.digest()

def seal(key, label, bound, payload, nonce):
    kid = hmac.new(key, b"btnode key id v1", hashlib.sha256).digest()[:4]
    signed = b"BTK1" + kid + struct.pack(">Q", int(time.time() * 1000)) + nonce + payload
    return signed + tag(key, label, bound, signed)

def unseal(key, label, bound, body):
    signed, t = body[:-32], body[-32:]
    if body[:4] != b"BTK1" or not hmac.compare_digest(tag(key, label, bound, signed), t):
        raise IOError("reply not sealed with our key")
    return signed[32:]

def rpc(addr, msg, timeout=2.0):
    body = json.dumps(msg).encode()
    nonce = os.urandom(16)
    if KEY is not None:
        body = seal(KEY, b"btnode overlay request v1", bytes(16), body, nonce)
    with socket.create_connection(addr, timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(struct.pack(">I", len(body)) + body)
        head = b""
        while len(head) < 4:
            chunk = s.recv(4 - len(head))
            if not chunk: raise IOError("closed")
            head += chunk
        (n,) = struct.unpack(">I", head)
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk: raise IOError("closed")
            data += chunk
    if KEY is not None:
        data = unseal(KEY, b"btnode overlay reply v1", nonce, data)
    return json.loads(data)

def start(n, push, key_file):
    env = dict(os.environ)
    env["BTNODE_OVERLAY_PUSH"] = "1" if push else "0"
    env.pop("BTNODE_SWARM_KEY_FILE", None)
    keyed = ["--swarm-key-file", key_file] if key_file else []
    procs, addrs = [], []
    def spawn(extra):
        ip = node_ip(len(procs))
        p = subprocess.Popen([BIN, "--bind", ip, "--overlay-port", "0", *keyed, *extra],
                             stdout=subprocess.PIPE, stderr=open(os.path.join(LOG_DIR, "node-%d.log" % len(procs)), "w"), env=env)
        line = p.stdout.readline().decode()
        host, port = line.split()[-1].rsplit(":", 1)
        procs.append(p); addrs.append((host, int(port)))
    spawn([])
    for _ in range(n - 1):
        spawn(["-b", "%s:%d" % addrs[0]])
    return procs, addrs

def stop(procs):
    for p in procs: p.terminate()
    for p in procs:
        try: p.wait(timeout=10)
        except subprocess.TimeoutExpired: p.kill(); p.wait()

def members(addr):
    try: return rpc(addr, {"type": "stats"})["members"]
    except Exception: return 0

def bytes_out(addr):
    for attempt in range(3):
        try: return rpc(addr, {"type": "stats"})["bytes_out"]
        except (OSError, ValueError): time.sleep(0.2)
    raise SystemExit("node %s:%d does not answer stats" % addr)

def has(addr, ih, port):
    try:
        r = rpc(addr, {"type": "lookup", "info_hash": ih, "limit": 200, "local_only": True})
        return any(p["addr"].endswith(":%d" % port) for p in r.get("providers", []))
    except Exception:
        return False

def converge(addrs, ih, port, limit_s):
    t0 = time.time()
    # With the announcing node as the provider's origin (same host), as a
    # node's own announce has it; a keyed overlay relays only such entries.
    at = addrs[len(addrs) // 2]
    rpc(at, {"type": "announce", "info_hash": ih, "peer_id": "ab" * 20,
             "port": port, "left": 0, "overlay_port": at[1]})
    pending = set(range(len(addrs)))
    while pending and time.time() - t0 < limit_s:
        # In parallel: one sweep of 500 nodes one at a time would take
        # longer than the convergence it measures.
        got = list(POOL.map(lambda i: (i, has(addrs[i], ih, port)), sorted(pending)))
        pending = {i for i, ok in got if not ok}
        if pending: time.sleep(0.05)
    return (time.time() - t0) if not pending else None

def rss_anon_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("RssAnon:"): return int(line.split()[1])
    except OSError: pass
    return 0

def threads_fds(pid):
    try:
        threads = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("Threads:"))
        return threads, len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, StopIteration):
        return 0, 0

def cpu_ticks(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except OSError:
        return 0

key_dir = tempfile.mkdtemp(prefix="btnode-bench-")
key_file = os.path.join(key_dir, "swarm.key")
with open(key_file, "w") as f:
    f.write(subprocess.check_output([BIN, "keygen"]).decode())
rows = []
for mode, n in [(m, n) for n in sizes for m in modes]:
    KEY = bytes.fromhex(open(key_file).read().strip()) if mode == "key" else None
    row = {"n": n, "mode": mode}
    for push in (True, False):
        procs, addrs = start(n, push, key_file if mode == "key" else None)
        try:
            # Let membership settle (every node knows a few others).
            deadline = time.time() + 60
            while time.time() < deadline and min(POOL.map(members, addrs)) < 3:
                time.sleep(0.5)
            known = sorted(POOL.map(members, addrs))
            ih = "%040x" % random.getrandbits(160)
            t = converge(addrs, ih, 40000 + n, 120)
            print("n=%d key=%s push=%s: members %d/%d, converged in %s s" % (
                n, mode, push, known[0], known[len(known) // 2], t), file=sys.stderr, flush=True)
            if push:
                row["push_s"] = t
                row["known"] = "%d/%d" % (known[0], known[len(known) // 2])
                lat, row["lookup_fail"] = [], 0
                for _ in range(200):
                    a = random.choice(addrs); t0 = time.time()
                    try:
                        rpc(a, {"type": "lookup", "info_hash": ih, "limit": 50})
                    except (OSError, ValueError):
                        row["lookup_fail"] += 1
                    lat.append((time.time() - t0) * 1000)
                lat.sort()
                row["p50_ms"], row["p99_ms"] = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
                # Steady state: a quiet window with nothing changing, with
                # one provider, then again with 200 providers.
                def steady():
                    time.sleep(2)
                    before = sum(POOL.map(bytes_out, addrs))
                    ticks = sum(cpu_ticks(p.pid) for p in procs)
                    window = 3 * GOSSIP_S
                    time.sleep(window)
                    after = sum(POOL.map(bytes_out, addrs))
                    ticks = sum(cpu_ticks(p.pid) for p in procs) - ticks
                    return (after - before) / n / window, ticks * 1000 / TICK / n / window
                row["bytes_node_s"], row["cpu_ms_s"] = steady()
                def announce(a, msg):
                    for attempt in range(3):
                        try: return rpc(a, msg)
                        except (OSError, ValueError): time.sleep(0.2)
                    i = addrs.index(a)
                    raise SystemExit("node %s:%d does not take announces (exit status %s)" % (
                        a[0], a[1], procs[i].poll()))
                for k in range(199):
                    a = addrs[k % n]
                    announce(a, {"type": "announce", "info_hash": ih, "peer_id": "cd" * 20,
                            "port": 41000 + k, "left": 0, "overlay_port": a[1]})
                converge(addrs, ih, 41000 + 198, 60)
                row["bytes_node_s_200"], row["cpu_ms_s_200"] = steady()
                row["rss_kib"] = sum(rss_anon_kib(p.pid) for p in procs) / n
                tf = [threads_fds(p.pid) for p in procs]
                row["threads"] = sum(t for t, _ in tf) / n
                row["fds"] = sum(f for _, f in tf) / n
            else:
                row["nopush_s"] = t
        finally:
            stop(procs)
    rows.append(row)

import shutil
shutil.rmtree(key_dir, ignore_errors=True)
fmt = lambda v, f: ("timeout" if v is None else f % v)
print("%5s %4s %9s %12s %14s %9s %9s %16s %16s %14s %8s %6s %15s %17s" % ("nodes", "key",
      "members", "push conv s", "no-push rounds", "p50 ms", "p99 ms", "B/node/s 1 prov",
      "B/node/s 200 prov", "RssAnon/node", "threads", "fds", "CPU ms/s 1 prov", "CPU ms/s 200 prov"))
for r in rows:
    rounds = None if r["nopush_s"] is None else r["nopush_s"] / GOSSIP_S
    print("%5d %4s %9s %12s %14s %9.1f %9.1f %16.0f %16.0f %11.0f KiB %8.1f %6.1f %15.2f %17.2f" % (
        r["n"], r["mode"], r["known"], fmt(r["push_s"], "%.2f"), fmt(rounds, "%.2f"), r["p50_ms"],
        r["p99_ms"], r["bytes_node_s"], r["bytes_node_s_200"], r["rss_kib"], r["threads"], r["fds"],
        r["cpu_ms_s"], r["cpu_ms_s_200"]))
print("members: what the nodes knew when the announce was pushed (fewest / median)")
for r in rows:
    if r["lookup_fail"]:
        print("n=%d %s: %d of 200 lookups failed (2 s timeout)" % (r["n"], r["mode"], r["lookup_fail"]))
PY
