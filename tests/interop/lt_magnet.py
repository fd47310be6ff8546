#!/usr/bin/python3
"""libtorrent given only a magnet link, for btnode's magnet tests.

usage: lt_magnet.py MAGNET DIR PORT PEER_HOST:PORT [--timeout S]
  Adds the link (no .torrent), connects to the peer, fetches the metadata
  from it (BEP 9) and downloads into DIR; exit 0 once complete, 1 on timeout.
"""
import sys
import time

import libtorrent as lt


def main(argv):
    uri, save, port, peer = argv[0], argv[1], int(argv[2]), argv[3]
    timeout = float(argv[5]) if len(argv) > 5 and argv[4] == "--timeout" else 120.0
    host, p = peer.rsplit(":", 1)
    s = lt.session({
        "listen_interfaces": "127.0.0.1:%d" % port,
        "enable_dht": False, "enable_lsd": False, "enable_upnp": False, "enable_natpmp": False,
        "allow_multiple_connections_per_ip": True,
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        "alert_mask": 0,
    })
    params = lt.parse_magnet_uri(uri)
    params.save_path = save
    h = s.add_torrent(params)
    start = time.time()
    while time.time() - start < timeout:
        h.connect_peer((host, int(p)))
        st = h.status()
        if st.has_metadata and st.is_seeding:
            print("complete in %.2f s" % (time.time() - start), flush=True)
            return 0
        time.sleep(0.5)
    st = h.status()
    print("timeout: metadata %s, %.1f%%" % (st.has_metadata, st.progress * 100), flush=True)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
