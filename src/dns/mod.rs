//! The distributed DNS service (`btnode dns`): a UDP DNS server for overlay
//! names ([`server`]), a REST API to register them and the gossip endpoint
//! ([`api`]), the records with LWW merge ([`records`]), and the client nodes
//! use to resolve bootstrap names and register themselves ([`client`]).
//! Documented in docs/DNS.md.

pub mod api;
pub mod client;
pub mod records;
pub mod server;

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::RwLock;

use crate::config::{CliError, DnsArgs};
pub use client::{register_self, resolve, resolve_host_port};
use records::Records;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

const HTTP_WORKERS: usize = 4;

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
    http: Arc<tiny_http::Server>,
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
        let http = Arc::new(tiny_http::Server::http(opts.http).map_err(std::io::Error::other)?);
        let http_addr = http
            .server_addr()
            .to_ip()
            .ok_or_else(|| std::io::Error::other("HTTP API is not on an IP address"))?;
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
        for i in 0..HTTP_WORKERS {
            let (records, stop, http, push) =
                (records.clone(), stop.clone(), http.clone(), push_tx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("dns-http-{i}"))
                    .spawn(move || {
                        while !stop.load(Ordering::SeqCst) {
                            match http.recv_timeout(Duration::from_millis(300)) {
                                Ok(Some(req)) => serve_http(req, &records, &push),
                                Ok(None) => {}
                                Err(_) => break,
                            }
                        }
                    })?,
            );
        }
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
            http,
            stop,
            threads,
            gossip_stop: Some(gossip_stop),
        })
    }

    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.gossip_stop.take();
        for _ in 0..HTTP_WORKERS {
            self.http.unblock();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve_http(
    mut req: tiny_http::Request,
    records: &api::Shared,
    push: &crossbeam_channel::Sender<()>,
) {
    let method = req.method().as_str().to_ascii_uppercase();
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let outcome = match api::read_body(&mut req) {
        Some(body) => api::handle(&method, &path, &body, records, now_ms()),
        None => api::Outcome {
            status: 413,
            body: r#"{"error":"body too large"}"#.into(),
            changed: false,
        },
    };
    // Gossip received from a peer is not pushed back at once (it would
    // ping-pong); the periodic round spreads it on.
    if outcome.changed && path != "/gossip" {
        let _ = push.try_send(());
    }
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..])
        .expect("static header is valid");
    let _ = req.respond(
        tiny_http::Response::from_string(outcome.body)
            .with_status_code(outcome.status)
            .with_header(header),
    );
}

/// `btnode dns`: serve until SIGINT/SIGTERM.
pub fn run(args: &DnsArgs) -> Result<(), CliError> {
    let failed = |e: std::io::Error| CliError::Failed(format!("dns: {e}"));
    let server = DnsServer::start(DnsOptions {
        udp: args.udp,
        http: args.http,
        peers: args.peer.clone(),
        gossip_interval: Duration::from_millis(args.gossip_interval_ms.max(100)),
        zone: args.zone.clone(),
    })
    .map_err(failed)?;
    let shown = |a: SocketAddr| {
        if a.ip().is_unspecified() {
            SocketAddr::new([127, 0, 0, 1].into(), a.port())
        } else {
            a
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "dns listening on udp {} http {}",
        shown(server.udp_addr),
        shown(server.http_addr)
    );
    let _ = out.flush();
    let signals = crate::node::signals::shutdown_on_signal().map_err(failed)?;
    let _ = signals.recv();
    server.shutdown();
    Ok(())
}
