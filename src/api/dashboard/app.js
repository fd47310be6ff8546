// btnode dashboard. Plain JS, no framework, no build step; served by the
// daemon at /app.js (src/api/dashboard.rs) and loaded by index.html, which
// has no inline script, so a strict Content-Security-Policy holds.
//
// Everything fetched is written with textContent (never as markup), and
// every request goes to this page's own origin.
//
// Stable hooks (tests and user styles rely on them):
//   #token-form            the token form, shown when no token is known or
//                          the API refused it (401); input #token-input,
//                          message #token-error
//   #main                  everything else, shown while connected
//   #status                connection status text
//   #torrents              the torrents table's <tbody>
//     tr[data-hash]        one row per torrent, data-hash = info-hash;
//                          cells .name .size .progress (<progress> plus
//                          .progress-value, text like "42.0 %") .state
//                          .down .up .peers .eta
//   #detail                the selected torrent (click a row):
//                          #detail-name, #detail-facts (dl),
//                          #piece-map (.piece cells, .have when verified,
//                          .partial when a cell stands for several pieces
//                          and only some are verified), #detail-files,
//                          #detail-peers (tbodies), #detail-close
//   #session               the session panel (dl); each <dd> has
//                          data-key = the field, e.g. data-key="overlay_members"
//
// The token: typed into the form once and kept in localStorage, or given
// as #token=... in the address (a link `btnode` can print); the fragment
// is removed from the address bar at once, so it stays out of history
// and never reaches the server (fragments are not sent).
"use strict";

(function () {
  const TOKEN_KEY = "btnode.api-token";
  const POLL_MS = 1000;
  // Past this many pieces, one cell of the piece map stands for several.
  const MAX_CELLS = 2048;

  const $ = (id) => document.getElementById(id);

  let token = null;
  // Bumped whenever polling must stop (the token was forgotten or
  // replaced): a request in flight from an older generation does not
  // reschedule itself or touch the page.
  let generation = 0;
  let selected = null; // info-hash of the torrent shown in #detail
  let lastPieceMap = null;

  class Unauthorized extends Error {}

  // ---- formatting ---------------------------------------------------

  function bytes(n) {
    if (typeof n !== "number" || !isFinite(n)) return "?";
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) {
      n /= 1024;
      i += 1;
    }
    return (i === 0 ? String(n) : n.toFixed(1)) + " " + units[i];
  }

  function rate(n) {
    return bytes(n) + "/s";
  }

  function percent(p) {
    const v = typeof p === "number" && isFinite(p) ? Math.min(Math.max(p, 0), 1) : 0;
    return (v * 100).toFixed(1) + " %";
  }

  function duration(secs) {
    if (typeof secs !== "number" || !isFinite(secs) || secs < 0) return "∞";
    const d = Math.floor(secs / 86400);
    const h = Math.floor((secs % 86400) / 3600);
    const m = Math.floor((secs % 3600) / 60);
    const s = Math.floor(secs % 60);
    const two = (x) => String(x).padStart(2, "0");
    if (d > 0) return d + "d " + two(h) + "h";
    if (h > 0) return h + "h " + two(m) + "m";
    if (m > 0) return m + "m " + two(s) + "s";
    return s + "s";
  }

  function eta(t) {
    if (t.progress >= 1) return "done";
    if (t.eta_secs === null || t.eta_secs === undefined) return "–";
    return duration(t.eta_secs);
  }

  // ---- DOM helpers (text only) ---------------------------------------

  function el(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = String(text);
    return e;
  }

  function setText(e, text) {
    const s = String(text);
    if (e.textContent !== s) e.textContent = s;
  }

  function status(text, isError) {
    const s = $("status");
    setText(s, text);
    s.classList.toggle("error", !!isError);
  }

  // ---- token ---------------------------------------------------------

  function readStoredToken() {
    try {
      return localStorage.getItem(TOKEN_KEY);
    } catch (_) {
      return null; // storage disabled: the form asks every time
    }
  }

  function storeToken(t) {
    token = t;
    try {
      localStorage.setItem(TOKEN_KEY, t);
    } catch (_) {
      // Kept in memory for this page only.
    }
  }

  function forgetToken() {
    token = null;
    generation += 1;
    try {
      localStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // Nothing stored.
    }
  }

  // A token in the fragment (#token=...) wins over a stored one; the
  // fragment is removed from the address bar either way.
  function tokenFromFragment() {
    if (!location.hash.startsWith("#")) return null;
    const params = new URLSearchParams(location.hash.slice(1));
    const t = params.get("token");
    if (t === null) return null;
    history.replaceState(null, "", location.pathname + location.search);
    const trimmed = t.trim();
    return trimmed === "" ? null : trimmed;
  }

  function askForToken(message) {
    $("main").hidden = true;
    $("logout").hidden = true;
    const err = $("token-error");
    err.hidden = !message;
    setText(err, message || "");
    $("token-form").hidden = false;
    status("not connected", false);
    $("token-input").focus();
  }

  // ---- API -------------------------------------------------------------

  async function api(path) {
    const r = await fetch(path, {
      headers: { Authorization: "Bearer " + token },
      cache: "no-store",
      credentials: "omit",
      redirect: "error",
    });
    if (r.status === 401) throw new Unauthorized();
    if (!r.ok) {
      let why = r.status + " " + r.statusText;
      try {
        const body = await r.json();
        if (body && typeof body.error === "string") why = r.status + ": " + body.error;
      } catch (_) {
        // Not JSON; the status says enough.
      }
      const e = new Error(why);
      e.status = r.status;
      throw e;
    }
    return r.json();
  }

  function validHash(h) {
    return typeof h === "string" && /^[0-9a-f]{40}$/.test(h);
  }

  // ---- torrents table --------------------------------------------------

  function newRow(hash) {
    const tr = document.createElement("tr");
    tr.dataset.hash = hash;
    tr.append(el("td", "name"), el("td", "size num"));
    const cell = el("td", "progress");
    const bar = document.createElement("progress");
    bar.max = 1;
    cell.append(bar, el("span", "progress-value"));
    tr.append(cell);
    for (const c of ["state", "down num", "up num", "peers num", "eta num"]) {
      tr.append(el("td", c));
    }
    return tr;
  }

  function fillRow(tr, t) {
    const q = (c) => tr.querySelector("." + c);
    setText(q("name"), t.name);
    q("name").title = t.name;
    setText(q("size"), bytes(t.size));
    const p = typeof t.progress === "number" && isFinite(t.progress) ? t.progress : 0;
    const bar = tr.querySelector("progress");
    bar.value = Math.min(Math.max(p, 0), 1);
    setText(q("progress-value"), percent(p));
    const state = q("state");
    setText(state, t.state);
    state.className = "state state-" + String(t.state).replace(/[^a-z]/g, "");
    setText(q("down"), rate(t.down_rate));
    setText(q("up"), rate(t.up_rate));
    setText(q("peers"), t.peers);
    setText(q("eta"), eta(t));
    tr.classList.toggle("selected", t.info_hash === selected);
  }

  function renderTorrents(list) {
    const body = $("torrents");
    const old = new Map();
    for (const tr of body.querySelectorAll("tr[data-hash]")) old.set(tr.dataset.hash, tr);
    const rows = [];
    for (const t of Array.isArray(list) ? list : []) {
      if (!validHash(t.info_hash)) continue;
      const tr = old.get(t.info_hash) || newRow(t.info_hash);
      old.delete(t.info_hash);
      fillRow(tr, t);
      rows.push(tr);
    }
    // Rows are kept (not rebuilt) across polls, so a click never lands
    // on a row that is being replaced.
    body.replaceChildren(...rows);
    $("no-torrents").hidden = rows.length > 0;
    if (selected !== null && !rows.some((r) => r.dataset.hash === selected)) closeDetail();
  }

  // ---- detail ----------------------------------------------------------

  function closeDetail() {
    selected = null;
    lastPieceMap = null;
    $("detail").hidden = true;
    for (const tr of $("torrents").querySelectorAll("tr.selected")) tr.classList.remove("selected");
  }

  function fact(dl, key, label, value) {
    const dt = el("dt", null, label);
    const dd = el("dd", null, value);
    dd.dataset.key = key;
    dl.append(dt, dd);
  }

  function renderPieceMap(map) {
    if (map === lastPieceMap) return;
    lastPieceMap = map;
    const box = $("piece-map");
    const s = typeof map === "string" ? map : "";
    const per = Math.max(1, Math.ceil(s.length / MAX_CELLS));
    const cells = [];
    for (let i = 0; i < s.length; i += per) {
      const chunk = s.slice(i, i + per);
      const have = chunk.split("").filter((c) => c === "1").length;
      const cell = el("span", "piece");
      if (have === chunk.length) cell.classList.add("have");
      else if (have > 0) cell.classList.add("partial");
      cell.title =
        per === 1 ? "piece " + i : "pieces " + i + "–" + (i + chunk.length - 1) + ": " + have + " verified";
      cells.push(cell);
    }
    box.replaceChildren(...cells);
    box.setAttribute(
      "aria-label",
      "piece map: " + s.split("").filter((c) => c === "1").length + " of " + s.length + " pieces verified"
    );
  }

  function renderDetail(d) {
    $("detail").hidden = false;
    setText($("detail-name"), d.name);
    const facts = $("detail-facts");
    const dl = document.createDocumentFragment();
    fact(dl, "info_hash", "Info-hash", d.info_hash);
    fact(dl, "dir", "Directory", d.dir === "" ? "(download root)" : d.dir);
    fact(dl, "size", "Size", bytes(d.size));
    fact(dl, "pieces", "Pieces", d.pieces_have + " / " + d.pieces_total);
    fact(dl, "downloaded", "Downloaded (this run)", bytes(d.downloaded));
    fact(dl, "uploaded", "Uploaded (this run)", bytes(d.uploaded));
    fact(dl, "pieces_verified", "Pieces verified", d.pieces_verified);
    fact(dl, "hash_failures", "Hash failures", d.hash_failures);
    fact(dl, "pieces_checked_at_start", "Checked at start", d.pieces_checked_at_start);
    facts.replaceChildren(dl);

    renderPieceMap(d.piece_map);

    const files = (Array.isArray(d.files) ? d.files : []).map((f) => {
      const tr = document.createElement("tr");
      tr.append(el("td", "path", f.path), el("td", "num", bytes(f.length)));
      return tr;
    });
    $("detail-files").replaceChildren(...files);

    const peers = (Array.isArray(d.peer_list) ? d.peer_list : []).map((p) => {
      const tr = document.createElement("tr");
      tr.append(
        el("td", "addr", p.addr),
        el("td", "num", p.pieces),
        el("td", "num", rate(p.down_rate)),
        el("td", "num", rate(p.up_rate)),
        el("td", null, p.choked ? "yes" : "no"),
        el("td", null, p.choking_us ? "yes" : "no")
      );
      return tr;
    });
    $("detail-peers").replaceChildren(...peers);
  }

  // ---- session ---------------------------------------------------------

  function renderSession(s) {
    const c = s.counters || {};
    const dl = document.createDocumentFragment();
    fact(dl, "version", "Version", s.version);
    fact(dl, "uptime_secs", "Uptime", duration(s.uptime_secs));
    fact(dl, "peer_port", "Peer port", s.peer_port);
    fact(dl, "overlay_addr", "Overlay address", s.overlay_addr === null ? "none" : s.overlay_addr);
    fact(dl, "overlay_members", "Overlay members", s.overlay_members);
    fact(dl, "dns_registration", "DNS name", s.dns_registration === null ? "none" : s.dns_registration);
    fact(dl, "torrents", "Torrents", s.torrents);
    fact(dl, "down_rate", "Download rate", rate(s.down_rate));
    fact(dl, "up_rate", "Upload rate", rate(s.up_rate));
    fact(dl, "gossip_bytes_in", "Gossip received", bytes(c.gossip_bytes_in));
    fact(dl, "gossip_bytes_out", "Gossip sent", bytes(c.gossip_bytes_out));
    fact(dl, "tracker_announces", "Tracker announces", c.tracker_announces);
    fact(dl, "tracker_failures", "Tracker failures", c.tracker_failures);
    fact(dl, "dns_queries", "DNS queries", c.dns_queries);
    $("session").replaceChildren(dl);
  }

  // ---- polling ---------------------------------------------------------

  async function refreshDetail(gen) {
    const hash = selected;
    if (hash === null || !validHash(hash)) return;
    try {
      const d = await api("/api/v1/torrents/" + encodeURIComponent(hash));
      if (gen === generation && selected === hash) renderDetail(d);
    } catch (e) {
      if (e instanceof Unauthorized) throw e;
      if (e.status === 404 && selected === hash) closeDetail();
      else throw e;
    }
  }

  async function poll(gen) {
    if (gen !== generation) return;
    try {
      const [list, session] = await Promise.all([api("/api/v1/torrents"), api("/api/v1/session")]);
      if (gen !== generation) return;
      renderTorrents(list);
      renderSession(session);
      await refreshDetail(gen);
      if (gen !== generation) return;
      status("connected", false);
    } catch (e) {
      if (gen !== generation) return;
      if (e instanceof Unauthorized) {
        forgetToken();
        askForToken("The daemon refused that token. Enter the current one.");
        return;
      }
      status("cannot reach the daemon: " + e.message, true);
    }
    // The next poll starts a second after this one ended, so slow answers
    // never pile up.
    setTimeout(() => poll(gen), POLL_MS);
  }

  function start() {
    generation += 1;
    $("token-form").hidden = true;
    $("main").hidden = false;
    $("logout").hidden = false;
    status("connecting…", false);
    poll(generation);
  }

  // ---- wiring ----------------------------------------------------------

  function init() {
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const input = $("token-input");
      const t = input.value.trim();
      input.value = "";
      if (t === "") return;
      storeToken(t);
      start();
    });
    $("logout").addEventListener("click", () => {
      forgetToken();
      closeDetail();
      askForToken(null);
    });
    $("torrents").addEventListener("click", (ev) => {
      const tr = ev.target.closest("tr[data-hash]");
      if (!tr) return;
      selected = tr.dataset.hash;
      lastPieceMap = null;
      for (const r of $("torrents").querySelectorAll("tr[data-hash]")) {
        r.classList.toggle("selected", r === tr);
      }
      const gen = generation;
      refreshDetail(gen).catch((e) => {
        if (gen !== generation) return;
        if (e instanceof Unauthorized) {
          forgetToken();
          askForToken("The daemon refused that token. Enter the current one.");
        } else {
          status("cannot load the torrent: " + e.message, true);
        }
      });
    });
    $("detail-close").addEventListener("click", closeDetail);

    const fromFragment = tokenFromFragment();
    if (fromFragment !== null) storeToken(fromFragment);
    else token = readStoredToken();
    if (token) start();
    else askForToken(null);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
