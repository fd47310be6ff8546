//! The server side of the overlay protocol: the answer to one decoded
//! request, given the store, the members and the counters. No sockets:
//! the one request that needs the network (a lookup that is not
//! `local_only`, when the store holds too few) asks through the
//! `ask_members` function the service gives it, so every answer is
//! unit-tested below.
//!
//! Lock order as in the service: `members` before `store`, never both at
//! once; each guard is taken for one statement or one short block, never in
//! an `if let` / `match` scrutinee, never across `ask_members`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use parking_lot::{Mutex, RwLock};

use super::membership::Members;
use super::rpc::Counters;
use super::store::{ProviderMeta, Store};
use crate::core::lww::now_ms;
use crate::core::InfoHash;
use crate::wire::overlay::{Entry, Message, MAX_ENTRIES, MAX_LIMIT, MAX_MEMBERS, MAX_TTL};

/// Members sampled into every sync and sync reply.
pub const SYNC_MEMBERS: usize = 16;

/// What a request needs to be answered.
pub struct Handler<'a> {
    pub store: &'a RwLock<Store>,
    pub members: &'a Mutex<Members>,
    pub counters: &'a Counters,
    /// Asks a few members for providers of a torrent (at most `limit`).
    pub ask_members: &'a dyn Fn(InfoHash, usize) -> Vec<ProviderMeta>,
    /// A keyed overlay: relayed entries must be bound to their origin
    /// ([`bound_to_origin`]) and lookups list only providers whose origin
    /// is vouched for ([`Members::vouched`]).
    pub origin_bound: bool,
}

/// A relayed entry (sync, sync reply, a forwarded lookup's answer) in a
/// keyed overlay: it names the overlay node it was announced through, and
/// the provider is on that node's host. The node that took the announce
/// bound both to the connection's source address, so an honest entry
/// always passes; a member inventing providers for other hosts does not.
pub fn bound_to_origin(meta: &ProviderMeta) -> bool {
    meta.overlay.is_some_and(|o| o.ip() == meta.addr.ip())
}

/// What merging entries did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Merged {
    /// The store changed: worth pushing on.
    pub changed: bool,
    /// A keyed overlay now holds providers whose origin is not vouched
    /// for yet: a ping to it is due ([`Members::want_vouched`]).
    pub probe: bool,
}

/// [`merge_all`] of relayed entries: in a keyed overlay (`origin_bound`)
/// only those [`bound_to_origin`], and their origins are to be vouched
/// for. Takes the store, then the members, never both at once.
pub fn merge_relayed(
    store: &RwLock<Store>,
    members: &Mutex<Members>,
    entries: impl IntoIterator<Item = Entry>,
    origin_bound: bool,
) -> Merged {
    if !origin_bound {
        return Merged {
            changed: merge_all(store, entries),
            probe: false,
        };
    }
    let entries: Vec<Entry> = entries
        .into_iter()
        .filter(|e| bound_to_origin(&e.meta))
        .collect();
    let mut origins: Vec<SocketAddr> = entries.iter().filter_map(|e| e.meta.overlay).collect();
    origins.sort();
    origins.dedup();
    let changed = merge_all(store, entries);
    let probe = members.lock().want_vouched(&origins, Instant::now());
    Merged { changed, probe }
}

/// An answer, and whether the store learnt something worth pushing on.
#[derive(Debug)]
pub struct Answer {
    pub reply: Message,
    pub news: bool,
    /// A ping to an origin not yet vouched for is due (keyed overlay).
    pub probe: bool,
}

/// LWW-merges `entries` into the store; true if anything changed.
pub fn merge_all(store: &RwLock<Store>, entries: impl IntoIterator<Item = Entry>) -> bool {
    let now = now_ms();
    let mut store = store.write();
    let mut changed = false;
    for e in entries {
        changed |= store.merge(e.info_hash, e.meta, now);
    }
    changed
}

/// Members learnt second-hand (at most [`MAX_MEMBERS`] of `list`).
pub fn add_members(members: &Mutex<Members>, list: &[SocketAddr]) {
    let now = Instant::now();
    let mut m = members.lock();
    for a in list.iter().take(MAX_MEMBERS) {
        m.add(*a, now);
    }
}

pub fn error(message: &str) -> Message {
    Message::Error {
        message: message.to_string(),
    }
}

impl Handler<'_> {
    /// The store's providers of `info_hash`; in a keyed overlay only those
    /// announced here directly (no origin) or through a vouched member.
    fn local(&self, info_hash: &InfoHash, limit: usize) -> Vec<ProviderMeta> {
        if !self.origin_bound {
            return self.store.read().providers(info_hash, now_ms(), limit);
        }
        // Members first, alone, then the store (the lock order).
        let vouched = self.members.lock().vouched();
        let all = self.store.read().providers(info_hash, now_ms(), MAX_LIMIT);
        all.into_iter()
            .filter(|p| p.overlay.is_none_or(|o| vouched.contains(&o)))
            .take(limit)
            .collect()
    }

    /// Providers of `info_hash`: the store, then (when it holds fewer than
    /// `limit`) what `ask_members` finds, merged; newest first.
    pub fn lookup(&self, info_hash: InfoHash, limit: usize) -> (Vec<ProviderMeta>, Merged) {
        let limit = limit.clamp(1, MAX_LIMIT);
        let local = self.local(&info_hash, limit);
        if local.len() >= limit {
            return (local, Merged::default());
        }
        let found = (self.ask_members)(info_hash, limit);
        let merged = merge_relayed(
            self.store,
            self.members,
            found.into_iter().map(|meta| Entry { info_hash, meta }),
            self.origin_bound,
        );
        let providers = self.local(&info_hash, limit);
        (providers, merged)
    }

    /// The answer to `msg`, which came from `from` (its source address
    /// binds what it announces).
    pub fn handle(&self, msg: Message, from: SocketAddr) -> Answer {
        let now = Instant::now();
        let mut news = false;
        let mut probe = false;
        let reply = match msg {
            Message::Announce {
                info_hash,
                peer_id,
                port,
                left,
                overlay_port,
            } => {
                let overlay = overlay_port.map(|p| SocketAddr::new(from.ip(), p));
                if let Some(o) = overlay {
                    let mut members = self.members.lock();
                    members.heard(o, now);
                    // Listed once the node it came through answers us.
                    probe = self.origin_bound && members.want_vouched(&[o], now);
                }
                let meta = ProviderMeta {
                    // Bound to the source address: nobody announces others.
                    addr: SocketAddr::new(from.ip(), port),
                    peer_id,
                    left,
                    last_seen: now_ms(),
                    gone: false,
                    overlay,
                };
                news = merge_all(self.store, [Entry { info_hash, meta }]);
                Message::Ok { observed: from }
            }
            Message::Withdraw { info_hash, port } => {
                let addr = SocketAddr::new(from.ip(), port);
                let n = self
                    .store
                    .write()
                    .withdraw_where(now_ms(), |h, m| *h == info_hash && m.addr == addr);
                news = n > 0;
                Message::Ok { observed: from }
            }
            Message::Lookup {
                info_hash,
                limit,
                local_only,
            } => {
                let limit = limit.clamp(1, MAX_LIMIT);
                let providers = if local_only {
                    self.local(&info_hash, limit)
                } else {
                    let (providers, merged) = self.lookup(info_hash, limit);
                    news = merged.changed;
                    probe = merged.probe;
                    providers
                };
                Message::Providers {
                    info_hash,
                    providers,
                }
            }
            Message::Sync {
                overlay_port,
                digest: theirs,
                entries,
                members,
                full,
            } => {
                let peer = SocketAddr::new(from.ip(), overlay_port);
                self.members.lock().heard(peer, now);
                add_members(self.members, &members);
                let merged = merge_relayed(self.store, self.members, entries, self.origin_bound);
                (news, probe) = (merged.changed, merged.probe);
                let (seq, digest) = {
                    let store = self.store.read();
                    (store.seq(), store.digest(now_ms()))
                };
                // Equal digests: the sender already holds all we hold, so
                // the reply carries nothing; steady state stays this small.
                let reply_entries = if digest == theirs && !full {
                    vec![]
                } else {
                    let since = if full {
                        0
                    } else {
                        self.members.lock().sent_seq(&peer)
                    };
                    self.store.read().changed_since(since, MAX_ENTRIES)
                };
                let sent = !reply_entries.is_empty();
                self.members
                    .lock()
                    .synced(&peer, seq, digest == theirs, sent || full);
                let sample = self.members.lock().sample(SYNC_MEMBERS);
                Message::SyncReply {
                    digest,
                    entries: reply_entries,
                    members: sample,
                }
            }
            Message::Members { ttl } => {
                let _ = ttl.min(MAX_TTL);
                Message::MemberList {
                    members: self.members.lock().sample(MAX_MEMBERS),
                }
            }
            Message::Ping { overlay_port } => {
                if let Some(p) = overlay_port {
                    self.members
                        .lock()
                        .heard(SocketAddr::new(from.ip(), p), now);
                }
                Message::Pong { observed: from }
            }
            Message::Stats => Message::StatsReply {
                members: self.members.lock().len(),
                providers: self.store.read().len(),
                bytes_in: self.counters.bytes_in.load(Ordering::Relaxed),
                bytes_out: self.counters.bytes_out.load(Ordering::Relaxed),
                messages: self.counters.messages.load(Ordering::Relaxed),
                auth_failures: self.counters.auth_failures.load(Ordering::Relaxed),
            },
            _ => error("unexpected message type"),
        };
        Answer { reply, news, probe }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::PeerId;
    use std::cell::Cell;
    use std::time::Duration;

    const TTL_MS: u64 = 90_000;

    struct Fixture {
        store: RwLock<Store>,
        members: Mutex<Members>,
        counters: Counters,
    }

    fn fixture() -> Fixture {
        Fixture {
            store: RwLock::new(Store::new(TTL_MS)),
            members: Mutex::new(Members::new(Duration::from_secs(30), 7)),
            counters: Counters::default(),
        }
    }

    fn nobody(_: InfoHash, _: usize) -> Vec<ProviderMeta> {
        panic!("the store should have answered")
    }

    impl Fixture {
        fn handler<'a>(
            &'a self,
            ask: &'a dyn Fn(InfoHash, usize) -> Vec<ProviderMeta>,
        ) -> Handler<'a> {
            Handler {
                store: &self.store,
                members: &self.members,
                counters: &self.counters,
                ask_members: ask,
                origin_bound: false,
            }
        }

        fn handle(&self, msg: Message, from: SocketAddr) -> Answer {
            self.handler(&nobody).handle(msg, from)
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const H: InfoHash = InfoHash([7; 20]);

    fn announce(port: u16, left: u64) -> Message {
        Message::Announce {
            info_hash: H,
            peer_id: PeerId([0xab; 20]),
            port,
            left,
            overlay_port: Some(6000),
        }
    }

    fn lookup(f: &Fixture, limit: usize) -> Vec<ProviderMeta> {
        let msg = Message::Lookup {
            info_hash: H,
            limit,
            local_only: true,
        };
        match f.handle(msg, addr("10.0.0.9:1")).reply {
            Message::Providers {
                info_hash,
                providers,
            } => {
                assert_eq!(info_hash, H);
                providers
            }
            other => panic!("{other:?}"),
        }
    }

    /// A keyed overlay: a sync entry whose provider is not on its origin's
    /// host is not merged, and one whose origin is not a member that spoke
    /// to us itself is kept (it may be vouched for later) but not listed.
    #[test]
    fn keyed_sync_entries_are_bound_to_their_origin() {
        let f = fixture();
        let handler = Handler {
            origin_bound: true,
            ..f.handler(&nobody)
        };
        let entry = |a: &str, o: Option<&str>| Entry {
            info_hash: H,
            meta: ProviderMeta {
                addr: addr(a),
                peer_id: PeerId([1; 20]),
                left: 0,
                last_seen: now_ms(),
                gone: false,
                overlay: o.map(addr),
            },
        };
        let sync = Message::Sync {
            overlay_port: 6000,
            digest: 0,
            entries: vec![
                entry("10.0.0.2:6881", Some("10.0.0.2:6000")),
                entry("10.0.0.3:6881", Some("10.0.0.2:6000")),
                entry("10.0.0.4:6881", None),
                entry("10.0.0.5:6881", Some("10.0.0.5:6000")),
            ],
            members: vec![addr("10.0.0.5:6000")],
            full: false,
        };
        // The sender, 10.0.0.2:6000, has answered us; 10.0.0.5 is only named.
        f.members
            .lock()
            .answered(addr("10.0.0.2:6000"), Instant::now());
        let answer = handler.handle(sync, addr("10.0.0.2:40000"));
        assert_eq!(f.store.read().len(), 2, "unbound entries were merged");
        assert!(answer.probe, "10.0.0.5 is due for a ping");
        let due = f.members.lock().take_due_probes(Instant::now(), 16);
        assert_eq!(
            due,
            vec![addr("10.0.0.5:6000")],
            "only the unvouched origin"
        );
        let listed: Vec<SocketAddr> = handler.local(&H, 10).iter().map(|p| p.addr).collect();
        assert_eq!(listed, vec![addr("10.0.0.2:6881")]);
        // Heard from (a request can be a replay sent from anywhere): not yet.
        f.members
            .lock()
            .heard(addr("10.0.0.5:6000"), Instant::now());
        assert_eq!(handler.local(&H, 10).len(), 1);
        // Once 10.0.0.5 answers a request of ours, its provider is listed.
        f.members
            .lock()
            .answered(addr("10.0.0.5:6000"), Instant::now());
        assert_eq!(handler.local(&H, 10).len(), 2);
        // An open overlay keeps today's behaviour: everything merges.
        let open = fixture();
        let sync = Message::Sync {
            overlay_port: 6000,
            digest: 0,
            entries: vec![entry("10.0.0.3:6881", Some("10.0.0.2:6000"))],
            members: vec![],
            full: false,
        };
        let _ = open.handle(sync, addr("10.0.0.2:40000"));
        assert_eq!(lookup(&open, 10).len(), 1);
    }

    #[test]
    fn an_announce_is_bound_to_the_source_ip_and_is_news() {
        let f = fixture();
        let from = addr("10.0.0.5:41234");
        let a = f.handle(announce(6881, 42), from);
        assert!(matches!(a.reply, Message::Ok { observed } if observed == from));
        assert!(a.news);
        let p = lookup(&f, 10);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p[0].addr,
            addr("10.0.0.5:6881"),
            "source IP, announced port"
        );
        assert_eq!(p[0].overlay, Some(addr("10.0.0.5:6000")));
        assert_eq!(
            (p[0].peer_id, p[0].left, p[0].gone),
            (PeerId([0xab; 20]), 42, false)
        );
        assert!(
            f.members.lock().contains(&addr("10.0.0.5:6000")),
            "the announcer's overlay node becomes a member"
        );
    }

    #[test]
    fn a_withdraw_only_touches_the_senders_own_address() {
        let f = fixture();
        f.handle(announce(6881, 0), addr("10.0.0.5:1"));
        let other = f.handle(
            Message::Withdraw {
                info_hash: H,
                port: 6881,
            },
            addr("10.0.0.6:1"),
        );
        assert!(!other.news, "another IP cannot withdraw it");
        assert_eq!(lookup(&f, 10).len(), 1);
        let own = f.handle(
            Message::Withdraw {
                info_hash: H,
                port: 6881,
            },
            addr("10.0.0.5:2"),
        );
        assert!(matches!(own.reply, Message::Ok { .. }));
        assert!(own.news);
        assert!(lookup(&f, 10).is_empty(), "withdrawn providers are hidden");
        assert_eq!(f.store.read().len(), 1, "the tombstone is kept to spread");
    }

    #[test]
    fn lookups_are_capped_and_ask_members_only_when_short() {
        let f = fixture();
        for i in 0..3u8 {
            f.handle(announce(6881, 0), addr(&format!("10.0.0.{}:1", i + 1)));
        }
        assert_eq!(lookup(&f, 0).len(), 1, "a limit of 0 means 1");
        assert_eq!(lookup(&f, 10_000).len(), 3);
        // Enough locally: members are not asked.
        let asked = Cell::new(0);
        let remote = |h: InfoHash, limit: usize| {
            asked.set(asked.get() + 1);
            assert_eq!(
                (h, limit),
                (H, MAX_LIMIT),
                "the cap applies to what is forwarded"
            );
            vec![ProviderMeta {
                addr: addr("10.0.1.1:6881"),
                peer_id: PeerId([1; 20]),
                left: 0,
                last_seen: now_ms(),
                gone: false,
                overlay: None,
            }]
        };
        let (p, merged) = f.handler(&remote).lookup(H, 2);
        assert_eq!((p.len(), merged.changed, asked.get()), (2, false, 0));
        let msg = Message::Lookup {
            info_hash: H,
            limit: 500,
            local_only: false,
        };
        let a = f.handler(&remote).handle(msg, addr("10.0.0.9:1"));
        assert_eq!(asked.get(), 1);
        assert!(a.news, "what members knew is merged");
        assert!(
            matches!(a.reply, Message::Providers { ref providers, .. } if providers.len() == 4)
        );
    }

    /// A keyed overlay: a provider learnt from a forwarded lookup whose
    /// origin we do not even know as a member (the case that left a pushed
    /// announce unlisted for a whole gossip round at 50 nodes) is not
    /// listed yet, but its origin becomes a member due for a ping at once;
    /// once that answers, the provider is listed.
    #[test]
    fn a_keyed_lookup_probes_an_unknown_origin_at_once() {
        let f = fixture();
        let origin = addr("10.0.2.2:6000");
        let remote = |_: InfoHash, _: usize| {
            vec![ProviderMeta {
                addr: addr("10.0.2.2:6881"),
                peer_id: PeerId([2; 20]),
                left: 0,
                last_seen: now_ms(),
                gone: false,
                overlay: Some(origin),
            }]
        };
        let handler = Handler {
            origin_bound: true,
            ..f.handler(&remote)
        };
        let (listed, merged) = handler.lookup(H, 10);
        assert!(listed.is_empty(), "not vouched for yet");
        assert!(merged.changed && merged.probe);
        assert!(f.members.lock().contains(&origin));
        let due = f.members.lock().take_due_probes(Instant::now(), 16);
        assert_eq!(due, vec![origin]);
        f.members.lock().answered(origin, Instant::now());
        assert_eq!(handler.local(&H, 10).len(), 1);
    }

    #[test]
    fn a_sync_merges_entries_and_answers_with_the_digest_and_what_differs() {
        let f = fixture();
        f.handle(announce(6881, 0), addr("10.0.0.1:1"));
        let theirs = Entry {
            info_hash: InfoHash([8; 20]),
            meta: ProviderMeta {
                addr: addr("10.0.0.2:6881"),
                peer_id: PeerId([2; 20]),
                left: 5,
                last_seen: now_ms(),
                gone: false,
                overlay: None,
            },
        };
        let sync = |entries: Vec<Entry>, digest: u64, full: bool| Message::Sync {
            overlay_port: 6000,
            digest,
            entries,
            members: vec![addr("10.0.0.3:6000")],
            full,
        };
        let from = addr("10.0.0.2:5555");
        let a = f.handle(sync(vec![theirs.clone()], 1, false), from);
        assert!(a.news);
        let Message::SyncReply {
            digest,
            entries,
            members,
        } = a.reply
        else {
            panic!("{:?}", a.reply)
        };
        assert_eq!(digest, f.store.read().digest(now_ms()));
        assert_eq!(entries.len(), 2, "digests differed: everything it lacks");
        assert!(!members.is_empty());
        assert!(
            f.members.lock().contains(&addr("10.0.0.2:6000")),
            "the sender"
        );
        assert!(
            f.members.lock().contains(&addr("10.0.0.3:6000")),
            "its sample"
        );
        // Equal digests: nothing to send, and the same entry is no news.
        let a = f.handle(sync(vec![theirs], digest, false), from);
        assert!(!a.news);
        assert!(matches!(a.reply, Message::SyncReply { ref entries, .. } if entries.is_empty()));
        // `full` asks for everything whatever the digests say.
        let a = f.handle(sync(vec![], digest, true), from);
        assert!(matches!(a.reply, Message::SyncReply { ref entries, .. } if entries.len() == 2));
    }

    #[test]
    fn ping_members_and_stats() {
        let f = fixture();
        let from = addr("10.0.0.5:41240");
        let a = f.handle(
            Message::Ping {
                overlay_port: Some(6000),
            },
            from,
        );
        assert!(matches!(a.reply, Message::Pong { observed } if observed == from));
        assert!(!a.news);
        let a = f.handle(Message::Members { ttl: 200 }, from);
        assert!(
            matches!(a.reply, Message::MemberList { ref members } if members == &[addr("10.0.0.5:6000")])
        );
        f.counters.messages.store(3, Ordering::Relaxed);
        let a = f.handle(Message::Stats, from);
        assert!(matches!(
            a.reply,
            Message::StatsReply {
                members: 1,
                providers: 0,
                messages: 3,
                ..
            }
        ));
    }

    #[test]
    fn replies_sent_as_requests_are_refused() {
        let f = fixture();
        for msg in [
            Message::Pong {
                observed: addr("1.2.3.4:5"),
            },
            Message::Ok {
                observed: addr("1.2.3.4:5"),
            },
            Message::MemberList { members: vec![] },
            Message::Providers {
                info_hash: H,
                providers: vec![],
            },
            error("x"),
        ] {
            let a = f.handle(msg, addr("10.0.0.5:1"));
            assert!(matches!(a.reply, Message::Error { .. }), "{:?}", a.reply);
            assert!(!a.news);
        }
        assert!(f.store.read().is_empty());
        assert!(f.members.lock().is_empty());
    }
}
