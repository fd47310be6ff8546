//! The daemon's state directory: what it keeps of each torrent so a
//! restart brings back the same session.
//!
//! ```text
//! STATE/                       mode 0700 when created here
//!   torrents/
//!     <info_hash_hex>/         40 lowercase hex characters
//!       metainfo.torrent       the metainfo bytes exactly as added (or as
//!                              fetched for a magnet link: the verified info
//!                              dictionary and the link's trackers)
//!       magnet.txt             a torrent added by magnet link, until its
//!                              metadata is fetched (then metainfo wins)
//!       settings.json          TorrentSettings
//!       resume.json            storage::resume::ResumeData
//! ```
//!
//! Every file is replaced atomically (`storage::resume::write_atomic`).
//! `metainfo.torrent` (or `magnet.txt`) is written last when a torrent is
//! saved, so its presence means the entry is complete; removal renames the folder away
//! first (`<hex>.removing`), so a crash in either leaves no half entry that
//! [`StateDir::list`] would load. A broken entry is skipped and logged:
//! one bad folder must not keep the daemon from starting.
//!
//! [`resolve_data_dir`] is where a torrent's data directory, which comes
//! from an API request, is checked to stay inside the download root.

use std::fs::{DirBuilder, File};
use std::io::{self, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::core::metainfo::MAX_TORRENT_FILE;
use crate::core::{InfoHash, Magnet, Metainfo};
use crate::storage::resume::write_atomic;

pub const TORRENTS_DIR: &str = "torrents";
pub const METAINFO_FILE: &str = "metainfo.torrent";
pub const MAGNET_FILE: &str = "magnet.txt";
/// A magnet link is short; this is far more than the parser accepts.
const MAX_MAGNET_FILE: u64 = 64 * 1024;
pub const SETTINGS_FILE: &str = "settings.json";
pub const RESUME_FILE: &str = "resume.json";
/// Suffix of a torrent folder being removed.
const REMOVING: &str = ".removing";
/// Settings are three small fields; anything bigger is not ours.
const MAX_SETTINGS_FILE: u64 = 64 * 1024;

/// What the daemon keeps of a torrent besides its metainfo and resume data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TorrentSettings {
    /// Data directory relative to the download root, `""` for the root
    /// itself; resolved through [`resolve_data_dir`] every time it is used.
    pub dir: String,
    pub paused: bool,
    /// When the torrent was added, seconds since the Unix epoch.
    pub added_unix: u64,
}

/// One entry of the state directory, as [`StateDir::list`] found it.
#[derive(Clone, Debug)]
pub struct StoredTorrent {
    pub info_hash: InfoHash,
    /// `info_hash` as 40 lowercase hex characters (the folder's name).
    pub info_hash_hex: String,
    pub source: StoredSource,
    pub settings: TorrentSettings,
}

/// What the daemon knows of a stored torrent.
#[derive(Clone, Debug)]
pub enum StoredSource {
    /// `bytes` parsed; its info-hash is the entry's.
    Metainfo { metainfo: Metainfo, bytes: Vec<u8> },
    /// Added by magnet link, metadata not fetched yet.
    Magnet(Magnet),
}

/// The state directory (layout in the module doc).
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

/// Adds the path to an I/O error's message.
fn at(path: &Path) -> impl FnOnce(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn fsync_dir(path: &Path) -> io::Result<()> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(at(path))
}

/// Reads at most `max` bytes of `path`; a longer file is an error.
fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(at(path))?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: larger than {max} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

impl StateDir {
    /// Opens the state directory at `path`, creating it (mode 0700: it
    /// says which torrents this node has and where their data lies) and
    /// `torrents/` if missing; an existing directory keeps its mode.
    /// Leftovers of a removal a crash interrupted are deleted.
    pub fn open(path: &Path) -> io::Result<StateDir> {
        let state = StateDir {
            root: path.to_path_buf(),
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state.torrents())
            .map_err(at(path))?;
        let torrents = state.torrents();
        for entry in std::fs::read_dir(&torrents).map_err(at(&torrents))? {
            let Ok(entry) = entry else { continue };
            if entry.file_name().to_string_lossy().ends_with(REMOVING) {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    log::warn!("state: cannot delete {}: {e}", entry.path().display());
                }
            }
        }
        Ok(state)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    fn torrents(&self) -> PathBuf {
        self.root.join(TORRENTS_DIR)
    }

    /// `STATE/torrents/<hex>`.
    pub fn torrent_dir(&self, info_hash: &InfoHash) -> PathBuf {
        self.torrents().join(info_hash.to_hex())
    }

    /// Where the torrent's resume data lives (it may not exist yet); read
    /// and written with `storage::resume::{load, save}`.
    pub fn resume_path(&self, info_hash: &InfoHash) -> PathBuf {
        self.torrent_dir(info_hash).join(RESUME_FILE)
    }

    /// Every complete, readable entry, oldest first (by `added_unix`, then
    /// info-hash). Broken entries (a folder name that is not an
    /// info-hash, no or unparsable metainfo, metainfo of another torrent,
    /// missing or bad settings) are logged and skipped.
    pub fn list(&self) -> Vec<StoredTorrent> {
        let torrents = self.torrents();
        let entries = match std::fs::read_dir(&torrents) {
            Ok(entries) => entries,
            Err(e) => {
                log::error!("state: cannot read {}: {e}", torrents.display());
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    log::warn!("state: reading {}: {e}", torrents.display());
                    continue;
                }
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(REMOVING) {
                continue;
            }
            match load_entry(&entry.path(), &name) {
                Ok(stored) => out.push(stored),
                Err(why) => log::warn!("state: skipping {}: {why}", entry.path().display()),
            }
        }
        out.sort_by(|a, b| {
            (a.settings.added_unix, &a.info_hash_hex)
                .cmp(&(b.settings.added_unix, &b.info_hash_hex))
        });
        out
    }

    /// Saves a newly added torrent: `metainfo_bytes` (whose info-hash is
    /// `info_hash`) and its settings. Saving one that exists replaces both.
    pub fn save_torrent(
        &self,
        info_hash: &InfoHash,
        metainfo_bytes: &[u8],
        settings: &TorrentSettings,
    ) -> io::Result<()> {
        let dir = self.torrent_dir(info_hash);
        // Settings first: the metainfo is what makes the entry count.
        self.create_entry(info_hash, settings)?;
        write_atomic(&dir.join(METAINFO_FILE), metainfo_bytes)
    }

    /// Saves a torrent added by magnet link (its metadata not known yet).
    pub fn save_magnet(
        &self,
        info_hash: &InfoHash,
        magnet: &Magnet,
        settings: &TorrentSettings,
    ) -> io::Result<()> {
        self.create_entry(info_hash, settings)?;
        let dir = self.torrent_dir(info_hash);
        write_atomic(&dir.join(MAGNET_FILE), magnet.to_uri().as_bytes())
    }

    /// The metainfo fetched for a magnet entry: from now on the entry
    /// loads as a torrent (the link is removed after).
    pub fn save_fetched_metainfo(&self, info_hash: &InfoHash, bytes: &[u8]) -> io::Result<()> {
        let dir = self.torrent_dir(info_hash);
        if !dir.join(SETTINGS_FILE).is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such torrent in the state directory", dir.display()),
            ));
        }
        write_atomic(&dir.join(METAINFO_FILE), bytes)?;
        match std::fs::remove_file(dir.join(MAGNET_FILE)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The entry's folder and settings (the part written first).
    fn create_entry(&self, info_hash: &InfoHash, settings: &TorrentSettings) -> io::Result<()> {
        let dir = self.torrent_dir(info_hash);
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => fsync_dir(&self.torrents())?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(at(&dir)(e)),
        }
        write_atomic(&dir.join(SETTINGS_FILE), &encode_settings(settings))
    }

    /// Replaces the settings of a saved torrent (NotFound if there is none).
    pub fn save_settings(
        &self,
        info_hash: &InfoHash,
        settings: &TorrentSettings,
    ) -> io::Result<()> {
        let dir = self.torrent_dir(info_hash);
        if !dir.join(METAINFO_FILE).is_file() && !dir.join(MAGNET_FILE).is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such torrent in the state directory", dir.display()),
            ));
        }
        write_atomic(&dir.join(SETTINGS_FILE), &encode_settings(settings))
    }

    /// Forgets a torrent: its metainfo, settings and resume data (not its
    /// downloaded data). Removing one that is not there is not an error.
    pub fn remove(&self, info_hash: &InfoHash) -> io::Result<()> {
        let dir = self.torrent_dir(info_hash);
        let mut gone = dir.clone().into_os_string();
        gone.push(REMOVING);
        let gone = PathBuf::from(gone);
        // A leftover of an earlier removal would make the rename fail.
        match std::fs::remove_dir_all(&gone) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(at(&gone)(e)),
        }
        match std::fs::rename(&dir, &gone) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(at(&dir)(e)),
        }
        // The rename is what removes the entry; make it durable before
        // the slower delete, which `open` finishes if it is interrupted.
        fsync_dir(&self.torrents())?;
        std::fs::remove_dir_all(&gone).map_err(at(&gone))
    }
}

fn encode_settings(settings: &TorrentSettings) -> Vec<u8> {
    // A string, a bool and an integer: serializing cannot fail.
    serde_json::to_vec_pretty(settings).expect("settings serialize")
}

/// One torrent folder, or why it is not a usable entry.
fn load_entry(dir: &Path, name: &str) -> Result<StoredTorrent, String> {
    let info_hash = InfoHash::from_hex(name)
        .filter(|h| h.to_hex() == name)
        .ok_or("the name is not a lowercase info-hash")?;
    let kind = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
    if !kind.is_dir() {
        return Err("not a folder".into());
    }
    let source = match read_bounded(&dir.join(METAINFO_FILE), MAX_TORRENT_FILE) {
        Ok(bytes) => {
            let metainfo = Metainfo::from_bytes(&bytes).map_err(|e| format!("metainfo: {e}"))?;
            if metainfo.info_hash != info_hash {
                return Err(format!("metainfo is of torrent {}", metainfo.info_hash));
            }
            StoredSource::Metainfo { metainfo, bytes }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let bytes = read_bounded(&dir.join(MAGNET_FILE), MAX_MAGNET_FILE)
                .map_err(|e| format!("no metainfo and no magnet link: {e}"))?;
            let text = String::from_utf8(bytes).map_err(|_| "magnet link: not UTF-8")?;
            let magnet = Magnet::parse(text.trim()).map_err(|e| format!("magnet link: {e}"))?;
            if magnet.info_hash != info_hash {
                return Err(format!("magnet link is of torrent {}", magnet.info_hash));
            }
            StoredSource::Magnet(magnet)
        }
        Err(e) => return Err(e.to_string()),
    };
    let settings_bytes =
        read_bounded(&dir.join(SETTINGS_FILE), MAX_SETTINGS_FILE).map_err(|e| e.to_string())?;
    let settings: TorrentSettings =
        serde_json::from_slice(&settings_bytes).map_err(|e| format!("settings: {e}"))?;
    Ok(StoredTorrent {
        info_hash,
        info_hash_hex: name.to_string(),
        source,
        settings,
    })
}

/// Why a data directory was refused.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("data directory {0:?} is absolute; it must be relative to the download root")]
    Absolute(String),
    #[error("data directory {0:?} leads outside the download root")]
    Escapes(String),
    #[error("data directory {0:?} contains a NUL byte")]
    Invalid(String),
    #[error("{0} is not a folder")]
    NotAFolder(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The data directory `sub` names, relative to the download root `root`
/// (`None` or `""`: the root itself), made to exist and returned in
/// canonical form (absolute, no symlinks), inside the canonical root.
///
/// `sub` comes from API requests, so it is untrusted: an absolute path is
/// refused, `..` is resolved by name and refused where it would climb
/// above the root (`a/../b` is `b`), and the deepest part that exists is
/// canonicalized and must lie inside the canonical root, so a symlink
/// inside the root leading outside is refused. Folders below it are then
/// created one at a time, never through an existing symlink, and the result
/// is checked once more; nothing is created outside the root. The root is
/// created if missing.
pub fn resolve_data_dir(root: &Path, sub: Option<&str>) -> Result<PathBuf, DirError> {
    let sub = sub.unwrap_or("");
    if sub.contains('\0') {
        return Err(DirError::Invalid(sub.to_string()));
    }
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in Path::new(sub).components() {
        match c {
            Component::Normal(name) => parts.push(name),
            Component::CurDir => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(DirError::Escapes(sub.to_string()));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(DirError::Absolute(sub.to_string()))
            }
        }
    }
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DirError::Io { path, source }
    };
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let root = root.canonicalize().map_err(io_err(root))?;
    let inside = |path: &Path| -> Result<PathBuf, DirError> {
        let real = path.canonicalize().map_err(io_err(path))?;
        if !real.starts_with(&root) {
            return Err(DirError::Escapes(sub.to_string()));
        }
        if !real.is_dir() {
            return Err(DirError::NotAFolder(path.to_path_buf()));
        }
        Ok(real)
    };
    // The deepest existing prefix (`symlink_metadata`: a dangling link
    // exists too, and canonicalizing it then fails rather than being
    // silently created through).
    let mut existing = parts.len();
    while existing > 0 {
        let path: PathBuf = std::iter::once(root.as_os_str())
            .chain(parts[..existing].iter().copied())
            .collect();
        match std::fs::symlink_metadata(&path) {
            Ok(_) => break,
            // Below a file: the file is the deepest existing part, and
            // the check refuses it.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                existing -= 1
            }
            Err(e) => return Err(io_err(&path)(e)),
        }
    }
    let base: PathBuf = std::iter::once(root.as_os_str())
        .chain(parts[..existing].iter().copied())
        .collect();
    let mut real = inside(&base)?;
    for name in &parts[existing..] {
        let next = real.join(name);
        match DirBuilder::new().create(&next) {
            Ok(()) => {}
            // Appeared meanwhile: the check below decides.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&next)(e)),
        }
        real = inside(&next)?;
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::bencode::{encode, Value};
    use std::os::unix::fs::PermissionsExt;

    /// A valid single-file torrent whose name is `name`.
    fn torrent(name: &str) -> (InfoHash, Vec<u8>) {
        let info = Value::Dict(vec![
            (b"length".to_vec(), Value::Int(5)),
            (b"name".to_vec(), Value::Bytes(name.as_bytes().to_vec())),
            (b"piece length".to_vec(), Value::Int(16384)),
            (b"pieces".to_vec(), Value::Bytes(vec![0; 20])),
        ]);
        let bytes = encode(&Value::Dict(vec![(b"info".to_vec(), info)]));
        let meta = Metainfo::from_bytes(&bytes).unwrap();
        (meta.info_hash, bytes)
    }

    fn settings(dir: &str, added_unix: u64) -> TorrentSettings {
        TorrentSettings {
            dir: dir.into(),
            paused: false,
            added_unix,
        }
    }

    #[test]
    fn a_magnet_entry_comes_back_as_a_link_then_as_the_fetched_torrent() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let (ih, bytes) = torrent("m");
        let link = format!("magnet:?xt=urn:btih:{}&dn=m", ih.to_hex());
        let magnet = Magnet::parse(&link).unwrap();
        state.save_magnet(&ih, &magnet, &settings("", 1)).unwrap();
        let listed = state.list();
        let StoredSource::Magnet(back) = &listed[0].source else {
            panic!("a magnet entry came back as a torrent");
        };
        assert_eq!(back.info_hash, ih);
        assert_eq!(back.name.as_deref(), Some("m"));
        // Settings of a magnet entry can change before its metadata came.
        state
            .save_settings(
                &ih,
                &TorrentSettings {
                    paused: true,
                    ..settings("", 1)
                },
            )
            .unwrap();
        state.save_fetched_metainfo(&ih, &bytes).unwrap();
        let listed = state.list();
        assert!(
            matches!(&listed[0].source, StoredSource::Metainfo { metainfo, .. } if metainfo.name == "m")
        );
        assert!(listed[0].settings.paused);
        assert!(!state.torrent_dir(&ih).join(MAGNET_FILE).exists());
        // A link naming another torrent is a broken entry, skipped.
        let (other, _) = torrent("o");
        let dir = state.torrent_dir(&other);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(SETTINGS_FILE), encode_settings(&settings("", 2))).unwrap();
        std::fs::write(dir.join(MAGNET_FILE), &link).unwrap();
        assert_eq!(state.list().len(), 1);
    }

    #[test]
    fn open_creates_a_private_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/state");
        let state = StateDir::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(path.join(TORRENTS_DIR).is_dir());
        assert!(state.list().is_empty());
        // Opening again is fine.
        StateDir::open(&path).unwrap();
    }

    #[test]
    fn save_list_settings_remove_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let (a, a_bytes) = torrent("a");
        let (b, b_bytes) = torrent("b");
        state
            .save_torrent(&b, &b_bytes, &settings("x/y", 20))
            .unwrap();
        state.save_torrent(&a, &a_bytes, &settings("", 10)).unwrap();
        let listed = state.list();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].info_hash, a, "oldest first");
        assert_eq!(listed[0].info_hash_hex, a.to_hex());
        let StoredSource::Metainfo { metainfo, bytes } = &listed[0].source else {
            panic!("a torrent came back as a magnet link");
        };
        assert_eq!(bytes, &a_bytes);
        assert_eq!(metainfo.name, "a");
        assert_eq!(listed[0].settings, settings("", 10));
        assert_eq!(listed[1].settings, settings("x/y", 20));

        let paused = TorrentSettings {
            paused: true,
            ..settings("x/y", 20)
        };
        state.save_settings(&b, &paused).unwrap();
        assert_eq!(state.list()[1].settings, paused);

        assert_eq!(
            state.resume_path(&a),
            tmp.path()
                .join("torrents")
                .join(a.to_hex())
                .join("resume.json")
        );
        std::fs::write(state.resume_path(&a), b"{}").unwrap();
        state.remove(&a).unwrap();
        let listed = state.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].info_hash, b);
        assert!(!state.torrent_dir(&a).exists());
        // Only b's folder is left: nothing of a, no `.removing`.
        assert_eq!(
            std::fs::read_dir(tmp.path().join("torrents"))
                .unwrap()
                .count(),
            1
        );
        state.remove(&a).unwrap();
        assert_eq!(
            state.save_settings(&a, &paused).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn broken_entries_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let (good, good_bytes) = torrent("good");
        state
            .save_torrent(&good, &good_bytes, &settings("", 1))
            .unwrap();

        // Garbage metainfo.
        let (h1, _) = torrent("one");
        state
            .save_torrent(&h1, b"d4:infoi", &settings("", 1))
            .unwrap();
        // Another torrent's metainfo under this name.
        let (h2, _) = torrent("two");
        let (_, other_bytes) = torrent("other");
        state
            .save_torrent(&h2, &other_bytes, &settings("", 1))
            .unwrap();
        // Bad settings.
        let (h3, h3_bytes) = torrent("three");
        state
            .save_torrent(&h3, &h3_bytes, &settings("", 1))
            .unwrap();
        std::fs::write(state.torrent_dir(&h3).join(SETTINGS_FILE), b"{\"dir\":").unwrap();
        // No metainfo at all (a save that did not finish).
        let (h4, _) = torrent("four");
        std::fs::create_dir(state.torrent_dir(&h4)).unwrap();
        // Names that are not info-hashes, and a file.
        std::fs::create_dir(tmp.path().join("torrents/not-a-hash")).unwrap();
        std::fs::create_dir(
            tmp.path()
                .join("torrents")
                .join(good.to_hex().to_uppercase()),
        )
        .unwrap();
        std::fs::write(tmp.path().join("torrents/stray"), b"x").unwrap();

        let listed = state.list();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].info_hash, good);
    }

    #[test]
    fn an_interrupted_removal_is_finished_at_open() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let (h, bytes) = torrent("t");
        state.save_torrent(&h, &bytes, &settings("", 1)).unwrap();
        let dir = state.torrent_dir(&h);
        let gone = tmp
            .path()
            .join("torrents")
            .join(format!("{}{REMOVING}", h.to_hex()));
        std::fs::rename(&dir, &gone).unwrap();
        assert!(
            state.list().is_empty(),
            "a folder being removed is not listed"
        );
        StateDir::open(tmp.path()).unwrap();
        assert!(!gone.exists());
    }

    #[test]
    fn resolve_accepts_paths_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let canon = |p: &Path| p.canonicalize().unwrap();
        let got = resolve_data_dir(&root, None).unwrap();
        assert_eq!(got, canon(&root));
        assert_eq!(resolve_data_dir(&root, Some("")).unwrap(), canon(&root));
        let ab = resolve_data_dir(&root, Some("a/b")).unwrap();
        assert_eq!(ab, canon(&root).join("a/b"));
        assert!(ab.is_dir());
        let b = resolve_data_dir(&root, Some("a/../b")).unwrap();
        assert_eq!(b, canon(&root).join("b"));
        assert_eq!(resolve_data_dir(&root, Some("./a/b/")).unwrap(), ab);
        // A symlink that stays inside the root is fine.
        std::os::unix::fs::symlink(root.join("a"), root.join("link")).unwrap();
        assert_eq!(resolve_data_dir(&root, Some("link/b")).unwrap(), ab);
    }

    #[test]
    fn resolve_refuses_paths_that_leave_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("nowhere"), root.join("dangling")).unwrap();
        std::fs::write(root.join("file"), b"").unwrap();
        // A sibling whose name starts with the root's: a string prefix
        // check would let it through.
        std::fs::create_dir(tmp.path().join("rootx")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("rootx"), root.join("sib")).unwrap();

        let refuse = |sub: &str| resolve_data_dir(&root, Some(sub)).unwrap_err();
        assert!(matches!(refuse("../x"), DirError::Escapes(_)));
        assert!(matches!(refuse(".."), DirError::Escapes(_)));
        assert!(matches!(refuse("a/../../x"), DirError::Escapes(_)));
        assert!(matches!(refuse("/etc"), DirError::Absolute(_)));
        assert!(matches!(refuse("out"), DirError::Escapes(_)));
        assert!(matches!(refuse("out/x/y"), DirError::Escapes(_)));
        assert!(matches!(refuse("sib/x"), DirError::Escapes(_)));
        assert!(matches!(refuse("a\0b"), DirError::Invalid(_)));
        assert!(matches!(refuse("file"), DirError::NotAFolder(_)));
        assert!(matches!(refuse("file/x"), DirError::NotAFolder(_)));
        // A dangling link is not created through.
        assert!(matches!(refuse("dangling/x"), DirError::Io { .. }));
        assert!(!tmp.path().join("nowhere").exists());
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
        // Nothing was created for the refused paths (`a` of "a/../../x" too).
        let mut names: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["dangling", "file", "out", "sib"]);
        assert!(std::fs::read_dir(tmp.path().join("rootx"))
            .unwrap()
            .next()
            .is_none());
    }
}
