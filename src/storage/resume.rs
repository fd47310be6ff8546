//! Fast-resume data: which pieces were verified and flushed, and the size
//! and modification time of every file when that was recorded, so a clean
//! restart can skip hashing what is already on disk.
//!
//! The data is trusted only when it was written at a clean stop and no
//! file changed since ([`ResumeData::trusted_pieces`]); anything else
//! (a crash, a file touched, resized or replaced, another torrent's data)
//! sends the caller back to hashing. A resume file is input from disk: a
//! truncated or garbage one is a [`ResumeError`], never a panic.
//!
//! On disk it is JSON (`resume.json` in the state directory):
//! `{"version":1,"info_hash":"<40 hex>","piece_count":N,"pieces":"<hex of
//! the peerwire bitfield>","files":[{"path":"a/b","size":S,"mtime_ns":T}],
//! "clean":true}`. It is replaced atomically ([`save`], [`write_atomic`]).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::ids::{from_hex, to_hex};
use crate::core::metainfo::MAX_TORRENT_FILE;
use crate::core::{Bitfield, InfoHash, Metainfo};

/// The format [`ResumeData::encode`] writes and [`ResumeData::decode`] reads.
pub const RESUME_VERSION: u32 = 1;

/// Largest resume file [`load`] reads. The file lists every file of the
/// torrent (paths up to 4096 bytes) plus the bitfield, so it grows with the
/// metainfo, which is capped at [`MAX_TORRENT_FILE`]; four times that
/// leaves room for the JSON around it and still bounds what is read.
pub const MAX_RESUME_FILE: u64 = 4 * MAX_TORRENT_FILE;

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("resume file larger than {MAX_RESUME_FILE} bytes")]
    TooLarge,
    /// Not JSON, truncated, or a field missing or of the wrong type.
    #[error("malformed resume data: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("resume data version {0}, this build reads {RESUME_VERSION}")]
    Version(u32),
    #[error("resume data has a bad info-hash")]
    BadInfoHash,
    /// Not hex, or not a bitfield of `piece_count` bits (wrong size, a
    /// spare bit set).
    #[error("resume data has a bad piece bitfield")]
    BadPieces,
    #[error("resume data is for torrent {found}, not {expected}")]
    WrongTorrent { expected: InfoHash, found: InfoHash },
    #[error("resume data has {found} pieces, the torrent {expected}")]
    PieceCount { expected: usize, found: usize },
}

/// One file of the torrent as it was on disk when resume data was written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    /// Relative to the torrent's data directory, `/`-separated (the
    /// metainfo's path components, torrent name first for a multi-file one).
    pub path: String,
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

/// Fast-resume data of one torrent.
///
/// Contract for whoever writes it (the session):
/// - a piece is set in `pieces` only after it was verified **and** its
///   bytes were flushed to disk (`PieceStore::flush`): resume data must
///   never claim bytes that a power cut could still take away;
/// - `clean` is true only in the data written at a clean stop, after the
///   final flush, with `files` stamped ([`stamp_files`]) after that flush;
///   data written while running (periodic saves) has `clean: false`;
/// - at start, once [`ResumeData::trusted_pieces`] has been decided, the
///   file is rewritten with `clean: false` before any new block is
///   written, so a crash later in the run cannot leave a stale clean file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeData {
    pub info_hash: InfoHash,
    /// Verified and flushed pieces; its length is the torrent's piece count.
    pub pieces: Bitfield,
    /// One stamp per file of the torrent, in metainfo order.
    pub files: Vec<FileStamp>,
    pub clean: bool,
}

/// The JSON form: the bitfield as hex with its bit count beside it, so a
/// file can be checked on its own before the torrent is known.
#[derive(Serialize, Deserialize)]
struct Wire {
    version: u32,
    info_hash: String,
    piece_count: usize,
    pieces: String,
    files: Vec<FileStamp>,
    clean: bool,
}

impl ResumeData {
    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            version: RESUME_VERSION,
            info_hash: self.info_hash.to_hex(),
            piece_count: self.pieces.len(),
            pieces: to_hex(self.pieces.as_bytes()),
            files: self.files.clone(),
            clean: self.clean,
        };
        // Strings, integers and bools only: serializing cannot fail.
        serde_json::to_vec(&wire).expect("resume data serializes")
    }

    /// Parses resume data and checks that it is consistent in itself
    /// (version, info-hash, a bitfield of exactly `piece_count` bits).
    /// Whether it belongs to a given torrent is [`ResumeData::check_torrent`].
    pub fn decode(bytes: &[u8]) -> Result<ResumeData, ResumeError> {
        let wire: Wire = serde_json::from_slice(bytes)?;
        if wire.version != RESUME_VERSION {
            return Err(ResumeError::Version(wire.version));
        }
        let info_hash = InfoHash::from_hex(&wire.info_hash).ok_or(ResumeError::BadInfoHash)?;
        // The hex must be exactly the bitfield's size: checking the length
        // first keeps a huge `piece_count` from meaning anything (from_bytes
        // allocates nothing beyond the bytes already read).
        let bytes = from_hex(&wire.pieces).ok_or(ResumeError::BadPieces)?;
        let pieces =
            Bitfield::from_bytes(&bytes, wire.piece_count).ok_or(ResumeError::BadPieces)?;
        Ok(ResumeData {
            info_hash,
            pieces,
            files: wire.files,
            clean: wire.clean,
        })
    }

    /// The data is for `meta`: same info-hash, one bit per piece.
    pub fn check_torrent(&self, meta: &Metainfo) -> Result<(), ResumeError> {
        if self.info_hash != meta.info_hash {
            return Err(ResumeError::WrongTorrent {
                expected: meta.info_hash,
                found: self.info_hash,
            });
        }
        if self.pieces.len() != meta.num_pieces() {
            return Err(ResumeError::PieceCount {
                expected: meta.num_pieces(),
                found: self.pieces.len(),
            });
        }
        Ok(())
    }

    /// The pieces that may be taken as verified without hashing them:
    /// `Some` only if the data was written at a clean stop, is for `meta`,
    /// and every file's path, size and modification time in `current`
    /// (from [`stamp_files`] now) equal the recorded ones. `None` means
    /// the caller hashes what is on disk, as without resume data.
    pub fn trusted_pieces(&self, meta: &Metainfo, current: &[FileStamp]) -> Option<Bitfield> {
        if !self.clean || self.check_torrent(meta).is_err() {
            return None;
        }
        // `current` is laid out from `meta`; the recorded list must be the
        // same files in the same order with nothing changed.
        if current.len() != meta.files.len() || self.files != current {
            return None;
        }
        Some(self.pieces.clone())
    }
}

/// Size and modification time of every file of `meta` under `data_dir`
/// (the directory given to `Storage::open`), in metainfo order.
///
/// Call it after `Storage::open` at start (every file exists then; one it
/// had to create or extend has a new mtime, so it cannot match) and after
/// the final flush at a clean stop. Symlinks are not followed, as the
/// store does not follow them; a file that is not a regular file is an
/// error, which the caller treats as "not trusted".
pub fn stamp_files(meta: &Metainfo, data_dir: &Path) -> io::Result<Vec<FileStamp>> {
    meta.files
        .iter()
        .map(|entry| {
            let path = data_dir.join(entry.relative_path());
            let m = std::fs::symlink_metadata(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            if !m.file_type().is_file() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not a regular file", path.display()),
                ));
            }
            Ok(FileStamp {
                path: entry.path.join("/"),
                size: m.len(),
                mtime_ns: m
                    .mtime()
                    .saturating_mul(1_000_000_000)
                    .saturating_add(m.mtime_nsec()),
            })
        })
        .collect()
}

/// Writes `data` to `path` atomically ([`write_atomic`]).
pub fn save(path: &Path, data: &ResumeData) -> io::Result<()> {
    write_atomic(path, &data.encode())
}

/// Reads resume data from `path`; `Ok(None)` if there is none.
pub fn load(path: &Path) -> Result<Option<ResumeData>, ResumeError> {
    let io_err = |source| ResumeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_RESUME_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_RESUME_FILE {
        return Err(ResumeError::TooLarge);
    }
    ResumeData::decode(&bytes).map(Some)
}

/// Replaces `path` with `bytes` so that, whatever happens (a crash, a
/// power cut), `path` holds either the old content or the new one, never
/// a mix: writes `path.tmp`, fsyncs it, renames it over `path`, then
/// fsyncs the folder so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let ctx = |p: &Path| {
        let p = p.display().to_string();
        move |e: io::Error| io::Error::new(e.kind(), format!("{p}: {e}"))
    };
    let mut tmp_name = path
        .file_name()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: no file name", path.display()),
            )
        })?
        .to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(ctx(&tmp))?;
        f.write_all(bytes).map_err(ctx(&tmp))?;
        f.sync_all().map_err(ctx(&tmp))?;
        std::fs::rename(&tmp, path).map_err(ctx(path))
    })();
    if result.is_err() {
        // Best effort: a half-written temporary is of no use to anyone.
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(ctx(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::metainfo::FileEntry;
    use crate::storage::{PieceStore, Storage};
    use std::time::{Duration, SystemTime};

    fn meta(lengths: &[u64], piece_length: u64) -> Metainfo {
        let mut offset = 0;
        let files = lengths
            .iter()
            .enumerate()
            .map(|(i, &length)| {
                let f = FileEntry {
                    path: vec!["t".into(), format!("f{i}")],
                    length,
                    offset,
                };
                offset += length;
                f
            })
            .collect();
        let total: u64 = lengths.iter().sum();
        Metainfo {
            info_hash: InfoHash([7; 20]),
            name: "t".into(),
            piece_length,
            piece_hashes: vec![[0; 20]; total.div_ceil(piece_length) as usize],
            files,
            total_length: total,
            trackers: vec![],
            private: false,
            comment: None,
            created_by: None,
            creation_date: None,
            multi_file: true,
            info_bytes: Vec::new().into(),
        }
    }

    /// A torrent of three files (one empty) laid out by `Storage`, some
    /// pieces written and flushed, and clean resume data stamped after.
    fn stopped_cleanly() -> (tempfile::TempDir, Metainfo, ResumeData) {
        let dir = tempfile::tempdir().unwrap();
        let m = meta(&[10, 0, 13], 8);
        let (s, _) = Storage::open(&m, dir.path()).unwrap();
        unsafe {
            s.write_block(0, 0, &[1; 8]).unwrap();
            s.write_block(2, 0, &[2; 7]).unwrap();
        }
        s.flush().unwrap();
        let mut pieces = Bitfield::new(m.num_pieces());
        pieces.set(0);
        pieces.set(2);
        let data = ResumeData {
            info_hash: m.info_hash,
            pieces,
            files: stamp_files(&m, dir.path()).unwrap(),
            clean: true,
        };
        (dir, m, data)
    }

    #[test]
    fn stamps_follow_the_storage_layout() {
        let (dir, m, data) = stopped_cleanly();
        let paths: Vec<_> = data.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["t/f0", "t/f1", "t/f2"]);
        let sizes: Vec<_> = data.files.iter().map(|f| f.size).collect();
        assert_eq!(sizes, [10, 0, 13]);
        let mtime = std::fs::metadata(dir.path().join("t/f2"))
            .unwrap()
            .modified()
            .unwrap();
        let ns = mtime
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        assert_eq!(data.files[2].mtime_ns as u128, ns);
        assert_eq!(m.num_pieces(), 3);
    }

    #[test]
    fn encode_decode_round_trip() {
        let (_dir, _m, data) = stopped_cleanly();
        let bytes = data.encode();
        assert_eq!(ResumeData::decode(&bytes).unwrap(), data);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains(r#""pieces":"a0""#), "{text}");
        assert!(text.contains(&"07".repeat(20)), "{text}");
    }

    #[test]
    fn garbage_and_truncated_files_are_errors() {
        let (_dir, _m, data) = stopped_cleanly();
        let bytes = data.encode();
        for cut in 0..bytes.len() {
            assert!(
                ResumeData::decode(&bytes[..cut]).is_err(),
                "truncated at {cut} decoded"
            );
        }
        for junk in [&b"\xff\xfe\x00garbage"[..], b"null", b"[]", b"{}", b"42"] {
            assert!(matches!(
                ResumeData::decode(junk),
                Err(ResumeError::Malformed(_))
            ));
        }
    }

    /// Rewrites one field of the encoded data.
    fn with_field(data: &ResumeData, key: &str, value: serde_json::Value) -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(&data.encode()).unwrap();
        v[key] = value;
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn inconsistent_fields_are_errors() {
        let (_dir, _m, data) = stopped_cleanly();
        let decode = |key, value| ResumeData::decode(&with_field(&data, key, value));
        assert!(matches!(
            decode("version", 2.into()),
            Err(ResumeError::Version(2))
        ));
        assert!(matches!(
            decode("info_hash", "abc".into()),
            Err(ResumeError::BadInfoHash)
        ));
        // Three pieces fit in one byte; two bytes, a non-hex digit, or a
        // spare bit set are all wrong for it.
        for pieces in ["a000", "zz", "a1", ""] {
            assert!(
                matches!(decode("pieces", pieces.into()), Err(ResumeError::BadPieces)),
                "{pieces}"
            );
        }
        assert!(matches!(
            decode("piece_count", 9.into()),
            Err(ResumeError::BadPieces)
        ));
        assert!(matches!(
            decode("piece_count", u64::MAX.into()),
            Err(ResumeError::BadPieces)
        ));
    }

    #[test]
    fn a_bitfield_of_another_length_is_wrong_for_the_torrent() {
        let (_dir, m, mut data) = stopped_cleanly();
        assert!(data.check_torrent(&m).is_ok());
        data.pieces = Bitfield::new(m.num_pieces() + 1);
        let stamps = data.files.clone();
        assert!(matches!(
            data.check_torrent(&m),
            Err(ResumeError::PieceCount {
                expected: 3,
                found: 4
            })
        ));
        assert_eq!(data.trusted_pieces(&m, &stamps), None);
    }

    #[test]
    fn clean_and_unchanged_is_trusted() {
        let (dir, m, data) = stopped_cleanly();
        // Reopening the store (as a restart does) changes nothing on disk.
        drop(Storage::open(&m, dir.path()).unwrap());
        let now = stamp_files(&m, dir.path()).unwrap();
        let trusted = data.trusted_pieces(&m, &now).unwrap();
        assert_eq!(trusted.iter_ones().collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn unclean_data_is_not_trusted() {
        let (dir, m, mut data) = stopped_cleanly();
        data.clean = false;
        let now = stamp_files(&m, dir.path()).unwrap();
        assert_eq!(data.trusted_pieces(&m, &now), None);
    }

    #[test]
    fn a_touched_file_is_not_trusted() {
        let (dir, m, data) = stopped_cleanly();
        let f = File::options()
            .write(true)
            .open(dir.path().join("t/f2"))
            .unwrap();
        let before = f.metadata().unwrap().modified().unwrap();
        // A whole second: some filesystems keep coarse timestamps.
        f.set_modified(before + Duration::from_secs(1)).unwrap();
        let now = stamp_files(&m, dir.path()).unwrap();
        assert_eq!(now[2].size, data.files[2].size);
        assert_eq!(data.trusted_pieces(&m, &now), None);
    }

    #[test]
    fn a_resized_file_is_not_trusted() {
        let (dir, m, data) = stopped_cleanly();
        let path = dir.path().join("t/f0");
        let f = File::options().write(true).open(&path).unwrap();
        let mtime = f.metadata().unwrap().modified().unwrap();
        f.set_len(11).unwrap();
        // Same mtime, so only the size tells.
        f.set_modified(mtime).unwrap();
        let now = stamp_files(&m, dir.path()).unwrap();
        assert_eq!(now[0].mtime_ns, data.files[0].mtime_ns);
        assert_eq!(data.trusted_pieces(&m, &now), None);
    }

    #[test]
    fn another_torrents_data_is_not_trusted() {
        let (dir, mut m, data) = stopped_cleanly();
        let now = stamp_files(&m, dir.path()).unwrap();
        m.info_hash = InfoHash([8; 20]);
        assert!(matches!(
            data.check_torrent(&m),
            Err(ResumeError::WrongTorrent { .. })
        ));
        assert_eq!(data.trusted_pieces(&m, &now), None);
    }

    #[test]
    fn stamps_of_another_file_list_are_not_trusted() {
        let (dir, m, data) = stopped_cleanly();
        let now = stamp_files(&m, dir.path()).unwrap();
        assert_eq!(data.trusted_pieces(&m, &now[..2]), None);
        let mut fewer = data.clone();
        fewer.files.pop();
        assert_eq!(fewer.trusted_pieces(&m, &now), None);
    }

    #[test]
    fn stamping_refuses_a_symlinked_file() {
        let (dir, m, _) = stopped_cleanly();
        let f0 = dir.path().join("t/f0");
        std::fs::remove_file(&f0).unwrap();
        std::os::unix::fs::symlink(dir.path().join("t/f2"), &f0).unwrap();
        assert!(stamp_files(&m, dir.path()).is_err());
    }

    #[test]
    fn save_and_load_round_trip_atomically() {
        let (dir, _m, data) = stopped_cleanly();
        let path = dir.path().join("resume.json");
        assert!(load(&path).unwrap().is_none());
        save(&path, &data).unwrap();
        let mut unclean = data.clone();
        unclean.clean = false;
        save(&path, &unclean).unwrap();
        assert_eq!(load(&path).unwrap(), Some(unclean));
        assert!(!dir.path().join("resume.json.tmp").exists());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "only t/ and resume.json: {names:?}");
    }

    #[test]
    fn load_reports_garbage_and_oversized_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resume.json");
        std::fs::write(&path, b"{\"version\":1,").unwrap();
        assert!(matches!(load(&path), Err(ResumeError::Malformed(_))));
        let f = File::create(&path).unwrap();
        f.set_len(MAX_RESUME_FILE + 1).unwrap();
        assert!(matches!(load(&path), Err(ResumeError::TooLarge)));
    }

    #[test]
    fn a_failed_save_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resume.json");
        write_atomic(&path, b"old").unwrap();
        // A folder where the temporary should go makes the write fail.
        std::fs::create_dir(dir.path().join("resume.json.tmp")).unwrap();
        assert!(write_atomic(&path, b"new").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }
}
