//! The process's global limits (`--max-peers`, `--upload-limit`,
//! `--download-limit`), shared between the torrents it runs. Every torrent
//! has its own limiters and its own peer cap, so stopping one closes only
//! its own; this registry re-splits the totals between the torrents that
//! run (`swarm::shares`): connections equally whenever one joins or
//! leaves, rates max-min fair once a second from what each one used.
//!
//! Locks, in order: `torrents`, then a limiter's bucket (`set_rate`). No
//! swarm lock is taken here.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::peer::limiter::RateLimiter;
use crate::peer::{RateLimits, Swarm};
use crate::swarm::shares::{split_peers, split_rate, RateDemand};

/// How often rates are re-split.
const SPLIT_EVERY: Duration = Duration::from_secs(1);

pub struct ProcessLimits {
    max_peers: usize,
    upload: Option<u64>,
    download: Option<u64>,
    torrents: Mutex<Torrents>,
}

struct Torrents {
    next_id: u64,
    list: Vec<Registered>,
    last_split: Instant,
}

struct Registered {
    id: u64,
    swarm: Weak<Swarm>,
    upload: Option<Metered>,
    download: Option<Metered>,
}

/// A torrent's limiter with what it had granted at the last split.
struct Metered {
    limiter: Arc<RateLimiter>,
    seen: u64,
}

/// A torrent's place in the split; leaving (drop) hands its share back.
pub struct Membership {
    limits: Arc<ProcessLimits>,
    id: u64,
}

impl ProcessLimits {
    pub fn new(max_peers: usize, upload: Option<u64>, download: Option<u64>) -> ProcessLimits {
        ProcessLimits {
            max_peers: max_peers.max(1),
            upload,
            download,
            torrents: Mutex::new(Torrents {
                next_id: 0,
                list: Vec::new(),
                last_split: Instant::now(),
            }),
        }
    }

    /// The whole peer limit: what the shared listener admits.
    pub fn max_peers(&self) -> usize {
        self.max_peers
    }

    /// Limiters for a torrent about to start, at an equal share; `join`
    /// re-splits once its swarm exists.
    pub fn new_rate_limits(&self) -> RateLimits {
        let n = self.torrents.lock().list.len() as u64 + 1;
        let make = |total: Option<u64>| total.map(|t| Arc::new(RateLimiter::new(t / n)));
        RateLimits {
            upload: make(self.upload),
            download: make(self.download),
        }
    }

    /// A torrent about to start gets an equal part of the peer limit.
    pub fn new_peer_share(&self) -> usize {
        let n = self.torrents.lock().list.len() + 1;
        split_peers(self.max_peers, n)[n - 1]
    }

    /// Registers a running torrent's swarm; its shares are re-split now and
    /// whenever the set of torrents changes, until the membership drops.
    pub fn join(self: &Arc<Self>, swarm: &Arc<Swarm>) -> Membership {
        let metered = |l: &Option<Arc<RateLimiter>>| {
            l.as_ref().map(|l| Metered {
                limiter: l.clone(),
                seen: l.granted(),
            })
        };
        let id = {
            let mut t = self.torrents.lock();
            let id = t.next_id;
            t.next_id += 1;
            t.list.push(Registered {
                id,
                swarm: Arc::downgrade(swarm),
                upload: metered(&swarm.limits.upload),
                download: metered(&swarm.limits.download),
            });
            self.split_all(&mut t, Instant::now());
            id
        };
        Membership {
            limits: self.clone(),
            id,
        }
    }

    /// Re-splits the rates if a second has passed since the last split;
    /// every torrent's loop calls this on its tick, the first one due does
    /// the work.
    pub fn tick(&self) {
        let now = Instant::now();
        let mut t = self.torrents.lock();
        if now.duration_since(t.last_split) >= SPLIT_EVERY {
            self.split_all(&mut t, now);
        }
    }

    fn leave(&self, id: u64) {
        let mut t = self.torrents.lock();
        t.list.retain(|r| r.id != id);
        self.split_all(&mut t, Instant::now());
    }

    fn split_all(&self, t: &mut Torrents, now: Instant) {
        let secs = now.duration_since(t.last_split).as_secs_f64().max(0.001);
        t.last_split = now;
        let peers = split_peers(self.max_peers, t.list.len());
        for (r, share) in t.list.iter().zip(peers) {
            if let Some(swarm) = r.swarm.upgrade() {
                swarm.set_max_peers(share);
            }
        }
        for (total, pick) in [
            (
                self.upload,
                (|r| r.upload.as_mut()) as fn(&mut Registered) -> Option<&mut Metered>,
            ),
            (self.download, |r| r.download.as_mut()),
        ] {
            let Some(total) = total else { continue };
            let mut metered: Vec<&mut Metered> = t.list.iter_mut().filter_map(pick).collect();
            let demands: Vec<RateDemand> = metered
                .iter_mut()
                .map(|m| {
                    let granted = m.limiter.granted();
                    let used = (granted.saturating_sub(m.seen) as f64 / secs) as u64;
                    m.seen = granted;
                    RateDemand {
                        allotted: m.limiter.rate(),
                        used,
                        cap: None,
                    }
                })
                .collect();
            for (m, share) in metered.iter().zip(split_rate(total, &demands)) {
                m.limiter.set_rate(share);
            }
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.limits.leave(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::geometry::PieceGeometry;
    use crate::core::{InfoHash, PeerId};
    use crate::storage::hasher::{HashPool, PieceHashes};
    use crate::storage::mem::MemStorage;
    use crate::swarm::torrent::TorrentState;

    const PIECE: u64 = 16 * 1024;

    fn swarm(limits: &ProcessLimits, pool: &HashPool, n: u8) -> Arc<Swarm> {
        let geometry = PieceGeometry::new(4 * PIECE, PIECE).expect("valid");
        let store = Arc::new(MemStorage::new(PIECE, 4 * PIECE));
        let hashes = Arc::new(PieceHashes {
            expected: vec![[0; 20]; 4],
            geometry,
        });
        let (results, _) = crossbeam_channel::unbounded();
        let our_id = PeerId::generate();
        Swarm::new(
            TorrentState::new(geometry, our_id, 4, n.into()),
            store.clone(),
            InfoHash([n; 20]),
            our_id,
            limits.new_peer_share(),
            limits.new_rate_limits(),
            pool.queue(store, hashes, results),
        )
    }

    #[test]
    fn the_peer_limit_is_split_equally_and_given_back_on_leaving() {
        let limits = Arc::new(ProcessLimits::new(50, None, None));
        let pool = HashPool::shared(1);
        let swarms: Vec<Arc<Swarm>> = (0..3).map(|n| swarm(&limits, &pool, n)).collect();
        let mut members: Vec<Membership> = swarms.iter().map(|s| limits.join(s)).collect();
        let shares: Vec<usize> = swarms.iter().map(|s| s.max_peers()).collect();
        assert_eq!(shares, vec![17, 17, 16]);
        drop(members.pop());
        assert_eq!(swarms[0].max_peers() + swarms[1].max_peers(), 50);
        assert_eq!(swarms[0].max_peers(), 25);
        drop(members);
        assert!(limits.torrents.lock().list.is_empty());
    }

    #[test]
    fn a_busy_torrent_takes_the_rate_an_idle_one_leaves_and_they_never_exceed_it() {
        let limits = Arc::new(ProcessLimits::new(50, Some(1_000_000), None));
        let pool = HashPool::shared(1);
        let busy = swarm(&limits, &pool, 1);
        let _busy_member = limits.join(&busy);
        let idle = swarm(&limits, &pool, 2);
        let _idle_member = limits.join(&idle);
        let up = |s: &Swarm| s.limits.upload.as_ref().expect("limited").clone();
        assert!(idle.limits.download.is_none(), "no download limit given");
        assert_eq!(up(&busy).rate() + up(&idle).rate(), 1_000_000);
        // The busy one moves 1000 bytes in what the split is told is 1 ms
        // (1 MB/s, all it was given); the idle one moves nothing.
        assert!(up(&busy).acquire(1000));
        let last = limits.torrents.lock().last_split;
        limits.split_all(&mut limits.torrents.lock(), last + Duration::from_millis(1));
        assert_eq!(up(&idle).rate(), 125_000, "the floor");
        assert_eq!(up(&busy).rate(), 875_000);
        // Both busy: half each.
        let last = limits.torrents.lock().last_split;
        assert!(up(&busy).acquire(875));
        assert!(up(&idle).acquire(125));
        limits.split_all(&mut limits.torrents.lock(), last + Duration::from_millis(1));
        assert_eq!(up(&busy).rate(), 500_000);
        assert_eq!(up(&idle).rate(), 500_000);
    }
}
