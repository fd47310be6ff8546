//! Fetching a torrent's info dictionary from peers (BEP 9) for a magnet
//! link: which piece to ask which peer, timeouts and rejects, the sizes
//! peers claim, assembly, the SHA-1 check against the info-hash, and whom
//! to blame when it fails. Plain policy: the connection threads in
//! `node::magnet` feed it what peers said and send what it asks.
//!
//! Blame: every piece remembers who sent it. An attempt that fails the
//! hash with a single contributor bans that peer. One with several cannot
//! say who lied: it records a digest of what each sent, and the next
//! attempts take every piece from one peer (solo), so the next failure
//! names its peer; once the metadata verifies, every peer whose recorded
//! piece differs from the verified bytes is named a liar too.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use sha1::{Digest, Sha1};

use crate::core::InfoHash;
use crate::wire::metadata::{self, MAX_METADATA_SIZE, METADATA_PIECE_LEN};

/// How the caller names a peer (one connection).
pub type FetchPeer = u64;

/// A piece not answered within this is given to another peer, and the
/// peer that sat on it is dropped (a 16 KiB answer takes well under a
/// second on any working link).
pub const METADATA_REQUEST_TIMEOUT: Duration = Duration::from_secs(8);
/// Requests in flight to one peer.
pub const MAX_OUTSTANDING_PER_PEER: usize = 4;
/// After a reject, a peer is not asked again for this long (it may be
/// rate limiting: btnode itself rejects past a per-peer budget).
pub const REJECT_PAUSE: Duration = Duration::from_secs(1);

/// Why a peer is of no further use to the fetch; the caller closes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it offers no metadata (no ut_metadata or no metadata_size)")]
    NoMetadata,
    #[error("its metadata_size {0} is over the {MAX_METADATA_SIZE} byte cap")]
    TooLarge(u64),
    #[error("it is banned: metadata it sent did not match the info-hash")]
    Banned,
    #[error("it sent total_size {got}, not the {want} it announced")]
    InconsistentSize { got: u64, want: u64 },
    #[error("it sent metadata piece {piece} of {got} bytes, not {want}")]
    BadPieceLength { piece: u32, got: usize, want: usize },
    #[error("it did not answer a metadata request within {0:?}")]
    TimedOut(Duration),
    #[error("it rejected too many metadata requests")]
    Rejected,
}

/// What a piece of data led to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Stored; more to come.
    Stored,
    /// Not asked of this peer (late, after a timeout or a restart): ignored.
    Ignored,
    /// The info dictionary, verified against the info-hash. `liars` sent,
    /// in an earlier attempt, a piece that differs from it.
    Done {
        info: Vec<u8>,
        liars: Vec<FetchPeer>,
    },
    /// The assembled bytes did not match the info-hash: the attempt starts
    /// over. `banned` are the peers proven to have lied (dropped now).
    HashFailed { banned: Vec<FetchPeer> },
}

#[derive(Debug)]
enum Slot {
    Missing,
    Requested(FetchPeer),
    Have { from: FetchPeer, data: Vec<u8> },
}

#[derive(Debug)]
struct PeerFetch {
    size: u64,
    inflight: Vec<(u32, Instant)>,
    paused_until: Option<Instant>,
    rejects: u32,
}

#[derive(Debug)]
pub struct MetadataFetch {
    info_hash: InfoHash,
    timeout: Duration,
    peers: HashMap<FetchPeer, PeerFetch>,
    /// The size of the current attempt, chosen when the first request is
    /// made: the one most peers announce.
    size: Option<u64>,
    pieces: Vec<Slot>,
    /// Once an attempt with several contributors failed: every piece from one peer.
    solo: bool,
    solo_owner: Option<FetchPeer>,
    /// Digests of what each peer sent in failed attempts.
    suspects: Vec<(FetchPeer, u32, [u8; 20])>,
    banned: HashSet<FetchPeer>,
    done: bool,
}

impl MetadataFetch {
    pub fn new(info_hash: InfoHash) -> MetadataFetch {
        MetadataFetch::with_timeout(info_hash, METADATA_REQUEST_TIMEOUT)
    }

    pub fn with_timeout(info_hash: InfoHash, timeout: Duration) -> MetadataFetch {
        MetadataFetch {
            info_hash,
            timeout,
            peers: HashMap::new(),
            size: None,
            pieces: Vec::new(),
            solo: false,
            solo_owner: None,
            suspects: Vec::new(),
            banned: HashSet::new(),
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Peers taking part now.
    pub fn num_peers(&self) -> usize {
        self.peers.len()
    }

    /// Whether `peer` still takes part (not dropped for a timeout, a ban
    /// or a refusal).
    pub fn has_peer(&self, peer: FetchPeer) -> bool {
        self.peers.contains_key(&peer)
    }

    /// A peer's extension handshake: its `ut_metadata` id (whether it
    /// speaks it) and `metadata_size`. Nothing is allocated for the size
    /// until pieces arrive, and a size over the cap is refused outright.
    pub fn add_peer(
        &mut self,
        peer: FetchPeer,
        speaks_metadata: bool,
        metadata_size: Option<u64>,
    ) -> Result<(), Refusal> {
        if self.banned.contains(&peer) {
            return Err(Refusal::Banned);
        }
        let size = match metadata_size {
            Some(size) if speaks_metadata && size > 0 => size,
            _ => return Err(Refusal::NoMetadata),
        };
        if size > MAX_METADATA_SIZE {
            return Err(Refusal::TooLarge(size));
        }
        self.peers.insert(
            peer,
            PeerFetch {
                size,
                inflight: Vec::new(),
                paused_until: None,
                rejects: 0,
            },
        );
        Ok(())
    }

    /// The connection is gone: its requests go back to the pool. In a solo
    /// attempt its pieces go too, so one attempt keeps one source.
    pub fn remove_peer(&mut self, peer: FetchPeer) {
        if self.peers.remove(&peer).is_none() {
            return;
        }
        for slot in &mut self.pieces {
            let release = match slot {
                Slot::Requested(p) => *p == peer,
                Slot::Have { from, .. } => self.solo && *from == peer,
                Slot::Missing => false,
            };
            if release {
                *slot = Slot::Missing;
            }
        }
        if self.solo_owner == Some(peer) {
            self.solo_owner = None;
        }
    }

    /// The size this attempt fetches, chosen among the peers' claims; chosen
    /// again when no peer that claims it is left (a first peer with a wrong
    /// size that went silent must not hold the fetch).
    fn attempt_size(&mut self) -> Option<u64> {
        if let Some(size) = self.size {
            if !self.peers.values().any(|p| p.size == size) {
                self.size = None;
                self.pieces.clear();
                self.solo_owner = None;
            }
        }
        if self.size.is_none() {
            let mut votes: HashMap<u64, usize> = HashMap::new();
            for p in self.peers.values() {
                *votes.entry(p.size).or_default() += 1;
            }
            // Most votes; ties to the smaller size, so the choice is stable.
            let size = votes
                .into_iter()
                .max_by_key(|&(size, n)| (n, std::cmp::Reverse(size)))?
                .0;
            self.size = Some(size);
            self.pieces = (0..metadata::piece_count(size))
                .map(|_| Slot::Missing)
                .collect();
        }
        self.size
    }

    /// The next piece to ask `peer` for, if any: none while it has
    /// [`MAX_OUTSTANDING_PER_PEER`] in flight, is paused after a reject,
    /// announced another size than this attempt's, or (solo) is not the
    /// attempt's source.
    pub fn next_request(&mut self, peer: FetchPeer, now: Instant) -> Option<u32> {
        if self.done || !self.peers.contains_key(&peer) {
            return None;
        }
        let size = self.attempt_size()?;
        let p = self.peers.get_mut(&peer)?;
        if p.size != size
            || p.inflight.len() >= MAX_OUTSTANDING_PER_PEER
            || p.paused_until.is_some_and(|t| now < t)
        {
            return None;
        }
        if self.solo {
            match self.solo_owner {
                None => self.solo_owner = Some(peer),
                Some(owner) if owner != peer => return None,
                Some(_) => {}
            }
        }
        let piece = self
            .pieces
            .iter()
            .position(|s| matches!(s, Slot::Missing))? as u32;
        self.pieces[piece as usize] = Slot::Requested(peer);
        p.inflight.push((piece, now));
        Some(piece)
    }

    /// A `data` message from `peer`. An error drops the peer (it is
    /// removed here).
    pub fn on_data(
        &mut self,
        peer: FetchPeer,
        piece: u32,
        total_size: u64,
        data: Vec<u8>,
    ) -> Result<Outcome, Refusal> {
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(Outcome::Ignored);
        };
        let Some(at) = p.inflight.iter().position(|&(i, _)| i == piece) else {
            return Ok(Outcome::Ignored);
        };
        let Some(size) = self.size else {
            return Ok(Outcome::Ignored);
        };
        if total_size != size {
            self.remove_peer(peer);
            return Err(Refusal::InconsistentSize {
                got: total_size,
                want: size,
            });
        }
        let want = metadata::piece_len(size, piece);
        if data.len() != want {
            self.remove_peer(peer);
            return Err(Refusal::BadPieceLength {
                piece,
                got: data.len(),
                want,
            });
        }
        p.inflight.swap_remove(at);
        self.pieces[piece as usize] = Slot::Have { from: peer, data };
        if self.pieces.iter().all(|s| matches!(s, Slot::Have { .. })) {
            Ok(self.finish())
        } else {
            Ok(Outcome::Stored)
        }
    }

    /// Every piece is in: verify, then either done or start over.
    fn finish(&mut self) -> Outcome {
        let pieces = std::mem::take(&mut self.pieces);
        let mut info = Vec::with_capacity(self.size.unwrap_or(0) as usize);
        let mut sent: Vec<(FetchPeer, u32, [u8; 20])> = Vec::with_capacity(pieces.len());
        for (i, slot) in pieces.into_iter().enumerate() {
            if let Slot::Have { from, data } = slot {
                sent.push((from, i as u32, Sha1::digest(&data).into()));
                info.extend_from_slice(&data);
            }
        }
        if InfoHash(Sha1::digest(&info).into()) == self.info_hash {
            self.done = true;
            let mut liars: Vec<FetchPeer> = self
                .suspects
                .iter()
                // A piece of another size's attempt cannot match either.
                .filter(|&&(_, piece, digest)| {
                    sent.get(piece as usize).is_none_or(|s| s.2 != digest)
                })
                .map(|&(peer, _, _)| peer)
                .collect();
            liars.sort_unstable();
            liars.dedup();
            for peer in &liars {
                self.banned.insert(*peer);
            }
            return Outcome::Done { info, liars };
        }
        let mut contributors: Vec<FetchPeer> = sent.iter().map(|s| s.0).collect();
        contributors.sort_unstable();
        contributors.dedup();
        let banned = if contributors.len() == 1 {
            contributors
        } else {
            self.suspects.extend(sent);
            self.solo = true;
            Vec::new()
        };
        for peer in &banned {
            self.banned.insert(*peer);
            self.peers.remove(peer);
        }
        // Start over; answers still in flight are ignored when they come.
        self.size = None;
        self.solo_owner = None;
        for p in self.peers.values_mut() {
            p.inflight.clear();
        }
        Outcome::HashFailed { banned }
    }

    /// A `reject`: the piece goes back to the pool and the peer pauses; a
    /// peer that rejects more than twice the pieces there are is dropped.
    pub fn on_reject(&mut self, peer: FetchPeer, piece: u32, now: Instant) -> Result<(), Refusal> {
        let limit = 2 * self.pieces.len() as u32 + 8;
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        let Some(at) = p.inflight.iter().position(|&(i, _)| i == piece) else {
            return Ok(());
        };
        p.inflight.swap_remove(at);
        p.paused_until = Some(now + REJECT_PAUSE);
        p.rejects += 1;
        let too_many = p.rejects > limit;
        self.pieces[piece as usize] = Slot::Missing;
        if too_many {
            self.remove_peer(peer);
            return Err(Refusal::Rejected);
        }
        Ok(())
    }

    /// Requests older than the timeout go back to the pool; the peers that
    /// sat on them are removed and returned, for the caller to close.
    pub fn expire(&mut self, now: Instant) -> Vec<FetchPeer> {
        let late: Vec<FetchPeer> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.inflight
                    .iter()
                    .any(|&(_, at)| now.duration_since(at) >= self.timeout)
            })
            .map(|(&k, _)| k)
            .collect();
        for &peer in &late {
            self.remove_peer(peer);
        }
        late
    }

    /// Bytes a piece holds (for the caller's buffers; 0 past the end).
    pub fn piece_len(&self, piece: u32) -> usize {
        self.size
            .map_or(0, |s| metadata::piece_len(s, piece))
            .min(METADATA_PIECE_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info_of(len: usize) -> (Vec<u8>, InfoHash) {
        let info: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        let hash = InfoHash(Sha1::digest(&info).into());
        (info, hash)
    }

    fn piece_of(info: &[u8], piece: u32) -> Vec<u8> {
        let start = piece as usize * METADATA_PIECE_LEN;
        info[start..(start + METADATA_PIECE_LEN).min(info.len())].to_vec()
    }

    /// Answers every request of `peer` with `serve` until none is left.
    fn serve_all(
        f: &mut MetadataFetch,
        peer: FetchPeer,
        size: u64,
        serve: impl Fn(u32) -> Vec<u8>,
    ) -> Outcome {
        let now = Instant::now();
        let mut last = Outcome::Stored;
        while let Some(piece) = f.next_request(peer, now) {
            last = f.on_data(peer, piece, size, serve(piece)).unwrap();
            if !matches!(last, Outcome::Stored) {
                break;
            }
        }
        last
    }

    #[test]
    fn pieces_are_spread_over_peers_assembled_and_verified() {
        let (info, hash) = info_of(3 * METADATA_PIECE_LEN + 10);
        let size = info.len() as u64;
        let mut f = MetadataFetch::new(hash);
        f.add_peer(1, true, Some(size)).unwrap();
        f.add_peer(2, true, Some(size)).unwrap();
        let now = Instant::now();
        assert_eq!(f.next_request(1, now), Some(0));
        assert_eq!(f.next_request(2, now), Some(1));
        assert_eq!(f.next_request(1, now), Some(2));
        assert_eq!(f.next_request(2, now), Some(3));
        assert_eq!(f.next_request(2, now), None, "every piece asked");
        for (peer, piece) in [(2, 3), (1, 0), (2, 1)] {
            let out = f.on_data(peer, piece, size, piece_of(&info, piece));
            assert_eq!(out, Ok(Outcome::Stored));
        }
        assert_eq!(
            f.on_data(1, 2, size, piece_of(&info, 2)),
            Ok(Outcome::Done {
                info: info.clone(),
                liars: vec![]
            })
        );
        assert!(f.is_done());
        assert_eq!(f.next_request(1, now), None);
    }

    #[test]
    fn sizes_over_the_cap_or_absent_are_refused_without_allocating() {
        let mut f = MetadataFetch::new(InfoHash([1; 20]));
        assert_eq!(
            f.add_peer(1, true, Some(1 << 30)),
            Err(Refusal::TooLarge(1 << 30))
        );
        assert_eq!(f.add_peer(2, true, None), Err(Refusal::NoMetadata));
        assert_eq!(f.add_peer(3, true, Some(0)), Err(Refusal::NoMetadata));
        assert_eq!(f.add_peer(4, false, Some(100)), Err(Refusal::NoMetadata));
        assert_eq!(f.num_peers(), 0);
        assert!(f.add_peer(5, true, Some(MAX_METADATA_SIZE)).is_ok());
        assert_eq!(f.next_request(5, Instant::now()), Some(0));
        // Slots only: pieces are allocated as they arrive.
        assert_eq!(f.pieces.len(), 1024);
    }

    #[test]
    fn a_lone_liar_is_banned_at_once() {
        let (info, hash) = info_of(METADATA_PIECE_LEN + 1);
        let size = info.len() as u64;
        let mut f = MetadataFetch::new(hash);
        f.add_peer(1, true, Some(size)).unwrap();
        let out = serve_all(&mut f, 1, size, |p| {
            let mut d = piece_of(&info, p);
            d[0] ^= 1;
            d
        });
        assert_eq!(out, Outcome::HashFailed { banned: vec![1] });
        assert_eq!(f.num_peers(), 0);
        assert_eq!(f.add_peer(1, true, Some(size)), Err(Refusal::Banned));
        f.add_peer(2, true, Some(size)).unwrap();
        let out = serve_all(&mut f, 2, size, |p| piece_of(&info, p));
        assert_eq!(
            out,
            Outcome::Done {
                info,
                liars: vec![]
            }
        );
    }

    /// A liar and an honest peer share an attempt: it fails, nobody can be
    /// blamed yet, and each later attempt has one source. Whichever goes
    /// first, the liar ends banned and the metadata comes from the honest one.
    #[test]
    fn a_liar_among_honest_peers_is_found_whoever_goes_first() {
        let (info, hash) = info_of(2 * METADATA_PIECE_LEN);
        let size = info.len() as u64;
        let lie = |p: u32| {
            let mut d = piece_of(&info, p);
            d[5] ^= 0xff;
            d
        };
        for honest_first in [false, true] {
            let mut f = MetadataFetch::new(hash);
            f.add_peer(1, true, Some(size)).unwrap(); // liar
            f.add_peer(2, true, Some(size)).unwrap(); // honest
            let now = Instant::now();
            let a = f.next_request(1, now).unwrap();
            let b = f.next_request(2, now).unwrap();
            assert_eq!(
                f.on_data(2, b, size, piece_of(&info, b)),
                Ok(Outcome::Stored)
            );
            assert_eq!(
                f.on_data(1, a, size, lie(a)),
                Ok(Outcome::HashFailed { banned: vec![] })
            );
            assert_eq!(f.num_peers(), 2);
            let (first, other) = if honest_first { (2, 1) } else { (1, 2) };
            let p = f.next_request(first, now).unwrap();
            assert_eq!(f.next_request(other, now), None, "one source per attempt");
            let data = if honest_first {
                piece_of(&info, p)
            } else {
                lie(p)
            };
            assert_eq!(f.on_data(first, p, size, data), Ok(Outcome::Stored));
            if honest_first {
                let out = serve_all(&mut f, 2, size, |p| piece_of(&info, p));
                assert_eq!(
                    out,
                    Outcome::Done {
                        info: info.clone(),
                        liars: vec![1]
                    }
                );
            } else {
                let out = serve_all(&mut f, 1, size, lie);
                assert_eq!(out, Outcome::HashFailed { banned: vec![1] });
                let out = serve_all(&mut f, 2, size, |p| piece_of(&info, p));
                assert_eq!(
                    out,
                    Outcome::Done {
                        info: info.clone(),
                        liars: vec![1]
                    }
                );
            }
            assert_eq!(f.add_peer(1, true, Some(size)), Err(Refusal::Banned));
        }
    }

    #[test]
    fn a_silent_peer_times_out_and_its_pieces_go_to_another() {
        let (info, hash) = info_of(100);
        let mut f = MetadataFetch::with_timeout(hash, Duration::from_secs(5));
        f.add_peer(1, true, Some(100)).unwrap();
        f.add_peer(2, true, Some(100)).unwrap();
        let t0 = Instant::now();
        assert_eq!(f.next_request(1, t0), Some(0));
        assert_eq!(f.next_request(2, t0), None);
        assert!(f.expire(t0 + Duration::from_secs(4)).is_empty());
        assert_eq!(f.expire(t0 + Duration::from_secs(5)), vec![1]);
        assert_eq!(f.num_peers(), 1);
        assert_eq!(f.next_request(2, t0), Some(0));
        // The silent one's late answer, if it ever comes, is ignored.
        assert_eq!(f.on_data(1, 0, 100, info.clone()), Ok(Outcome::Ignored));
        assert!(matches!(
            f.on_data(2, 0, 100, info),
            Ok(Outcome::Done { .. })
        ));
    }

    #[test]
    fn rejects_pause_the_peer_and_hand_the_piece_on_and_are_bounded() {
        let (_, hash) = info_of(100);
        let mut f = MetadataFetch::new(hash);
        f.add_peer(1, true, Some(100)).unwrap();
        f.add_peer(2, true, Some(100)).unwrap();
        let t0 = Instant::now();
        assert_eq!(f.next_request(1, t0), Some(0));
        f.on_reject(1, 0, t0).unwrap();
        assert_eq!(f.next_request(1, t0), None, "paused");
        assert_eq!(f.next_request(2, t0), Some(0));
        f.on_reject(2, 0, t0).unwrap();
        let mut t = t0;
        let mut refused = None;
        for _ in 0..20 {
            t += REJECT_PAUSE;
            assert_eq!(f.next_request(1, t), Some(0));
            if let Err(e) = f.on_reject(1, 0, t) {
                refused = Some(e);
                break;
            }
        }
        assert_eq!(refused, Some(Refusal::Rejected));
        assert_eq!(f.num_peers(), 1);
    }

    #[test]
    fn the_size_is_chosen_again_once_its_only_claimant_is_gone() {
        let (info, hash) = info_of(300);
        let mut f = MetadataFetch::with_timeout(hash, Duration::from_secs(5));
        f.add_peer(1, true, Some(100)).unwrap(); // wrong size, then silent
        let t0 = Instant::now();
        assert_eq!(f.next_request(1, t0), Some(0));
        f.add_peer(2, true, Some(300)).unwrap();
        assert_eq!(f.next_request(2, t0), None, "this attempt is 100 bytes");
        assert_eq!(f.expire(t0 + Duration::from_secs(5)), vec![1]);
        assert_eq!(f.next_request(2, t0), Some(0));
        assert!(matches!(
            f.on_data(2, 0, 300, info),
            Ok(Outcome::Done { .. })
        ));
    }

    #[test]
    fn inconsistent_sizes_and_lengths_drop_the_peer() {
        let (info, hash) = info_of(METADATA_PIECE_LEN + 50);
        let size = info.len() as u64;
        let mut f = MetadataFetch::new(hash);
        for peer in [1, 2, 3] {
            f.add_peer(peer, true, Some(size)).unwrap();
        }
        f.add_peer(4, true, Some(size + 1)).unwrap();
        let now = Instant::now();
        assert_eq!(f.next_request(4, now), None, "another size than most");
        assert_eq!(f.next_request(1, now), Some(0));
        assert_eq!(
            f.on_data(1, 0, size + 1, piece_of(&info, 0)),
            Err(Refusal::InconsistentSize {
                got: size + 1,
                want: size
            })
        );
        assert_eq!(f.next_request(2, now), Some(0), "released");
        assert_eq!(
            f.on_data(2, 0, size, vec![0; 10]),
            Err(Refusal::BadPieceLength {
                piece: 0,
                got: 10,
                want: METADATA_PIECE_LEN
            })
        );
        // Data never asked for is ignored.
        assert_eq!(
            f.on_data(3, 1, size, piece_of(&info, 1)),
            Ok(Outcome::Ignored)
        );
        assert_eq!(f.num_peers(), 2);
    }
}
