//! A last-writer-wins map with a TTL and tombstones: what the overlay's
//! provider store and the DNS service's records are both made of.
//!
//! Each value carries the Unix-millisecond stamp of its write. A merge keeps
//! the later write (a tie goes to the tombstone, then to the value's own
//! tie-break), so every order of merges ends in the same map; stamps more
//! than [`MAX_SKEW_MS`] ahead of `now` are clamped (a forged clock cannot pin
//! an entry); a write whose lifetime is over is refused, and [`LwwMap::expire`]
//! drops expired writes, tombstones included (a deletion spreads, then goes).
//!
//! Pure: no I/O and no clock of its own (callers pass `now_ms`; [`now_ms`]
//! is the one clock both services read).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// How far into the future a stamp may be before it is clamped.
pub const MAX_SKEW_MS: u64 = 5_000;

/// Unix milliseconds now: the clock LWW stamps are written with.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A value an [`LwwMap`] can hold.
pub trait Versioned {
    /// Unix milliseconds of the write.
    fn stamp(&self) -> u64;
    fn set_stamp(&mut self, stamp: u64);
    /// A deletion, kept (and spread) until it expires.
    fn is_tombstone(&self) -> bool;
    /// How long this write lives; `None`: the map's TTL.
    fn ttl_ms(&self) -> Option<u64> {
        None
    }
    /// Orders two writes with the same stamp and tombstone flag: the
    /// greater wins (`Equal` keeps the one held).
    fn tie_break(&self, other: &Self) -> Ordering;
}

/// What a full map does with a write under a new key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    Unbounded,
    /// At most this many keys; a new key replaces the oldest write only if
    /// it is newer than it, otherwise it is refused.
    EvictOldest(usize),
}

#[derive(Clone, Debug)]
pub struct LwwMap<K, V> {
    entries: BTreeMap<K, V>,
    ttl_ms: u64,
    bound: Bound,
}

/// Whether `new` beats `cur` (strictly: an equal write changes nothing).
pub fn newer<V: Versioned>(new: &V, cur: &V) -> bool {
    (new.stamp(), new.is_tombstone())
        .cmp(&(cur.stamp(), cur.is_tombstone()))
        .then_with(|| new.tie_break(cur))
        == Ordering::Greater
}

impl<K: Ord + Clone, V: Versioned> LwwMap<K, V> {
    /// `ttl_ms` is the lifetime of values that do not say their own.
    pub fn new(ttl_ms: u64, bound: Bound) -> LwwMap<K, V> {
        LwwMap {
            entries: BTreeMap::new(),
            ttl_ms,
            bound,
        }
    }

    /// Unix milliseconds at which `v` expires.
    pub fn expires_at(&self, v: &V) -> u64 {
        v.stamp().saturating_add(v.ttl_ms().unwrap_or(self.ttl_ms))
    }

    /// Neither expired nor a tombstone.
    pub fn is_live(&self, v: &V, now_ms: u64) -> bool {
        !v.is_tombstone() && self.expires_at(v) > now_ms
    }

    /// Merges one write observed at `now_ms`; returns true if the map changed.
    pub fn merge(&mut self, key: K, mut v: V, now_ms: u64) -> bool {
        v.set_stamp(v.stamp().min(now_ms.saturating_add(MAX_SKEW_MS)));
        if self.expires_at(&v) <= now_ms {
            return false;
        }
        if let Some(cur) = self.entries.get(&key) {
            if !newer(&v, cur) {
                return false;
            }
        } else if let Bound::EvictOldest(max) = self.bound {
            if self.entries.len() >= max {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, s)| s.stamp())
                    .map(|(k, s)| (k.clone(), s.stamp()));
                match oldest {
                    Some((k, stamp)) if stamp < v.stamp() => {
                        self.entries.remove(&k);
                    }
                    _ => return false,
                }
            }
        }
        self.entries.insert(key, v);
        true
    }

    /// Drops expired writes (tombstones too); returns how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.entries.len();
        let ttl = self.ttl_ms;
        self.entries
            .retain(|_, v| v.stamp().saturating_add(v.ttl_ms().unwrap_or(ttl)) > now_ms);
        before - self.entries.len()
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.entries.contains_key(key)
    }

    /// Every write held, tombstones and expired ones included, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter()
    }

    /// Live values, in key order.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &V> {
        self.entries
            .values()
            .filter(move |v| self.is_live(v, now_ms))
    }

    /// Writes held, tombstones included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 1_000_000;
    const TTL: u64 = 60_000;

    #[derive(Clone, Debug, PartialEq, Eq)]
    struct W {
        stamp: u64,
        gone: bool,
        data: u8,
        ttl: Option<u64>,
    }

    impl Versioned for W {
        fn stamp(&self) -> u64 {
            self.stamp
        }
        fn set_stamp(&mut self, stamp: u64) {
            self.stamp = stamp;
        }
        fn is_tombstone(&self) -> bool {
            self.gone
        }
        fn ttl_ms(&self) -> Option<u64> {
            self.ttl
        }
        fn tie_break(&self, other: &Self) -> Ordering {
            self.data.cmp(&other.data)
        }
    }

    fn w(stamp: u64, gone: bool, data: u8) -> W {
        W {
            stamp,
            gone,
            data,
            ttl: None,
        }
    }

    type Map = LwwMap<u8, W>;

    fn apply(writes: &[(u8, W)], bound: Bound) -> Map {
        let mut m = Map::new(TTL, bound);
        for (k, v) in writes {
            m.merge(*k, v.clone(), NOW);
        }
        m
    }

    fn content(m: &Map) -> Vec<(u8, W)> {
        m.iter().map(|(k, v)| (*k, v.clone())).collect()
    }

    fn write() -> impl Strategy<Value = (u8, W)> {
        (
            0u8..4,
            (NOW - 70_000)..(NOW + 20_000),
            any::<bool>(),
            0u8..3,
        )
            .prop_map(|(k, stamp, gone, data)| (k, w(stamp, gone, data)))
    }

    proptest! {
        #[test]
        fn merge_is_commutative_and_idempotent(
            a in proptest::collection::vec(write(), 0..20),
            b in proptest::collection::vec(write(), 0..20),
        ) {
            let ab: Vec<_> = a.iter().chain(&b).cloned().collect();
            let ba: Vec<_> = b.iter().chain(&a).cloned().collect();
            let m = apply(&ab, Bound::Unbounded);
            prop_assert_eq!(content(&m), content(&apply(&ba, Bound::Unbounded)));
            let twice: Vec<_> = ab.iter().chain(&ab).cloned().collect();
            prop_assert_eq!(content(&apply(&twice, Bound::Unbounded)), content(&m));
            // Merging one whole map into another gives the same map.
            let mut left = apply(&a, Bound::Unbounded);
            for (k, v) in content(&apply(&b, Bound::Unbounded)) {
                left.merge(k, v, NOW);
            }
            prop_assert_eq!(content(&left), content(&m));
        }

        #[test]
        fn nothing_expired_or_from_the_far_future_is_held(
            a in proptest::collection::vec(write(), 0..30),
        ) {
            let mut m = apply(&a, Bound::Unbounded);
            for (_, v) in content(&m) {
                prop_assert!(v.stamp <= NOW + MAX_SKEW_MS);
                prop_assert!(v.stamp + TTL > NOW);
            }
            m.expire(NOW + TTL + MAX_SKEW_MS);
            prop_assert!(m.is_empty());
        }

        #[test]
        fn a_bounded_map_stays_within_its_bound(
            a in proptest::collection::vec(write(), 0..30),
        ) {
            let m = apply(&a, Bound::EvictOldest(2));
            prop_assert!(m.len() <= 2);
        }
    }

    #[test]
    fn later_wins_and_a_tombstone_beats_an_older_write_and_ties() {
        let mut m = Map::new(TTL, Bound::Unbounded);
        assert!(m.merge(1, w(NOW - 10, false, 5), NOW));
        assert!(!m.merge(1, w(NOW - 20, false, 9), NOW), "older loses");
        assert!(
            !m.merge(1, w(NOW - 10, false, 5), NOW),
            "the same write is no change"
        );
        assert!(
            m.merge(1, w(NOW - 10, false, 6), NOW),
            "tie: the greater wins"
        );
        assert!(
            m.merge(1, w(NOW - 10, true, 0), NOW),
            "tie: the tombstone wins"
        );
        assert!(!m.merge(1, w(NOW - 10, false, 9), NOW));
        assert!(
            !m.merge(1, w(NOW - 15, false, 9), NOW),
            "older than the tombstone"
        );
        assert_eq!(m.live(NOW).count(), 0);
        assert_eq!(m.len(), 1, "the tombstone is held to spread");
        assert!(
            m.merge(1, w(NOW - 5, false, 0), NOW),
            "a newer write revives"
        );
        assert_eq!(m.live(NOW).count(), 1);
    }

    #[test]
    fn ttl_expiry_per_map_and_per_value() {
        let mut m = Map::new(TTL, Bound::Unbounded);
        assert!(!m.merge(1, w(NOW - TTL, false, 0), NOW), "already expired");
        assert!(m.merge(1, w(NOW - TTL + 1, false, 0), NOW));
        let short = W {
            ttl: Some(1_000),
            ..w(NOW, false, 0)
        };
        assert!(m.merge(2, short, NOW));
        assert_eq!(m.expire(NOW), 0);
        assert_eq!(m.expire(NOW + 1), 1, "the map's TTL: key 1 ends at NOW + 1");
        assert_eq!(m.expire(NOW + 999), 0);
        assert_eq!(
            m.expire(NOW + 1_000),
            1,
            "its own TTL: key 2 ends at NOW + 1000"
        );
        assert!(m.is_empty());
    }

    #[test]
    fn a_forged_future_stamp_is_clamped() {
        let mut m = Map::new(TTL, Bound::Unbounded);
        assert!(m.merge(1, w(u64::MAX / 2, false, 0), NOW));
        assert_eq!(m.get(&1).unwrap().stamp, NOW + MAX_SKEW_MS);
        assert!(m.merge(1, w(NOW + MAX_SKEW_MS + 1, false, 0), NOW + 10_000));
    }

    #[test]
    fn a_full_map_evicts_its_oldest_only_for_a_newer_write() {
        let mut m = Map::new(TTL, Bound::EvictOldest(2));
        assert!(m.merge(1, w(NOW - 3, false, 0), NOW));
        assert!(m.merge(2, w(NOW - 2, false, 0), NOW));
        assert!(
            !m.merge(3, w(NOW - 4, false, 0), NOW),
            "older than the oldest"
        );
        assert!(m.merge(3, w(NOW - 1, false, 0), NOW));
        assert_eq!(m.iter().map(|(k, _)| *k).collect::<Vec<_>>(), [2, 3]);
        assert!(m.merge(2, w(NOW, false, 0), NOW), "updates need no room");
    }
}
