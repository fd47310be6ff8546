//! The DNS service's records: `(name, ip)` pairs with a TTL and the time
//! they were registered, merged Last-Writer-Wins on that timestamp between
//! servers; deletions are tombstones that expire like records. Each name's
//! addresses are a `core::lww::LwwMap`. Pure policy (callers pass
//! `now_ms`), property-tested.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::core::lww::{Bound, LwwMap, Versioned};

pub const MAX_RECORDS: usize = 10_000;
pub const MAX_TTL: u32 = 86_400;
/// Timestamps further ahead than this are clamped (a forged clock cannot
/// pin a record).
pub const MAX_SKEW_MS: u64 = crate::core::lww::MAX_SKEW_MS;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub name: String,
    pub ip: IpAddr,
    pub ttl: u32,
    /// Unix milliseconds of the registration (or deletion).
    pub timestamp: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl Record {
    pub fn expires_at(&self) -> u64 {
        self.timestamp + self.ttl as u64 * 1000
    }
    /// Seconds left, rounded up.
    pub fn remaining_ttl(&self, now_ms: u64) -> u32 {
        (self.expires_at().saturating_sub(now_ms)).div_ceil(1000) as u32
    }
}

/// LWW on `timestamp`; a tie goes to the deletion, then the longer TTL.
impl Versioned for Record {
    fn stamp(&self) -> u64 {
        self.timestamp
    }
    fn set_stamp(&mut self, stamp: u64) {
        self.timestamp = stamp;
    }
    fn is_tombstone(&self) -> bool {
        self.deleted
    }
    fn ttl_ms(&self) -> Option<u64> {
        Some(self.ttl as u64 * 1000)
    }
    fn tie_break(&self, other: &Self) -> Ordering {
        self.ttl.cmp(&other.ttl)
    }
}

/// One name's records by address (every record says its own TTL).
type ByIp = LwwMap<IpAddr, Record>;

/// Lower-cased, without a trailing dot; `None` unless it is a valid
/// hostname (labels of 1–63 letters, digits, `-` or `_`, not starting or
/// ending with `-`; at most 253 characters).
pub fn normalize_name(name: &str) -> Option<String> {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    if n.is_empty() || n.len() > 253 {
        return None;
    }
    let ok = n.split('.').all(|l| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    ok.then_some(n)
}

#[derive(Default, Debug, Clone)]
pub struct Records {
    /// Per name, its records by address: a merge is one lookup, so a
    /// gossip body merges in time linear in its length.
    by_name: HashMap<String, ByIp>,
    /// Records held (tombstones included), kept in step with `by_name`.
    count: usize,
}

impl Records {
    /// LWW merge; returns true if anything changed.
    pub fn merge(&mut self, mut r: Record, now_ms: u64) -> bool {
        let Some(name) = normalize_name(&r.name) else {
            return false;
        };
        r.name = name;
        r.ttl = r.ttl.min(MAX_TTL);
        r.timestamp = r.timestamp.min(now_ms + MAX_SKEW_MS);
        if r.expires_at() <= now_ms {
            return false;
        }
        let full = self.count >= MAX_RECORDS;
        if full && !self.by_name.contains_key(&r.name) {
            return false;
        }
        let list = self
            .by_name
            .entry(r.name.clone())
            .or_insert_with(|| ByIp::new(0, Bound::Unbounded));
        let new = !list.contains_key(&r.ip);
        if full && new {
            return false;
        }
        if !list.merge(r.ip, r, now_ms) {
            return false;
        }
        if new {
            self.count += 1;
        }
        true
    }

    pub fn expire(&mut self, now_ms: u64) {
        let mut count = 0;
        self.by_name.retain(|_, list| {
            list.expire(now_ms);
            count += list.len();
            !list.is_empty()
        });
        self.count = count;
    }

    /// Records held, tombstones included.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Live (not deleted, not expired) records of `name`.
    pub fn lookup(&self, name: &str, now_ms: u64) -> Vec<Record> {
        normalize_name(name)
            .and_then(|n| self.by_name.get(&n))
            .map(|list| list.live(now_ms).cloned().collect())
            .unwrap_or_default()
    }

    /// Every record, tombstones included (what gossip sends).
    pub fn all(&self) -> Vec<Record> {
        let mut v: Vec<Record> = self
            .by_name
            .values()
            .flat_map(|l| l.iter().map(|(_, r)| r.clone()))
            .collect();
        v.sort_by(|a, b| (&a.name, a.ip).cmp(&(&b.name, b.ip)));
        v
    }

    pub fn live(&self, now_ms: u64) -> Vec<Record> {
        self.all()
            .into_iter()
            .filter(|r| !r.deleted && r.expires_at() > now_ms)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: u64 = 10_000_000;

    fn rec(name: &str, ip: [u8; 4], ts: u64, deleted: bool) -> Record {
        Record {
            name: name.into(),
            ip: IpAddr::from(ip),
            ttl: 60,
            timestamp: ts,
            deleted,
        }
    }

    #[test]
    fn names_are_case_insensitive_and_validated() {
        assert_eq!(normalize_name("Boot.Example."), Some("boot.example".into()));
        assert_eq!(normalize_name("bad..name"), None);
        assert_eq!(normalize_name("-x"), None);
        assert_eq!(normalize_name(&"a".repeat(64)), None);
        assert_eq!(
            normalize_name("tasks_bootstrap"),
            Some("tasks_bootstrap".into())
        );
    }

    #[test]
    fn tombstones_win_ties_and_hide_records_until_reregistered() {
        let mut r = Records::default();
        assert!(r.merge(rec("a", [1, 1, 1, 1], NOW, false), NOW));
        assert!(r.merge(rec("A", [1, 1, 1, 1], NOW, true), NOW));
        assert!(r.lookup("a", NOW).is_empty());
        assert!(r.merge(rec("a", [1, 1, 1, 1], NOW + 1, false), NOW));
        assert_eq!(r.lookup("a", NOW).len(), 1);
        r.expire(NOW + 61_000 + 1);
        assert!(r.lookup("a", NOW + 61_001).is_empty());
        assert!(r.all().is_empty());
    }

    /// A gossip body as large as the API takes (the record cap, 10,000
    /// records): many names and many addresses under one name, merged in
    /// one pass; the cap holds, updates still land at the cap, and expiry
    /// frees room. It prints the time taken: cost is measured, not asserted.
    #[test]
    fn a_gossip_body_at_the_record_cap_merges_and_the_cap_holds() {
        let mut r = Records::default();
        let mut body = Vec::new();
        // 5,000 names with one address, then 5,000 addresses of one name.
        for i in 0..5_000u32 {
            let [_, a, b, c] = i.to_be_bytes();
            body.push(rec(&format!("n{i}"), [10, a, b, c], NOW, false));
        }
        for i in 0..5_000u32 {
            let [_, a, b, c] = i.to_be_bytes();
            body.push(rec("big", [11, a, b, c], NOW, false));
        }
        let start = std::time::Instant::now();
        let merged = body.iter().filter(|x| r.merge((*x).clone(), NOW)).count();
        println!("merged {merged} records in {:?}", start.elapsed());
        assert_eq!(merged, MAX_RECORDS);
        assert_eq!(r.len(), MAX_RECORDS);
        assert_eq!(r.all().len(), MAX_RECORDS);
        assert_eq!(r.lookup("big", NOW).len(), 5_000);
        // Full: a new record is refused, a newer version of a held one is not.
        assert!(!r.merge(rec("new", [12, 0, 0, 1], NOW, false), NOW));
        assert!(!r.merge(rec("big", [12, 0, 0, 1], NOW, false), NOW));
        assert!(r.merge(rec("big", [11, 0, 0, 1], NOW + 1, true), NOW));
        assert_eq!(r.len(), MAX_RECORDS);
        // Every record expires: room again, and the count says so.
        r.expire(NOW + 61_000);
        assert!(r.is_empty());
        assert!(r.merge(rec("new", [12, 0, 0, 1], NOW + 61_000, false), NOW + 61_000));
        assert_eq!(r.len(), 1);
    }

    proptest! {
        #[test]
        fn merge_is_order_independent_and_idempotent(
            ops in proptest::collection::vec((0u8..3, 0u8..3, (NOW - 30_000)..(NOW + 30_000), any::<bool>()), 0..30)
        ) {
            let recs: Vec<Record> = ops.iter()
                .map(|(n, ip, ts, d)| rec(["a", "b", "c"][*n as usize], [10, 0, 0, *ip], *ts, *d))
                .collect();
            let mut fwd = Records::default();
            for r in &recs { fwd.merge(r.clone(), NOW); }
            let mut rev = Records::default();
            for r in recs.iter().rev() { rev.merge(r.clone(), NOW); }
            prop_assert_eq!(fwd.all(), rev.all());
            prop_assert_eq!(fwd.len(), fwd.all().len());
            let before = fwd.all();
            for r in &recs { fwd.merge(r.clone(), NOW); }
            prop_assert_eq!(fwd.all(), before);
        }
    }
}
