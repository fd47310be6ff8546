#!/usr/bin/python3
"""A libtorrent peer for btnode's interop tests (python3-libtorrent).

usage: lt_client.py seed|leech|hash TORRENT [DIR PORT] [--peer HOST:PORT]... [--timeout S]
                    [--listen HOST]   (default 127.0.0.1; ::1 for IPv6 tests; peers as [HOST]:PORT)
  seed   serve DIR's data until killed
  leech  download into DIR; exit 0 once complete, 1 on timeout
  hash   print libtorrent's v1 info-hash of TORRENT
"""
import sys
import time

import libtorrent as lt


def main(argv):
    mode, torrent = argv[0], argv[1]
    ti = lt.torrent_info(torrent)
    if mode == "hash":
        print(str(ti.info_hashes().v1))
        return 0
    save, port = argv[2], int(argv[3])
    peers, timeout, listen, i = [], 120.0, "127.0.0.1", 4
    while i < len(argv):
        if argv[i] == "--peer":
            host, p = argv[i + 1].rsplit(":", 1)
            peers.append((host.strip("[]"), int(p)))
        elif argv[i] == "--listen":
            listen = argv[i + 1]
        elif argv[i] == "--timeout":
            timeout = float(argv[i + 1])
        i += 2
    s = lt.session({
        "listen_interfaces": ("[%s]:%d" if ":" in listen else "%s:%d") % (listen, port),
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        # btnode speaks TCP only (no uTP, BEP 29): without this libtorrent
        # first tries uTP to every peer and falls back to TCP only later.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "alert_mask": 0,
    })
    params = {"ti": ti, "save_path": save}
    if mode == "seed":
        params["flags"] = lt.torrent_flags.seed_mode
    h = s.add_torrent(params)
    start = time.time()
    while time.time() - start < timeout:
        for p in peers:
            h.connect_peer(p)
        st = h.status()
        if mode == "leech" and st.is_seeding:
            print("complete in %.2f s" % (time.time() - start), flush=True)
            return 0
        time.sleep(0.5)
    if mode == "seed":
        return 0
    print("timeout at %.1f%%" % (h.status().progress * 100), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
