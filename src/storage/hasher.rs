//! The SHA-1 worker pool: a fixed number of threads (one per core) that
//! verify pieces straight from the map, off the network threads.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::Storage;

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
    threads: Vec<JoinHandle<()>>,
}

/// What a worker needs to check one piece.
pub struct PieceHashes {
    pub expected: Vec<[u8; 20]>,
    pub piece_length: u64,
    pub total_length: u64,
}

impl PieceHashes {
    fn len_of(&self, piece: usize) -> u32 {
        let start = piece as u64 * self.piece_length;
        (self.total_length - start).min(self.piece_length) as u32
    }
}

impl HashPool {
    /// Starts `threads` workers; results go to `results` (dropped silently
    /// once that receiver is gone, i.e. during shutdown).
    pub fn start(
        storage: Arc<Storage>,
        hashes: Arc<PieceHashes>,
        threads: usize,
        results: Sender<HashResult>,
    ) -> HashPool {
        let (tx, rx): (Sender<HashJob>, Receiver<HashJob>) = crossbeam_channel::unbounded();
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let storage = storage.clone();
                let hashes = hashes.clone();
                let results = results.clone();
                std::thread::Builder::new()
                    .name(format!("sha1-{i}"))
                    .spawn(move || {
                        for job in rx {
                            let len = hashes.len_of(job.piece);
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
                        }
                    })
                    .expect("spawn hasher thread")
            })
            .collect();
        HashPool {
            jobs: Some(tx),
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

    /// Stops accepting jobs, finishes queued ones, and joins the workers.
    pub fn shutdown(mut self) {
        self.jobs.take();
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
