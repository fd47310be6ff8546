//! Every torrent in `tests/fixtures/` (libtorrent's corpus of valid and
//! deliberately broken torrents, and real-world webtorrent torrents) loads
//! or is refused as the table says: no panic, no hang, every unsafe path
//! refused, the same info-hash as libtorrent, and the same verdict as
//! libtorrent 2.0 except for the documented divergences:
//! - paths libtorrent *sanitises* (`..`, absolute, empty or slash
//!   components, over-long names) we *refuse* (`Unsafe`); duplicate paths
//!   we rename as libtorrent does (`bar.txt`, `bar.1.txt`, ...), checked
//!   against libtorrent's own listing;
//! - v2-only torrents are refused (`V2Only`): btnode speaks v1;
//! - hybrids whose v2 part is broken (`v2_invalid_file`,
//!   `v2_mismatching_metadata`) load as v1, since we never read the v2 part.
//!
//! The libtorrent column was produced by python3-libtorrent on this machine;
//! when it is installed the test asks it again and compares.

use std::path::PathBuf;
use std::time::Duration;

use btnode::core::metainfo::{Metainfo, MetainfoError};

#[derive(Debug, PartialEq)]
enum Expect {
    Load(&'static str),
    Unsafe,
    V2Only,
    Invalid,
}
use Expect::*;

/// (file, our verdict, libtorrent loads it)
const TABLE: &[(&str, Expect, bool)] = &[
    (
        "libtorrent-test-torrents/absolute_filename.torrent",
        Unsafe,
        true,
    ),
    (
        "libtorrent-test-torrents/backslash_path.torrent",
        Load("fa7b2ba01975b67d261f1759b5128be2c1892309"),
        true,
    ),
    ("libtorrent-test-torrents/bad_name.torrent", Unsafe, false),
    (
        "libtorrent-test-torrents/base.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    (
        "libtorrent-test-torrents/collection.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    (
        "libtorrent-test-torrents/collection2.torrent",
        Load("08d3f0dde8e80dc6801522006f77d8bb3ba112da"),
        true,
    ),
    (
        "libtorrent-test-torrents/creation_date.torrent",
        Load("8811d6939fac5147658001e5c3322b778124f805"),
        true,
    ),
    (
        "libtorrent-test-torrents/dht_nodes.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    (
        "libtorrent-test-torrents/duplicate_files.torrent",
        Load("4c519a21b9542eb143915417e8ec0863f6fdc8a1"),
        true,
    ),
    (
        "libtorrent-test-torrents/duplicate_files2.torrent",
        Load("c2acbff9cf930b4034adfd4f72ff5f88a37d7375"),
        true,
    ),
    (
        "libtorrent-test-torrents/duplicate_web_seeds.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    (
        "libtorrent-test-torrents/empty-files-1.torrent",
        Load("59ee9eb4b6ab57918cc3837e1b217409f4a10845"),
        true,
    ),
    (
        "libtorrent-test-torrents/empty-files-2.torrent",
        Load("e8dc2db7f8be56365c2cf589469792747fec4081"),
        true,
    ),
    (
        "libtorrent-test-torrents/empty-files-3.torrent",
        Load("07da3b11386ef96271c6f5fcf123c914b766e230"),
        true,
    ),
    (
        "libtorrent-test-torrents/empty-files-4.torrent",
        Load("6e6d492271ef531fd1975b7b7542ef8d80632ab0"),
        true,
    ),
    (
        "libtorrent-test-torrents/empty-files-5.torrent",
        Load("01e9a06012bcc202e535c77c93e925df5bd663f8"),
        true,
    ),
    (
        "libtorrent-test-torrents/empty_httpseed.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    ("libtorrent-test-torrents/empty_path.torrent", Unsafe, true),
    (
        "libtorrent-test-torrents/empty_path_multi.torrent",
        Unsafe,
        true,
    ),
    (
        "libtorrent-test-torrents/hidden_parent_path.torrent",
        Unsafe,
        true,
    ),
    (
        "libtorrent-test-torrents/httpseed.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    (
        "libtorrent-test-torrents/invalid_directory_name.torrent",
        Unsafe,
        true,
    ),
    (
        "libtorrent-test-torrents/invalid_file_size.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/invalid_filename.torrent",
        Unsafe,
        true,
    ),
    (
        "libtorrent-test-torrents/invalid_filename2.torrent",
        Unsafe,
        true,
    ),
    (
        "libtorrent-test-torrents/invalid_info.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/invalid_name.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/invalid_name2.torrent",
        Unsafe,
        true,
    ),
    (
        "libtorrent-test-torrents/invalid_name3.torrent",
        Load("8c36ff0fc3132b21ca60d8e7dff875972f9abdcc"),
        true,
    ),
    (
        "libtorrent-test-torrents/invalid_path_list.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/invalid_piece_len.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/invalid_pieces.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/invalid_symlink.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/large.torrent",
        Load("c415e173dcc3069a96e6f852a684fffae97e5372"),
        true,
    ),
    (
        "libtorrent-test-torrents/large_piece_size.torrent",
        Load("c6ded8d0c98469b7b0694e6b4e4c8a066b3a4995"),
        true,
    ),
    ("libtorrent-test-torrents/long_name.torrent", Unsafe, true),
    (
        "libtorrent-test-torrents/many_pieces.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/missing_path_list.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/missing_piece_len.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/negative_file_size.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/negative_piece_len.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/negative_size.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/no_creation_date.torrent",
        Load("8811d6939fac5147658001e5c3322b778124f805"),
        true,
    ),
    ("libtorrent-test-torrents/no_files.torrent", Invalid, false),
    ("libtorrent-test-torrents/no_name.torrent", Invalid, false),
    (
        "libtorrent-test-torrents/overlapping_symlinks.torrent",
        Load("bf91c29a1b2bb843479583b87c08404c870e3703"),
        true,
    ),
    (
        "libtorrent-test-torrents/pad_file.torrent",
        Load("fa2d263afecd65b98640ae50d5b11d9d250d9e2a"),
        true,
    ),
    (
        "libtorrent-test-torrents/pad_file_no_path.torrent",
        Load("7202e1cd55de0a216a50f5e2d88a69752ef256a9"),
        true,
    ),
    ("libtorrent-test-torrents/parent_path.torrent", Unsafe, true),
    (
        "libtorrent-test-torrents/sample.torrent",
        Load("58d8d15a4eb3bd9afabc9cee2564f78192777edb"),
        true,
    ),
    (
        "libtorrent-test-torrents/similar.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    (
        "libtorrent-test-torrents/similar2.torrent",
        Load("be33d6d619df20829fbdba4b68aeb176b09e364b"),
        true,
    ),
    (
        "libtorrent-test-torrents/single_multi_file.torrent",
        Load("a385e13b37c5c81d0dc06e7425d352913564771c"),
        true,
    ),
    ("libtorrent-test-torrents/slash_path.torrent", Unsafe, true),
    ("libtorrent-test-torrents/slash_path2.torrent", Unsafe, true),
    ("libtorrent-test-torrents/slash_path3.torrent", Unsafe, true),
    ("libtorrent-test-torrents/string.torrent", Invalid, false),
    (
        "libtorrent-test-torrents/symlink1.torrent",
        Load("efba96cd9ba647d0c887434a9162f20f794a141c"),
        true,
    ),
    (
        "libtorrent-test-torrents/symlink2.torrent",
        Load("b4fa4993e18e998ff6f6a4c0d9e918b153d23946"),
        true,
    ),
    (
        "libtorrent-test-torrents/symlink_filtered_path.torrent",
        Unsafe,
        true,
    ),
    (
        "libtorrent-test-torrents/symlink_zero_size.torrent",
        Load("6b5306a50e97214e7f61923f8e8e26c2539691e8"),
        true,
    ),
    (
        "libtorrent-test-torrents/unaligned_pieces.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/unordered.torrent",
        Load("1e44709a0ec082a6a5ea4837e450ae08d3f4394e"),
        true,
    ),
    (
        "libtorrent-test-torrents/url_list.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    (
        "libtorrent-test-torrents/url_list2.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    (
        "libtorrent-test-torrents/url_list3.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    (
        "libtorrent-test-torrents/url_seed.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    (
        "libtorrent-test-torrents/url_seed_multi.torrent",
        Load("d673bbe5fcc1b885e045120b60a679bd87f78697"),
        true,
    ),
    (
        "libtorrent-test-torrents/url_seed_multi_single_file.torrent",
        Load("285e3b0adb14f5b8315fa1906e40e883ba1cf0ae"),
        true,
    ),
    (
        "libtorrent-test-torrents/url_seed_multi_space.torrent",
        Load("d673bbe5fcc1b885e045120b60a679bd87f78697"),
        true,
    ),
    (
        "libtorrent-test-torrents/url_seed_multi_space_nolist.torrent",
        Load("d673bbe5fcc1b885e045120b60a679bd87f78697"),
        true,
    ),
    (
        "libtorrent-test-torrents/v2.torrent",
        Load("c14199bbec64d0e9e439aa3b6b7639e666b86eca"),
        true,
    ),
    (
        "libtorrent-test-torrents/v2_bad_file_alignment.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_deep_recursion.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_empty_file.torrent",
        Load("fdc8263736f65efc8da8948f2e9f64ad92ad614a"),
        true,
    ),
    (
        "libtorrent-test-torrents/v2_empty_filename.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_hybrid-missing-tailpad.torrent",
        Load("631a31dd0a46257d5078c0dee4e66e26f73e42ac"),
        true,
    ),
    (
        "libtorrent-test-torrents/v2_hybrid.torrent",
        Load("514c76c1f27ec61ca8b37851bcd1cbf0b26cf120"),
        true,
    ),
    (
        "libtorrent-test-torrents/v2_incomplete_piece_layer.torrent",
        V2Only,
        true,
    ),
    (
        "libtorrent-test-torrents/v2_invalid_file.torrent",
        Load("30119e7b9fe1b4e0eb0961ec251b6cf021c9e076"),
        false,
    ),
    (
        "libtorrent-test-torrents/v2_invalid_filename.torrent",
        V2Only,
        true,
    ),
    (
        "libtorrent-test-torrents/v2_invalid_filename2.torrent",
        V2Only,
        true,
    ),
    (
        "libtorrent-test-torrents/v2_invalid_pad_file.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_invalid_piece_layer.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_invalid_piece_layer_root.torrent",
        V2Only,
        true,
    ),
    (
        "libtorrent-test-torrents/v2_invalid_piece_layer_size.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_invalid_root_hash.torrent",
        V2Only,
        true,
    ),
    (
        "libtorrent-test-torrents/v2_large_file.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_large_offset.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_mismatching_metadata.torrent",
        Load("6b03cf1a9e209becd583092e69f78b1ac606bba5"),
        false,
    ),
    (
        "libtorrent-test-torrents/v2_missing_file_root_invalid_symlink.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_multipiece_file.torrent",
        Load("6c68c1bcc24c65b6fef4724d8234b67e0e9ac6a4"),
        true,
    ),
    (
        "libtorrent-test-torrents/v2_multiple_files.torrent",
        V2Only,
        true,
    ),
    (
        "libtorrent-test-torrents/v2_no_piece_layers.torrent",
        V2Only,
        true,
    ),
    (
        "libtorrent-test-torrents/v2_no_power2_piece.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_non_multiple_piece_layer.torrent",
        V2Only,
        false,
    ),
    ("libtorrent-test-torrents/v2_only.torrent", V2Only, true),
    (
        "libtorrent-test-torrents/v2_overlong_integer.torrent",
        Invalid,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_piece_layer_invalid_file_hash.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_piece_size.torrent",
        Invalid,
        false,
    ),
    ("libtorrent-test-torrents/v2_symlinks.torrent", V2Only, true),
    (
        "libtorrent-test-torrents/v2_unknown_piece_layer_entry.torrent",
        V2Only,
        true,
    ),
    (
        "libtorrent-test-torrents/v2_unordered_files.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_zero_root.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/v2_zero_root_small.torrent",
        V2Only,
        false,
    ),
    (
        "libtorrent-test-torrents/whitespace_url.torrent",
        Load("c0fda1edafdbdbb96443424e0b3899af7159d10e"),
        true,
    ),
    ("libtorrent-test-torrents/zero.torrent", Invalid, false),
    ("libtorrent-test-torrents/zero2.torrent", Invalid, false),
    (
        "webtorrent/alice.torrent",
        Load("722fe65b2aa26d14f35b4ad627d20236e481d924"),
        true,
    ),
    (
        "webtorrent/bunny.torrent",
        Load("af8f10f30bf9aefecf3686922bfa0d5bd290a395"),
        true,
    ),
    ("webtorrent/corrupt.torrent", Invalid, false),
    (
        "webtorrent/folder.torrent",
        Load("b88da2caac6648e6c7d7687e3f89085f7e230e6b"),
        true,
    ),
    (
        "webtorrent/leaves-metadata.torrent",
        Load("d2474e86c95b19b8bcfdb92bc12c9d44667cfa36"),
        true,
    ),
    (
        "webtorrent/leaves.torrent",
        Load("d2474e86c95b19b8bcfdb92bc12c9d44667cfa36"),
        true,
    ),
    (
        "webtorrent/lots-of-numbers.torrent",
        Load("114ead6243792ba56297edbb9a78dfba84d4fc00"),
        true,
    ),
    (
        "webtorrent/numbers.torrent",
        Load("89d97c2261a21b040cf11caa661a3ba7233bb7e6"),
        true,
    ),
    (
        "webtorrent/sintel.torrent",
        Load("c334138ef5bfc2d568ea7324e0e2a3a7ec229bdd"),
        true,
    ),
];

/// The vendored fixtures (`tests/fixtures/README.md` says where they come
/// from); `BTNODE_FIXTURES` points elsewhere for a larger corpus.
fn fixtures() -> PathBuf {
    let dir = std::env::var_os("BTNODE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"));
    assert!(
        dir.join("libtorrent-test-torrents").is_dir(),
        "fixtures not found at {} (set BTNODE_FIXTURES)",
        dir.display()
    );
    dir
}

fn verdict(result: &Result<Metainfo, MetainfoError>) -> Expect {
    match result {
        Ok(_) => Load(""),
        Err(MetainfoError::UnsafePath { .. }) => Unsafe,
        Err(MetainfoError::V2Only) => V2Only,
        Err(_) => Invalid,
    }
}

/// Parses in a thread so a hang fails the test instead of stalling it.
fn load_bounded(path: PathBuf) -> Result<Metainfo, MetainfoError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let shown = path.display().to_string();
    std::thread::spawn(move || {
        let _ = tx.send(btnode::storage::torrent_file::read(&path));
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_else(|_| panic!("{shown}: parsing took over 10 s"))
}

#[test]
fn every_fixture_matches_the_table() {
    let root = fixtures();
    let mut on_disk = Vec::new();
    for sub in ["libtorrent-test-torrents", "webtorrent"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if name.ends_with(".torrent") {
                on_disk.push(format!("{sub}/{name}"));
            }
        }
    }
    on_disk.sort();
    let listed: Vec<&str> = TABLE.iter().map(|r| r.0).collect();
    for f in &on_disk {
        assert!(listed.contains(&f.as_str()), "{f} is not in the table");
    }
    for (file, expect, _) in TABLE {
        let result = load_bounded(root.join(file));
        match (expect, &result) {
            (Load(hash), Ok(m)) => {
                assert_eq!(m.info_hash.to_hex(), *hash, "{file}");
                for f in &m.files {
                    let p = f.relative_path();
                    assert!(p.is_relative(), "{file}: {p:?}");
                    assert!(
                        p.components()
                            .all(|c| matches!(c, std::path::Component::Normal(_))),
                        "{file}: {p:?}"
                    );
                }
            }
            (expect, result) => assert_eq!(
                &verdict(result),
                expect,
                "{file}: got {:?}",
                result.as_ref().map(|m| m.info_hash)
            ),
        }
    }
}

#[test]
fn libtorrent_agrees_with_the_table() {
    let script = r#"
import sys, os, libtorrent as lt
for p in sys.argv[1:]:
    try:
        ti = lt.torrent_info(p); ih = ti.info_hashes()
        print("ok", str(ih.v1) if ih.has_v1() else "-")
    except Exception:
        print("err -")
"#;
    let root = fixtures();
    let paths: Vec<PathBuf> = TABLE.iter().map(|r| root.join(r.0)).collect();
    let Some(out) = run_libtorrent(script, &paths) else {
        eprintln!("skipping: python3-libtorrent is not installed");
        return;
    };
    for ((file, expect, lt_loads), line) in TABLE.iter().zip(out.lines()) {
        let (status, hash) = line.split_once(' ').unwrap();
        assert_eq!(status == "ok", *lt_loads, "{file}: libtorrent says {line}");
        if let (Load(ours), true) = (expect, *lt_loads) {
            assert_eq!(*ours, hash, "{file}: info-hash differs from libtorrent's");
        }
    }
}

#[test]
fn duplicate_paths_are_renamed_like_libtorrent() {
    let script = r#"
import sys, libtorrent as lt
fs = lt.torrent_info(sys.argv[1]).files()
print("|".join(fs.file_path(i) for i in range(fs.num_files()) if not fs.file_flags(i) & lt.file_storage.flag_pad_file))
"#;
    for name in ["duplicate_files.torrent", "duplicate_files2.torrent"] {
        let path = fixtures().join("libtorrent-test-torrents").join(name);
        let ours: Vec<String> = btnode::storage::torrent_file::read(&path)
            .unwrap()
            .files
            .iter()
            .map(|f| f.path.join("/"))
            .collect();
        let unique: std::collections::HashSet<&String> = ours.iter().collect();
        assert_eq!(unique.len(), ours.len(), "{name}: paths still collide");
        match run_libtorrent(script, std::slice::from_ref(&path)) {
            Some(theirs) => assert_eq!(ours.join("|"), theirs.trim_end(), "{name}"),
            None => eprintln!("libtorrent absent: checked only that the paths are distinct"),
        }
    }
}

/// Runs `script` under Debian's python3 with `args`; `None` when
/// python3-libtorrent is not installed (a failure under
/// `BTNODE_REQUIRE_PEERS=1`). A script that fails for any other reason
/// fails the test with python's own error, so a wrong binding call is not
/// mistaken for a missing package.
fn run_libtorrent(script: &str, args: &[PathBuf]) -> Option<String> {
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output();
    let stderr = match &out {
        Ok(o) if o.status.success() => return Some(String::from_utf8(o.stdout.clone()).unwrap()),
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => e.to_string(),
    };
    let absent = out.is_err() || stderr.contains("No module named 'libtorrent'");
    assert!(absent, "the libtorrent script failed:\n{stderr}");
    assert!(
        std::env::var("BTNODE_REQUIRE_PEERS").as_deref() != Ok("1"),
        "python3-libtorrent is required (BTNODE_REQUIRE_PEERS=1): {stderr}"
    );
    None
}
