//! `.torrent` files on disk: reading one (bounded, as the parser is) and
//! creating one from a file or folder (`btnode create`). Parsing and
//! validation stay in `core::metainfo`, which does no I/O.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use crate::core::bencode::{self, Value};
use crate::core::metainfo::{MetainfoError, MAX_PIECE_LENGTH, MAX_TORRENT_FILE};
use crate::core::Metainfo;

/// Reads and parses a `.torrent`; refuses one over [`MAX_TORRENT_FILE`]
/// before reading it, and never reads more than that (a file that grows,
/// or a device that never ends, is cut off and refused).
pub fn read(path: &Path) -> Result<Metainfo, MetainfoError> {
    let io = |source| MetainfoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len > MAX_TORRENT_FILE {
        return Err(MetainfoError::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(MAX_TORRENT_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Metainfo::from_bytes(&bytes)
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

    #[test]
    fn torrents_over_the_size_cap_are_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.torrent");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(MAX_TORRENT_FILE + 1).unwrap();
        assert!(matches!(read(&path), Err(MetainfoError::TooLarge(_))));
    }
}
