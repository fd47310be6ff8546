//! `btnode daemon`: many torrents in one process behind the HTTP API.
//! Real daemons on loopback; results checked by sha256 of the bytes on
//! disk and by the API's counters, not by log lines.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::daemon::Daemon;
use support::*;

const LONG: Duration = Duration::from_secs(120);

fn content(dir: &Path, name: &str, len: usize, piece_len: &str) -> (PathBuf, PathBuf) {
    let file = dir.join("seed").join(name);
    make_file(&file, len, len as u64 + 7);
    let torrent = dir.join(format!("{name}.torrent"));
    create_torrent(&file, &torrent, &["--piece-length", piece_len]);
    (file, torrent)
}

#[test]
fn a_daemon_runs_two_torrents_pauses_resumes_removes_and_comes_back_after_a_restart() {
    let tmp = tempdir();
    let (a_src, a_torrent) = content(tmp.path(), "a.bin", 3 << 20, "65536");
    let (b_src, b_torrent) = content(tmp.path(), "b.bin", 4 << 20, "65536");
    // One seeder daemon serves both torrents over one peer port; b slowly,
    // so a pause lands mid-transfer.
    let seeder = Daemon::start(
        &tmp.path().join("seeder-state"),
        &tmp.path().join("seed"),
        &[
            "-t",
            a_torrent.to_str().unwrap(),
            "-t",
            b_torrent.to_str().unwrap(),
            "--upload-rate-limit",
            "1000000",
        ],
    );
    assert!(
        wait_until(LONG, || seeder.list().iter().all(|t| t.state == "seeding")),
        "the seeder never seeded both: {:?}",
        seeder.list()
    );
    let leech_root = tmp.path().join("leech");
    let state = tmp.path().join("leech-state");
    let peer = seeder.peer_addr();
    let mut leecher = Daemon::start(&state, &leech_root, &["--peer", &peer]);

    // The API refuses what it must.
    let url = format!("{}/api/v1/torrents", leecher.api);
    let anonymous = minreq::get(&url).with_timeout(10).send().unwrap();
    assert_eq!(anonymous.status_code, 401, "no token");
    let escaping = std::fs::read(&a_torrent).unwrap();
    let (status, body) = leecher.call(
        "POST",
        "/api/v1/torrents?dir=..%2F..%2Fetc",
        Some(&escaping),
    );
    assert_eq!(status, 400, "a data directory outside the root: {body}");

    let a = leecher.add(&a_torrent, "");
    let b = leecher.add(&b_torrent, "?paused=1&dir=later");
    assert!(leecher.wait_complete(&a, LONG), "a: {:?}", leecher.list());
    assert_eq!(sha256(&leech_root.join("a.bin")), sha256(&a_src));
    let paused = leecher.torrent(&b);
    assert_eq!(paused.state, "paused");
    assert_eq!(paused.pieces_have, 0, "a paused torrent moves nothing");

    // Resume b, pause it mid-transfer: it stops; resume: it completes.
    let (status, _) = leecher.call("POST", &format!("/api/v1/torrents/{b}/resume"), None);
    assert_eq!(status, 200);
    assert!(
        wait_until(LONG, || leecher.torrent(&b).pieces_have > 0),
        "b never started"
    );
    let (status, _) = leecher.call("POST", &format!("/api/v1/torrents/{b}/pause"), None);
    assert_eq!(status, 200);
    let at_pause = leecher.torrent(&b);
    assert_eq!(at_pause.state, "paused");
    assert!(
        at_pause.pieces_have < at_pause.pieces_total,
        "paused before the end (the seeder sends 1 MB/s)"
    );
    let on_disk = std::fs::metadata(leech_root.join("later/b.bin")).unwrap();
    assert!(on_disk.len() > 0);
    let (status, _) = leecher.call("POST", &format!("/api/v1/torrents/{b}/resume"), None);
    assert_eq!(status, 200);
    let resumed = leecher.torrent(&b);
    assert!(
        resumed.pieces_have >= at_pause.pieces_have || resumed.state == "checking",
        "pieces kept across a pause"
    );
    assert!(leecher.wait_complete(&b, LONG), "b: {:?}", leecher.list());
    assert_eq!(sha256(&leech_root.join("later/b.bin")), sha256(&b_src));
    let b_after = leecher.torrent(&b);
    assert_eq!(
        b_after.pieces_checked_at_start, 0,
        "resuming a paused torrent trusts its clean resume data"
    );
    let detail = leecher.detail(&b);
    assert_eq!(detail.dir, "later");
    assert_eq!(detail.files.len(), 1);
    assert!(detail.piece_map.chars().all(|c| c == '1'));

    // Restart with b paused: both are back, b still paused and showing
    // what it has, and nothing is re-hashed.
    let (status, _) = leecher.call("POST", &format!("/api/v1/torrents/{b}/pause"), None);
    assert_eq!(status, 200);
    assert_eq!(leecher.sigterm_and_wait(), Some(0), "{}", leecher.log());
    drop(leecher);
    leecher = Daemon::start(&state, &leech_root, &["--peer", &peer]);
    let restored = leecher.torrent(&b);
    assert_eq!(restored.state, "paused", "paused across the restart");
    assert_eq!(
        restored.pieces_have, restored.pieces_total,
        "a paused torrent shows the pieces its resume data holds"
    );
    assert_eq!(restored.progress, 1.0);
    let (status, _) = leecher.call("POST", &format!("/api/v1/torrents/{b}/resume"), None);
    assert_eq!(status, 200);
    assert!(
        wait_until(LONG, || {
            let list = leecher.list();
            list.len() == 2 && list.iter().all(|t| t.state == "seeding")
        }),
        "after a restart: {:?}",
        leecher.list()
    );
    for t in leecher.list() {
        assert_eq!(t.pieces_checked_at_start, 0, "{} was re-hashed", t.name);
        assert_eq!(t.pieces_have, t.pieces_total);
    }

    // Remove a with its data: exactly its file goes.
    let (status, body) = leecher.call(
        "DELETE",
        &format!("/api/v1/torrents/{a}?delete_data=1"),
        None,
    );
    assert_eq!(status, 200, "{body}");
    assert!(!leech_root.join("a.bin").exists(), "a's data is deleted");
    assert_eq!(sha256(&leech_root.join("later/b.bin")), sha256(&b_src));
    assert_eq!(leecher.list().len(), 1);
    assert!(
        !state.join("torrents").join(&a).exists(),
        "a's state is forgotten"
    );
    let (status, _) = leecher.call("GET", &format!("/api/v1/torrents/{a}"), None);
    assert_eq!(status, 404);
}

#[test]
fn a_sigkill_mid_download_loses_no_verified_piece() {
    let tmp = tempdir();
    let (src, torrent) = content(tmp.path(), "big.bin", 8 << 20, "65536");
    let seeder = Daemon::start(
        &tmp.path().join("seeder-state"),
        &tmp.path().join("seed"),
        &[
            "-t",
            torrent.to_str().unwrap(),
            "--upload-rate-limit",
            "1000000",
        ],
    );
    let root = tmp.path().join("leech");
    let state = tmp.path().join("leech-state");
    let peer = seeder.peer_addr();
    let mut leecher = Daemon::start(&state, &root, &["--peer", &peer]);
    let hash = leecher.add(&torrent, "");
    let total = leecher.torrent(&hash).pieces_total;
    // Past a fast-resume write (every 5 s) and well before the end.
    assert!(
        wait_until(LONG, || leecher.torrent(&hash).pieces_have >= total / 4),
        "{:?}",
        leecher.list()
    );
    let verified_before = leecher.torrent(&hash).pieces_have;
    assert!(verified_before < total, "killed mid-download");
    leecher.sigkill();
    drop(leecher);

    let leecher = Daemon::start(&state, &root, &["--peer", &peer]);
    assert!(leecher.wait_complete(&hash, LONG), "{:?}", leecher.list());
    assert_eq!(sha256(&root.join("big.bin")), sha256(&src));
    let t = leecher.torrent(&hash);
    assert!(
        t.pieces_checked_at_start > 0,
        "after a crash the data is re-verified"
    );
    assert!(
        t.pieces_verified as usize <= total - verified_before,
        "{} pieces fetched again after the kill, {verified_before} of {total} were verified before it",
        t.pieces_verified
    );
}

/// A scrape of `/metrics`, parsed strictly.
fn scrape(d: &Daemon) -> std::collections::BTreeMap<String, btnode::api::exposition::MetricFamily> {
    let (status, body) = d.call("GET", "/metrics", None);
    assert_eq!(status, 200, "{body}");
    btnode::api::exposition::parse(&body).unwrap_or_else(|e| panic!("{e}:\n{body}"))
}

fn torrent_value(
    families: &std::collections::BTreeMap<String, btnode::api::exposition::MetricFamily>,
    family: &str,
    hash: &str,
) -> f64 {
    families
        .get(family)
        .unwrap_or_else(|| panic!("no family {family}"))
        .samples
        .iter()
        .find(|s| s.labels.get("info_hash").map(String::as_str) == Some(hash))
        .unwrap_or_else(|| panic!("no {family} sample for {hash}"))
        .value
}

#[test]
fn metrics_parse_and_move_and_the_cli_drives_the_daemon() {
    let tmp = tempdir();
    let (src, torrent) = content(tmp.path(), "m.bin", 6 << 20, "65536");
    let seeder = Daemon::start(
        &tmp.path().join("seeder-state"),
        &tmp.path().join("seed"),
        &[
            "-t",
            torrent.to_str().unwrap(),
            "--upload-rate-limit",
            "1500000",
        ],
    );
    let root = tmp.path().join("leech");
    let state = tmp.path().join("leech-state");
    let peer = seeder.peer_addr();
    let leecher = Daemon::start(&state, &root, &["--peer", &peer]);
    let api = leecher.api.trim_start_matches("http://").to_string();
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(args)
            .args(["--api", &api, "--state"])
            .arg(&state)
            .env_remove("BTNODE_TOKEN")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "btnode {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let hash = cli(&["add", torrent.to_str().unwrap()]).trim().to_string();
    assert_eq!(hash.len(), 40, "add prints the info-hash: {hash:?}");

    // No token, no metrics (without --metrics-public).
    let anonymous = minreq::get(format!("{}/metrics", leecher.api))
        .with_timeout(10)
        .send()
        .unwrap();
    assert_eq!(anonymous.status_code, 401);
    assert!(
        wait_until(LONG, || leecher.torrent(&hash).pieces_have > 0),
        "never started"
    );
    let early = scrape(&leecher);
    let early_bytes = torrent_value(&early, "btnode_torrent_downloaded_bytes", &hash);
    assert!(
        wait_until(LONG, || torrent_value(
            &scrape(&leecher),
            "btnode_torrent_downloaded_bytes",
            &hash
        ) > early_bytes),
        "the download counter never moved"
    );
    assert!(leecher.wait_complete(&hash, LONG));
    assert_eq!(sha256(&root.join("m.bin")), sha256(&src));
    let done = scrape(&leecher);
    assert_eq!(
        torrent_value(&done, "btnode_torrent_downloaded_bytes", &hash),
        (6 << 20) as f64
    );
    assert_eq!(
        torrent_value(&done, "btnode_torrent_pieces_verified", &hash),
        96.0
    );
    assert_eq!(torrent_value(&done, "btnode_torrent_progress", &hash), 1.0);

    let listed: Vec<btnode::api::TorrentSummary> =
        serde_json::from_str(&cli(&["list", "--json"])).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].info_hash, hash);
    assert!(cli(&["list"]).contains("m.bin"));
    cli(&["pause", &hash]);
    assert_eq!(leecher.torrent(&hash).state, "paused");
    cli(&["resume", &hash]);
    assert!(cli(&["status"]).contains(&leecher.peer_port.to_string()));
    cli(&["remove", &hash, "--delete-data"]);
    assert!(!root.join("m.bin").exists());
    assert!(leecher.list().is_empty());
}

/// The seeder's `--upload-rate-limit` holds over both of its torrents
/// together (it is split between them, not given to each), both make
/// progress side by side, and tracker announces are counted in `/metrics`,
/// failures too.
#[test]
fn the_upload_limit_is_shared_between_torrents_and_announces_are_counted() {
    let tmp = tempdir();
    const LEN: usize = 2 << 20;
    let (a_src, a_torrent) = content(tmp.path(), "a.bin", LEN, "65536");
    // b names a tracker that refuses connections: every announce fails.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/announce", dead.local_addr().unwrap());
    drop(dead);
    let b_src = tmp.path().join("seed").join("b.bin");
    make_file(&b_src, LEN, 99);
    let b_torrent = tmp.path().join("b.torrent");
    create_torrent(
        &b_src,
        &b_torrent,
        &["--piece-length", "65536", "--tracker", &dead_url],
    );
    const LIMIT: u64 = 1_000_000;
    let seeder = Daemon::start(
        &tmp.path().join("seeder-state"),
        &tmp.path().join("seed"),
        &[
            "-t",
            a_torrent.to_str().unwrap(),
            "-t",
            b_torrent.to_str().unwrap(),
            "--upload-rate-limit",
            &LIMIT.to_string(),
            "--discovery-mode",
            "tracker",
        ],
    );
    assert!(
        wait_until(LONG, || seeder.list().iter().all(|t| t.state == "seeding")),
        "the seeder never seeded both: {:?}",
        seeder.list()
    );
    let root = tmp.path().join("leech");
    let leecher = Daemon::start(
        &tmp.path().join("leech-state"),
        &root,
        &["--peer", &seeder.peer_addr()],
    );
    let started = std::time::Instant::now();
    let a = leecher.add(&a_torrent, "");
    let b = leecher.add(&b_torrent, "");
    // Whichever finishes first, the other has come a good part of the way:
    // the limit is split between them, not taken by one.
    assert!(
        wait_until(LONG, || leecher.list().iter().any(|t| t.progress >= 1.0)),
        "neither completed: {:?}",
        leecher.list()
    );
    let behind = leecher
        .list()
        .iter()
        .map(|t| t.progress)
        .fold(1.0, f64::min);
    assert!(behind >= 0.4, "one torrent starved: {:?}", leecher.list());
    assert!(leecher.wait_complete(&a, LONG) && leecher.wait_complete(&b, LONG));
    let took = started.elapsed();
    assert_eq!(sha256(&root.join("a.bin")), sha256(&a_src));
    assert_eq!(sha256(&root.join("b.bin")), sha256(&b_src));
    // 4 MiB through a 1 MB/s limit takes over 4 s; with the limit given to
    // each torrent it took about half that. A lower bound only: a slow
    // machine can only make it longer. Each torrent's bucket may burst a
    // quarter second's worth, hence the slack.
    let floor = Duration::from_secs_f64((2 * LEN) as f64 / LIMIT as f64 * 0.75);
    assert!(
        took >= floor,
        "{took:?} for {} bytes at {LIMIT} B/s",
        2 * LEN
    );

    let families = scrape(&seeder);
    let counter = |name: &str| {
        families
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .samples[0]
            .value
    };
    let failed = counter("btnode_tracker_failures");
    assert!(
        failed >= 1.0,
        "the dead tracker's failures were not counted"
    );
    assert!(counter("btnode_tracker_announces") >= failed);
}

/// `btnode add 'magnet:?…'`: the daemon lists the link's name while it
/// fetches the metadata from the peer the link names (`x.pe`), then
/// downloads; the metadata is kept in the state directory, so after a
/// restart the torrent is back as a torrent, not re-hashed. A malformed
/// link is refused with 400; a paused one waits, named by its `dn`.
#[test]
fn a_magnet_link_added_to_the_daemon_fetches_its_metadata_and_survives_a_restart() {
    let tmp = tempdir();
    let (src, torrent) = content(tmp.path(), "mag.bin", 3 << 20, "65536");
    let seeder = Daemon::start(
        &tmp.path().join("seeder-state"),
        &tmp.path().join("seed"),
        &["-t", torrent.to_str().unwrap()],
    );
    assert!(
        wait_until(LONG, || seeder.list().iter().all(|t| t.state == "seeding")),
        "the seeder never seeded"
    );
    let hash = seeder.list()[0].info_hash.clone();
    let root = tmp.path().join("leech");
    let state = tmp.path().join("leech-state");
    // No --peer: the link alone says where the metadata is.
    let mut leecher = Daemon::start(&state, &root, &["--discovery-mode", "tracker"]);
    let (status, body) = leecher.call(
        "POST",
        "/api/v1/torrents",
        Some(b"magnet:?xt=urn:btih:nothex"),
    );
    assert_eq!(status, 400, "a malformed link: {body}");
    let other = "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567&dn=later.iso";
    let (status, body) = leecher.call("POST", "/api/v1/torrents?paused=1", Some(other.as_bytes()));
    assert_eq!(status, 201, "{body}");
    let waiting = leecher.torrent("0123456789abcdef0123456789abcdef01234567");
    assert_eq!(
        (waiting.name.as_str(), waiting.state.as_str()),
        ("later.iso", "paused")
    );

    let link = format!(
        "magnet:?xt=urn:btih:{hash}&dn=mag.bin&x.pe={}",
        seeder.peer_addr()
    );
    let api = leecher.api.trim_start_matches("http://").to_string();
    let out = std::process::Command::new(bin())
        .args(["add", &link, "--api", &api, "--state"])
        .arg(&state)
        .env_remove("BTNODE_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), hash);
    assert!(
        leecher.wait_complete(&hash, LONG),
        "{:?}\n{}",
        leecher.list(),
        leecher.log()
    );
    assert_eq!(sha256(&root.join("mag.bin")), sha256(&src));
    let listed = leecher.torrent(&hash);
    assert_eq!((listed.name.as_str(), listed.size), ("mag.bin", 3 << 20));
    let kept = state.join("torrents").join(&hash).join("metainfo.torrent");
    let kept = btnode::storage::torrent_file::read(&kept).expect("the fetched metadata is kept");
    assert_eq!(kept.info_hash.to_hex(), hash);

    assert_eq!(leecher.sigterm_and_wait(), Some(0), "{}", leecher.log());
    leecher = Daemon::start(&state, &root, &["--discovery-mode", "tracker"]);
    assert!(leecher.wait_complete(&hash, LONG));
    assert_eq!(
        leecher.torrent(&hash).pieces_checked_at_start,
        0,
        "not re-hashed"
    );
    assert_eq!(
        leecher
            .torrent("0123456789abcdef0123456789abcdef01234567")
            .state,
        "paused"
    );
}

/// A daemon under `--swarm-key-file` drops an unsealed overlay frame and
/// counts it in `/metrics` (`btnode_overlay_auth_failures`).
#[test]
fn a_keyed_daemon_counts_unsealed_overlay_frames_in_its_metrics() {
    use std::io::Write;
    let tmp = tempdir();
    let key = std::process::Command::new(bin())
        .arg("keygen")
        .output()
        .unwrap();
    assert!(key.status.success());
    let key_file = tmp.path().join("swarm.key");
    std::fs::write(&key_file, &key.stdout).unwrap();
    let d = Daemon::start(
        &tmp.path().join("state"),
        &tmp.path().join("root"),
        &["--swarm-key-file", key_file.to_str().unwrap()],
    );
    let counted = |d: &Daemon| {
        scrape(d)
            .get("btnode_overlay_auth_failures")
            .map_or(-1.0, |f| f.samples[0].value)
    };
    assert_eq!(counted(&d), 0.0);
    let overlay = d.session().overlay_addr.expect("an overlay");
    // A well-formed but unsealed overlay frame: a length, then JSON.
    let body = br#"{"type":"ping"}"#;
    let mut s = std::net::TcpStream::connect(overlay).unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || counted(&d) >= 1.0),
        "the unsealed frame was not counted"
    );
}
