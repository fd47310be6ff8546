//! Membership upkeep: discovery (bootstraps, then BFS over member lists
//! while we know few members), health (ping members not heard from within
//! the interval) and what happens to a member that stops answering: two
//! failed contacts in a row and it is dropped, with the providers that
//! announced through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::handler::add_members;
use super::rpc::request_with;
use super::service::Inner;
use crate::core::lww::now_ms;
use crate::wire::overlay::{Message, MAX_TTL};

/// How soon a keyed overlay pings a member that never answered us.
const QUICK_PING: Duration = Duration::from_millis(500);

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
                if let Ok(Message::Pong { observed }) = request_with(
                    *peer,
                    &ping,
                    self.cfg.rpc_timeout,
                    Some(&self.counters),
                    self.cfg.keys.as_deref(),
                ) {
                    self.learn_me(observed);
                    self.members.lock().answered(*peer, Instant::now());
                }
                if self.stopped() {
                    return;
                }
                let ask = Message::Members {
                    ttl: MAX_TTL - depth,
                };
                if let Ok(Message::MemberList { members }) = request_with(
                    *peer,
                    &ask,
                    self.cfg.rpc_timeout,
                    Some(&self.counters),
                    self.cfg.keys.as_deref(),
                ) {
                    add_members(&self.members, &members);
                    next.extend(members.into_iter().filter(|a| seen.insert(*a)));
                }
            }
            frontier = next;
        }
    }

    pub(super) fn health_loop(self: Arc<Self>, stop: Receiver<()>) {
        let keyed = self.cfg.keys.is_some();
        let mut next_round = Instant::now() + self.cfg.health_interval;
        loop {
            // A keyed overlay lists a provider only once its origin has
            // answered us (`Members::vouched`): members that never did are
            // pinged (once) within half a second, not at the next round.
            let unanswered = keyed && self.members.lock().has_unprobed();
            let wait = if unanswered {
                QUICK_PING.min(next_round.saturating_duration_since(Instant::now()))
            } else {
                next_round.saturating_duration_since(Instant::now())
            };
            crossbeam_channel::select! {
                recv(stop) -> _ => return,
                default(wait) => {}
            }
            if self.stopped() {
                return;
            }
            let now = Instant::now();
            let full = now >= next_round;
            let mut stale = if full {
                next_round = now + self.cfg.health_interval;
                self.members.lock().stale(now, self.cfg.health_interval, 16)
            } else {
                vec![]
            };
            if keyed {
                let never = self.members.lock().take_unprobed(16);
                for a in never {
                    if !stale.contains(&a) {
                        stale.push(a);
                    }
                }
            }
            let ping = Message::Ping {
                overlay_port: Some(self.port),
            };
            for m in stale {
                if self.stopped() {
                    return;
                }
                match request_with(
                    m,
                    &ping,
                    self.cfg.rpc_timeout,
                    Some(&self.counters),
                    self.cfg.keys.as_deref(),
                ) {
                    Ok(Message::Pong { observed }) => {
                        self.learn_me(observed);
                        self.members.lock().answered(m, Instant::now());
                    }
                    _ => self.member_failed(m),
                }
            }
        }
    }
}
