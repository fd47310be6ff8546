//! Torrent metainfo (BEP 3): parsing and validation. Reading a `.torrent`
//! from disk and creating one live in `storage::torrent_file` (core does no I/O).
//!
//! A [`Metainfo`] exists only after every field was checked: lengths agree
//! with the piece count, every path is relative and made of safe components,
//! sizes are within sane bounds. Storage trusts it, so nothing built from a
//! `Metainfo` can address a byte outside the download directory.
//!
//! Parsing costs in proportion to the input: the document is read in place
//! ([`bencode::Doc`], 8 bytes per value), the input is capped at
//! [`MAX_TORRENT_FILE`] as libtorrent caps it, paths are bounded in depth
//! and length, and the checks over all paths (duplicates, a file where
//! another needs a folder) keep one string per file, never every prefix.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use sha1::{Digest, Sha1};

use super::bencode::{self, Node};
use super::geometry::PieceGeometry;
use super::ids::InfoHash;

/// Largest torrent we parse, from a file or from bytes (libtorrent's limit
/// too). 10 MiB holds 500,000 piece hashes: 8 TiB at 16 MiB pieces.
pub const MAX_TORRENT_FILE: u64 = 10 * 1024 * 1024;
/// libtorrent accepts pieces of 512 MiB and more; so do we, up to 1 GiB.
pub const MAX_PIECE_LENGTH: u64 = 1 << 30;
pub const MAX_TOTAL_LENGTH: u64 = 1 << 50;
pub const MAX_FILES: usize = 1_000_000;
/// Longest file name component most Linux file systems accept.
pub const MAX_COMPONENT_BYTES: usize = 255;
/// Most components in one file's path below the torrent's name.
pub const MAX_PATH_DEPTH: usize = 128;
/// Longest path, name and `/` separators included (Linux's PATH_MAX).
pub const MAX_PATH_BYTES: usize = 4096;
/// Longest tracker URL kept; longer ones are dropped (real ones are < 200).
pub const MAX_TRACKER_URL: usize = 2048;
/// Most tracker tiers kept from `announce-list`; the rest are dropped.
pub const MAX_TRACKER_TIERS: usize = 32;
/// Most tracker URLs kept over all tiers (duplicates removed first).
pub const MAX_TRACKERS: usize = 64;
pub const BLOCK_SIZE: u32 = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum MetainfoError {
    #[error("not valid bencode: {0}")]
    Bencode(#[from] bencode::DecodeError),
    #[error("missing or invalid field `{0}`")]
    Field(&'static str),
    #[error("unsafe file path {path:?}: {why}")]
    UnsafePath { path: String, why: &'static str },
    #[error("invalid torrent: {0}")]
    Invalid(String),
    #[error("torrent is {0} bytes, over the {MAX_TORRENT_FILE} byte limit")]
    TooLarge(u64),
    #[error("BitTorrent v2-only torrents are not supported (no v1 `pieces`)")]
    V2Only,
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One file of the torrent, as laid out in the concatenated byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the download directory (the torrent name comes first).
    pub path: Vec<String>,
    pub length: u64,
    /// Offset of the file's first byte in the torrent's byte stream.
    pub offset: u64,
}

impl FileEntry {
    pub fn relative_path(&self) -> PathBuf {
        self.path.iter().collect()
    }
}

#[derive(Clone, Debug)]
pub struct Metainfo {
    pub info_hash: InfoHash,
    pub name: String,
    pub piece_length: u64,
    pub piece_hashes: Vec<[u8; 20]>,
    pub files: Vec<FileEntry>,
    pub total_length: u64,
    /// Tracker tiers: `announce-list` if present, else `announce`. At most
    /// [`MAX_TRACKER_TIERS`] tiers and [`MAX_TRACKERS`] URLs in all, each
    /// URL at most [`MAX_TRACKER_URL`] bytes, no URL twice, no tier empty.
    pub trackers: Vec<Vec<String>>,
    pub private: bool,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    /// True for a torrent with a `files` list, even of one file.
    pub multi_file: bool,
    /// The bencoded `info` dictionary, byte for byte as hashed: what is
    /// served to peers that came with a magnet link (BEP 9). Cheap to clone.
    pub info_bytes: Arc<[u8]>,
}

impl Metainfo {
    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        if bytes.len() as u64 > MAX_TORRENT_FILE {
            return Err(MetainfoError::TooLarge(bytes.len() as u64));
        }
        // Trailing bytes after the top-level dictionary are ignored, as
        // libtorrent and most clients do.
        let (doc, _) = bencode::Doc::parse_prefix(bytes)?;
        let root = doc.root();
        if root.entries().is_none() {
            return Err(MetainfoError::Invalid(
                "top level is not a dictionary".into(),
            ));
        }
        let info = root.get("info").ok_or(MetainfoError::Field("info"))?;
        let text = |k: &str| root.get(k).and_then(|n| n.as_str()).map(str::to_string);
        let mut meta = Metainfo::from_info(info, &bytes[info.span()], parse_trackers(root))?;
        meta.comment = text("comment");
        meta.created_by = text("created by");
        meta.creation_date = root.get("creation date").and_then(|n| n.as_int());
        Ok(meta)
    }

    /// A torrent from its info dictionary alone (fetched from peers for a
    /// magnet link) and the link's trackers, one tier each, kept within
    /// the bounds of [`Metainfo::trackers`]. Validated exactly as a
    /// `.torrent` is; that `info` hashes to the expected info-hash is the
    /// caller's check. Nothing may follow the dictionary.
    pub fn from_info_dict(info: &[u8], trackers: &[String]) -> Result<Metainfo, MetainfoError> {
        if info.len() as u64 > MAX_TORRENT_FILE {
            return Err(MetainfoError::TooLarge(info.len() as u64));
        }
        let doc = bencode::Doc::parse(info)?;
        let mut tiers: Vec<Vec<String>> = Vec::new();
        for url in trackers.iter().map(|u| u.trim()) {
            let known = tiers.iter().flatten().any(|u| u == url);
            if url.is_empty() || url.len() > MAX_TRACKER_URL || known {
                continue;
            }
            if tiers.len() == MAX_TRACKER_TIERS.min(MAX_TRACKERS) {
                break;
            }
            tiers.push(vec![url.to_string()]);
        }
        Metainfo::from_info(doc.root(), info, tiers)
    }

    /// Every check on the `info` dictionary `info`, whose bytes are `info_bytes`.
    fn from_info(
        info: Node<'_>,
        info_bytes: &[u8],
        trackers: Vec<Vec<String>>,
    ) -> Result<Metainfo, MetainfoError> {
        if info.entries().is_none() {
            return Err(MetainfoError::Field("info"));
        }
        let info_hash = InfoHash(Sha1::digest(info_bytes).into());

        let piece_length = info
            .get("piece length")
            .and_then(|n| n.as_int())
            .ok_or(MetainfoError::Field("piece length"))?;
        if piece_length <= 0 || piece_length as u64 > MAX_PIECE_LENGTH {
            return Err(MetainfoError::Field("piece length"));
        }
        let piece_length = piece_length as u64;

        let pieces = match info.get("pieces") {
            Some(p) => p.as_bytes().ok_or(MetainfoError::Field("pieces"))?,
            None if info.get("meta version").and_then(|n| n.as_int()) == Some(2) => {
                return Err(MetainfoError::V2Only)
            }
            None => return Err(MetainfoError::Field("pieces")),
        };
        if pieces.len() % 20 != 0 {
            return Err(MetainfoError::Invalid(format!(
                "`pieces` is {} bytes, not a multiple of 20",
                pieces.len()
            )));
        }

        let name = info
            .get("name.utf-8")
            .and_then(|n| n.as_str())
            .or_else(|| info.get("name").and_then(|n| n.as_str()))
            .ok_or(MetainfoError::Field("name"))?
            .to_string();
        check_component(&name, &name)?;

        let (files, multi_file) = match (info.get("files"), info.get("length")) {
            (Some(list), _) => (parse_files(&name, list)?, true),
            (None, Some(len)) => {
                let length = len
                    .as_int()
                    .filter(|&l| l >= 0)
                    .ok_or(MetainfoError::Field("length"))? as u64;
                if length > MAX_TOTAL_LENGTH {
                    return Err(MetainfoError::Invalid("total length is too large".into()));
                }
                let file = FileEntry {
                    path: vec![name.clone()],
                    length,
                    offset: 0,
                };
                (vec![file], false)
            }
            (None, None) => return Err(MetainfoError::Field("length")),
        };
        let total_length = files.iter().map(|f| f.length).sum::<u64>();
        if total_length == 0 {
            return Err(MetainfoError::Invalid("the torrent holds no data".into()));
        }
        let expected_pieces = total_length.div_ceil(piece_length);
        if expected_pieces != (pieces.len() / 20) as u64 {
            return Err(MetainfoError::Invalid(format!(
                "{} bytes at {} per piece need {} piece hashes, `pieces` has {}",
                total_length,
                piece_length,
                expected_pieces,
                pieces.len() / 20
            )));
        }
        let piece_hashes: Vec<[u8; 20]> = pieces
            .chunks_exact(20)
            .map(|c| c.try_into().expect("chunks of 20"))
            .collect();

        Ok(Metainfo {
            info_hash,
            name,
            piece_length,
            piece_hashes,
            files,
            total_length,
            trackers,
            private: info.get("private").and_then(|n| n.as_int()) == Some(1),
            comment: None,
            created_by: None,
            creation_date: None,
            multi_file,
            info_bytes: Arc::from(info_bytes),
        })
    }

    pub fn num_pieces(&self) -> usize {
        self.piece_hashes.len()
    }

    /// How the torrent is cut into pieces and blocks.
    pub fn geometry(&self) -> PieceGeometry {
        PieceGeometry::new(self.total_length, self.piece_length)
            .expect("a parsed torrent's lengths were validated")
    }

    /// Length of piece `index` (the last one may be short).
    pub fn piece_len(&self, index: usize) -> u32 {
        self.geometry().piece_len(index)
    }

    pub fn blocks_in_piece(&self, index: usize) -> u32 {
        self.geometry().blocks_in(index)
    }

    /// Every tracker URL of every tier, flattened, in order, each once
    /// (at most [`MAX_TRACKERS`]).
    pub fn tracker_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = Vec::new();
        for tier in &self.trackers {
            for url in tier {
                if !urls.contains(url) {
                    urls.push(url.clone());
                }
            }
        }
        urls
    }
}

fn parse_files(name: &str, list: Node<'_>) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = list.list().ok_or(MetainfoError::Field("files"))?;
    let count = list.clone().count();
    if count == 0 {
        return Err(MetainfoError::Invalid("`files` is empty".into()));
    }
    if count > MAX_FILES {
        return Err(MetainfoError::Invalid(format!(
            "{count} files, over the {MAX_FILES} limit"
        )));
    }
    let mut files = Vec::with_capacity(count);
    let mut offset = 0u64;
    // Each path once, joined by `/` (which no component contains, so the
    // joined form is unambiguous): linear in the paths' total size.
    let mut seen: HashSet<String> = HashSet::with_capacity(count);
    let mut renames: HashMap<String, u32> = HashMap::new();
    for entry in list {
        // BEP 47 attributes: `p` pad file, `l` symlink (kept as an empty file).
        let attr = entry.get("attr").and_then(|n| n.as_bytes()).unwrap_or(b"");
        let is_pad = attr.contains(&b'p');
        let is_symlink = attr.contains(&b'l');
        let length = match entry.get("length") {
            None if is_symlink => 0,
            v => v
                .and_then(|n| n.as_int())
                .filter(|&l| l >= 0)
                .ok_or(MetainfoError::Field("files.length"))? as u64,
        };
        let path_value = entry
            .get("path.utf-8")
            .or_else(|| entry.get("path"))
            .and_then(|n| n.list());
        let mut path = vec![name.to_string()];
        match path_value {
            Some(components) => {
                // Bound depth and length before copying anything.
                let mut depth = 0;
                let mut bytes = name.len();
                for component in components.clone() {
                    depth += 1;
                    bytes += 1 + component.as_bytes().map_or(0, <[u8]>::len);
                    if depth > MAX_PATH_DEPTH || bytes > MAX_PATH_BYTES {
                        return Err(MetainfoError::UnsafePath {
                            path: format!("{name}/..."),
                            why: if depth > MAX_PATH_DEPTH {
                                "path deeper than 128 components"
                            } else {
                                "path longer than 4096 bytes"
                            },
                        });
                    }
                }
                path.reserve_exact(depth);
                for component in components {
                    let c = component
                        .as_str()
                        .ok_or(MetainfoError::Field("files.path"))?;
                    path.push(c.to_string());
                }
            }
            // A pad file may omit its path; it is zeros, stored like libtorrent's.
            None if is_pad => path.extend([".pad".to_string(), length.to_string()]),
            None => return Err(MetainfoError::Field("files.path")),
        }
        let mut shown = path.join("/");
        if path.len() < 2 {
            return Err(MetainfoError::UnsafePath {
                path: shown,
                why: "empty path",
            });
        }
        for c in &path {
            check_component(c, &shown)?;
        }
        // Pad files often share a name (`.pad/16384`); give each its own
        // file so no two torrent ranges ever map to the same bytes on disk.
        if is_pad && seen.contains(&shown) {
            let last = path.last_mut().expect("name plus components");
            *last = format!("{last}.{}", files.len());
            shown = path.join("/");
        }
        if seen.contains(&shown) {
            // Two files with one path: renamed as libtorrent does
            // (`bar.txt`, `bar.1.txt`, `bar.2.txt`, ...), so both clients
            // lay the data out alike. The counter per path keeps many
            // duplicates linear.
            let next = renames.entry(shown.clone()).or_insert(1u32);
            let last = path.last().expect("name plus components").clone();
            let (stem, ext) = match last.rfind('.') {
                Some(dot) if dot > 0 => last.split_at(dot),
                _ => (last.as_str(), ""),
            };
            loop {
                let candidate = format!("{stem}.{next}{ext}");
                *next += 1;
                *path.last_mut().expect("name plus components") = candidate;
                shown = path.join("/");
                if !seen.contains(&shown) {
                    break;
                }
            }
            check_component(path.last().expect("name plus components"), &shown)?;
        }
        seen.insert(shown);
        offset = offset
            .checked_add(length)
            .filter(|&o| o <= MAX_TOTAL_LENGTH)
            .ok_or_else(|| MetainfoError::Invalid("total length is too large".into()))?;
        files.push(FileEntry {
            path,
            length,
            offset: offset - length,
        });
    }
    drop(seen);
    drop(renames);
    // A file whose path is a folder of another file would make storage fail
    // half-way; refuse it up front. Paths are unique now, and in sorted
    // order a path is directly followed by its extensions if it has any, so
    // comparing neighbours finds every such pair.
    let mut order: Vec<u32> = (0..files.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| files[a as usize].path.cmp(&files[b as usize].path));
    for pair in order.windows(2) {
        let (a, b) = (&files[pair[0] as usize].path, &files[pair[1] as usize].path);
        if a.len() < b.len() && b[..a.len()] == a[..] {
            return Err(MetainfoError::UnsafePath {
                path: a.join("/"),
                why: "a file and a folder share this path",
            });
        }
    }
    Ok(files)
}

/// A path component must name exactly one entry inside its parent folder.
fn check_component(c: &str, shown: &str) -> Result<(), MetainfoError> {
    let why = if c.is_empty() {
        "empty component"
    } else if c == "." || c == ".." {
        "`.` or `..` component"
    } else if c.contains('/') {
        "component contains `/`"
    } else if c.contains('\0') {
        "component contains a NUL byte"
    } else if c.len() > MAX_COMPONENT_BYTES {
        "component longer than 255 bytes"
    } else {
        return Ok(());
    };
    Err(MetainfoError::UnsafePath {
        path: shown.to_string(),
        why,
    })
}

/// A tracker URL worth keeping: text, not blank, not over the length bound.
fn usable_url(n: Node<'_>) -> Option<&str> {
    n.as_str()
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.len() <= MAX_TRACKER_URL)
}

/// Tiers from `announce-list`, else `announce`, within the bounds on
/// [`Metainfo::trackers`]; what is over a bound is dropped, not an error
/// (the torrent still works through the trackers kept and the overlay).
fn parse_trackers(root: Node<'_>) -> Vec<Vec<String>> {
    let mut tiers: Vec<Vec<String>> = Vec::new();
    let mut kept = 0;
    if let Some(list) = root.get("announce-list").and_then(|n| n.list()) {
        for tier in list {
            if tiers.len() == MAX_TRACKER_TIERS || kept == MAX_TRACKERS {
                break;
            }
            let mut urls: Vec<String> = Vec::new();
            for url in tier.list().into_iter().flatten().filter_map(usable_url) {
                if kept == MAX_TRACKERS {
                    break;
                }
                let known = urls.iter().chain(tiers.iter().flatten()).any(|u| u == url);
                if !known {
                    urls.push(url.to_string());
                    kept += 1;
                }
            }
            if !urls.is_empty() {
                tiers.push(urls);
            }
        }
    }
    if tiers.is_empty() {
        if let Some(url) = root.get("announce").and_then(usable_url) {
            tiers.push(vec![url.to_string()]);
        }
    }
    tiers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::bencode::Value;

    fn torrent(info: Value) -> Vec<u8> {
        bencode::encode(&Value::dict([("info", info)]))
    }

    fn single(name: &str, len: i64, plen: i64, npieces: usize) -> Value {
        Value::dict([
            ("name", Value::bytes(name)),
            ("length", Value::Int(len)),
            ("piece length", Value::Int(plen)),
            ("pieces", Value::Bytes(vec![0; 20 * npieces])),
        ])
    }

    #[test]
    fn parses_single_file() {
        let m = Metainfo::from_bytes(&torrent(single("a.bin", 40000, 16384, 3))).unwrap();
        assert_eq!(m.num_pieces(), 3);
        assert_eq!(m.piece_len(2), 40000 - 32768);
        assert_eq!(m.files[0].path, vec!["a.bin"]);
    }

    #[test]
    fn rejects_wrong_piece_count_and_bad_names() {
        assert!(Metainfo::from_bytes(&torrent(single("a", 40000, 16384, 2))).is_err());
        assert!(Metainfo::from_bytes(&torrent(single("..", 10, 16384, 1))).is_err());
        assert!(Metainfo::from_bytes(&torrent(single("a/b", 10, 16384, 1))).is_err());
        assert!(Metainfo::from_bytes(&torrent(single("a", 10, 0, 1))).is_err());
        assert!(Metainfo::from_bytes(&torrent(single("a", -1, 16384, 1))).is_err());
    }

    #[test]
    fn rejects_traversal_in_multi_file() {
        let info = Value::dict([
            ("name", Value::bytes("root")),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(vec![0; 20])),
            (
                "files",
                Value::List(vec![Value::dict([
                    ("length", Value::Int(5)),
                    (
                        "path",
                        Value::List(vec![Value::bytes(".."), Value::bytes("etc")]),
                    ),
                ])]),
            ),
        ]);
        let err = Metainfo::from_bytes(&torrent(info)).unwrap_err();
        assert!(matches!(err, MetainfoError::UnsafePath { .. }), "{err}");
    }

    #[test]
    fn duplicate_paths_are_renamed_as_libtorrent_does() {
        let file = |path: &[&str]| {
            Value::dict([
                ("length", Value::Int(1)),
                (
                    "path",
                    Value::List(path.iter().map(|c| Value::bytes(*c)).collect()),
                ),
            ])
        };
        let info = Value::dict([
            ("name", Value::bytes("root")),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(vec![0; 20])),
            (
                "files",
                Value::List(vec![
                    file(&["d", "bar.txt"]),
                    file(&["d", "bar.txt"]),
                    file(&["d", "bar.txt"]),
                    file(&["noext"]),
                    file(&["noext"]),
                ]),
            ),
        ]);
        let m = Metainfo::from_bytes(&torrent(info)).unwrap();
        let paths: Vec<String> = m.files.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(
            paths,
            [
                "root/d/bar.txt",
                "root/d/bar.1.txt",
                "root/d/bar.2.txt",
                "root/noext",
                "root/noext.1"
            ]
        );
    }

    fn multi(files: Vec<Value>, npieces: usize) -> Value {
        Value::dict([
            ("name", Value::bytes("root")),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(vec![0; 20 * npieces])),
            ("files", Value::List(files)),
        ])
    }

    fn file_at(path: &[&str], length: i64) -> Value {
        Value::dict([
            ("length", Value::Int(length)),
            (
                "path",
                Value::List(path.iter().map(|c| Value::bytes(*c)).collect()),
            ),
        ])
    }

    #[test]
    fn a_file_where_another_needs_a_folder_is_refused() {
        // Not neighbours in input order; found by sorting.
        let files = vec![
            file_at(&["a", "b"], 1),
            file_at(&["a", "a"], 1),
            file_at(&["a", "b", "c"], 1),
            file_at(&["a", "b.txt"], 1),
        ];
        let err = Metainfo::from_bytes(&torrent(multi(files, 1))).unwrap_err();
        assert!(
            matches!(err, MetainfoError::UnsafePath { ref path, .. } if path == "root/a/b"),
            "{err}"
        );
        let fine = vec![
            file_at(&["a", "b"], 1),
            file_at(&["ab", "c"], 1),
            file_at(&["a.b"], 1),
        ];
        assert_eq!(
            Metainfo::from_bytes(&torrent(multi(fine, 1)))
                .unwrap()
                .files
                .len(),
            3
        );
    }

    #[test]
    fn path_depth_and_length_are_bounded() {
        let deep: Vec<&str> = vec!["a"; 129];
        let err = Metainfo::from_bytes(&torrent(multi(vec![file_at(&deep, 1)], 1))).unwrap_err();
        assert!(matches!(err, MetainfoError::UnsafePath { .. }), "{err}");
        let ok: Vec<&str> = vec!["a"; 128];
        assert!(Metainfo::from_bytes(&torrent(multi(vec![file_at(&ok, 1)], 1))).is_ok());
        let long = "x".repeat(250);
        let wide: Vec<&str> = vec![&long; 17];
        let err = Metainfo::from_bytes(&torrent(multi(vec![file_at(&wide, 1)], 1))).unwrap_err();
        assert!(matches!(err, MetainfoError::UnsafePath { .. }), "{err}");
    }

    #[test]
    fn single_file_length_is_capped_like_the_total() {
        // (The piece hashes such a length needs would be over the size cap,
        // so the length is refused on its own, before the piece count.)
        let err =
            Metainfo::from_bytes(&torrent(single("big", (1 << 50) + 1, 1 << 30, 1))).unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[test]
    fn torrents_over_the_size_cap_are_refused_unread() {
        let mut info = single("a", 10, 16384, 1);
        if let Value::Dict(d) = &mut info {
            d.push((b"zpad".to_vec(), Value::Bytes(vec![0; 10 * 1024 * 1024])));
        }
        let bytes = torrent(info);
        assert!(matches!(
            Metainfo::from_bytes(&bytes),
            Err(MetainfoError::TooLarge(_))
        ));
    }

    #[test]
    fn from_info_dict_keeps_the_bytes_and_validates_as_a_torrent_does() {
        let info = bencode::encode(&single("a.bin", 40000, 16384, 3));
        let bytes = bencode::encode(&Value::dict([
            ("announce", Value::bytes("http://t/announce")),
            ("info", single("a.bin", 40000, 16384, 3)),
        ]));
        let from_file = Metainfo::from_bytes(&bytes).unwrap();
        assert_eq!(&from_file.info_bytes[..], &info[..]);
        let trackers = ["http://t/announce".to_string(), "http://t/announce".into()];
        let m = Metainfo::from_info_dict(&info, &trackers).unwrap();
        assert_eq!(m.info_hash, from_file.info_hash);
        assert_eq!(m.info_hash.0, <[u8; 20]>::from(Sha1::digest(&info)));
        assert_eq!(m.trackers, [["http://t/announce"]]);
        assert_eq!(m.files, from_file.files);
        assert_eq!(&m.info_bytes[..], &info[..]);
        // The same refusals as a .torrent: unsafe paths, bad counts, junk.
        let traversal = Value::dict([
            ("name", Value::bytes("root")),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(vec![0; 20])),
            (
                "files",
                Value::List(vec![file_at(&["..", "etc", "passwd"], 5)]),
            ),
        ]);
        let err = Metainfo::from_info_dict(&bencode::encode(&traversal), &[]).unwrap_err();
        assert!(matches!(err, MetainfoError::UnsafePath { .. }), "{err}");
        let short = bencode::encode(&single("a", 40000, 16384, 2));
        assert!(Metainfo::from_info_dict(&short, &[]).is_err());
        let mut trailing = info.clone();
        trailing.push(b'x');
        assert!(Metainfo::from_info_dict(&trailing, &[]).is_err());
        assert!(Metainfo::from_info_dict(b"le", &[]).is_err());
    }

    #[test]
    fn tracker_urls_tiers_and_counts_are_bounded() {
        let long = format!("http://t/{}", "a".repeat(9 * 1024 * 1024));
        let root = |extra: Vec<(&str, Value)>| {
            let mut d = vec![("info", single("a", 10, 16384, 1))];
            d.extend(extra);
            bencode::encode(&Value::dict(d))
        };
        let m =
            Metainfo::from_bytes(&root(vec![("announce", Value::bytes(long.as_bytes()))])).unwrap();
        assert!(m.trackers.is_empty(), "a 9 MB announce URL was kept");

        let tiers: Vec<Value> = (0..10_000)
            .map(|i| {
                Value::List(vec![
                    Value::bytes(format!("http://t{i}/announce")),
                    Value::bytes("http://same/announce"),
                ])
            })
            .collect();
        let m = Metainfo::from_bytes(&root(vec![("announce-list", Value::List(tiers))])).unwrap();
        let urls = m.tracker_urls();
        assert!(m.trackers.len() <= 32, "{} tiers", m.trackers.len());
        assert!(urls.len() <= 64, "{} URLs", urls.len());
        assert_eq!(
            urls.iter().filter(|u| *u == "http://same/announce").count(),
            1
        );
        assert_eq!(m.trackers.iter().flatten().count(), urls.len());
        assert_eq!(urls[0], "http://t0/announce");
    }
}
