//! A small HTTP/1.1 server side for the tracker and DNS REST fronts: reads
//! one request (head parsed by `httparse`; head size, header count and body
//! size bounded; the body only with `Content-Length`), writes one response
//! and closes (`Connection: close`, one request per connection). Every
//! byte is read and written under the connection's one [`Deadline`].
//!
//! Knows nothing of routes; the caller maps a [`Request`] (or the
//! [`HttpError`] that stood in for one) to a [`Response`].

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use super::listener::{Deadline, Limits, Options, Service, Timed};

/// Bounds on one request.
#[derive(Clone, Copy, Debug)]
pub struct RequestLimits {
    /// Request line plus headers, bytes.
    pub max_head: usize,
    pub max_headers: usize,
    pub max_body: usize,
    /// The whole exchange: request in, response out.
    pub deadline: Duration,
}

impl Default for RequestLimits {
    fn default() -> Self {
        RequestLimits {
            max_head: 16 * 1024,
            max_headers: 32,
            max_body: 1 << 20,
            deadline: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Upper-cased.
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// As sent, in order; names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split_once('?').map_or(&self.target, |(p, _)| p)
    }

    /// The query (after `?`), empty without one.
    pub fn query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// The first header called `name` (any case), its value trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// Why no request could be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request head too large")]
    HeadTooLarge,
    #[error("body too large")]
    BodyTooLarge,
    #[error("a body needs Content-Length")]
    LengthRequired,
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
}

impl HttpError {
    /// The status to answer with, or None when the client cannot be
    /// answered (it went, or ran out of time).
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Malformed(_) => Some(400),
            HttpError::HeadTooLarge => Some(431),
            HttpError::BodyTooLarge => Some(413),
            HttpError::LengthRequired => Some(411),
            HttpError::Io(_) => None,
        }
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

/// A [`Response`] with headers beyond the ones every response carries
/// (`WWW-Authenticate`, `Allow`, ...). Handlers that need none return a
/// plain [`Response`].
pub struct Reply {
    pub response: Response,
    /// Names and values; written as given, so no CR or LF in them.
    pub headers: Vec<(&'static str, String)>,
}

impl From<Response> for Reply {
    fn from(response: Response) -> Reply {
        Reply {
            response,
            headers: Vec::new(),
        }
    }
}

/// Reads one request from `r`. Pure over any reader (tested on bytes).
pub fn read_request(r: &mut impl Read, limits: &RequestLimits) -> Result<Request, HttpError> {
    read_request_with(r, limits, || Ok(()))
}

/// [`read_request`], calling `go_on` before reading a body the client
/// holds back for `Expect: 100-continue` (curl does, for large bodies).
pub fn read_request_with(
    r: &mut impl Read,
    limits: &RequestLimits,
    go_on: impl FnMut() -> io::Result<()>,
) -> Result<Request, HttpError> {
    read_request_gated(r, limits, go_on, |_| true)
}

/// [`read_request_with`], asking `gate` about the head (a [`Request`] with
/// no body yet) before any of the body is asked for or read: when it says
/// no, the request comes back with an empty body and the rest is left
/// unread, so a client that will be refused (no token) cannot make the
/// server take in, or hold memory for, a large upload first.
pub fn read_request_gated(
    r: &mut impl Read,
    limits: &RequestLimits,
    mut go_on: impl FnMut() -> io::Result<()>,
    gate: impl FnOnce(&Request) -> bool,
) -> Result<Request, HttpError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let method = req.method.unwrap_or("").to_ascii_uppercase();
                let target = req.path.unwrap_or("").to_string();
                let mut length = None;
                let mut expect_continue = false;
                let mut header_list = Vec::with_capacity(req.headers.len());
                for h in req.headers.iter() {
                    // A value that is not UTF-8 is kept lossily: no caller
                    // trusts a header it has not checked anyway.
                    header_list.push((
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    ));
                    if h.name.eq_ignore_ascii_case("content-length") {
                        let n = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .ok_or_else(|| HttpError::Malformed("bad Content-Length".into()))?;
                        if length.is_some_and(|l| l != n) {
                            return Err(HttpError::Malformed("two Content-Lengths".into()));
                        }
                        length = Some(n);
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(HttpError::LengthRequired);
                    } else if h.name.eq_ignore_ascii_case("expect") {
                        expect_continue = h.value.eq_ignore_ascii_case(b"100-continue");
                    }
                }
                let length = length.unwrap_or(0);
                if length > limits.max_body {
                    return Err(HttpError::BodyTooLarge);
                }
                let mut request = Request {
                    method,
                    target,
                    headers: header_list,
                    body: Vec::new(),
                };
                if length > 0 && !gate(&request) {
                    return Ok(request);
                }
                let mut body = buf.split_off(head_len);
                if body.len() < length {
                    if expect_continue {
                        go_on()?;
                    }
                    let have = body.len();
                    body.resize(length, 0);
                    r.read_exact(&mut body[have..])?;
                }
                // Bytes past the body (a pipelined request) are ignored: one
                // request per connection.
                body.truncate(length);
                request.body = body;
                return Ok(request);
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
            Err(e) => return Err(HttpError::Malformed(e.to_string())),
        }
        if buf.len() >= limits.max_head {
            return Err(HttpError::HeadTooLarge);
        }
        let want = chunk.len().min(limits.max_head + 1 - buf.len());
        let n = r.read(&mut chunk[..want])?;
        if n == 0 {
            return Err(HttpError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "",
    }
}

/// Writes `resp` as one HTTP/1.1 response that closes the connection.
pub fn write_response(w: &mut impl Write, resp: &Response) -> io::Result<()> {
    write_reply_parts(w, resp, &[])
}

/// [`write_response`] with the reply's extra headers.
pub fn write_reply(w: &mut impl Write, reply: &Reply) -> io::Result<()> {
    write_reply_parts(w, &reply.response, &reply.headers)
}

fn write_reply_parts(
    w: &mut impl Write,
    resp: &Response,
    extra: &[(&'static str, String)],
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (name, value) in extra {
        // A value with a line break would start a header of its own.
        if !value.contains(['\r', '\n']) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&resp.body);
    w.write_all(&out)?;
    w.flush()
}

/// Serves one connection: read a request, answer it with `handler` (which
/// also answers the errors that have a status), close. The handler returns
/// a [`Response`] or, with extra headers, a [`Reply`].
pub fn serve_connection<F, R>(
    stream: &TcpStream,
    peer: SocketAddr,
    limits: &RequestLimits,
    handler: &F,
) where
    F: Fn(Result<Request, &HttpError>, SocketAddr) -> R,
    R: Into<Reply>,
{
    serve_connection_gated(stream, peer, limits, &|_: &Request| true, handler)
}

/// [`serve_connection`] reading the body only if `gate` passes the head
/// (see [`read_request_gated`]); a request it refuses reaches `handler`
/// with an empty body, and the handler must refuse it the same way.
pub fn serve_connection_gated<G, F, R>(
    stream: &TcpStream,
    peer: SocketAddr,
    limits: &RequestLimits,
    gate: &G,
    handler: &F,
) where
    G: Fn(&Request) -> bool,
    F: Fn(Result<Request, &HttpError>, SocketAddr) -> R,
    R: Into<Reply>,
{
    let deadline = Deadline::after(limits.deadline);
    let mut io = Timed::new(stream, deadline);
    let go_on = || Timed::new(stream, deadline).write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
    let reply: Reply = match read_request_gated(&mut io, limits, go_on, gate) {
        Ok(req) => handler(Ok(req), peer).into(),
        Err(e) => match e.status() {
            Some(_) => handler(Err(&e), peer).into(),
            None => return,
        },
    };
    // The client may have gone; nothing to do about it.
    let _ = write_reply(&mut io, &reply);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// An HTTP front on `listener`: a bounded [`Service`] whose connections
/// each carry one request.
pub fn serve<F, R>(
    listener: std::net::TcpListener,
    name: &str,
    limits: Limits,
    request: RequestLimits,
    handler: F,
) -> io::Result<Service>
where
    F: Fn(Result<Request, &HttpError>, SocketAddr) -> R + Send + Sync + 'static,
    R: Into<Reply>,
{
    serve_gated(listener, name, limits, request, |_: &Request| true, handler)
}

/// [`serve`] with a `gate` on each request's head (see
/// [`serve_connection_gated`]).
pub fn serve_gated<G, F, R>(
    listener: std::net::TcpListener,
    name: &str,
    limits: Limits,
    request: RequestLimits,
    gate: G,
    handler: F,
) -> io::Result<Service>
where
    G: Fn(&Request) -> bool + Send + Sync + 'static,
    F: Fn(Result<Request, &HttpError>, SocketAddr) -> R + Send + Sync + 'static,
    R: Into<Reply>,
{
    let opts = Options {
        name: name.to_string(),
        limits,
        stop_grace: Duration::from_secs(2),
    };
    Service::start(listener, opts, move |stream, peer| {
        serve_connection_gated(&stream, peer, &request, &gate, &handler)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Result<Request, HttpError> {
        read_request(&mut &bytes[..], &RequestLimits::default())
    }

    #[test]
    fn a_get_and_a_post_with_a_body() {
        let r = parse(b"get /announce?a=1&b=%20 HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path(), "/announce");
        assert_eq!(r.query(), "a=1&b=%20");
        assert!(r.body.is_empty());
        assert_eq!(r.headers, vec![("host".to_string(), "x".to_string())]);
        assert_eq!((r.header("HOST"), r.header("accept")), (Some("x"), None));
        let r = parse(b"POST /records HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello+more").unwrap();
        assert_eq!(r.body, b"hello");
        assert_eq!(r.query(), "");
    }

    #[test]
    fn a_request_split_at_every_byte_reads_the_same() {
        let whole = b"POST /gossip HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc";
        // A reader that hands out one byte per read.
        struct Drip<'a>(&'a [u8]);
        impl Read for Drip<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let Some((&b, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buf[0] = b;
                self.0 = rest;
                Ok(1)
            }
        }
        let r = read_request(&mut Drip(whole), &RequestLimits::default()).unwrap();
        assert_eq!(
            (r.method.as_str(), r.body.as_slice()),
            ("POST", &b"abc"[..])
        );
    }

    #[test]
    fn bounds_and_bad_input_are_errors_not_panics() {
        let limits = RequestLimits {
            max_head: 64,
            max_headers: 2,
            max_body: 4,
            deadline: Duration::from_secs(1),
        };
        let p = |b: &[u8]| read_request(&mut &b[..], &limits);
        assert!(matches!(
            p(&[b'G'; 1000]),
            Err(HttpError::HeadTooLarge | HttpError::Malformed(_))
        ));
        assert!(matches!(
            p(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n"),
            Err(HttpError::HeadTooLarge)
        ));
        assert!(matches!(
            p(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
            Err(HttpError::BodyTooLarge)
        ));
        assert!(matches!(
            p(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HttpError::LengthRequired)
        ));
        assert!(matches!(
            p(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        assert!(matches!(
            p(b"\x00\xff\r\n\r\n"),
            Err(HttpError::Malformed(_))
        ));
        // A body shorter than announced: the connection ended.
        assert!(matches!(
            p(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"),
            Err(HttpError::Io(_))
        ));
        assert!(matches!(p(b""), Err(HttpError::Io(_))));
    }

    #[test]
    fn a_held_back_body_is_asked_for_once() {
        let mut asked = 0;
        let bytes = b"POST /r HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok";
        let head_only = bytes.len() - 2;
        // The body arrives only after the head was read in full.
        let mut r = (&bytes[..head_only]).chain(&bytes[head_only..]);
        let req = read_request_with(&mut r, &RequestLimits::default(), || {
            asked += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((req.body.as_slice(), asked), (&b"ok"[..], 1));
    }

    #[test]
    fn a_gate_that_says_no_leaves_the_body_unread_and_unasked() {
        let bytes = b"POST /r HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok";
        let mut asked = 0;
        let mut seen = None;
        let req = read_request_gated(
            &mut &bytes[..],
            &RequestLimits::default(),
            || {
                asked += 1;
                Ok(())
            },
            |head| {
                seen = Some(head.target.clone());
                false
            },
        )
        .unwrap();
        assert_eq!((req.method.as_str(), req.body.len(), asked), ("POST", 0, 0));
        assert_eq!(seen.as_deref(), Some("/r"));
        // Saying yes reads it as usual.
        let req = read_request_gated(
            &mut &bytes[..],
            &RequestLimits::default(),
            || Ok(()),
            |_| true,
        )
        .unwrap();
        assert_eq!(req.body, b"ok");
    }

    #[test]
    fn responses_carry_length_and_close() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            &Response {
                status: 404,
                content_type: "text/plain",
                body: b"nope".to_vec(),
            },
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("Content-Length: 4\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nnope"));
        // Extra headers are written; one with a line break is not.
        let mut out = Vec::new();
        let reply = Reply {
            response: Response {
                status: 401,
                content_type: "application/json",
                body: b"{}".to_vec(),
            },
            headers: vec![
                ("WWW-Authenticate", "Bearer".into()),
                ("X-Bad", "a\r\nSet-Cookie: b".into()),
            ],
        };
        write_reply(&mut out, &reply).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"));
        assert!(text.contains("\r\nWWW-Authenticate: Bearer\r\n"));
        assert!(!text.contains("X-Bad") && !text.contains("Set-Cookie"));
        assert!(text.ends_with("\r\n\r\n{}"));
    }
}
