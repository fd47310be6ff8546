//! The provider store: `info_hash → addr → ProviderMeta`, merged
//! Last-Writer-Wins on `last_seen`, one entry per address, entries past the
//! TTL dropped, timestamps from the future clamped. Withdrawals are
//! tombstones (LWW like any entry) so they spread by gossip and then expire.
//! Each torrent's providers are a `core::lww::LwwMap` (bounded, evicting the
//! oldest); this adds the torrent cap, change sequence numbers and digests.
//!
//! Pure policy: no I/O, no clock of its own (callers pass `now`), so merge
//! laws are property-tested. The overlay wraps it in a parking_lot RwLock.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::SocketAddr;

use crate::core::lww::{Bound, LwwMap, Versioned};
use crate::core::InfoHash;
pub use crate::wire::overlay::{Entry, ProviderMeta};

/// Most providers kept per torrent (the newest win).
pub const MAX_PROVIDERS_PER_HASH: usize = 1000;
/// Most torrents tracked.
pub const MAX_HASHES: usize = 10_000;
/// How far into the future a `last_seen` may be before it is clamped.
pub const MAX_SKEW_MS: u64 = crate::core::lww::MAX_SKEW_MS;

#[derive(Clone, Debug)]
struct Slot {
    meta: ProviderMeta,
    /// Local sequence number of the last change (for deltas).
    changed_at: u64,
}

/// LWW on `last_seen`; on a tie the withdrawal wins, then the larger
/// content, so every store picks the same one whatever the order.
impl Versioned for Slot {
    fn stamp(&self) -> u64 {
        self.meta.last_seen
    }
    fn set_stamp(&mut self, stamp: u64) {
        self.meta.last_seen = stamp;
    }
    fn is_tombstone(&self) -> bool {
        self.meta.gone
    }
    fn tie_break(&self, other: &Self) -> Ordering {
        (self.meta.left, &self.meta.peer_id).cmp(&(other.meta.left, &other.meta.peer_id))
    }
}

type PerHash = LwwMap<SocketAddr, Slot>;

#[derive(Clone, Debug, Default)]
pub struct Store {
    map: HashMap<InfoHash, PerHash>,
    /// Bumped on every change; `changed_at` of slots come from it.
    seq: u64,
    ttl_ms: u64,
}

fn entry_hash(h: &InfoHash, m: &ProviderMeta) -> u64 {
    // FNV-1a over the fields that LWW settles; XOR-combined into a digest
    // that two stores share exactly when they hold the same entries.
    let mut x: u64 = 0xcbf29ce484222325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            x ^= *b as u64;
            x = x.wrapping_mul(0x100000001b3);
        }
    };
    eat(&h.0);
    eat(m.addr.to_string().as_bytes());
    eat(&m.last_seen.to_le_bytes());
    eat(&[m.gone as u8]);
    x
}

impl Store {
    pub fn new(ttl_ms: u64) -> Store {
        Store {
            ttl_ms,
            ..Store::default()
        }
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// LWW merge of one entry observed at `now_ms`. Returns true if the
    /// store changed.
    pub fn merge(&mut self, info_hash: InfoHash, mut meta: ProviderMeta, now_ms: u64) -> bool {
        // Refused before the torrent cap is looked at (the map would
        // refuse it too), so an expired write never triggers `expire`.
        meta.last_seen = meta.last_seen.min(now_ms + MAX_SKEW_MS);
        if meta.last_seen + self.ttl_ms <= now_ms {
            return false;
        }
        if !self.map.contains_key(&info_hash) && self.map.len() >= MAX_HASHES {
            self.expire(now_ms);
            if self.map.len() >= MAX_HASHES {
                return false;
            }
        }
        let ttl = self.ttl_ms;
        let per_hash = self
            .map
            .entry(info_hash)
            .or_insert_with(|| PerHash::new(ttl, Bound::EvictOldest(MAX_PROVIDERS_PER_HASH)));
        let slot = Slot {
            changed_at: self.seq + 1,
            meta,
        };
        let changed = per_hash.merge(slot.meta.addr, slot, now_ms);
        if changed {
            self.seq += 1;
        } else if per_hash.is_empty() {
            self.map.remove(&info_hash);
        }
        changed
    }

    /// Drops entries past the TTL (tombstones too).
    pub fn expire(&mut self, now_ms: u64) {
        self.map.retain(|_, per| {
            per.expire(now_ms);
            !per.is_empty()
        });
    }

    /// Live providers of `info_hash`, newest first, at most `limit`.
    pub fn providers(&self, info_hash: &InfoHash, now_ms: u64, limit: usize) -> Vec<ProviderMeta> {
        let mut out: Vec<ProviderMeta> = self
            .map
            .get(info_hash)
            .into_iter()
            .flat_map(|per| per.live(now_ms))
            .map(|s| s.meta.clone())
            .collect();
        out.sort_by(|a, b| b.last_seen.cmp(&a.last_seen).then(a.addr.cmp(&b.addr)));
        out.truncate(limit);
        out
    }

    /// Entries changed after local sequence `since` (all of them for 0),
    /// at most `max`.
    pub fn changed_since(&self, since: u64, max: usize) -> Vec<Entry> {
        let mut out: Vec<(u64, Entry)> = self
            .map
            .iter()
            .flat_map(|(h, per)| {
                per.iter()
                    .map(|(_, s)| s)
                    .filter(move |s| s.changed_at > since)
                    .map(move |s| {
                        (
                            s.changed_at,
                            Entry {
                                info_hash: *h,
                                meta: s.meta.clone(),
                            },
                        )
                    })
            })
            .collect();
        out.sort_by_key(|(c, _)| *c);
        out.into_iter().take(max).map(|(_, e)| e).collect()
    }

    /// Order-independent digest of the unexpired content (tombstones too).
    pub fn digest(&self, now_ms: u64) -> u64 {
        self.map
            .iter()
            .flat_map(|(h, per)| {
                per.iter()
                    .filter(move |(_, s)| per.expires_at(s) > now_ms)
                    .map(move |(_, s)| (h, s))
            })
            .fold(0u64, |acc, (h, s)| acc ^ entry_hash(h, &s.meta))
    }

    /// Marks every live provider for which `pred` holds as withdrawn (used
    /// when the overlay node it announced through is found dead).
    pub fn withdraw_where(
        &mut self,
        now_ms: u64,
        mut pred: impl FnMut(&InfoHash, &ProviderMeta) -> bool,
    ) -> usize {
        let mut victims = Vec::new();
        for (h, per) in &self.map {
            for (_, s) in per.iter() {
                if !s.meta.gone && pred(h, &s.meta) {
                    victims.push((*h, s.meta.clone()));
                }
            }
        }
        let n = victims.len();
        for (h, mut m) in victims {
            m.gone = true;
            m.last_seen = m.last_seen.max(now_ms);
            self.merge(h, m, now_ms);
        }
        n
    }

    pub fn len(&self) -> usize {
        self.map.values().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Content as a comparable set (tests).
    pub fn snapshot(&self) -> Vec<(InfoHash, ProviderMeta)> {
        let mut v: Vec<(InfoHash, ProviderMeta)> = self
            .map
            .iter()
            .flat_map(|(h, per)| per.iter().map(move |(_, s)| (*h, s.meta.clone())))
            .collect();
        v.sort_by_key(|(h, m)| (*h, m.addr));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TTL: u64 = 90_000;
    const NOW: u64 = 1_000_000;

    fn meta(port: u16, last_seen: u64, left: u64, gone: bool) -> ProviderMeta {
        ProviderMeta {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            peer_id: crate::core::PeerId([0xab; 20]),
            left,
            last_seen,
            gone,
            overlay: None,
        }
    }

    fn entry_strategy() -> impl Strategy<Value = (InfoHash, ProviderMeta)> {
        (
            0u8..3,
            1u16..5,
            (NOW - 100_000)..(NOW + 20_000),
            0u64..3,
            any::<bool>(),
        )
            .prop_map(|(h, port, seen, left, gone)| {
                (InfoHash([h; 20]), meta(port, seen, left, gone))
            })
    }

    fn apply(entries: &[(InfoHash, ProviderMeta)]) -> Store {
        let mut s = Store::new(TTL);
        for (h, m) in entries {
            s.merge(*h, m.clone(), NOW);
        }
        s
    }

    proptest! {
        #[test]
        fn merge_is_commutative_associative_and_idempotent(
            a in proptest::collection::vec(entry_strategy(), 0..20),
            b in proptest::collection::vec(entry_strategy(), 0..20),
        ) {
            let ab: Vec<_> = a.iter().chain(&b).cloned().collect();
            let ba: Vec<_> = b.iter().chain(&a).cloned().collect();
            let sa = apply(&ab);
            prop_assert_eq!(sa.snapshot(), apply(&ba).snapshot());
            let twice: Vec<_> = ab.iter().chain(&ab).cloned().collect();
            prop_assert_eq!(apply(&twice).snapshot(), sa.snapshot());
            // Merging whole stores in either grouping gives the same result.
            let mut left = apply(&a);
            for (h, m) in apply(&b).snapshot() { left.merge(h, m, NOW); }
            prop_assert_eq!(left.snapshot(), sa.snapshot());
            prop_assert_eq!(left.digest(NOW), sa.digest(NOW));
        }

        #[test]
        fn nothing_expired_or_from_the_far_future_survives(
            a in proptest::collection::vec(entry_strategy(), 0..30),
        ) {
            let mut s = apply(&a);
            for (_, m) in s.snapshot() {
                prop_assert!(m.last_seen <= NOW + MAX_SKEW_MS);
                prop_assert!(m.last_seen + TTL > NOW);
            }
            s.expire(NOW + TTL + MAX_SKEW_MS);
            prop_assert!(s.is_empty());
        }
    }

    #[test]
    fn newest_wins_and_tombstones_hide_providers() {
        let mut s = Store::new(TTL);
        let h = InfoHash([1; 20]);
        assert!(s.merge(h, meta(1, NOW - 10, 5, false), NOW));
        assert!(!s.merge(h, meta(1, NOW - 20, 0, false), NOW), "older loses");
        assert!(s.merge(h, meta(1, NOW - 5, 0, false), NOW));
        assert_eq!(s.providers(&h, NOW, 10)[0].left, 0);
        assert!(s.merge(h, meta(1, NOW, 0, true), NOW));
        assert!(s.providers(&h, NOW, 10).is_empty());
    }

    #[test]
    fn a_forged_future_timestamp_is_clamped_and_can_be_overtaken() {
        let mut s = Store::new(TTL);
        let h = InfoHash([1; 20]);
        s.merge(h, meta(1, u64::MAX / 2, 5, false), NOW);
        let seen = s.providers(&h, NOW, 1)[0].last_seen;
        assert_eq!(seen, NOW + MAX_SKEW_MS);
        // Once real time passes the clamp, honest updates win again.
        assert!(s.merge(h, meta(1, NOW + MAX_SKEW_MS + 1, 0, false), NOW + 10_000));
        s.expire(NOW + MAX_SKEW_MS + TTL + 1);
        assert!(s.is_empty(), "the forged entry did not pin itself");
    }

    #[test]
    fn deltas_carry_only_changes() {
        let mut s = Store::new(TTL);
        let h = InfoHash([1; 20]);
        s.merge(h, meta(1, NOW, 5, false), NOW);
        let mark = s.seq();
        assert!(s.changed_since(mark, 100).is_empty());
        s.merge(h, meta(2, NOW, 5, false), NOW);
        let delta = s.changed_since(mark, 100);
        assert_eq!(delta.len(), 1);
        assert_eq!(delta[0].meta.addr.port(), 2);
    }
}
