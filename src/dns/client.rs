//! Talking to the DNS service: resolving names over UDP, registering over
//! HTTP, the servers' gossip loop, and a node's self-registration.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use simple_dns::rdata::RData;
use simple_dns::{Name, Packet, Question, CLASS, QCLASS, QTYPE, TYPE};

use super::api::{GossipBody, Shared};
use crate::core::lww::now_ms;
use crate::wire::sealed::{self, Context, Keyring};

#[derive(Debug, thiserror::Error)]
pub enum DnsClientError {
    #[error("request failed: {0}")]
    Transport(String),
    #[error("server answered {status}: {body}")]
    Status { status: i32, body: String },
}

/// DNS queries this process sent to the DNS service (for `/metrics`):
/// process-wide, as every resolver of the process shares the one service.
static QUERIES_SENT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub fn queries_sent() -> u64 {
    QUERIES_SENT.load(std::sync::atomic::Ordering::Relaxed)
}

/// A and AAAA records of `name` from the DNS server at `server`.
pub fn resolve(server: SocketAddr, name: &str, timeout: Duration) -> std::io::Result<Vec<IpAddr>> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(timeout))?;
    socket.connect(server)?;
    let mut out = Vec::new();
    for (i, qtype) in [TYPE::A, TYPE::AAAA].into_iter().enumerate() {
        let id = (now_ms() as u16).wrapping_add(i as u16);
        let mut q = Packet::new_query(id);
        let qname = Name::new(name).map_err(|e| std::io::Error::other(e.to_string()))?;
        q.questions.push(Question::new(
            qname,
            QTYPE::TYPE(qtype),
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        let bytes = q
            .build_bytes_vec()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        socket.send(&bytes)?;
        QUERIES_SENT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut buf = [0u8; 1500];
        let n = socket.recv(&mut buf)?;
        let Ok(reply) = Packet::parse(&buf[..n]) else {
            continue;
        };
        if reply.id() != id {
            continue;
        }
        for a in &reply.answers {
            match &a.rdata {
                RData::A(v4) => out.push(IpAddr::from(std::net::Ipv4Addr::from(v4.address))),
                RData::AAAA(v6) => out.push(IpAddr::from(std::net::Ipv6Addr::from(v6.address))),
                _ => {}
            }
        }
    }
    Ok(out)
}

/// `name:port` → addresses: IP literals pass through; otherwise the DNS
/// service first (when given), then the system resolver when the service
/// does not answer or does not know the name.
pub fn resolve_host_port(
    spec: &str,
    dns: Option<SocketAddr>,
    timeout: Duration,
) -> Vec<SocketAddr> {
    if let Ok(a) = spec.parse::<SocketAddr>() {
        return vec![a];
    }
    let Some((host, port)) = spec.rsplit_once(':') else {
        return vec![];
    };
    let Ok(port) = port.parse::<u16>() else {
        return vec![];
    };
    if let Some(server) = dns {
        match resolve(server, host, timeout) {
            Ok(ips) if !ips.is_empty() => {
                return ips
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect()
            }
            Ok(_) => log::debug!("dns {server} does not know {host}; using the system resolver"),
            Err(e) => log::info!("dns {server} did not answer ({e}); using the system resolver"),
        }
    }
    match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            log::warn!("cannot resolve {spec}: {e}");
            vec![]
        }
    }
}

/// `request` with `Authorization: Bearer TOKEN` when there is a token.
fn with_token(request: minreq::Request, token: Option<&str>) -> minreq::Request {
    match token {
        Some(t) => request.with_header("Authorization", format!("Bearer {t}")),
        None => request,
    }
}

/// Registers (or refreshes) `name → ip` at the REST API `http` (HOST:PORT),
/// with the write token of a keyed DNS when given.
pub fn register(
    http: &str,
    name: &str,
    ip: IpAddr,
    ttl: u32,
    timeout: Duration,
    token: Option<&str>,
) -> Result<(), DnsClientError> {
    let body = serde_json::json!({ "name": name, "ip": ip.to_string(), "ttl": ttl }).to_string();
    let post = minreq::post(format!("http://{http}/records"));
    let resp = with_token(post, token)
        .with_header("Content-Type", "application/json")
        .with_body(body)
        .with_timeout(timeout.as_secs().max(1))
        .send()
        .map_err(|e| DnsClientError::Transport(e.to_string()))?;
    if !(200..300).contains(&resp.status_code) {
        return Err(DnsClientError::Status {
            status: resp.status_code,
            body: resp.as_str().unwrap_or("").to_string(),
        });
    }
    Ok(())
}

fn unregister(http: &str, name: &str, ip: IpAddr, token: Option<&str>) {
    let delete = minreq::delete(format!("http://{http}/records/{name}/{ip}"));
    let _ = with_token(delete, token).with_timeout(2).send();
}

/// One gossip exchange with `peer`: our records out, theirs back; sealed
/// both ways with a swarm key (the reply must answer our nonce).
fn gossip_once(peer: &str, body: &[u8], keys: Option<&Keyring>) -> Result<GossipBody, String> {
    let (sent, nonce) = match keys {
        Some(k) => {
            let nonce = sealed::fresh_nonce();
            let ctx = Context::request(sealed::DNS_GOSSIP);
            (k.seal(&ctx, body, now_ms(), nonce), nonce)
        }
        None => (body.to_vec(), [0; sealed::NONCE_LEN]),
    };
    let content_type = if keys.is_some() {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let r = minreq::post(format!("http://{peer}/gossip"))
        .with_header("Content-Type", content_type)
        .with_body(sent)
        .with_timeout(2)
        .send()
        .map_err(|e| e.to_string())?;
    if r.status_code != 200 {
        return Err(format!("HTTP {}", r.status_code));
    }
    let payload = match keys {
        Some(k) => {
            let ctx = Context::reply(sealed::DNS_GOSSIP_REPLY, nonce);
            k.open(&ctx, r.as_bytes())
                .map_err(|e| format!("reply: {e}"))?
                .payload
                .to_vec()
        }
        None => r.as_bytes().to_vec(),
    };
    serde_json::from_slice(&payload).map_err(|e| format!("reply: {e}"))
}

/// Push–pull with every peer each interval, and at once after a change.
pub fn gossip_loop(
    peers: &[String],
    records: &Shared,
    interval: Duration,
    push: Receiver<()>,
    stop: Receiver<()>,
    keys: Option<&Keyring>,
) {
    loop {
        crossbeam_channel::select! {
            recv(stop) -> _ => return,
            recv(push) -> _ => {},
            default(interval) => {},
        }
        let now = now_ms();
        records.write().expire(now);
        let body = serde_json::to_string(&GossipBody {
            records: records.read().all(),
        })
        .expect("serializable");
        for peer in peers {
            match gossip_once(peer, body.as_bytes(), keys) {
                Ok(theirs) => {
                    let now = now_ms();
                    let mut recs = records.write();
                    for rec in theirs.records.into_iter().take(super::records::MAX_RECORDS) {
                        recs.merge(rec, now);
                    }
                }
                Err(e) => log::debug!("dns gossip {peer}: {e}"),
            }
        }
    }
}

/// Keeps a node's overlay address registered while alive; removed on drop.
pub struct Registration {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The IP other hosts reach us on: our bind address, or the local address
/// a socket connected towards `towards` would use (no packet is sent).
fn reachable_ip(bind: IpAddr, towards: SocketAddr) -> Option<IpAddr> {
    if !bind.is_unspecified() {
        return Some(bind);
    }
    let s = UdpSocket::bind(SocketAddr::new(
        if towards.is_ipv4() {
            [0, 0, 0, 0].into()
        } else {
            std::net::Ipv6Addr::UNSPECIFIED.into()
        },
        0,
    ))
    .ok()?;
    s.connect(towards).ok()?;
    Some(s.local_addr().ok()?.ip())
}

/// Where and under which name a node registers itself.
#[derive(Clone, Debug)]
pub struct RegisterConfig {
    pub name: String,
    /// The DNS service's REST API, HOST:PORT.
    pub http: String,
    /// A keyed DNS's write token (derived from the swarm key).
    pub token: Option<String>,
}

/// `--dns-register NAME`: registers `overlay`'s address under `name` at the
/// DNS service's REST API with a 30 s TTL, refreshed every 10 s, removed
/// when dropped.
pub fn register_self(config: &RegisterConfig, overlay: SocketAddr) -> Option<Registration> {
    const TTL: u32 = 30;
    const REFRESH: Duration = Duration::from_secs(10);
    let RegisterConfig { name, http, token } = config.clone();
    let towards = http.to_socket_addrs().ok()?.next()?;
    let ip = reachable_ip(overlay.ip(), towards)?;
    let (stop, stop_rx) = crossbeam_channel::bounded::<()>(0);
    let thread = std::thread::Builder::new()
        .name("dns-register".into())
        .spawn(move || {
            loop {
                match register(
                    &http,
                    &name,
                    ip,
                    TTL,
                    Duration::from_secs(2),
                    token.as_deref(),
                ) {
                    Ok(()) => log::debug!("registered {name} -> {ip} at {http}"),
                    Err(e) => log::warn!("cannot register {name} at {http}: {e}"),
                }
                if let Err(crossbeam_channel::RecvTimeoutError::Disconnected) =
                    stop_rx.recv_timeout(REFRESH)
                {
                    break;
                }
            }
            unregister(&http, &name, ip, token.as_deref());
        })
        .ok()?;
    Some(Registration {
        stop: Some(stop),
        thread: Some(thread),
    })
}
