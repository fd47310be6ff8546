//! Which overlay nodes we know, when we last heard from each, and how far
//! each has been told our store (for delta gossip). Pure policy: callers
//! pass `now`; the service wraps it in a mutex.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Most members remembered.
pub const MAX_MEMBERS: usize = 1000;
/// Consecutive failed contacts after which a member is declared dead.
pub const DEAD_AFTER_FAILURES: u32 = 2;
/// A keyed overlay re-pings an origin that did not answer its probe after
/// this long, doubling each time up to [`PROBE_RETRY_MAX`].
pub const PROBE_RETRY_FIRST: Duration = Duration::from_millis(500);
pub const PROBE_RETRY_MAX: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
struct Member {
    last_heard: Option<Instant>,
    /// It answered a request of ours (a reply sealed to our fresh nonce,
    /// in a keyed overlay: it holds the key and sits at this address; a
    /// request *from* it could be a replay sent from anywhere).
    answered: bool,
    /// While it has not answered and we hold a provider announced through
    /// it: when to ping it next, out of turn, and how often it was pinged.
    probe: Probe,
    failures: u32,
    /// Our store sequence number last sent to this member (0 = nothing).
    sent_seq: u64,
    mode: SyncMode,
}

pub struct Members {
    me: Option<SocketAddr>,
    map: HashMap<SocketAddr, Member>,
    /// Members declared dead recently: not re-learned from hearsay.
    dead: HashMap<SocketAddr, Instant>,
    quarantine: Duration,
    /// When a member was last learnt (a young or churning overlay).
    grown_at: Option<Instant>,
    rng: fastrand::Rng,
}

impl Members {
    /// `seed` makes the samples reproducible (tests); the service seeds
    /// from `fastrand`'s own random seed.
    pub fn new(quarantine: Duration, seed: u64) -> Members {
        Members {
            me: None,
            map: HashMap::new(),
            dead: HashMap::new(),
            quarantine,
            grown_at: None,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    pub fn set_me(&mut self, me: SocketAddr) {
        self.me = Some(me);
        self.map.remove(&me);
    }

    pub fn me(&self) -> Option<SocketAddr> {
        self.me
    }

    fn acceptable(&self, a: &SocketAddr) -> bool {
        Some(*a) != self.me && a.port() != 0 && !a.ip().is_unspecified()
    }

    /// Learned second-hand (gossip, member lists, bootstraps).
    pub fn add(&mut self, a: SocketAddr, now: Instant) -> bool {
        if !self.acceptable(&a) || self.map.contains_key(&a) || self.map.len() >= MAX_MEMBERS {
            return false;
        }
        if let Some(t) = self.dead.get(&a) {
            if now.duration_since(*t) < self.quarantine {
                return false;
            }
            self.dead.remove(&a);
        }
        self.grown_at = Some(now);
        self.map.insert(
            a,
            Member {
                last_heard: None,
                answered: false,
                probe: Probe::default(),
                failures: 0,
                sent_seq: 0,
                // Digest first: in a converged overlay a new contact
                // already holds everything, and a mismatch escalates to a
                // delta since 0 (everything) on the next exchange.
                mode: SyncMode::InSync,
            },
        );
        true
    }

    /// The member itself talked to us, or answered: it is alive.
    pub fn heard(&mut self, a: SocketAddr, now: Instant) {
        if !self.acceptable(&a) {
            return;
        }
        self.dead.remove(&a);
        if !self.map.contains_key(&a) {
            if self.map.len() >= MAX_MEMBERS {
                return;
            }
            self.add(a, now);
        }
        if let Some(m) = self.map.get_mut(&a) {
            m.last_heard = Some(now);
            m.failures = 0;
        }
    }

    /// The member answered a request of ours: alive, and (in a keyed
    /// overlay) vouched for.
    pub fn answered(&mut self, a: SocketAddr, now: Instant) {
        self.heard(a, now);
        if let Some(m) = self.map.get_mut(&a) {
            m.answered = true;
            m.probe = Probe::default();
        }
    }

    /// A keyed overlay now holds providers announced through `origins`:
    /// each that is not vouched for ([`Members::vouched`]) is learnt as a
    /// member if need be and due for a ping at once, so its providers are
    /// listed one round trip after they arrive, not when gossip happens to
    /// reach it. Returns true if a ping became due. Only origins we hold
    /// providers of are pinged: a keyed overlay of N nodes does not ping
    /// N² pairs at start.
    pub fn want_vouched(&mut self, origins: &[SocketAddr], now: Instant) -> bool {
        let mut due = false;
        for o in origins {
            if Some(*o) == self.me || !(self.map.contains_key(o) || self.add(*o, now)) {
                continue;
            }
            if let Some(m) = self.map.get_mut(o) {
                if !m.answered && m.probe.due.is_none() {
                    m.probe.due = Some(now);
                    due = true;
                }
            }
        }
        due
    }

    /// True if a member was learnt within `window` before `now`: the
    /// overlay is young or churning, and others may not know all of us yet.
    pub fn grew_within(&self, now: Instant, window: Duration) -> bool {
        self.grown_at
            .is_some_and(|t| now.saturating_duration_since(t) < window)
    }

    /// When the next out-of-turn ping is due, if any.
    pub fn next_probe(&self) -> Option<Instant> {
        self.map.values().filter_map(|m| m.probe.due).min()
    }

    /// Up to `max` members whose out-of-turn ping is due (earliest first),
    /// each rescheduled (backing off) in case this ping fails too.
    pub fn take_due_probes(&mut self, now: Instant, max: usize) -> Vec<SocketAddr> {
        let mut v: Vec<(Instant, SocketAddr)> = self
            .map
            .iter()
            .filter_map(|(a, m)| m.probe.due.filter(|d| *d <= now).map(|d| (d, *a)))
            .collect();
        v.sort();
        v.truncate(max);
        for (_, a) in &v {
            if let Some(m) = self.map.get_mut(a) {
                let wait = PROBE_RETRY_FIRST.saturating_mul(1 << m.probe.tries.min(16));
                m.probe.tries += 1;
                m.probe.due = Some(now + wait.min(PROBE_RETRY_MAX));
            }
        }
        v.into_iter().map(|(_, a)| a).collect()
    }

    /// A contact failed; returns true if the member is now declared dead
    /// (and removed).
    pub fn failed(&mut self, a: SocketAddr, now: Instant) -> bool {
        let Some(m) = self.map.get_mut(&a) else {
            return false;
        };
        m.failures += 1;
        if m.failures >= DEAD_AFTER_FAILURES {
            self.map.remove(&a);
            self.dead.insert(a, now);
            self.dead
                .retain(|_, t| now.duration_since(*t) < self.quarantine * 2);
            return true;
        }
        false
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn contains(&self, a: &SocketAddr) -> bool {
        self.map.contains_key(a)
    }

    pub fn all(&self) -> Vec<SocketAddr> {
        self.map.keys().copied().collect()
    }

    /// Members that answered a request of ours (not only named in someone
    /// else's list, nor only heard from: a request can be replayed from
    /// another address, a reply to our nonce cannot), and ourselves: in a
    /// keyed overlay the origins a provider may be served for.
    pub fn vouched(&self) -> Vec<SocketAddr> {
        let answered = self.map.iter().filter(|(_, m)| m.answered).map(|(a, _)| *a);
        answered.chain(self.me).collect()
    }

    /// Up to `n` distinct members chosen at random.
    pub fn sample(&mut self, n: usize) -> Vec<SocketAddr> {
        let mut all = self.all();
        all.sort();
        let n = n.min(all.len());
        for i in 0..n {
            let j = self.rng.usize(i..all.len());
            all.swap(i, j);
        }
        all.truncate(n);
        all
    }

    /// Members not heard from within `fresh`, least recently heard first.
    pub fn stale(&self, now: Instant, fresh: Duration, max: usize) -> Vec<SocketAddr> {
        let mut v: Vec<(Option<Instant>, SocketAddr)> = self
            .map
            .iter()
            .filter(|(_, m)| m.last_heard.is_none_or(|t| now.duration_since(t) >= fresh))
            .map(|(a, m)| (m.last_heard, *a))
            .collect();
        v.sort();
        v.into_iter().take(max).map(|(_, a)| a).collect()
    }

    /// What to send this member in the next sync.
    pub fn sync_plan(&self, a: &SocketAddr) -> SyncPlan {
        match self.map.get(a) {
            None => SyncPlan::Full,
            Some(m) => match m.mode {
                SyncMode::InSync => SyncPlan::DigestOnly,
                SyncMode::Delta => SyncPlan::Since(m.sent_seq),
                SyncMode::Full => SyncPlan::Full,
            },
        }
    }

    /// The store sequence up to which this member has our entries.
    pub fn sent_seq(&self, a: &SocketAddr) -> u64 {
        self.map.get(a).map(|m| m.sent_seq).unwrap_or(0)
    }

    /// After an exchange: `agree` when both digests matched (the member
    /// holds exactly our store at `seq`); otherwise escalate what the next
    /// sync sends (digest → delta → everything).
    pub fn synced(&mut self, a: &SocketAddr, seq: u64, agree: bool, sent_entries: bool) {
        if let Some(m) = self.map.get_mut(a) {
            if agree {
                m.mode = SyncMode::InSync;
                m.sent_seq = seq;
            } else {
                if sent_entries {
                    m.sent_seq = seq;
                }
                m.mode = match m.mode {
                    SyncMode::InSync => SyncMode::Delta,
                    // A delta did not reconcile us: the member lost state.
                    SyncMode::Delta if sent_entries => SyncMode::Full,
                    SyncMode::Delta => SyncMode::Delta,
                    SyncMode::Full => SyncMode::Delta,
                };
            }
        }
    }
}

/// Out-of-turn pings of a member that has not answered us yet.
#[derive(Clone, Copy, Debug, Default)]
struct Probe {
    due: Option<Instant>,
    tries: u32,
}

/// How far a member is believed to be behind our store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyncMode {
    /// Digests matched last time: send only the digest.
    InSync,
    /// Send what changed since `sent_seq`.
    Delta,
    /// Send everything.
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPlan {
    DigestOnly,
    Since(u64),
    Full,
}

impl SyncPlan {
    /// Entries changed after which store sequence go in an exchange that
    /// carries entries, given what was last sent to the member
    /// (`sent_seq`) and, for a push, `news_after`: the sequence earlier
    /// pushes already covered. A push carries only the news: to a member
    /// never synced with, everything since 0 would be the whole store (at
    /// 500 nodes, 200 providers made every push 30 KB). Also returns
    /// whether what is sent covers everything the member may lack since
    /// `sent_seq` (only then may `sent_seq` advance on a mismatch).
    pub fn entries_after(self, sent_seq: u64, news_after: Option<u64>) -> (u64, bool) {
        let base = match self {
            SyncPlan::Full => 0,
            SyncPlan::Since(s) => s,
            SyncPlan::DigestOnly => sent_seq,
        };
        match news_after {
            Some(n) if n > base => (n, false),
            _ => (base, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(p: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], p))
    }

    /// Vouched for means answered us: named or heard from is not enough.
    #[test]
    fn only_members_that_answered_are_vouched_for() {
        let t = Instant::now();
        let mut m = Members::new(Duration::from_secs(30), 7);
        m.set_me(a(1));
        m.add(a(2), t);
        m.heard(a(3), t);
        m.answered(a(4), t);
        let mut v = m.vouched();
        v.sort();
        assert_eq!(v, vec![a(1), a(4)]);
        m.answered(a(3), t);
        assert!(m.vouched().contains(&a(3)));
    }

    /// Origins of providers we hold are pinged at once if not vouched for
    /// (learnt as members if need be), again with backoff while they do
    /// not answer, and never once they have; nobody else is pinged.
    #[test]
    fn unvouched_origins_are_probed_at_once_then_with_backoff() {
        let t = Instant::now();
        let mut m = Members::new(Duration::from_secs(30), 7);
        m.set_me(a(1));
        m.add(a(2), t);
        m.answered(a(4), t);
        assert_eq!(m.next_probe(), None, "members alone are not probed");
        assert!(!m.want_vouched(&[a(1), a(4)], t), "ourselves, vouched");
        assert!(m.want_vouched(&[a(2), a(5)], t));
        assert!(m.contains(&a(5)), "an origin is learnt as a member");
        assert!(!m.want_vouched(&[a(2)], t), "already due");
        assert_eq!(m.next_probe(), Some(t));
        assert_eq!(m.take_due_probes(t, 16), vec![a(2), a(5)]);
        assert!(m.take_due_probes(t, 16).is_empty(), "rescheduled");
        let retry = t + PROBE_RETRY_FIRST;
        assert_eq!(m.next_probe(), Some(retry));
        m.answered(a(5), retry);
        assert_eq!(m.take_due_probes(retry, 16), vec![a(2)]);
        assert_eq!(m.next_probe(), Some(retry + PROBE_RETRY_FIRST * 2));
        let mut late = retry;
        for _ in 0..12 {
            late += PROBE_RETRY_MAX;
            assert_eq!(m.take_due_probes(late, 16), vec![a(2)]);
        }
        assert_eq!(m.next_probe(), Some(late + PROBE_RETRY_MAX), "capped");
        assert!(!m.want_vouched(&[a(2)], late), "a pending probe is kept");
    }

    #[test]
    fn a_members_list_knows_when_it_last_grew() {
        let t = Instant::now();
        let w = Duration::from_secs(8);
        let mut m = Members::new(Duration::from_secs(30), 7);
        assert!(!m.grew_within(t, w), "nobody learnt yet");
        m.add(a(2), t);
        assert!(m.grew_within(t + Duration::from_secs(7), w));
        assert!(!m.grew_within(t + w, w));
        m.heard(a(2), t + w);
        assert!(
            !m.grew_within(t + w, w),
            "hearing a member again is not growth"
        );
        m.heard(a(3), t + w);
        assert!(m.grew_within(t + w, w), "a new member talked to us");
    }

    #[test]
    fn dead_members_are_removed_and_quarantined() {
        let t = Instant::now();
        let mut m = Members::new(Duration::from_secs(30), 7);
        m.set_me(a(1));
        assert!(!m.add(a(1), t), "never ourselves");
        assert!(m.add(a(2), t));
        assert!(!m.failed(a(2), t));
        assert!(m.failed(a(2), t));
        assert!(!m.contains(&a(2)));
        assert!(!m.add(a(2), t + Duration::from_secs(5)), "hearsay ignored");
        m.heard(a(2), t + Duration::from_secs(6));
        assert!(m.contains(&a(2)), "direct contact revives it");
    }

    #[test]
    fn samples_are_distinct_and_bounded() {
        let t = Instant::now();
        let mut m = Members::new(Duration::from_secs(30), 7);
        for p in 2..20 {
            m.add(a(p), t);
        }
        let s = m.sample(5);
        assert_eq!(s.len(), 5);
        let mut d = s.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 5);
        assert_eq!(m.sample(100).len(), 18);
    }

    #[test]
    fn a_seeded_members_list_samples_the_same_way_every_run() {
        let t = Instant::now();
        let fill = |seed| {
            let mut m = Members::new(Duration::from_secs(30), seed);
            for p in 2..40 {
                m.add(a(p), t);
            }
            (m.sample(5), m.sample(5))
        };
        assert_eq!(fill(7), fill(7));
        assert_ne!(fill(7), fill(8), "another seed, other samples");
    }

    #[test]
    fn a_push_carries_only_the_news() {
        use SyncPlan::*;
        assert_eq!(Full.entries_after(9, None), (0, true));
        assert_eq!(Since(4).entries_after(9, None), (4, true));
        assert_eq!(DigestOnly.entries_after(9, None), (9, true));
        // A member never synced with: a push sends what came after 50.
        assert_eq!(DigestOnly.entries_after(0, Some(50)), (50, false));
        assert_eq!(Full.entries_after(0, Some(50)), (50, false));
        // It already had everything up to 60: a push sends from 60.
        assert_eq!(DigestOnly.entries_after(60, Some(50)), (60, true));
    }

    #[test]
    fn sync_plan_escalates_from_digest_to_delta_to_everything() {
        let t = Instant::now();
        let mut m = Members::new(Duration::from_secs(30), 7);
        m.add(a(2), t);
        assert_eq!(m.sync_plan(&a(2)), SyncPlan::DigestOnly, "digest first");
        m.synced(&a(2), 3, false, false);
        assert_eq!(m.sync_plan(&a(2)), SyncPlan::Since(0), "then everything");
        m.synced(&a(2), 10, true, true);
        assert_eq!(m.sync_plan(&a(2)), SyncPlan::DigestOnly);
        m.synced(&a(2), 12, false, false);
        assert_eq!(m.sync_plan(&a(2)), SyncPlan::Since(10), "digests differed");
        m.synced(&a(2), 14, false, true);
        assert_eq!(m.sync_plan(&a(2)), SyncPlan::Full, "a delta did not help");
        m.synced(&a(2), 15, true, true);
        assert_eq!(m.sync_plan(&a(2)), SyncPlan::DigestOnly);
    }
}
