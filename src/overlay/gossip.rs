//! Gossip: push–pull anti-entropy with a random fanout of members, every
//! gossip interval and at once on news (a push), digest first so a
//! converged overlay exchanges digests only; and the parallel fanout of an
//! announce, a withdraw or a forwarded lookup.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::handler::{add_members, merge_relayed, SYNC_MEMBERS};
use super::membership::SyncPlan;
use super::service::{Inner, LOOKUP_FANOUT};
use super::store::ProviderMeta;
use crate::core::lww::now_ms;
use crate::core::InfoHash;
use crate::wire::overlay::{Message, MAX_ENTRIES};

/// What an exchange carries besides our digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Carry {
    /// The digest alone (a periodic round's first exchange).
    Digest,
    /// The entries the member's [`SyncPlan`] says it lacks.
    Entries,
    /// A push: only entries changed after this store sequence (the news),
    /// or after the member's `sent_seq` if that is later.
    NewsAfter(u64),
}

/// The gossip interval while the member list is still growing.
const YOUNG_ROUND: Duration = Duration::from_secs(1);

impl Inner {
    pub(super) fn signal_push(&self) {
        if self.cfg.push {
            let _ = self.push.try_send(());
        }
    }

    /// Wakes the health loop: an origin is due for a ping.
    pub(super) fn signal_probe(&self) {
        let _ = self.probe.try_send(());
    }

    /// Sends `msg` to a fanout of members in parallel, so silent members
    /// cost one request timeout in all, not one each (the withdraw at
    /// shutdown waits on this).
    pub(super) fn send_to_fanout(&self, msg: &Message) {
        let targets = self.members.lock().sample(self.cfg.fanout);
        std::thread::scope(|s| {
            for t in targets {
                s.spawn(move || match self.request(t, msg, self.cfg.rpc_timeout) {
                    Ok(Message::Ok { observed }) => {
                        self.learn_me(observed);
                        self.members.lock().heard(t, Instant::now());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        log::debug!("overlay: {t}: {e}");
                        self.member_failed(t);
                    }
                });
            }
        });
    }

    /// Asks [`LOOKUP_FANOUT`] members in parallel for providers of
    /// `info_hash` from their stores (`local_only`).
    pub(super) fn ask_members(&self, info_hash: InfoHash, limit: usize) -> Vec<ProviderMeta> {
        let asked = self.members.lock().sample(LOOKUP_FANOUT);
        let msg = Message::Lookup {
            info_hash,
            limit,
            local_only: true,
        };
        let replies: Vec<Vec<ProviderMeta>> = std::thread::scope(|s| {
            let handles: Vec<_> = asked
                .iter()
                .map(|&a| {
                    let msg = &msg;
                    s.spawn(move || match self.request(a, msg, self.cfg.rpc_timeout) {
                        Ok(Message::Providers { providers, .. }) => providers,
                        _ => vec![],
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        replies.into_iter().flatten().collect()
    }

    /// Push–pull with `peer`. A push sends what changed since we last
    /// synced with it. A periodic round first sends only our digest; only if
    /// the digests then differ does a second exchange carry entries (what
    /// changed since the last sync, or everything when that did not help,
    /// see membership::SyncPlan). So a converged overlay exchanges digests
    /// only, whatever the number of providers.
    fn sync_with(&self, peer: SocketAddr, push: Option<u64>) {
        match push {
            // A push sends its news at once.
            Some(after) => {
                self.exchange(peer, Carry::NewsAfter(after));
            }
            // A periodic round sends entries only if the digests differ.
            None => {
                if self.exchange(peer, Carry::Digest) == Some(false) {
                    self.exchange(peer, Carry::Entries);
                }
            }
        }
    }

    /// One Sync request; returns whether the digests agreed afterwards
    /// (`None` when the peer did not answer).
    pub(super) fn exchange(&self, peer: SocketAddr, carry: Carry) -> Option<bool> {
        // A push's second exchange must not start after shutdown began.
        if self.stopped() {
            return None;
        }
        // Everything needed from `members` first: taking it again while
        // `store` is held would invert the order (announce holds members,
        // then waits for store).
        let (plan, sent_seq) = {
            let m = self.members.lock();
            (m.sync_plan(&peer), m.sent_seq(&peer))
        };
        let news_after = match carry {
            Carry::NewsAfter(n) => Some(n),
            _ => None,
        };
        let (after, covers) = plan.entries_after(sent_seq, news_after);
        let (seq, entries, digest) = {
            let store = self.store.read();
            let entries = match carry {
                Carry::Digest => vec![],
                _ => store.changed_since(after, MAX_ENTRIES),
            };
            (store.seq(), entries, store.digest(now_ms()))
        };
        let with_entries = carry != Carry::Digest;
        // Only what covers all the member may lack moves `sent_seq` on.
        let sent = !entries.is_empty() && covers;
        let members = self.members.lock().sample(SYNC_MEMBERS);
        let msg = Message::Sync {
            overlay_port: self.port,
            digest,
            entries,
            members,
            full: with_entries && plan == SyncPlan::Full && covers,
        };
        match self.request(peer, &msg, self.cfg.gossip_timeout) {
            Ok(Message::SyncReply {
                digest: theirs,
                entries,
                members,
            }) => {
                self.members.lock().answered(peer, Instant::now());
                add_members(&self.members, &members);
                let merged =
                    merge_relayed(&self.store, &self.members, entries, self.cfg.keys.is_some());
                let ours = self.store.read().digest(now_ms());
                let agree = ours == theirs;
                self.members.lock().synced(&peer, seq, agree, sent);
                if merged.changed {
                    self.signal_push();
                }
                if merged.probe {
                    self.signal_probe();
                }
                Some(agree)
            }
            Ok(other) => {
                log::debug!("overlay: {peer} answered sync with {other:?}");
                None
            }
            Err(e) => {
                log::debug!("overlay: sync with {peer}: {e}");
                self.member_failed(peer);
                None
            }
        }
    }

    pub(super) fn gossip_loop(self: Arc<Self>, stop: Receiver<()>, push: Receiver<()>) {
        self.discover();
        // The member list just grew (discovery): the first round comes soon.
        let mut next_round = Instant::now() + YOUNG_ROUND.min(self.cfg.gossip_interval);
        // The fanout of the round now due, and of the one after: one member
        // for a young round.
        let (mut round_fanout, mut next_fanout) = (1, 1);
        // The store sequence earlier push rounds covered: a push carries
        // what changed after it (every change is pushed once).
        let mut pushed_upto = 0;
        loop {
            let wait = next_round.saturating_duration_since(Instant::now());
            let pushed = crossbeam_channel::select! {
                recv(stop) -> _ => return,
                recv(push) -> _ => true,
                default(wait) => false,
            };
            if self.stopped() {
                return;
            }
            if !pushed {
                // While members are still being learnt (a young overlay, or
                // churn), some may not know us, so a push cannot reach them
                // (at 200 nodes a pushed announce missed about one node in
                // ten until the next 8 s round): rounds come every second
                // then, so whoever a push missed pulls the news within one,
                // each with one member (8 syncs per 8 s instead of 3, while
                // it lasts; at 500 nodes members spread for a minute or two).
                let now = Instant::now();
                let young = self
                    .members
                    .lock()
                    .grew_within(now, self.cfg.gossip_interval);
                round_fanout = next_fanout;
                (next_round, next_fanout) = if young {
                    (now + YOUNG_ROUND.min(self.cfg.gossip_interval), 1)
                } else {
                    (now + self.cfg.gossip_interval, self.cfg.fanout)
                };
                if self.members.lock().len() < self.cfg.fanout * 2 {
                    self.discover();
                }
            }
            // A push goes wider than a periodic round: with fanout F a rumor
            // that stops where it is already known misses about e^-F of the
            // nodes, so pushes use F + log2(members) to reach all of them
            // without waiting for the next round.
            let targets = {
                let mut m = self.members.lock();
                let n = if pushed {
                    self.cfg.fanout + (usize::BITS - m.len().leading_zeros()) as usize
                } else {
                    round_fanout.min(self.cfg.fanout)
                };
                m.sample(n)
            };
            let push = pushed.then_some(pushed_upto);
            if pushed {
                pushed_upto = self.store.read().seq();
            }
            for t in targets {
                if self.stopped() {
                    return;
                }
                self.sync_with(t, push);
            }
            self.store.write().expire(now_ms());
        }
    }
}
