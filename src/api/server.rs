//! The daemon's HTTP API on `runtime::http` over the bounded
//! `runtime::listener`: one request per connection under one whole
//! deadline, at most [`MAX_CONNECTIONS`] at once and a quarter of them per
//! source address. Routes and status codes are in docs/API.md.
//!
//! Every request is checked in this order: its `Host` (403 unless an IP
//! literal, `localhost` or an allowed name: DNS-rebinding defence), then,
//! under `/api/` and for `/metrics` unless it is public, the bearer token
//! (401), then the route (404/405), then its arguments (400). Only then is
//! the [`Control`] called. A request the HTTP layer could not read is
//! answered with its status (413 for a body past `max_body`) before any of
//! this, since it has no headers to check; such an answer says nothing.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::auth;
use super::{Control, ControlError};
use crate::runtime::http::{self, HttpError, Reply, Request, RequestLimits, Response};
use crate::runtime::listener::{Limits, Service};

/// The API's port unless told otherwise.
pub const DEFAULT_PORT: u16 = 8900;
/// A metainfo upload may be this large unless told otherwise.
pub const DEFAULT_MAX_BODY: usize = 4 << 20;
/// Connections (and threads) at once; one source address may hold a
/// quarter of them, so a flooding client cannot starve the others.
pub const MAX_CONNECTIONS: usize = 64;
/// One whole request, body included, and its response.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// The pages outside `/api/`: called with the path of a GET (`/`,
/// `/metrics`, ...) after the Host check (and, for `/metrics`, the token
/// check); None answers 404.
pub type Pages = Arc<dyn Fn(&str) -> Option<Response> + Send + Sync>;

/// No pages: every path outside `/api/` is a 404.
pub fn no_pages() -> Pages {
    Arc::new(|_| None)
}

#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    /// What `Authorization: Bearer` must carry ([`auth::load_or_create_token`]).
    pub token: String,
    /// Host names accepted besides IP literals and `localhost` (`--api-host`).
    pub allowed_hosts: Vec<String>,
    /// Serve `/metrics` without the token (for a Prometheus scraper).
    pub metrics_public: bool,
    /// The largest request body (a metainfo upload), bytes.
    pub max_body: usize,
}

impl ApiConfig {
    /// Loopback-only defaults around `token`.
    pub fn new(listen: SocketAddr, token: String) -> ApiConfig {
        ApiConfig {
            listen,
            token,
            allowed_hosts: Vec::new(),
            metrics_public: false,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// A running API server; [`ApiServer::stop`] (or drop) stops it.
pub struct ApiServer {
    service: Service,
}

impl ApiServer {
    /// Binds `cfg.listen` and serves the API alone (no pages).
    pub fn start(cfg: ApiConfig, control: Arc<dyn Control>) -> io::Result<ApiServer> {
        ApiServer::start_with_pages(cfg, control, no_pages())
    }

    /// Binds `cfg.listen` and serves the API and `pages`.
    pub fn start_with_pages(
        cfg: ApiConfig,
        control: Arc<dyn Control>,
        pages: Pages,
    ) -> io::Result<ApiServer> {
        let listener = TcpListener::bind(cfg.listen)?;
        let request = RequestLimits {
            max_body: cfg.max_body,
            deadline: REQUEST_DEADLINE,
            ..RequestLimits::default()
        };
        let api = Arc::new(Api {
            cfg,
            control,
            pages,
        });
        let gate = api.clone();
        // A request that will be refused is refused before its body is
        // read: no upload is taken in without the token.
        let service = http::serve_gated(
            listener,
            "api",
            Limits::new(MAX_CONNECTIONS),
            request,
            move |head| gate.refusal(head).is_none(),
            move |req, _peer| api.handle(req),
        )?;
        Ok(ApiServer { service })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.service.local_addr()
    }

    /// Stops accepting and closes open connections; true if every
    /// connection thread ended within the grace.
    pub fn stop(self) -> bool {
        self.service.stop()
    }
}

struct Api {
    cfg: ApiConfig,
    control: Arc<dyn Control>,
    pages: Pages,
}

const JSON: &str = "application/json";

fn json<T: Serialize>(status: u16, value: &T) -> Reply {
    match serde_json::to_vec(value) {
        Ok(body) => Response {
            status,
            content_type: JSON,
            body,
        }
        .into(),
        Err(e) => error(500, &format!("cannot encode the reply: {e}")),
    }
}

fn error(status: u16, message: &str) -> Reply {
    let body = serde_json::json!({ "error": message }).to_string();
    Response {
        status,
        content_type: JSON,
        body: body.into_bytes(),
    }
    .into()
}

fn unauthorized() -> Reply {
    let mut r = error(
        401,
        "missing or wrong API token (Authorization: Bearer ...)",
    );
    r.headers
        .push(("WWW-Authenticate", "Bearer realm=\"btnode\"".into()));
    r
}

fn method_not_allowed(allow: &str) -> Reply {
    let mut r = error(405, "method not allowed");
    r.headers.push(("Allow", allow.into()));
    r
}

fn control_error(e: ControlError) -> Reply {
    let status = match e {
        ControlError::NotFound => 404,
        ControlError::BadRequest(_) => 400,
        ControlError::Conflict(_) => 409,
        ControlError::Internal(_) => 500,
    };
    error(status, &e.to_string())
}

/// `{}` for calls that answer nothing but success.
fn done(r: Result<(), ControlError>) -> Reply {
    match r {
        Ok(()) => json(200, &serde_json::json!({})),
        Err(e) => control_error(e),
    }
}

/// An info-hash as the path gave it, lower-cased; None unless 40 hex
/// characters.
fn info_hash(s: &str) -> Option<String> {
    (s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

/// The last value of `key` in a query, percent-decoded (`+` is a plus);
/// Err when it does not decode to UTF-8.
fn query_param(query: &str, key: &str) -> Result<Option<String>, String> {
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            found = Some(v);
        }
    }
    let Some(raw) = found else {
        return Ok(None);
    };
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map(|v| Some(v.into_owned()))
        .map_err(|_| format!("{key}: not UTF-8 once decoded"))
}

/// A yes/no query flag: `1`/`true`/`yes` or `0`/`false`/`no`, absent is no.
fn query_flag(query: &str, key: &str) -> Result<bool, String> {
    match query_param(query, key)?.as_deref() {
        None | Some("0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes" | "") => Ok(true),
        Some(other) => Err(format!("{key}={other}: use 1 or 0")),
    }
}

impl Api {
    fn handle(&self, req: Result<Request, &HttpError>) -> Reply {
        let req = match req {
            Ok(req) => req,
            Err(e) => return error(e.status().unwrap_or(400), &e.to_string()),
        };
        if let Some(refused) = self.refusal(&req) {
            return refused;
        }
        let path = req.path();
        if let Some(rest) = path.strip_prefix("/api/") {
            return match rest.strip_prefix("v1/") {
                Some(route) => self.api_v1(&req, route),
                None => error(404, "no such API version: use /api/v1/"),
            };
        }
        if req.method != "GET" {
            return method_not_allowed("GET");
        }
        match (self.pages)(path) {
            Some(page) => page.into(),
            None => error(404, "not found"),
        }
    }

    /// The answer to a request that may not be served, from its head
    /// alone: the Host check first, then the token where one is needed.
    fn refusal(&self, req: &Request) -> Option<Reply> {
        if !auth::host_allowed(req.header("host"), &self.cfg.allowed_hosts) {
            return Some(error(
                403,
                "Host not allowed: use an IP address, localhost or an --api-host name",
            ));
        }
        let path = req.path();
        let needs_token =
            path.starts_with("/api/") || (path == "/metrics" && !self.cfg.metrics_public);
        (needs_token && !self.authorized(req)).then(unauthorized)
    }

    fn authorized(&self, req: &Request) -> bool {
        auth::bearer(req.header("authorization"))
            .is_some_and(|t| auth::tokens_equal(t, &self.cfg.token))
    }

    fn api_v1(&self, req: &Request, route: &str) -> Reply {
        let m = req.method.as_str();
        let segments: Vec<&str> = route.trim_end_matches('/').split('/').collect();
        match segments.as_slice() {
            ["session"] => match m {
                "GET" => json(200, &self.control.session()),
                _ => method_not_allowed("GET"),
            },
            ["torrents"] => match m {
                "GET" => json(200, &self.control.list()),
                "POST" => self.add(req),
                _ => method_not_allowed("GET, POST"),
            },
            ["torrents", hash] => {
                let Some(hash) = info_hash(hash) else {
                    return error(400, "an info-hash is 40 hex characters");
                };
                match m {
                    "GET" => match self.control.detail(&hash) {
                        Ok(d) => json(200, &d),
                        Err(e) => control_error(e),
                    },
                    "DELETE" => match query_flag(req.query(), "delete_data") {
                        Ok(delete) => done(self.control.remove(&hash, delete)),
                        Err(e) => error(400, &e),
                    },
                    _ => method_not_allowed("GET, DELETE"),
                }
            }
            ["torrents", hash, action @ ("pause" | "resume")] => {
                let Some(hash) = info_hash(hash) else {
                    return error(400, "an info-hash is 40 hex characters");
                };
                if m != "POST" {
                    return method_not_allowed("POST");
                }
                match *action {
                    "pause" => done(self.control.pause(&hash)),
                    _ => done(self.control.resume(&hash)),
                }
            }
            _ => error(404, "no such route"),
        }
    }

    /// `POST /api/v1/torrents?dir=SUBDIR&paused=1` with the metainfo as
    /// the body.
    fn add(&self, req: &Request) -> Reply {
        if req.body.is_empty() {
            return error(400, "the body must be the .torrent file's bytes");
        }
        let dir = match query_param(req.query(), "dir") {
            Ok(d) => d.filter(|d| !d.is_empty()),
            Err(e) => return error(400, &e),
        };
        // Whether the directory stays inside the download root is the
        // session's to decide (it knows the root); a NUL cannot be a path.
        if dir.as_deref().is_some_and(|d| d.contains('\0')) {
            return error(400, "dir: contains a NUL byte");
        }
        let paused = match query_flag(req.query(), "paused") {
            Ok(p) => p,
            Err(e) => return error(400, &e),
        };
        match self.control.add(&req.body, dir.as_deref(), paused) {
            Ok(hash) => json(201, &serde_json::json!({ "info_hash": hash })),
            Err(e) => control_error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{SessionInfo, TorrentDetail, TorrentSummary};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::Mutex;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    /// Records what it was asked; knows one torrent, [`HASH`].
    #[derive(Default)]
    struct Fake {
        calls: Mutex<Vec<String>>,
    }

    fn summary() -> TorrentSummary {
        TorrentSummary {
            info_hash: HASH.into(),
            name: "ubuntu.iso".into(),
            size: 1000,
            progress: 0.5,
            pieces_have: 1,
            pieces_total: 2,
            state: "downloading".into(),
            down_rate: 10,
            up_rate: 2,
            peers: 3,
            eta_secs: Some(50),
            downloaded: 500,
            uploaded: 20,
            pieces_verified: 1,
            hash_failures: 0,
            pieces_checked_at_start: 0,
        }
    }

    impl Fake {
        fn known(&self, h: &str) -> Result<(), ControlError> {
            if h == HASH {
                Ok(())
            } else {
                Err(ControlError::NotFound)
            }
        }
        fn log(&self, s: String) {
            self.calls.lock().unwrap().push(s);
        }
    }

    impl Control for Fake {
        fn list(&self) -> Vec<TorrentSummary> {
            vec![summary()]
        }
        fn add(
            &self,
            metainfo: &[u8],
            dir: Option<&str>,
            paused: bool,
        ) -> Result<String, ControlError> {
            self.log(format!("add {} {dir:?} {paused}", metainfo.len()));
            match metainfo {
                b"dup" => Err(ControlError::Conflict("already added".into())),
                b"bad" => Err(ControlError::BadRequest("not a torrent".into())),
                _ => Ok(HASH.into()),
            }
        }
        fn detail(&self, h: &str) -> Result<TorrentDetail, ControlError> {
            self.known(h)?;
            Ok(TorrentDetail {
                summary: summary(),
                dir: "isos".into(),
                files: vec![crate::api::FileEntry {
                    path: "ubuntu.iso".into(),
                    length: 1000,
                }],
                peer_list: vec![],
                piece_map: "10".into(),
            })
        }
        fn pause(&self, h: &str) -> Result<(), ControlError> {
            self.log(format!("pause {h}"));
            self.known(h)
        }
        fn resume(&self, h: &str) -> Result<(), ControlError> {
            self.log(format!("resume {h}"));
            Err(ControlError::Internal("disk on fire".into()))
        }
        fn remove(&self, h: &str, delete_data: bool) -> Result<(), ControlError> {
            self.log(format!("remove {h} {delete_data}"));
            self.known(h)
        }
        fn session(&self) -> SessionInfo {
            SessionInfo {
                version: "test".into(),
                torrents: 1,
                ..SessionInfo::default()
            }
        }
    }

    fn start_cfg(f: impl FnOnce(&mut ApiConfig)) -> (ApiServer, Arc<Fake>) {
        let mut cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap(), TOKEN.into());
        cfg.allowed_hosts = vec!["nas.lan".into()];
        f(&mut cfg);
        let fake = Arc::new(Fake::default());
        let pages: Pages = Arc::new(|path| match path {
            "/" | "/metrics" => Some(Response {
                status: 200,
                content_type: "text/plain",
                body: format!("page {path}").into_bytes(),
            }),
            _ => None,
        });
        let server = ApiServer::start_with_pages(cfg, fake.clone(), pages).unwrap();
        (server, fake)
    }

    fn start() -> (ApiServer, Arc<Fake>) {
        start_cfg(|_| {})
    }

    struct Answer {
        status: u16,
        head: String,
        body: Vec<u8>,
    }

    impl Answer {
        fn json<T: serde::de::DeserializeOwned>(&self) -> T {
            serde_json::from_slice(&self.body).unwrap_or_else(|e| {
                panic!("{e}: {}", String::from_utf8_lossy(&self.body));
            })
        }
        fn error(&self) -> String {
            let v: serde_json::Value = self.json();
            v["error"].as_str().expect("an error field").to_string()
        }
    }

    /// Sends `head` (request line and headers, no blank line) and `body`
    /// raw, reads the whole answer (the server closes).
    fn raw(addr: SocketAddr, head: &str, body: &[u8]) -> Answer {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut out = format!("{head}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        out.extend_from_slice(body);
        // The server may answer (413) and close before taking it all.
        let _ = s.write_all(&out);
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        parse_answer(&all)
    }

    fn parse_answer(all: &[u8]) -> Answer {
        let split = all
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(all)));
        let head = String::from_utf8_lossy(&all[..split]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("a status");
        Answer {
            status,
            head,
            body: all[split + 4..].to_vec(),
        }
    }

    /// A request with the right Host and token.
    fn call(addr: SocketAddr, method: &str, target: &str, body: &[u8]) -> Answer {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {TOKEN}",
            addr.port()
        );
        raw(addr, &head, body)
    }

    #[test]
    fn the_token_is_required_and_checked() {
        let (server, _) = start();
        let addr = server.local_addr();
        let host = format!("Host: 127.0.0.1:{}", addr.port());
        let none = raw(
            addr,
            &format!("GET /api/v1/torrents HTTP/1.1\r\n{host}"),
            b"",
        );
        assert_eq!(none.status, 401);
        assert!(
            none.head.contains("\r\nWWW-Authenticate: Bearer"),
            "{}",
            none.head
        );
        assert!(!none.error().is_empty());
        let wrong = format!(
            "GET /api/v1/torrents HTTP/1.1\r\n{host}\r\nAuthorization: Bearer {}",
            &TOKEN[1..]
        );
        assert_eq!(raw(addr, &wrong, b"").status, 401);
        let basic =
            format!("GET /api/v1/torrents HTTP/1.1\r\n{host}\r\nAuthorization: Basic {TOKEN}");
        assert_eq!(raw(addr, &basic, b"").status, 401);
        // Unknown API paths ask for the token too: no probing without it.
        let probe = raw(addr, &format!("GET /api/v2/x HTTP/1.1\r\n{host}"), b"");
        assert_eq!(probe.status, 401);
        let ok = call(addr, "GET", "/api/v1/torrents", b"");
        assert_eq!(ok.status, 200);
        assert!(ok.head.contains("Content-Type: application/json"));
        let list: Vec<TorrentSummary> = ok.json();
        assert_eq!(list, vec![summary()]);
        let session: SessionInfo = call(addr, "GET", "/api/v1/session", b"").json();
        assert_eq!((session.version.as_str(), session.torrents), ("test", 1));
        assert!(server.stop());
    }

    #[test]
    fn only_ip_literals_localhost_and_named_hosts_are_served() {
        let (server, _) = start();
        let addr = server.local_addr();
        let port = addr.port();
        let auth = format!("Authorization: Bearer {TOKEN}");
        for (host, status) in [
            (format!("evil.example:{port}"), 403),
            ("evil.example".to_string(), 403),
            (format!("127.0.0.1:{port}"), 200),
            (format!("localhost:{port}"), 200),
            (format!("[::1]:{port}"), 200),
            (format!("NAS.lan:{port}"), 200),
        ] {
            let head = format!("GET /api/v1/session HTTP/1.1\r\nHost: {host}\r\n{auth}");
            assert_eq!(raw(addr, &head, b"").status, status, "Host: {host}");
        }
        // Host is checked first: a rebinding page learns nothing, not even
        // whether a token would be needed or the page exists.
        for target in ["/api/v1/session", "/", "/metrics", "/nowhere"] {
            let head = format!("GET {target} HTTP/1.1\r\nHost: evil.example");
            let a = raw(addr, &head, b"");
            assert_eq!(a.status, 403, "{target}");
            assert!(a.error().contains("Host"));
        }
        let no_host = raw(
            addr,
            &format!("GET /api/v1/session HTTP/1.1\r\n{auth}"),
            b"",
        );
        assert_eq!(no_host.status, 403);
        assert!(server.stop());
    }

    #[test]
    fn adding_passes_the_body_dir_and_paused_flag() {
        let (server, fake) = start();
        let addr = server.local_addr();
        let a = call(
            addr,
            "POST",
            "/api/v1/torrents?dir=my%20isos%2Fnew&paused=1",
            b"d4:infoe",
        );
        assert_eq!(a.status, 201);
        let v: serde_json::Value = a.json();
        assert_eq!(v["info_hash"], HASH);
        assert_eq!(call(addr, "POST", "/api/v1/torrents", b"x").status, 201);
        assert_eq!(call(addr, "POST", "/api/v1/torrents", b"dup").status, 409);
        assert_eq!(call(addr, "POST", "/api/v1/torrents", b"bad").status, 400);
        // Refused before the session sees them.
        assert_eq!(call(addr, "POST", "/api/v1/torrents", b"").status, 400);
        assert_eq!(
            call(addr, "POST", "/api/v1/torrents?dir=%ff", b"x").status,
            400
        );
        assert_eq!(
            call(addr, "POST", "/api/v1/torrents?dir=a%00", b"x").status,
            400
        );
        assert_eq!(
            call(addr, "POST", "/api/v1/torrents?paused=maybe", b"x").status,
            400
        );
        let calls = fake.calls.lock().unwrap().clone();
        assert_eq!(
            calls,
            vec![
                "add 8 Some(\"my isos/new\") true",
                "add 1 None false",
                "add 3 None false",
                "add 3 None false",
            ]
        );
        assert!(server.stop());
    }

    #[test]
    fn a_body_past_the_cap_is_413() {
        let (server, fake) = start_cfg(|c| c.max_body = 1000);
        let addr = server.local_addr();
        let a = call(addr, "POST", "/api/v1/torrents", &[b'x'; 1001]);
        assert_eq!(a.status, 413);
        assert!(!a.error().is_empty());
        assert_eq!(
            call(addr, "POST", "/api/v1/torrents", &[b'x'; 1000]).status,
            201
        );
        assert_eq!(fake.calls.lock().unwrap().len(), 1);
        assert!(server.stop());
    }

    #[test]
    fn a_refused_upload_is_answered_without_its_body() {
        let (server, fake) = start();
        let addr = server.local_addr();
        // The head promises a body held back for 100-continue; a refused
        // client is answered at once, never asked for it.
        for head in [
            "POST /api/v1/torrents HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer nope",
            "POST /api/v1/torrents HTTP/1.1\r\nHost: evil.example",
        ] {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let req = format!("{head}\r\nExpect: 100-continue\r\nContent-Length: 1000\r\n\r\n");
            s.write_all(req.as_bytes()).unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all)
                .expect("answered before the deadline");
            let a = parse_answer(&all);
            assert!(matches!(a.status, 401 | 403), "{}", a.head);
            assert!(!a.head.contains("100 Continue"), "{}", a.head);
        }
        assert!(fake.calls.lock().unwrap().is_empty());
        // With the token the body is asked for and read.
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = format!(
            "POST /api/v1/torrents HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut cont = [0u8; 25];
        s.read_exact(&mut cont).unwrap();
        assert_eq!(&cont, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(b"abc").unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        assert_eq!(parse_answer(&all).status, 201);
        assert!(server.stop());
    }

    #[test]
    fn routes_methods_hashes_and_errors_map_to_statuses() {
        let (server, fake) = start();
        let addr = server.local_addr();
        let t = format!("/api/v1/torrents/{HASH}");
        let detail = call(addr, "GET", &t, b"");
        assert_eq!(detail.status, 200);
        let d: TorrentDetail = detail.json();
        assert_eq!((d.summary, d.dir.as_str()), (summary(), "isos"));
        // Upper-case hex is the same torrent.
        let upper = format!("/api/v1/torrents/{}", HASH.to_uppercase());
        assert_eq!(call(addr, "GET", &upper, b"").status, 200);
        let other = format!("/api/v1/torrents/{}", "b".repeat(40));
        let missing = call(addr, "GET", &other, b"");
        assert_eq!(missing.status, 404);
        assert_eq!(missing.error(), "no such torrent");
        for bad in ["xyz", &"a".repeat(39), &"g".repeat(40), &"a".repeat(41)] {
            let a = call(addr, "GET", &format!("/api/v1/torrents/{bad}"), b"");
            assert_eq!(a.status, 400, "{bad}");
        }
        let pause = call(addr, "POST", &format!("{t}/pause"), b"");
        assert_eq!((pause.status, pause.body.as_slice()), (200, &b"{}"[..]));
        assert_eq!(
            call(addr, "POST", &format!("{other}/pause"), b"").status,
            404
        );
        let resume = call(addr, "POST", &format!("{t}/resume"), b"");
        assert_eq!(
            (resume.status, resume.error().as_str()),
            (500, "disk on fire")
        );
        assert_eq!(
            call(addr, "DELETE", &format!("{t}?delete_data=1"), b"").status,
            200
        );
        assert_eq!(call(addr, "DELETE", &t, b"").status, 200);
        assert_eq!(call(addr, "DELETE", &other, b"").status, 404);
        let wrong = call(addr, "GET", &format!("{t}/pause"), b"");
        assert_eq!(wrong.status, 405);
        assert!(wrong.head.contains("\r\nAllow: POST"), "{}", wrong.head);
        assert_eq!(call(addr, "PUT", "/api/v1/torrents", b"").status, 405);
        assert_eq!(call(addr, "DELETE", "/api/v1/session", b"").status, 405);
        assert_eq!(call(addr, "GET", "/api/v1/nowhere", b"").status, 404);
        assert_eq!(call(addr, "GET", &format!("{t}/files/x"), b"").status, 404);
        assert_eq!(call(addr, "POST", "/", b"").status, 405);
        let calls = fake.calls.lock().unwrap().clone();
        let hash_b = "b".repeat(40);
        assert_eq!(
            calls,
            vec![
                format!("pause {HASH}"),
                format!("pause {hash_b}"),
                format!("resume {HASH}"),
                format!("remove {HASH} true"),
                format!("remove {HASH} false"),
                format!("remove {hash_b} false"),
            ]
        );
        assert!(server.stop());
    }

    #[test]
    fn pages_are_served_and_metrics_needs_the_token_unless_public() {
        let (server, _) = start();
        let addr = server.local_addr();
        let host = format!("Host: localhost:{}", addr.port());
        let root = raw(addr, &format!("GET / HTTP/1.1\r\n{host}"), b"");
        assert_eq!((root.status, root.body.as_slice()), (200, &b"page /"[..]));
        let metrics = format!("GET /metrics HTTP/1.1\r\n{host}");
        assert_eq!(raw(addr, &metrics, b"").status, 401);
        let m = call(addr, "GET", "/metrics", b"");
        assert_eq!((m.status, m.body.as_slice()), (200, &b"page /metrics"[..]));
        assert_eq!(
            raw(addr, &format!("GET /x HTTP/1.1\r\n{host}"), b"").status,
            404
        );
        assert!(server.stop());

        let (server, _) = start_cfg(|c| c.metrics_public = true);
        let addr = server.local_addr();
        let metrics = format!("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{}", addr.port());
        assert_eq!(raw(addr, &metrics, b"").status, 200);
        assert!(server.stop());
    }

    #[test]
    fn a_stalled_client_does_not_hold_up_the_next() {
        let (server, _) = start();
        let addr = server.local_addr();
        // Half a request, then nothing: its thread waits out the deadline.
        let mut stalled = Vec::new();
        for _ in 0..4 {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /api/v1/session HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthor")
                .unwrap();
            stalled.push(s);
        }
        // Answered long before the stalled ones' deadline ends (the read
        // timeout in `raw` bounds the wait; REQUEST_DEADLINE is longer).
        let start = std::time::Instant::now();
        let a = call(addr, "GET", "/api/v1/session", b"");
        assert_eq!(a.status, 200);
        assert!(start.elapsed() < REQUEST_DEADLINE);
        // The stalled ones are still unanswered: nothing was cut short to
        // make room.
        stalled[0].set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(
            stalled[0].read(&mut b).map_err(|e| e.kind()),
            Err(io::ErrorKind::WouldBlock)
        );
        assert!(server.stop(), "stop closes the stalled connections");
    }

    #[test]
    fn query_parameters_decode() {
        assert_eq!(
            query_param("a=1&dir=x%2Fy+z&b", "dir"),
            Ok(Some("x/y+z".into()))
        );
        assert_eq!(query_param("dir=a&dir=b", "dir"), Ok(Some("b".into())));
        assert_eq!(query_param("b=1", "dir"), Ok(None));
        assert!(query_param("dir=%c3%28", "dir").is_err());
        assert_eq!(query_flag("paused", "paused"), Ok(true));
        assert_eq!(query_flag("paused=0", "paused"), Ok(false));
        assert_eq!(query_flag("", "paused"), Ok(false));
        assert_eq!(info_hash(&"A".repeat(40)), Some("a".repeat(40)));
        assert_eq!(info_hash("é"), None);
    }
}
