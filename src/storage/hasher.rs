//! The SHA-1 worker pool: a fixed number of threads (one per core) that
//! verify pieces straight from the map, off the network threads.
//!
//! `shutdown` is bounded by the queued work, not by who else holds a job
//! sender: a connection thread left running past the swarm's deadline may
//! still hold one (through `peer::Swarm`), so the workers stop on a stop
//! channel of the pool's own and drain what is queued, instead of waiting
//! for every sender to drop.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::PieceStore;
use crate::core::PieceGeometry;

/// Why a piece is being hashed; comes back with the result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HashPurpose {
    /// Checking data found on disk at start.
    Resume,
    /// Checking a piece just downloaded.
    Download,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashJob {
    pub piece: usize,
    pub purpose: HashPurpose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashResult {
    pub piece: usize,
    pub purpose: HashPurpose,
    pub ok: bool,
}

pub struct HashPool {
    jobs: Option<Sender<HashJob>>,
    /// Dropped by `shutdown`: tells the workers to drain and stop.
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
}

/// What a worker needs to check one piece.
pub struct PieceHashes {
    pub expected: Vec<[u8; 20]>,
    pub geometry: PieceGeometry,
}

impl HashPool {
    /// Starts `threads` workers; results go to `results` (dropped silently
    /// once that receiver is gone, i.e. during shutdown).
    pub fn start(
        storage: Arc<dyn PieceStore>,
        hashes: Arc<PieceHashes>,
        threads: usize,
        results: Sender<HashResult>,
    ) -> HashPool {
        let (tx, rx): (Sender<HashJob>, Receiver<HashJob>) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let stop_rx = stop_rx.clone();
                let storage = storage.clone();
                let hashes = hashes.clone();
                let results = results.clone();
                std::thread::Builder::new()
                    .name(format!("sha1-{i}"))
                    .spawn(move || {
                        let hash = |job: HashJob| {
                            let len = hashes.geometry.piece_len(job.piece);
                            let ok =
                                storage.hash_piece(job.piece, len) == hashes.expected[job.piece];
                            if ok {
                                storage.release_piece(job.piece, len);
                            }
                            let _ = results.send(HashResult {
                                piece: job.piece,
                                purpose: job.purpose,
                                ok,
                            });
                        };
                        loop {
                            crossbeam_channel::select! {
                                recv(rx) -> job => match job {
                                    Ok(job) => hash(job),
                                    Err(_) => return,
                                },
                                recv(stop_rx) -> _ => break,
                            }
                        }
                        // Stopping: finish what is already queued, then end.
                        while let Ok(job) = rx.try_recv() {
                            hash(job);
                        }
                    })
                    .expect("spawn hasher thread")
            })
            .collect();
        HashPool {
            jobs: Some(tx),
            stop: Some(stop_tx),
            threads,
        }
    }

    pub fn submit(&self, job: HashJob) {
        if let Some(tx) = &self.jobs {
            let _ = tx.send(job);
        }
    }

    /// A cloneable handle to submit jobs from other threads.
    pub fn submitter(&self) -> Sender<HashJob> {
        self.jobs.clone().expect("pool is running")
    }

    /// Stops accepting jobs, finishes queued ones, and joins the workers,
    /// even while other threads still hold a [`HashPool::submitter`].
    pub fn shutdown(mut self) {
        self.jobs.take();
        self.stop.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Number of hashing threads: one per core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Metainfo;
    use crate::storage::Storage;

    #[test]
    fn shutdown_finishes_queued_jobs_while_a_submitter_is_still_held() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, &content).unwrap();
        let opts = crate::storage::torrent_file::CreateOptions {
            piece_length: Some(16 * 1024),
            ..Default::default()
        };
        let bytes = crate::storage::torrent_file::create(&src, &opts).unwrap();
        let meta = Metainfo::from_bytes(&bytes).unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::copy(&src, data.join("src.bin")).unwrap();
        let (storage, _) = Storage::open(&meta, &data).unwrap();
        let hashes = Arc::new(PieceHashes {
            expected: meta.piece_hashes.clone(),
            geometry: meta.geometry(),
        });
        let (tx, rx) = crossbeam_channel::unbounded();
        let pool = HashPool::start(Arc::new(storage), hashes, 2, tx);
        // Like a connection thread the swarm could not join in time.
        let stray = pool.submitter();
        for piece in 0..meta.num_pieces() {
            pool.submit(HashJob {
                piece,
                purpose: HashPurpose::Resume,
            });
        }
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            pool.shutdown();
            let _ = done_tx.send(());
        });
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .is_ok(),
            "shutdown waited for a stray submitter"
        );
        let results: Vec<HashResult> = rx.try_iter().collect();
        assert_eq!(results.len(), meta.num_pieces(), "queued jobs were dropped");
        assert!(results.iter().all(|r| r.ok));
        drop(stray);
    }
}
