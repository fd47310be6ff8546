//! The torrent's files on disk, memory-mapped, addressed as one byte stream:
//! the [`PieceStore`] a node downloads into. The raw pointer access below
//! is sound under the access rules in the `storage` module doc.
//!
//! Every path comes from a validated `Metainfo` (relative, safe components);
//! folders are created below the data directory and checked to resolve
//! inside it, and files are opened without following symlinks, so a
//! pre-planted link cannot redirect a write outside the directory.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::{MmapOptions, MmapRaw};
use parking_lot::Mutex;

use super::{PieceStore, RecvError};
use crate::core::{Metainfo, PieceGeometry};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} is not a real folder inside the data directory (a symlink?)")]
    Escapes(PathBuf),
}

/// Most files a store keeps open for writing at once (a torrent may hold
/// more files than the process may have descriptors).
const OPEN_FILES: usize = 16;

struct MappedFile {
    /// Opened (and kept among the [`OPEN_FILES`] last used) to write blocks
    /// and reserve disk space.
    path: PathBuf,
    /// Offset of this file in the torrent's byte stream.
    offset: u64,
    length: u64,
    /// `None` for empty files (a zero-length map is not allowed).
    map: Option<MmapRaw>,
}

// SAFETY: MmapRaw is a pointer to shared memory; access rules are in the
// module doc and enforced by the swarm state.
unsafe impl Sync for MappedFile {}
unsafe impl Send for MappedFile {}

pub struct Storage {
    files: Vec<MappedFile>,
    geometry: PieceGeometry,
    page_size: usize,
    /// Files open for writing, by index, the most recently used last.
    open: Mutex<Vec<(usize, Arc<File>)>>,
}

/// What opening found on disk.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    /// Per file: it did not exist (or was empty) before, so holds no data.
    pub created: Vec<bool>,
}

impl Storage {
    /// Creates (sparse) or opens every file of `meta` under `dir` and maps it.
    pub fn open(meta: &Metainfo, dir: &Path) -> Result<(Storage, OpenReport), StorageError> {
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StorageError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let root = dir.canonicalize().map_err(io_err(dir))?;
        let mut files = Vec::with_capacity(meta.files.len());
        let mut report = OpenReport::default();
        for entry in &meta.files {
            let path = root.join(entry.relative_path());
            create_folders_inside(&root, &entry.path[..entry.path.len() - 1])?;
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map_err(io_err(&path))?;
            let existing = file.metadata().map_err(io_err(&path))?.len();
            report.created.push(existing == 0);
            if existing < entry.length {
                // Sparse: no blocks are allocated until written.
                file.set_len(entry.length).map_err(io_err(&path))?;
            }
            let map = if entry.length == 0 {
                None
            } else {
                Some(map_file(&file, entry.length).map_err(io_err(&path))?)
            };
            files.push(MappedFile {
                path,
                offset: entry.offset,
                length: entry.length,
                map,
            });
        }
        // SAFETY: sysconf has no preconditions.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        Ok((
            Storage {
                files,
                geometry: meta.geometry(),
                page_size,
                open: Mutex::new(Vec::new()),
            },
            report,
        ))
    }

    /// The file-relative pieces of the byte range `[start, start+len)`:
    /// (file index, offset in that file, length).
    fn segments(&self, start: u64, len: u64) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        let end = (start + len).min(self.geometry.total_length());
        // First file whose range ends after `start` (files are in offset order).
        let first = self.files.partition_point(|f| f.offset + f.length <= start);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < end)
            .filter(|(_, f)| f.length > 0)
            .map(move |(i, f)| {
                let s = start.max(f.offset);
                let e = end.min(f.offset + f.length);
                (first + i, s - f.offset, e - s)
            })
    }

    fn byte_range(&self, piece: usize, begin: u32) -> u64 {
        self.geometry.piece_offset(piece) + begin as u64
    }

    /// Pointer to `len` mapped bytes of file `file` at `offset`.
    fn ptr(&self, file: usize, offset: u64) -> *mut u8 {
        let map = self.files[file]
            .map
            .as_ref()
            .expect("non-empty file is mapped");
        // SAFETY: offset < file length (segments() guarantees it).
        unsafe { map.as_mut_ptr().add(offset as usize) }
    }

    /// File `file` opened for writing: a kept descriptor, or a new one
    /// (opened with no lock held) that then replaces the least recently
    /// used.
    fn handle(&self, file: usize) -> Result<Arc<File>, StorageError> {
        {
            let mut open = self.open.lock();
            if let Some(i) = open.iter().position(|(f, _)| *f == file) {
                let entry = open.remove(i);
                let handle = entry.1.clone();
                open.push(entry);
                return Ok(handle);
            }
        }
        let path = &self.files[file].path;
        let handle = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map(Arc::new)
            .map_err(|source| StorageError::Io {
                path: path.clone(),
                source,
            })?;
        let mut open = self.open.lock();
        if open.len() >= OPEN_FILES {
            open.remove(0);
        }
        open.push((file, handle.clone()));
        Ok(handle)
    }

    /// Calls madvise on the pages that lie wholly inside the piece (plus the
    /// partial last page of a file when `include_file_tail`).
    /// The first failure, with the index of its file, is returned.
    fn advise_piece(
        &self,
        piece: usize,
        len: u32,
        advice: libc::c_int,
        include_file_tail: bool,
    ) -> Result<(), (usize, io::Error)> {
        let page = self.page_size as u64;
        for (file, offset, n) in self.segments(self.byte_range(piece, 0), len as u64) {
            let start = offset.next_multiple_of(page);
            let end = if include_file_tail && offset + n == self.files[file].length {
                (offset + n).next_multiple_of(page)
            } else {
                (offset + n) / page * page
            };
            if end > start {
                let map = self.files[file].map.as_ref().expect("mapped");
                // SAFETY: the range lies inside the mapping; both advices
                // used here leave the file's contents unchanged.
                let rc = unsafe {
                    libc::madvise(
                        map.as_mut_ptr().add(start as usize) as *mut libc::c_void,
                        (end - start) as usize,
                        advice,
                    )
                };
                if rc != 0 {
                    return Err((file, io::Error::last_os_error()));
                }
            }
        }
        Ok(())
    }

    /// Which files (by index) hold bytes of piece `piece`.
    pub fn files_of_piece(&self, piece: usize, len: u32) -> Vec<usize> {
        self.segments(self.byte_range(piece, 0), len as u64)
            .map(|(f, _, _)| f)
            .collect()
    }
}

impl PieceStore for Storage {
    /// Writes the bytes the reader has buffered straight into the file
    /// (`pwrite`), as they come: the page cache gets whole pages from the
    /// socket buffer, where a write through the map would first fault each
    /// page in (reading or zero-filling it) and mark it dirty.
    unsafe fn recv_block(
        &self,
        piece: usize,
        begin: u32,
        len: u32,
        reader: &mut dyn BufRead,
    ) -> Result<(), RecvError> {
        let mut failed = None;
        for (file, offset, n) in self.segments(self.byte_range(piece, begin), len as u64) {
            let handle = match (&failed, self.handle(file)) {
                (None, Ok(h)) => Some(h),
                (None, Err(e)) => {
                    failed = Some(e);
                    None
                }
                (Some(_), _) => None,
            };
            let mut done = 0u64;
            while done < n {
                let buf = reader.fill_buf()?;
                if buf.is_empty() {
                    return Err(RecvError::Read(io::ErrorKind::UnexpectedEof.into()));
                }
                let take = buf.len().min((n - done) as usize);
                if let (Some(h), None) = (&handle, &failed) {
                    if let Err(source) = h.write_all_at(&buf[..take], offset + done) {
                        failed = Some(StorageError::Io {
                            path: self.files[file].path.clone(),
                            source,
                        });
                    }
                }
                reader.consume(take);
                done += take as u64;
            }
        }
        failed.map_or(Ok(()), |e| Err(RecvError::Store(e)))
    }

    unsafe fn block_slices(&self, piece: usize, begin: u32, len: u32) -> Vec<&[u8]> {
        self.segments(self.byte_range(piece, begin), len as u64)
            .map(|(file, offset, n)| std::slice::from_raw_parts(self.ptr(file, offset), n as usize))
            .collect()
    }

    /// Makes a piece ready to be written, before its first block arrives:
    /// reserves its bytes on disk (`fallocate`), so that a full disk is an
    /// error here, before any of its blocks is taken from a peer; files stay
    /// sparse everywhere else. Filesystems without `fallocate` skip it (a
    /// full disk is then a failed block write).
    fn prepare_piece(&self, piece: usize, len: u32) -> Result<(), StorageError> {
        for (file, offset, n) in self.segments(self.byte_range(piece, 0), len as u64) {
            let handle = self.handle(file)?;
            // SAFETY: fallocate on an open descriptor; mode 0 only allocates
            // (a range already holding data keeps it).
            let rc = unsafe {
                libc::fallocate(
                    handle.as_raw_fd(),
                    0,
                    offset as libc::off_t,
                    n as libc::off_t,
                )
            };
            if rc != 0 {
                let e = io::Error::last_os_error();
                let unsupported = matches!(
                    e.raw_os_error(),
                    Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL)
                );
                if !unsupported {
                    return Err(StorageError::Io {
                        path: self.files[file].path.clone(),
                        source: e,
                    });
                }
            }
        }
        Ok(())
    }

    /// Drops this process's mapping of a verified piece's pages: the data
    /// stays in the page cache and on disk, but no longer counts in our
    /// memory, so memory does not grow with the torrent's size.
    fn release_piece(&self, piece: usize, len: u32) {
        // MADV_DONTNEED on a shared file mapping keeps the data (dirty pages
        // are written back); it only unmaps them from this process.
        // Only a hint: memory use is all that depends on it.
        let _ = self.advise_piece(piece, len, libc::MADV_DONTNEED, true);
    }

    /// Writes every dirty page to disk and waits for it.
    fn flush(&self) -> io::Result<()> {
        for f in &self.files {
            if let Some(map) = &f.map {
                map.flush()?;
            }
        }
        Ok(())
    }
}

/// Creates `root/a/b/...` one level at a time, refusing any level that
/// exists as something other than a real folder (a symlink could lead out).
fn create_folders_inside(root: &Path, components: &[String]) -> Result<(), StorageError> {
    let mut path = root.to_path_buf();
    for c in components {
        path.push(c);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Err(StorageError::Escapes(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match std::fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(source) => return Err(StorageError::Io { path, source }),
            },
            Err(source) => return Err(StorageError::Io { path, source }),
        }
    }
    Ok(())
}

fn map_file(file: &File, len: u64) -> io::Result<MmapRaw> {
    MmapOptions::new().len(len as usize).map_raw(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::metainfo::FileEntry;
    use crate::storage::PieceStore;

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
            info_hash: crate::core::InfoHash([0; 20]),
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

    #[test]
    fn blocks_spanning_files_land_in_each_file() {
        let dir = tempfile::tempdir().unwrap();
        let m = meta(&[5, 0, 3, 10], 8);
        let (s, report) = Storage::open(&m, dir.path()).unwrap();
        assert_eq!(report.created, vec![true; 4]);
        let data: Vec<u8> = (0..18).collect();
        unsafe {
            s.write_block(0, 0, &data[..8]).unwrap();
            s.write_block(1, 0, &data[8..16]).unwrap();
            s.write_block(2, 0, &data[16..]).unwrap();
        }
        s.flush().unwrap();
        let read = |i| std::fs::read(dir.path().join(format!("t/f{i}"))).unwrap();
        assert_eq!(read(0), &data[..5]);
        assert_eq!(read(1), b"");
        assert_eq!(read(2), &data[5..8]);
        assert_eq!(read(3), &data[8..]);
        use sha1::{Digest, Sha1};
        let want: [u8; 20] = Sha1::digest(&data[8..16]).into();
        assert_eq!(s.hash_piece(1, 8), want);
        assert_eq!(s.files_of_piece(0, 8), vec![0, 2]);
        s.release_piece(1, 8);
        assert_eq!(s.hash_piece(1, 8), want, "released pages keep their data");
    }

    #[test]
    fn refuses_a_symlinked_folder_that_leads_outside() {
        let outside = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("t")).unwrap();
        let m = meta(&[4], 4);
        assert!(matches!(
            Storage::open(&m, dir.path()),
            Err(StorageError::Escapes(_))
        ));
        assert!(std::fs::read_dir(outside.path()).unwrap().next().is_none());
    }
}
