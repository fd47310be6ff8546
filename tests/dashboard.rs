//! The dashboard in a real browser: Debian's chromium, headless, loads it
//! from a daemon with a torrent in progress; the test reads the DOM the
//! page built, as a person would see it (the torrent's name, a progress
//! value that moves), and keeps a screenshot in target/artifacts/.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::daemon::Daemon;
use support::*;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// The page's DOM after the browser ran it for `budget_ms` of virtual time.
fn dump_dom(browser: &str, url: &str, budget_ms: u32, profile: &Path) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--virtual-time-budget={budget_ms}"))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The text of the first `.progress-value` cell in the row of `hash`.
fn progress_of(dom: &str, hash: &str) -> Option<f64> {
    let row = &dom[dom.find(&format!("data-hash=\"{hash}\""))?..];
    let cell = &row[row.find("progress-value")?..];
    let text = &cell[cell.find('>')? + 1..];
    let text = &text[..text.find('<')?];
    text.trim().trim_end_matches('%').trim().parse().ok()
}

#[test]
fn the_dashboard_shows_a_torrent_and_its_progress_moving_in_a_real_browser() {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("BTNODE_REQUIRE_PEERS").is_none(),
            "CI (.ci/run) must install chromium for the dashboard test"
        );
        eprintln!("skipping: no chromium");
        return;
    };
    let tmp = tempdir();
    let file = tmp.path().join("seed").join("dashboard-demo.bin");
    make_file(&file, 12 << 20, 99);
    let torrent = tmp.path().join("demo.torrent");
    create_torrent(&file, &torrent, &["--piece-length", "65536"]);
    let seeder = Daemon::start(
        &tmp.path().join("seeder-state"),
        &tmp.path().join("seed"),
        &[
            "-t",
            torrent.to_str().unwrap(),
            "--upload-rate-limit",
            "600000",
        ],
    );
    let peer = seeder.peer_addr();
    let leecher = Daemon::start(
        &tmp.path().join("leech-state"),
        &tmp.path().join("leech"),
        &["--peer", &peer],
    );
    let hash = leecher.add(&torrent, "");
    assert!(
        wait_until(Duration::from_secs(60), || leecher
            .torrent(&hash)
            .pieces_have
            > 0),
        "the download never started"
    );
    let url = format!("{}/#token={}", leecher.api, leecher.token);
    let profile = tmp.path().join("chromium-profile");
    let first_dom = dump_dom(browser, &url, 4000, &profile);
    assert!(
        first_dom.contains("dashboard-demo.bin"),
        "the torrent's name is on the page:\n{first_dom}"
    );
    let first = progress_of(&first_dom, &hash).expect("a progress value in the torrent's row");
    assert!(
        wait_until(Duration::from_secs(60), || {
            leecher.torrent(&hash).progress * 100.0 > first + 5.0
        }),
        "the download stalled"
    );
    let second_dom = dump_dom(browser, &url, 4000, &profile);
    let second = progress_of(&second_dom, &hash).expect("a progress value");
    assert!(
        second > first,
        "the progress shown moves: {first} % then {second} %"
    );

    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("../artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("dashboard.png");
    let status = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=4000", "--window-size=1280,800"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .status()
        .unwrap();
    assert!(status.success() && shot.exists(), "a screenshot was kept");
}
