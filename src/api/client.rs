//! The client side of the daemon's API, for `btnode add/list/...`: one
//! blocking minreq request per call, each with a timeout, the bearer token
//! on every one, and the daemon's answers mapped to [`ClientError`] so the
//! command line can say what went wrong (daemon not running, wrong token,
//! or the daemon's own `{"error": ...}` message).

use std::io::Read;
use std::path::{Path, PathBuf};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::de::DeserializeOwned;

use super::model::{SessionInfo, TorrentDetail, TorrentSummary};

/// Environment variables the client reads.
pub const ENV_TOKEN: &str = "BTNODE_TOKEN";
pub const ENV_STATE: &str = "BTNODE_STATE";
/// The token file's name inside the daemon's state directory.
pub const TOKEN_FILE: &str = "api-token";

/// Seconds one request may take, connect to last byte. The daemon gives a
/// connection 10 s in all; a little more here so its own deadline (and
/// its answer) comes first.
pub const TIMEOUT_SECS: u64 = 12;

/// Largest answer read. A detail with a piece map of a big torrent is a
/// few hundred KiB; this only stops a runaway peer at the address.
pub const MAX_ANSWER_BYTES: u64 = 64 << 20;

/// Query values and path segments: everything but unreserved characters
/// (RFC 3986) is escaped, so a `dir` with `&`, `=`, `+`, `#` or spaces
/// arrives as it was typed.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the address (refused, unreachable, no such host).
    #[error("cannot reach the daemon at {addr}: {reason} (is `btnode daemon` running there? pass --api ADDR or set BTNODE_API)")]
    Connect { addr: String, reason: String },
    /// 401: the daemon refused the token.
    #[error("wrong or missing token: pass --state DIR or BTNODE_TOKEN")]
    Unauthorized,
    /// Any other non-success status, with the daemon's `error` message.
    #[error("the daemon answered {status}: {message}")]
    Api { status: i32, message: String },
    /// An answer that is not the JSON it should be.
    #[error("cannot read the daemon's answer: {0}")]
    Decode(String),
    /// The connection broke or timed out after it was made.
    #[error("request to the daemon failed: {0}")]
    Transport(String),
    /// No token could be found (see [`find_token`]).
    #[error("{0}")]
    Token(String),
}

/// The API token: `BTNODE_TOKEN` if set (and not empty), else the file
/// `STATE/api-token`, with `STATE` from `state` or else `BTNODE_STATE`.
pub fn find_token(state: Option<&Path>) -> Result<String, ClientError> {
    find_token_with(state, |var| std::env::var(var).ok())
}

/// [`find_token`] with the environment given, so tests need not set
/// process-wide variables.
pub fn find_token_with(
    state: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, ClientError> {
    if let Some(token) = env(ENV_TOKEN) {
        let token = token.trim();
        if !token.is_empty() {
            return Ok(token.to_string());
        }
    }
    let dir: PathBuf =
        match state {
            Some(s) => s.to_path_buf(),
            None => match env(ENV_STATE).filter(|s| !s.trim().is_empty()) {
                Some(s) => PathBuf::from(s),
                None => return Err(ClientError::Token(
                    "no API token: pass --state DIR (the daemon's state directory, which holds \
                     api-token) or set BTNODE_TOKEN (or BTNODE_STATE)"
                        .into(),
                )),
            },
        };
    let path = dir.join(TOKEN_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ClientError::Token(format!(
            "cannot read the API token {}: {e} (has the daemon run with --state {}?)",
            path.display(),
            dir.display()
        ))
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ClientError::Token(format!(
            "the API token file {} is empty",
            path.display()
        )));
    }
    Ok(token.to_string())
}

/// One daemon's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    /// `http://HOST:PORT`, no trailing slash.
    pub base: String,
    pub token: String,
}

impl ApiClient {
    /// `api` is `HOST:PORT` or a full `http://HOST:PORT` base URL.
    pub fn new(api: &str, token: &str) -> ApiClient {
        let api = api.trim().trim_end_matches('/');
        let base = if api.contains("://") {
            api.to_string()
        } else {
            format!("http://{api}")
        };
        ApiClient {
            base,
            token: token.to_string(),
        }
    }

    pub fn list(&self) -> Result<Vec<TorrentSummary>, ClientError> {
        let body = self.send(minreq::get(self.url("/api/v1/torrents")))?;
        decode(&body)
    }

    /// Adds the torrent whose metainfo is `metainfo`; `dir` is relative to
    /// the daemon's download root. Returns the info-hash.
    pub fn add(
        &self,
        metainfo: &[u8],
        dir: Option<&str>,
        paused: bool,
    ) -> Result<String, ClientError> {
        let mut query = Vec::new();
        if let Some(dir) = dir {
            query.push(format!("dir={}", utf8_percent_encode(dir, COMPONENT)));
        }
        if paused {
            query.push("paused=1".to_string());
        }
        let mut url = self.url("/api/v1/torrents");
        if !query.is_empty() {
            url = format!("{url}?{}", query.join("&"));
        }
        let req = minreq::post(url)
            .with_header("Content-Type", "application/x-bittorrent")
            .with_body(metainfo.to_vec());
        let body = self.send(req)?;
        #[derive(serde::Deserialize)]
        struct Added {
            info_hash: String,
        }
        Ok(decode::<Added>(&body)?.info_hash)
    }

    pub fn detail(&self, info_hash: &str) -> Result<TorrentDetail, ClientError> {
        let body = self.send(minreq::get(self.torrent_url(info_hash, "")))?;
        decode(&body)
    }

    pub fn pause(&self, info_hash: &str) -> Result<(), ClientError> {
        self.send(minreq::post(self.torrent_url(info_hash, "/pause")))
            .map(drop)
    }

    pub fn resume(&self, info_hash: &str) -> Result<(), ClientError> {
        self.send(minreq::post(self.torrent_url(info_hash, "/resume")))
            .map(drop)
    }

    pub fn remove(&self, info_hash: &str, delete_data: bool) -> Result<(), ClientError> {
        let mut url = self.torrent_url(info_hash, "");
        if delete_data {
            url.push_str("?delete_data=1");
        }
        self.send(minreq::delete(url)).map(drop)
    }

    pub fn session(&self) -> Result<SessionInfo, ClientError> {
        let body = self.send(minreq::get(self.url("/api/v1/session")))?;
        decode(&body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The hash is escaped so that whatever the user typed stays one path
    /// segment (`../session` cannot reach another route).
    fn torrent_url(&self, info_hash: &str, suffix: &str) -> String {
        let hash = utf8_percent_encode(info_hash.trim(), COMPONENT);
        self.url(&format!("/api/v1/torrents/{hash}{suffix}"))
    }

    /// Sends with the token and a timeout; the body of a 2xx answer, or
    /// the error the status stands for.
    fn send(&self, req: minreq::Request) -> Result<Vec<u8>, ClientError> {
        let resp = req
            .with_header("Authorization", format!("Bearer {}", self.token))
            .with_timeout(TIMEOUT_SECS)
            .with_max_headers_size(64 * 1024)
            .with_max_status_line_length(1024)
            .send_lazy()
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status_code;
        let mut body = Vec::new();
        Read::take(resp, MAX_ANSWER_BYTES + 1)
            .read_to_end(&mut body)
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        if body.len() as u64 > MAX_ANSWER_BYTES {
            return Err(ClientError::Decode("answer over 64 MiB".into()));
        }
        match status {
            200..=299 => Ok(body),
            401 => Err(ClientError::Unauthorized),
            _ => Err(ClientError::Api {
                status,
                message: error_message(&body),
            }),
        }
    }

    /// Failures to connect at all get [`ClientError::Connect`], so the
    /// user learns the daemon is not there rather than an io error.
    fn transport_error(&self, e: minreq::Error) -> ClientError {
        use std::io::ErrorKind;
        let connect = match &e {
            minreq::Error::AddressNotFound => true,
            minreq::Error::IoError(io) => matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::NotFound
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            ),
            _ => false,
        };
        if connect {
            ClientError::Connect {
                addr: self.base.clone(),
                reason: e.to_string(),
            }
        } else {
            ClientError::Transport(e.to_string())
        }
    }
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode(e.to_string()))
}

/// The `error` field of an error answer, or the body itself (shortened)
/// when it is not that JSON (a proxy's page, say).
fn error_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        error: String,
    }
    if let Ok(e) = serde_json::from_slice::<ErrorBody>(body) {
        return e.error;
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "no message".into();
    }
    text.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// One request as the fake server saw it.
    struct Seen {
        head: String,
        body: Vec<u8>,
    }

    /// A server on 127.0.0.1 that answers one canned response per
    /// connection, in order, and reports each request it read.
    fn fake(answers: Vec<String>) -> (String, mpsc::Receiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((mut stream, _)) = listener.accept() else {
                    return;
                };
                let mut buf = Vec::new();
                let mut byte = [0u8; 1];
                // Read the head byte by byte up to the blank line.
                while !buf.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut byte) {
                        Ok(1) => buf.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                if stream.read_exact(&mut body).is_err() {
                    return;
                }
                let _ = stream.write_all(answer.as_bytes());
                let _ = tx.send(Seen { head, body });
            }
        });
        (addr, rx)
    }

    fn answer(status: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    const SUMMARY: &str = r#"{"info_hash":"c9e15763f722f23e98a29decdfae341b98d53056","name":"u.iso","size":6114656256,"progress":0.4375,"pieces_have":10206,"pieces_total":23326,"state":"downloading","down_rate":11534336,"up_rate":524288,"peers":37,"eta_secs":297,"downloaded":2675965952,"uploaded":120586240,"pieces_verified":10206,"hash_failures":1,"pieces_checked_at_start":0}"#;

    #[test]
    fn list_parses_and_sends_the_token() {
        let (addr, seen) = fake(vec![answer("200 OK", &format!("[{SUMMARY}]"))]);
        let list = ApiClient::new(&addr, "tok123").list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].name, "u.iso");
        assert_eq!(list[0].eta_secs, Some(297));
        assert_eq!(list[0].peers, 37);
        let req = seen.recv().unwrap();
        assert!(req.head.starts_with("GET /api/v1/torrents HTTP/1.1\r\n"));
        assert!(req.head.contains("Authorization: Bearer tok123\r\n"));
        assert!(req
            .head
            .to_ascii_lowercase()
            .contains(&format!("host: {addr}")));
    }

    #[test]
    fn status_401_is_unauthorized() {
        let (addr, _seen) = fake(vec![answer("401 Unauthorized", r#"{"error":"no"}"#)]);
        let err = ApiClient::new(&addr, "bad").session().unwrap_err();
        assert!(matches!(err, ClientError::Unauthorized), "{err:?}");
        assert!(err.to_string().contains("--state DIR or BTNODE_TOKEN"));
    }

    #[test]
    fn status_404_gives_the_daemons_message() {
        let (addr, seen) = fake(vec![answer(
            "404 Not Found",
            r#"{"error":"no such torrent"}"#,
        )]);
        let err = ApiClient::new(&addr, "t")
            .pause(&"ab".repeat(20))
            .unwrap_err();
        match err {
            ClientError::Api { status, message } => {
                assert_eq!(status, 404);
                assert_eq!(message, "no such torrent");
            }
            other => panic!("{other:?}"),
        }
        let req = seen.recv().unwrap();
        assert!(req.head.starts_with(&format!(
            "POST /api/v1/torrents/{}/pause HTTP/1.1",
            "ab".repeat(20)
        )));
    }

    #[test]
    fn an_error_body_that_is_not_json_is_shown_as_text() {
        let (addr, _seen) = fake(vec![answer("502 Bad Gateway", "upstream down")]);
        match ApiClient::new(&addr, "t").list().unwrap_err() {
            ClientError::Api { status, message } => {
                assert_eq!(status, 502);
                assert_eq!(message, "upstream down");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refused_connection_is_connect() {
        // A port that was just free: bind, note it, close.
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let err = ApiClient::new(&addr, "t").list().unwrap_err();
        assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
        assert!(err.to_string().contains(&addr));
        assert!(err.to_string().contains("btnode daemon"));
    }

    #[test]
    fn add_posts_the_bytes_with_an_escaped_dir() {
        let (addr, seen) = fake(vec![answer(
            "201 Created",
            r#"{"info_hash":"c9e15763f722f23e98a29decdfae341b98d53056"}"#,
        )]);
        let hash = ApiClient::new(&addr, "t")
            .add(b"d4:infod...ee", Some("isos/a b&c=d+e"), true)
            .unwrap();
        assert_eq!(hash, "c9e15763f722f23e98a29decdfae341b98d53056");
        let req = seen.recv().unwrap();
        assert!(
            req.head.starts_with(
                "POST /api/v1/torrents?dir=isos%2Fa%20b%26c%3Dd%2Be&paused=1 HTTP/1.1\r\n"
            ),
            "{}",
            req.head
        );
        assert_eq!(req.body, b"d4:infod...ee");
    }

    #[test]
    fn remove_and_a_hostile_hash_stay_on_the_torrent_route() {
        let (addr, seen) = fake(vec![answer("200 OK", "{}"), answer("200 OK", "{}")]);
        let c = ApiClient::new(&format!("http://{addr}/"), "t");
        c.remove(&"cd".repeat(20), true).unwrap();
        c.remove("../session", false).unwrap();
        let first = seen.recv().unwrap();
        assert!(first.head.starts_with(&format!(
            "DELETE /api/v1/torrents/{}?delete_data=1 HTTP/1.1",
            "cd".repeat(20)
        )));
        let second = seen.recv().unwrap();
        assert!(
            second
                .head
                .starts_with("DELETE /api/v1/torrents/..%2Fsession HTTP/1.1"),
            "{}",
            second.head
        );
    }

    #[test]
    fn a_2xx_answer_that_is_not_the_json_is_decode() {
        let (addr, _seen) = fake(vec![answer("200 OK", "[{\"name\":1}]")]);
        let err = ApiClient::new(&addr, "t").list().unwrap_err();
        assert!(matches!(err, ClientError::Decode(_)), "{err:?}");
    }

    /// The real server with a recording session behind it: the client's
    /// requests pass its Host and token checks and reach the session with
    /// the values the user gave.
    #[test]
    fn round_trip_through_the_real_server() {
        use crate::api::server::{ApiConfig, ApiServer};
        use crate::api::{Control, ControlError};
        use std::sync::{Arc, Mutex};

        #[derive(Default)]
        struct Rec(Mutex<Vec<String>>);
        impl Rec {
            fn log(&self, s: String) {
                self.0.lock().unwrap().push(s);
            }
        }
        impl Control for Rec {
            fn list(&self) -> Vec<TorrentSummary> {
                vec![serde_json::from_str(SUMMARY).unwrap()]
            }
            fn add(
                &self,
                m: &[u8],
                dir: Option<&str>,
                paused: bool,
            ) -> Result<String, ControlError> {
                self.log(format!(
                    "add {} {dir:?} {paused}",
                    String::from_utf8_lossy(m)
                ));
                Ok("ab".repeat(20))
            }
            fn detail(&self, _h: &str) -> Result<TorrentDetail, ControlError> {
                Err(ControlError::NotFound)
            }
            fn pause(&self, h: &str) -> Result<(), ControlError> {
                self.log(format!("pause {h}"));
                Ok(())
            }
            fn resume(&self, h: &str) -> Result<(), ControlError> {
                self.log(format!("resume {h}"));
                Ok(())
            }
            fn remove(&self, h: &str, d: bool) -> Result<(), ControlError> {
                self.log(format!("remove {h} {d}"));
                Ok(())
            }
            fn session(&self) -> SessionInfo {
                SessionInfo {
                    version: "v-test".into(),
                    ..SessionInfo::default()
                }
            }
        }

        let rec = Arc::new(Rec::default());
        let cfg = ApiConfig::new("127.0.0.1:0".parse().unwrap(), "t0ken".into());
        let server = ApiServer::start(cfg, rec.clone()).unwrap();
        let addr = server.local_addr().to_string();
        let c = ApiClient::new(&addr, "t0ken");
        let hash = "AB".repeat(20);
        assert_eq!(c.list().unwrap()[0].name, "u.iso");
        assert_eq!(
            c.add(b"meta", Some("a b/c&d"), true).unwrap(),
            "ab".repeat(20)
        );
        c.pause(&hash).unwrap();
        c.resume(&hash).unwrap();
        c.remove(&hash, true).unwrap();
        assert_eq!(c.session().unwrap().version, "v-test");
        assert!(matches!(
            c.detail(&hash).unwrap_err(),
            ClientError::Api { status: 404, .. }
        ));
        let wrong = ApiClient::new(&addr, "nope");
        assert!(matches!(
            wrong.list().unwrap_err(),
            ClientError::Unauthorized
        ));
        let lower = "ab".repeat(20);
        assert_eq!(
            *rec.0.lock().unwrap(),
            vec![
                "add meta Some(\"a b/c&d\") true".to_string(),
                format!("pause {lower}"),
                format!("resume {lower}"),
                format!("remove {lower} true"),
            ]
        );
        server.stop();
    }

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn token_precedence_env_then_state_arg_then_state_env() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(a.path().join(TOKEN_FILE), "aaaa\n").unwrap();
        std::fs::write(b.path().join(TOKEN_FILE), "  bbbb  \n").unwrap();
        let b_str = b.path().to_str().unwrap();

        // BTNODE_TOKEN wins over everything.
        let vars = [(ENV_TOKEN, " envtok\n"), (ENV_STATE, b_str)];
        assert_eq!(
            find_token_with(Some(a.path()), env(&vars)).unwrap(),
            "envtok"
        );
        // An empty BTNODE_TOKEN counts as unset.
        let vars = [(ENV_TOKEN, "  "), (ENV_STATE, b_str)];
        assert_eq!(find_token_with(Some(a.path()), env(&vars)).unwrap(), "aaaa");
        // The --state argument beats BTNODE_STATE.
        let vars = [(ENV_STATE, b_str)];
        assert_eq!(find_token_with(Some(a.path()), env(&vars)).unwrap(), "aaaa");
        // BTNODE_STATE when there is no argument; trimmed.
        assert_eq!(find_token_with(None, env(&vars)).unwrap(), "bbbb");
    }

    #[test]
    fn no_token_anywhere_is_a_clear_error() {
        let err = find_token_with(None, env(&[])).unwrap_err();
        assert!(matches!(err, ClientError::Token(_)));
        assert!(err.to_string().contains("--state DIR"), "{err}");
        assert!(err.to_string().contains("BTNODE_TOKEN"), "{err}");

        let empty = tempfile::tempdir().unwrap();
        let err = find_token_with(Some(empty.path()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("api-token"), "{err}");

        std::fs::write(empty.path().join(TOKEN_FILE), "\n").unwrap();
        let err = find_token_with(Some(empty.path()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err}");
    }
}
