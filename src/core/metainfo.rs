//! Torrent metainfo (BEP 3): parsing, validation, and creation.
//!
//! A [`Metainfo`] exists only after every field was checked: lengths agree
//! with the piece count, every path is relative and made of safe components,
//! sizes are within sane bounds. Storage trusts it, so nothing built from a
//! `Metainfo` can address a byte outside the download directory.

use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::bencode::{self, Value};
use super::ids::InfoHash;

/// Largest torrent file we read (a 1 TiB torrent at 256 KiB pieces is 80 MiB
/// of hashes; anything bigger is refused before it is parsed).
pub const MAX_TORRENT_FILE: u64 = 100 * 1024 * 1024;
/// libtorrent accepts pieces of 512 MiB and more; so do we, up to 1 GiB.
pub const MAX_PIECE_LENGTH: u64 = 1 << 30;
pub const MAX_TOTAL_LENGTH: u64 = 1 << 50;
pub const MAX_FILES: usize = 1_000_000;
/// Longest file name component most Linux file systems accept.
pub const MAX_COMPONENT_BYTES: usize = 255;
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
    /// Tracker tiers: `announce-list` if present, else `announce`.
    pub trackers: Vec<Vec<String>>,
    pub private: bool,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    /// True for a torrent with a `files` list, even of one file.
    pub multi_file: bool,
}

impl Metainfo {
    pub fn from_file(path: &Path) -> Result<Metainfo, MetainfoError> {
        let io = |source| MetainfoError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_TORRENT_FILE {
            return Err(MetainfoError::Invalid(format!(
                "torrent file is {} bytes, over the {} limit",
                meta.len(),
                MAX_TORRENT_FILE
            )));
        }
        let bytes = std::fs::read(path).map_err(io)?;
        Metainfo::from_bytes(&bytes)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
        // Trailing bytes after the top-level dictionary are ignored, as
        // libtorrent and most clients do.
        let (root, used) = bencode::decode_prefix(bytes)?;
        let bytes = &bytes[..used];
        if root.as_dict().is_none() {
            return Err(MetainfoError::Invalid(
                "top level is not a dictionary".into(),
            ));
        }
        let span = bencode::top_level_span(bytes, b"info")?.ok_or(MetainfoError::Field("info"))?;
        let info_hash = InfoHash(Sha1::digest(&bytes[span]).into());
        let info = root.get("info").ok_or(MetainfoError::Field("info"))?;
        if info.as_dict().is_none() {
            return Err(MetainfoError::Field("info"));
        }

        let piece_length = info
            .get("piece length")
            .and_then(Value::as_int)
            .ok_or(MetainfoError::Field("piece length"))?;
        if piece_length <= 0 || piece_length as u64 > MAX_PIECE_LENGTH {
            return Err(MetainfoError::Field("piece length"));
        }
        let piece_length = piece_length as u64;

        let pieces = match info.get("pieces") {
            Some(p) => p.as_bytes().ok_or(MetainfoError::Field("pieces"))?,
            None if info.get("meta version").and_then(Value::as_int) == Some(2) => {
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
        let piece_hashes: Vec<[u8; 20]> = pieces
            .chunks_exact(20)
            .map(|c| c.try_into().expect("chunks of 20"))
            .collect();

        let name = info
            .get("name.utf-8")
            .and_then(Value::as_str)
            .or_else(|| info.get("name").and_then(Value::as_str))
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
        if expected_pieces != piece_hashes.len() as u64 {
            return Err(MetainfoError::Invalid(format!(
                "{} bytes at {} per piece need {} piece hashes, `pieces` has {}",
                total_length,
                piece_length,
                expected_pieces,
                piece_hashes.len()
            )));
        }

        let trackers = parse_trackers(&root);
        let text = |k: &str| root.get(k).and_then(Value::as_str).map(str::to_string);
        Ok(Metainfo {
            info_hash,
            name,
            piece_length,
            piece_hashes,
            files,
            total_length,
            trackers,
            private: info.get("private").and_then(Value::as_int) == Some(1),
            comment: text("comment"),
            created_by: text("created by"),
            creation_date: root.get("creation date").and_then(Value::as_int),
            multi_file,
        })
    }

    pub fn num_pieces(&self) -> usize {
        self.piece_hashes.len()
    }

    /// Length of piece `index` (the last one may be short).
    pub fn piece_len(&self, index: usize) -> u32 {
        let start = index as u64 * self.piece_length;
        (self.total_length - start).min(self.piece_length) as u32
    }

    pub fn blocks_in_piece(&self, index: usize) -> u32 {
        self.piece_len(index).div_ceil(BLOCK_SIZE)
    }

    /// The first tracker URL of each tier, flattened, in order.
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

fn parse_files(name: &str, list: &Value) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = list.as_list().ok_or(MetainfoError::Field("files"))?;
    if list.is_empty() {
        return Err(MetainfoError::Invalid("`files` is empty".into()));
    }
    if list.len() > MAX_FILES {
        return Err(MetainfoError::Invalid(format!(
            "{} files, over the {MAX_FILES} limit",
            list.len()
        )));
    }
    let mut files = Vec::with_capacity(list.len());
    let mut offset = 0u64;
    let mut seen = std::collections::HashSet::new();
    let mut renames = std::collections::HashMap::new();
    for entry in list {
        // BEP 47 attributes: `p` pad file, `l` symlink (kept as an empty file).
        let attr = entry.get("attr").and_then(Value::as_bytes).unwrap_or(b"");
        let is_pad = attr.contains(&b'p');
        let is_symlink = attr.contains(&b'l');
        let length = match entry.get("length") {
            None if is_symlink => 0,
            v => v
                .and_then(Value::as_int)
                .filter(|&l| l >= 0)
                .ok_or(MetainfoError::Field("files.length"))? as u64,
        };
        let path_value = entry
            .get("path.utf-8")
            .or_else(|| entry.get("path"))
            .and_then(Value::as_list);
        let mut path = vec![name.to_string()];
        match path_value {
            Some(components) => {
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
        let shown = path.join("/");
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
        if is_pad && seen.contains(&path) {
            let last = path.last_mut().expect("name plus components");
            *last = format!("{last}.{}", files.len());
        }
        if seen.contains(&path) {
            // Two files with one path: renamed as libtorrent does
            // (`bar.txt`, `bar.1.txt`, `bar.2.txt`, ...), so both clients
            // lay the data out alike. The counter per path keeps many
            // duplicates linear.
            let next = renames.entry(path.clone()).or_insert(1u32);
            let last = path.last().expect("name plus components").clone();
            let (stem, ext) = match last.rfind('.') {
                Some(dot) if dot > 0 => last.split_at(dot),
                _ => (last.as_str(), ""),
            };
            loop {
                let candidate = format!("{stem}.{next}{ext}");
                *next += 1;
                *path.last_mut().expect("name plus components") = candidate;
                if !seen.contains(&path) {
                    break;
                }
            }
            check_component(path.last().expect("name plus components"), &shown)?;
        }
        seen.insert(path.clone());
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
    // A file whose path is a folder of another file would make storage fail
    // half-way; refuse it up front.
    let mut dirs = std::collections::HashSet::new();
    for f in &files {
        for depth in 1..f.path.len() {
            dirs.insert(f.path[..depth].to_vec());
        }
    }
    if let Some(f) = files.iter().find(|f| dirs.contains(&f.path)) {
        return Err(MetainfoError::UnsafePath {
            path: f.path.join("/"),
            why: "a file and a folder share this path",
        });
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

fn parse_trackers(root: &Value) -> Vec<Vec<String>> {
    let mut tiers: Vec<Vec<String>> = Vec::new();
    if let Some(list) = root.get("announce-list").and_then(Value::as_list) {
        for tier in list {
            let urls: Vec<String> = tier
                .as_list()
                .unwrap_or(&[])
                .iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if !urls.is_empty() {
                tiers.push(urls);
            }
        }
    }
    if tiers.is_empty() {
        if let Some(url) = root.get("announce").and_then(Value::as_str) {
            let url = url.trim();
            if !url.is_empty() {
                tiers.push(vec![url.to_string()]);
            }
        }
    }
    tiers
}

/// Options for [`create`].
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    pub piece_length: Option<u64>,
    pub trackers: Vec<String>,
    pub comment: Option<String>,
    pub private: bool,
}

/// A piece length that gives roughly 1000–2000 pieces, between 16 KiB and 16 MiB.
pub fn default_piece_length(total: u64) -> u64 {
    let mut len = 16 * 1024u64;
    while len < 16 * 1024 * 1024 && total / len > 2000 {
        len *= 2;
    }
    len
}

/// Builds a torrent for `path` (a file, or a folder walked in byte order of
/// its paths) and returns the encoded `.torrent` bytes.
pub fn create(path: &Path, opts: &CreateOptions) -> Result<Vec<u8>, MetainfoError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| MetainfoError::Io { path: p, source }
    };
    let name = path
        .canonicalize()
        .map_err(io(path))?
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| MetainfoError::Invalid(format!("{} has no usable name", path.display())))?
        .to_string();
    let meta = std::fs::metadata(path).map_err(io(path))?;
    let mut files: Vec<(Vec<String>, PathBuf, u64)> = Vec::new();
    if meta.is_dir() {
        walk(path, &mut Vec::new(), &mut files)?;
        files.sort();
        if files.is_empty() {
            return Err(MetainfoError::Invalid(format!(
                "{} holds no files",
                path.display()
            )));
        }
    } else {
        files.push((vec![], path.to_path_buf(), meta.len()));
    }
    let total: u64 = files.iter().map(|f| f.2).sum();
    if total == 0 {
        return Err(MetainfoError::Invalid("nothing to share: 0 bytes".into()));
    }
    let piece_length = opts
        .piece_length
        .unwrap_or_else(|| default_piece_length(total));
    if piece_length == 0 || piece_length > MAX_PIECE_LENGTH {
        return Err(MetainfoError::Field("piece length"));
    }

    let mut pieces = Vec::with_capacity((total.div_ceil(piece_length) * 20) as usize);
    let mut hasher = Sha1::new();
    let mut in_piece = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for (_, file_path, _) in &files {
        let mut f = std::fs::File::open(file_path).map_err(io(file_path))?;
        loop {
            let want = buf.len().min((piece_length - in_piece) as usize);
            let n = std::io::Read::read(&mut f, &mut buf[..want]).map_err(io(file_path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            in_piece += n as u64;
            if in_piece == piece_length {
                pieces.extend_from_slice(&hasher.finalize_reset());
                in_piece = 0;
            }
        }
    }
    if in_piece > 0 {
        pieces.extend_from_slice(&hasher.finalize_reset());
    }

    let mut info = vec![
        ("name", Value::bytes(name.as_bytes())),
        ("piece length", Value::Int(piece_length as i64)),
        ("pieces", Value::Bytes(pieces)),
    ];
    if opts.private {
        info.push(("private", Value::Int(1)));
    }
    if meta.is_dir() {
        let list = files
            .iter()
            .map(|(rel, _, len)| {
                Value::dict([
                    ("length", Value::Int(*len as i64)),
                    (
                        "path",
                        Value::List(rel.iter().map(|c| Value::bytes(c.as_bytes())).collect()),
                    ),
                ])
            })
            .collect();
        info.push(("files", Value::List(list)));
    } else {
        info.push(("length", Value::Int(total as i64)));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut root = vec![
        ("info", Value::dict(info)),
        ("created by", Value::bytes("btnode/0.1")),
        ("creation date", Value::Int(now)),
    ];
    if let Some(first) = opts.trackers.first() {
        root.push(("announce", Value::bytes(first.as_bytes())));
        if opts.trackers.len() > 1 {
            let tiers = opts
                .trackers
                .iter()
                .map(|t| Value::List(vec![Value::bytes(t.as_bytes())]))
                .collect();
            root.push(("announce-list", Value::List(tiers)));
        }
    }
    if let Some(c) = &opts.comment {
        root.push(("comment", Value::bytes(c.as_bytes())));
    }
    Ok(bencode::encode(&Value::dict(root)))
}

fn walk(
    dir: &Path,
    prefix: &mut Vec<String>,
    out: &mut Vec<(Vec<String>, PathBuf, u64)>,
) -> Result<(), MetainfoError> {
    let io = |source| MetainfoError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry
            .file_name()
            .into_string()
            .map_err(|n| MetainfoError::Invalid(format!("file name {n:?} is not UTF-8")))?;
        let meta = entry.metadata().map_err(io)?;
        prefix.push(name);
        if meta.is_dir() {
            walk(&entry.path(), prefix, out)?;
        } else if meta.is_file() {
            out.push((prefix.clone(), entry.path(), meta.len()));
        }
        prefix.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn create_then_parse_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("a.txt"), vec![7u8; 50_000]).unwrap();
        std::fs::write(root.join("sub/deeper/b.txt"), b"tiny").unwrap();
        let bytes = create(&root, &CreateOptions::default()).unwrap();
        let m = Metainfo::from_bytes(&bytes).unwrap();
        assert_eq!(m.name, "set");
        assert_eq!(m.total_length, 50_004);
        assert_eq!(m.files.len(), 2);
        assert_eq!(m.files[1].path, vec!["set", "sub", "deeper", "b.txt"]);
        assert_eq!(m.files[1].offset, 50_000);
    }
}
