//! The SHA-1 worker pool: a fixed number of threads (one per core) that
//! verify pieces straight from the map, off the network threads. One pool
//! serves every torrent of a process: a torrent submits through its own
//! [`HashQueue`], whose jobs carry its storage, hashes and result channel.
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

/// One process's SHA-1 workers, shared by every torrent: each torrent
/// submits through its own [`HashQueue`], which carries where to read the
/// piece and where its result goes.
pub struct HashPool {
    jobs: Option<Sender<PoolJob>>,
    /// Dropped by `shutdown`: tells the workers to drain and stop.
    stop: Option<Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    /// The queue of the torrent given to [`HashPool::start`], if any.
    default_queue: Option<HashQueue>,
}

/// What a worker needs to check one piece.
pub struct PieceHashes {
    pub expected: Vec<[u8; 20]>,
    pub geometry: PieceGeometry,
}

/// One torrent's side of the pool: its data, its hashes, its results.
struct HashTarget {
    storage: Arc<dyn PieceStore>,
    hashes: Arc<PieceHashes>,
    results: Sender<HashResult>,
}

struct PoolJob {
    job: HashJob,
    target: Arc<HashTarget>,
}

/// Submits one torrent's pieces to the shared pool; cloneable, held by
/// the torrent's connection threads.
#[derive(Clone)]
pub struct HashQueue {
    jobs: Sender<PoolJob>,
    target: Arc<HashTarget>,
}

impl HashQueue {
    /// Queues `job`; false once the pool has shut down.
    pub fn send(&self, job: HashJob) -> bool {
        self.jobs
            .send(PoolJob {
                job,
                target: self.target.clone(),
            })
            .is_ok()
    }
}

fn hash(pool_job: PoolJob) {
    let PoolJob { job, target } = pool_job;
    let len = target.hashes.geometry.piece_len(job.piece);
    let ok = target.storage.hash_piece(job.piece, len) == target.hashes.expected[job.piece];
    if ok {
        target.storage.release_piece(job.piece, len);
    }
    // Dropped silently once the torrent stopped listening.
    let _ = target.results.send(HashResult {
        piece: job.piece,
        purpose: job.purpose,
        ok,
    });
}

impl HashPool {
    /// Starts `threads` workers shared by every torrent of the process;
    /// each torrent gets a [`HashPool::queue`].
    pub fn shared(threads: usize) -> HashPool {
        let (tx, rx): (Sender<PoolJob>, Receiver<PoolJob>) = crossbeam_channel::unbounded();
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                let stop_rx = stop_rx.clone();
                std::thread::Builder::new()
                    .name(format!("sha1-{i}"))
                    .spawn(move || {
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
            default_queue: None,
        }
    }

    /// A pool for one torrent: `threads` workers checking `storage`
    /// against `hashes`, results to `results` (dropped silently once that
    /// receiver is gone, i.e. during shutdown).
    pub fn start(
        storage: Arc<dyn PieceStore>,
        hashes: Arc<PieceHashes>,
        threads: usize,
        results: Sender<HashResult>,
    ) -> HashPool {
        let mut pool = HashPool::shared(threads);
        pool.default_queue = Some(pool.queue(storage, hashes, results));
        pool
    }

    /// A torrent's queue into this pool.
    pub fn queue(
        &self,
        storage: Arc<dyn PieceStore>,
        hashes: Arc<PieceHashes>,
        results: Sender<HashResult>,
    ) -> HashQueue {
        HashQueue {
            jobs: self.jobs.clone().expect("pool is running"),
            target: Arc::new(HashTarget {
                storage,
                hashes,
                results,
            }),
        }
    }

    /// Queues a job of the torrent given to [`HashPool::start`].
    pub fn submit(&self, job: HashJob) {
        if let Some(q) = &self.default_queue {
            q.send(job);
        }
    }

    /// The queue of the torrent given to [`HashPool::start`].
    pub fn submitter(&self) -> HashQueue {
        self.default_queue
            .clone()
            .expect("a pool started for one torrent")
    }

    /// Stops accepting jobs, finishes queued ones, and joins the workers,
    /// even while other threads still hold a [`HashQueue`].
    pub fn shutdown(mut self) {
        self.jobs.take();
        self.default_queue.take();
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

    #[test]
    fn one_shared_pool_checks_two_torrents_and_answers_each_on_its_own_channel() {
        use crate::storage::MemStorage;
        let piece_len = 16 * 1024u64;
        let torrent = |seed: u8, pieces: usize| {
            let data: Vec<u8> = (0..piece_len as usize * pieces)
                .map(|i| (i as u8).wrapping_mul(seed))
                .collect();
            let expected = data
                .chunks(piece_len as usize)
                .map(|p| {
                    use sha1::{Digest, Sha1};
                    Sha1::digest(p).into()
                })
                .collect();
            let geometry = PieceGeometry::new(data.len() as u64, piece_len).unwrap();
            (
                Arc::new(MemStorage::with_contents(piece_len, &data)),
                Arc::new(PieceHashes { expected, geometry }),
            )
        };
        let (store_a, hashes_a) = torrent(3, 4);
        let (store_b, hashes_b_true) = torrent(7, 2);
        // Torrent b expects other bytes for its piece 1: that check fails.
        let mut expected_b = hashes_b_true.expected.clone();
        expected_b[1] = [0; 20];
        let hashes_b = Arc::new(PieceHashes {
            expected: expected_b,
            geometry: hashes_b_true.geometry,
        });
        let pool = HashPool::shared(2);
        let (tx_a, rx_a) = crossbeam_channel::unbounded();
        let (tx_b, rx_b) = crossbeam_channel::unbounded();
        let queue_a = pool.queue(store_a, hashes_a, tx_a);
        let queue_b = pool.queue(store_b, hashes_b, tx_b);
        for piece in 0..4 {
            assert!(queue_a.send(HashJob {
                piece,
                purpose: HashPurpose::Download,
            }));
        }
        for piece in 0..2 {
            assert!(queue_b.send(HashJob {
                piece,
                purpose: HashPurpose::Resume,
            }));
        }
        pool.shutdown();
        let mut a: Vec<HashResult> = rx_a.try_iter().collect();
        let mut b: Vec<HashResult> = rx_b.try_iter().collect();
        a.sort_by_key(|r| r.piece);
        b.sort_by_key(|r| r.piece);
        assert_eq!(a.len(), 4);
        assert!(a.iter().all(|r| r.ok && r.purpose == HashPurpose::Download));
        assert_eq!(
            b.iter().map(|r| (r.piece, r.ok)).collect::<Vec<_>>(),
            vec![(0, true), (1, false)]
        );
        assert!(
            !queue_a.send(HashJob {
                piece: 0,
                purpose: HashPurpose::Download,
            }),
            "a stopped pool refuses jobs"
        );
    }
}
