//! Membership upkeep: discovery (bootstraps, then BFS over member lists
//! while we know few members), health (ping members not heard from within
//! the interval) and what happens to a member that stops answering: two
//! failed contacts in a row and it is dropped, with the providers that
//! announced through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::Receiver;

use super::handler::add_members;
use super::service::Inner;
use crate::core::lww::now_ms;
use crate::wire::overlay::{Message, MAX_TTL};

impl Inner {
    pub(super) fn learn_me(&self, observed: SocketAddr) {
        let mut m = self.members.lock();
        if m.me().is_none() {
            m.set_me(SocketAddr::new(observed.ip(), self.port));
        }
    }

    pub(super) fn member_failed(&self, addr: SocketAddr) {
        if self.members.lock().failed(addr, Instant::now()) {
            let n = self
                .store
                .write()
                .withdraw_where(now_ms(), |_, m| m.overlay == Some(addr));
            log::info!("overlay: member {addr} is dead; withdrew {n} of its providers");
            if n > 0 {
                self.signal_push();
            }
        }
    }

    /// Bootstraps, then BFS over member lists while we know few members.
    pub(super) fn discover(&self) {
        let bootstraps: Vec<SocketAddr> = self
            .cfg
            .bootstrap
            .iter()
            .flat_map(|b| self.cfg.resolver.resolve(b))
            .collect();
        let now = Instant::now();
        {
            let mut m = self.members.lock();
            for b in &bootstraps {
                m.add(*b, now);
            }
        }
        let mut frontier = bootstraps;
        let mut seen: std::collections::HashSet<SocketAddr> = frontier.iter().copied().collect();
        for depth in 0..MAX_TTL {
            if frontier.is_empty() || self.stopped() {
                break;
            }
            let mut next = Vec::new();
            for peer in frontier.iter().take(8) {
                // Before every request, not once per depth: 8 silent peers
                // would otherwise hold shutdown for 16 request timeouts.
                if self.stopped() {
                    return;
                }
                let ping = Message::Ping {
                    overlay_port: Some(self.port),
                };
                if let Ok(Message::Pong { observed }) =
                    self.request(*peer, &ping, self.cfg.rpc_timeout)
                {
                    self.learn_me(observed);
                    self.members.lock().answered(*peer, Instant::now());
                }
                if self.stopped() {
                    return;
                }
                let ask = Message::Members {
                    ttl: MAX_TTL - depth,
                };
                if let Ok(Message::MemberList { members }) =
                    self.request(*peer, &ask, self.cfg.rpc_timeout)
                {
                    add_members(&self.members, &members);
                    next.extend(members.into_iter().filter(|a| seen.insert(*a)));
                }
            }
            frontier = next;
        }
    }

    pub(super) fn health_loop(self: Arc<Self>, stop: Receiver<()>, probe: Receiver<()>) {
        let mut next_round = Instant::now() + self.cfg.health_interval;
        loop {
            // A keyed overlay lists a provider only once its origin has
            // answered us (`Members::vouched`): an origin that has not is
            // pinged as soon as one of its providers arrives (woken through
            // `probe`), then with backoff while it does not answer.
            let due = self.members.lock().next_probe();
            let until = due.map_or(next_round, |d| d.min(next_round));
            let wait = until.saturating_duration_since(Instant::now());
            crossbeam_channel::select! {
                recv(stop) -> _ => return,
                recv(probe) -> _ => {}
                default(wait) => {}
            }
            if self.stopped() {
                return;
            }
            let now = Instant::now();
            let probes = self.members.lock().take_due_probes(now, 16);
            self.ping_all(probes);
            if now >= next_round {
                next_round = now + self.cfg.health_interval;
                let stale = self.members.lock().stale(now, self.cfg.health_interval, 16);
                self.ping_all(stale);
            }
        }
    }

    /// Pings `targets` in parallel (a silent one costs one request
    /// timeout in all, not one each): an answer vouches for the member, a
    /// miss counts against it.
    fn ping_all(&self, targets: Vec<SocketAddr>) {
        let ping = Message::Ping {
            overlay_port: Some(self.port),
        };
        std::thread::scope(|s| {
            for m in targets {
                let ping = &ping;
                s.spawn(move || {
                    if self.stopped() {
                        return;
                    }
                    match self.request(m, ping, self.cfg.rpc_timeout) {
                        Ok(Message::Pong { observed }) => {
                            self.learn_me(observed);
                            self.members.lock().answered(m, Instant::now());
                        }
                        _ => self.member_failed(m),
                    }
                });
            }
        });
    }
}
