//! The distributed DNS service (`btnode dns`): a UDP DNS server for overlay
//! names ([`server`]), a REST API to register them and the gossip endpoint
//! ([`api`]), the records with LWW merge ([`records`]), and the client nodes
//! use to resolve bootstrap names and register themselves ([`client`]).
//! Documented in docs/DNS.md. Imports only `core` and `runtime`: the
//! command line builds its [`DnsOptions`] and [`client::RegisterConfig`].

pub mod api;
pub mod client;
pub mod records;
pub mod server;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::core::lww::now_ms;
use crate::runtime::http::{self, HttpError, Request, RequestLimits, Response};
use crate::runtime::listener::{Limits, Service};
pub use client::{register_self, resolve, resolve_host_port, RegisterConfig};
use records::Records;

use crate::wire::sealed::{self, Context, Keyring, ReplayGuard};

/// REST connections (and threads) served at once; a quarter per address.
const HTTP_CONNECTIONS: usize = 64;
/// One REST request, body and reply included, must be done within this.
const HTTP_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct DnsOptions {
    pub udp: SocketAddr,
    pub http: SocketAddr,
    /// Other servers' HTTP HOST:PORT.
    pub peers: Vec<String>,
    pub gossip_interval: Duration,
    /// Only names under this suffix are ours (NXDOMAIN); others are REFUSED.
    pub zone: Option<String>,
    /// The swarm key: gossip bodies are sealed both ways, and `POST` /
    /// `DELETE /records` need `Authorization: Bearer TOKEN` with the token
    /// derived from a key of the ring (docs/DNS.md). `None`: open.
    pub keys: Option<Arc<Keyring>>,
}

/// What the REST front checks with a swarm key.
struct Guard {
    keys: Arc<Keyring>,
    replay: Mutex<ReplayGuard>,
    failures: Arc<AtomicU64>,
}

/// A running DNS service.
pub struct DnsServer {
    pub udp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    http: Option<Service>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    gossip_stop: Option<crossbeam_channel::Sender<()>>,
    auth_failures: Arc<AtomicU64>,
}

impl DnsServer {
    pub fn start(opts: DnsOptions) -> std::io::Result<DnsServer> {
        let records: api::Shared = Arc::new(RwLock::new(Records::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let udp = UdpSocket::bind(opts.udp)?;
        let udp_addr = udp.local_addr()?;
        let listener = TcpListener::bind(opts.http)?;
        let http_addr = listener.local_addr()?;
        let zone = opts.zone.as_deref().and_then(records::normalize_name);
        let (push_tx, push_rx) = crossbeam_channel::bounded::<()>(1);
        let (gossip_stop, gossip_stop_rx) = crossbeam_channel::bounded::<()>(0);
        let mut threads = Vec::new();
        {
            let (records, stop) = (records.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("dns-udp".into())
                    .spawn(move || server::serve_udp(udp, records, zone, stop))?,
            );
        }
        let request = RequestLimits {
            max_body: api::MAX_BODY as usize,
            deadline: HTTP_DEADLINE,
            ..RequestLimits::default()
        };
        let auth_failures = Arc::new(AtomicU64::new(0));
        let guard = opts.keys.clone().map(|keys| Guard {
            keys,
            replay: Mutex::new(ReplayGuard::default()),
            failures: auth_failures.clone(),
        });
        let (r, push) = (records.clone(), push_tx);
        let http = http::serve(
            listener,
            "dns-http",
            Limits::new(HTTP_CONNECTIONS),
            request,
            move |req, _| serve_http(req, &r, &push, guard.as_ref()),
        )?;
        {
            let peers = opts.peers.clone();
            let interval = opts.gossip_interval;
            let keys = opts.keys.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("dns-gossip".into())
                    .spawn(move || {
                        client::gossip_loop(
                            &peers,
                            &records,
                            interval,
                            push_rx,
                            gossip_stop_rx,
                            keys.as_deref(),
                        )
                    })?,
            );
        }
        Ok(DnsServer {
            udp_addr,
            http_addr,
            http: Some(http),
            stop,
            threads,
            gossip_stop: Some(gossip_stop),
            auth_failures,
        })
    }

    /// Requests refused for want of the swarm key: gossip bodies that did
    /// not open (or were stale or replayed), writes without the token.
    pub fn auth_failures(&self) -> u64 {
        self.auth_failures.load(Ordering::Relaxed)
    }

    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the UDP thread's blocked receive.
        crate::runtime::wake::wake_udp(self.udp_addr);
        self.gossip_stop.take();
        if let Some(http) = self.http.take() {
            http.stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn refused(why: &str) -> api::Outcome {
    api::Outcome {
        status: 401,
        body: serde_json::json!({ "error": why }).to_string(),
        changed: false,
    }
}

/// True for the requests that change records from outside (`POST
/// /records`, `DELETE /records/…`): with a key they need the token.
fn is_write(method: &str, path: &str) -> bool {
    let records = path == "/records" || path.starts_with("/records/");
    records && (method == "POST" || method == "DELETE")
}

/// A keyed server's answer to `req`: writes checked for the token, gossip
/// opened (and checked fresh) before it is parsed, and the gossip reply
/// sealed to the request's nonce. `None`: the request is not keyed
/// business, handle it as usual.
fn serve_keyed(req: &Request, records: &api::Shared, guard: &Guard) -> Option<Response> {
    let path = req.path();
    let refuse = |why: &str| {
        guard.failures.fetch_add(1, Ordering::Relaxed);
        let o = refused(why);
        Response {
            status: o.status,
            content_type: "application/json",
            body: o.body.into_bytes(),
        }
    };
    if is_write(&req.method, path) {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let token = req
            .header("authorization")
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t);
        let ok = token.is_some_and(|t| guard.keys.accepts_token(sealed::DNS_WRITE_TOKEN, t));
        if !ok {
            return Some(refuse(
                "writes need Authorization: Bearer TOKEN, the token derived from the swarm key",
            ));
        }
        return None;
    }
    if !(req.method == "POST" && path == "/gossip") {
        return None;
    }
    let ctx = Context::request(sealed::DNS_GOSSIP);
    let opened = match guard.keys.open(&ctx, &req.body) {
        Ok(o) => o,
        Err(e) => return Some(refuse(&format!("gossip: {e}"))),
    };
    let fresh = guard
        .replay
        .lock()
        .check(opened.timestamp_ms, opened.nonce, now_ms());
    if let Err(e) = fresh {
        return Some(refuse(&format!("gossip: {e}")));
    }
    let outcome = api::handle("POST", "/gossip", opened.payload, records, now_ms());
    let reply_ctx = Context::reply(sealed::DNS_GOSSIP_REPLY, opened.nonce);
    let body = guard.keys.seal(
        &reply_ctx,
        outcome.body.as_bytes(),
        now_ms(),
        sealed::fresh_nonce(),
    );
    Some(Response {
        status: outcome.status,
        content_type: "application/octet-stream",
        body,
    })
}

fn serve_http(
    req: Result<Request, &HttpError>,
    records: &api::Shared,
    push: &crossbeam_channel::Sender<()>,
    guard: Option<&Guard>,
) -> Response {
    if let (Ok(req), Some(guard)) = (&req, guard) {
        if let Some(resp) = serve_keyed(req, records, guard) {
            return resp;
        }
    }
    let (outcome, path) = match req {
        Ok(req) => (
            api::handle(&req.method, req.path(), &req.body, records, now_ms()),
            req.path().to_string(),
        ),
        Err(e) => (
            api::Outcome {
                status: e.status().unwrap_or(400),
                body: serde_json::json!({ "error": e.to_string() }).to_string(),
                changed: false,
            },
            String::new(),
        ),
    };
    // Gossip received from a peer is not pushed back at once (it would
    // ping-pong); the periodic round spreads it on.
    if outcome.changed && path != "/gossip" {
        let _ = push.try_send(());
    }
    Response {
        status: outcome.status,
        content_type: "application/json",
        body: outcome.body.into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::sealed::{SwarmKey, DNS_WRITE_TOKEN};

    fn guard() -> Guard {
        Guard {
            keys: Arc::new(
                Keyring::new(vec![SwarmKey::new([1; 32]), SwarmKey::new([2; 32])]).unwrap(),
            ),
            replay: Mutex::new(ReplayGuard::default()),
            failures: Arc::new(AtomicU64::new(0)),
        }
    }

    fn req(method: &str, target: &str, auth: Option<String>, body: &[u8]) -> Request {
        Request {
            method: method.into(),
            target: target.into(),
            headers: auth
                .map(|a| ("authorization".into(), a))
                .into_iter()
                .collect(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn keyed_writes_need_a_token_of_the_ring_and_reads_do_not() {
        let g = guard();
        let records: api::Shared = Arc::new(RwLock::new(Records::default()));
        let body = br#"{"name":"a.btnode","ip":"10.0.0.1","ttl":30}"#;
        let token = SwarmKey::new([2; 32]).token(DNS_WRITE_TOKEN);
        let other = SwarmKey::new([3; 32]).token(DNS_WRITE_TOKEN);
        for (auth, refused) in [
            (None, true),
            (Some(format!("Bearer {other}")), true),
            (Some(token.clone()), true),
            (Some(format!("Basic {token}")), true),
            (Some(format!("Bearer {token}")), false),
            (Some(format!("bearer {token}")), false),
        ] {
            let r = req("POST", "/records", auth.clone(), body);
            let answer = serve_keyed(&r, &records, &g);
            assert_eq!(answer.map(|a| a.status), refused.then_some(401), "{auth:?}");
            let r = req("DELETE", "/records/a.btnode/10.0.0.1", auth.clone(), b"");
            assert_eq!(serve_keyed(&r, &records, &g).is_some(), refused, "{auth:?}");
        }
        assert_eq!(g.failures.load(Ordering::Relaxed), 8);
        for target in ["/records", "/records/a.btnode"] {
            assert!(serve_keyed(&req("GET", target, None, b""), &records, &g).is_none());
        }
    }

    #[test]
    fn keyed_gossip_opens_once_and_answers_sealed_to_its_nonce() {
        let g = guard();
        let records: api::Shared = Arc::new(RwLock::new(Records::default()));
        let plain = br#"{"records":[]}"#;
        let unsealed = req("POST", "/gossip", None, plain);
        assert_eq!(serve_keyed(&unsealed, &records, &g).unwrap().status, 401);
        let nonce = [9; 16];
        let sealed_body = g.keys.seal(
            &Context::request(sealed::DNS_GOSSIP),
            plain,
            now_ms(),
            nonce,
        );
        let r = req("POST", "/gossip", None, &sealed_body);
        let reply = serve_keyed(&r, &records, &g).unwrap();
        assert_eq!(reply.status, 200);
        let opened = g
            .keys
            .open(
                &Context::reply(sealed::DNS_GOSSIP_REPLY, nonce),
                &reply.body,
            )
            .unwrap();
        assert_eq!(opened.payload, br#"{"records":[]}"#);
        // The same body again is a replay.
        assert_eq!(serve_keyed(&r, &records, &g).unwrap().status, 401);
        assert_eq!(g.failures.load(Ordering::Relaxed), 2);
    }
}
