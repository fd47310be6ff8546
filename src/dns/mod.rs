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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::RwLock;

use crate::core::lww::now_ms;
use crate::runtime::http::{self, HttpError, Request, RequestLimits, Response};
use crate::runtime::listener::{Limits, Service};
pub use client::{register_self, resolve, resolve_host_port, RegisterConfig};
use records::Records;

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
}

/// A running DNS service.
pub struct DnsServer {
    pub udp_addr: SocketAddr,
    pub http_addr: SocketAddr,
    http: Option<Service>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    gossip_stop: Option<crossbeam_channel::Sender<()>>,
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
        let (r, push) = (records.clone(), push_tx);
        let http = http::serve(
            listener,
            "dns-http",
            Limits::new(HTTP_CONNECTIONS),
            request,
            move |req, _| serve_http(req, &r, &push),
        )?;
        {
            let peers = opts.peers.clone();
            let interval = opts.gossip_interval;
            threads.push(
                std::thread::Builder::new()
                    .name("dns-gossip".into())
                    .spawn(move || {
                        client::gossip_loop(&peers, &records, interval, push_rx, gossip_stop_rx)
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
        })
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

fn serve_http(
    req: Result<Request, &HttpError>,
    records: &api::Shared,
    push: &crossbeam_channel::Sender<()>,
) -> Response {
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
