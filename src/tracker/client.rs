//! Tracker client: announce and scrape over HTTP or HTTPS (ureq, blocking,
//! with a timeout and a bounded reply size; TLS through rustls, trusting the
//! system's roots, or only the PEM file `SSL_CERT_FILE` names when it is
//! set), or over UDP (BEP 15, in `udp`) for `udp://` URLs. Owns the mapping from HTTP outcomes to [`TrackerError`];
//! the types both transports share are in `announce` (re-exported here),
//! the bytes are `wire::tracker`'s business.

use std::collections::HashMap;
use std::io::Read;
use std::time::Duration;

use super::announce::process_key;
use super::udp;
use crate::core::InfoHash;
use crate::wire::tracker::{self as codec, AnnounceReply, HttpParams, TrackerWireError};

pub use super::announce::{AnnounceRequest, AnnounceResponse, Event, ScrapeStats, TrackerError};

/// Largest reply read from a tracker.
pub const MAX_REPLY_BYTES: usize = 1 << 20;

/// GETs `url` (`http://` or `https://`); the body of any status, or why
/// there is none. Through ureq: one timeout bounds the whole request, TLS
/// handshake included (minreq sets no read timeout while rustls shakes
/// hands, so a TLS front that accepted and went silent would hold the
/// announcer for good), and bracketed IPv6 hosts (`http://[::1]:6969/`)
/// resolve (minreq hands `[::1]` to the resolver). TLS is rustls with the
/// system's roots, or only the PEM file `SSL_CERT_FILE` names when set.
fn get(url: &str, timeout: Duration) -> Result<(i32, Vec<u8>), TrackerError> {
    let scheme_len = url.find("://").unwrap_or(url.len());
    let scheme = &url[..scheme_len];
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(TrackerError::UnsupportedScheme(scheme.to_string()));
    }
    let agent = ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(3)
        .https_only(false)
        .build();
    let resp = match agent.get(url).call() {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => {
            return Err(match t.kind() {
                ureq::ErrorKind::TooManyRedirects => TrackerError::Redirects,
                _ => TrackerError::Transport(t.to_string()),
            })
        }
    };
    let status = i32::from(resp.status());
    let declared = resp
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    Ok((status, bounded_body(declared, resp.into_reader())?))
}

/// Reads a reply body of at most [`MAX_REPLY_BYTES`].
fn bounded_body(declared: Option<u64>, body: impl Read) -> Result<Vec<u8>, TrackerError> {
    if declared.is_some_and(|n| n > MAX_REPLY_BYTES as u64) {
        return Err(TrackerError::BadReply("reply over 1 MiB".into()));
    }
    let mut out = Vec::new();
    body.take(MAX_REPLY_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| TrackerError::Transport(e.to_string()))?;
    if out.len() > MAX_REPLY_BYTES {
        return Err(TrackerError::BadReply("reply over 1 MiB".into()));
    }
    Ok(out)
}

/// Decodes a body with `decode`; a non-200 status still yields the
/// tracker's `failure reason` when the body carries one (some trackers
/// refuse with 400), otherwise the status.
fn interpret<T>(
    (status, body): (i32, Vec<u8>),
    decode: impl Fn(&[u8]) -> Result<T, TrackerWireError>,
) -> Result<T, TrackerError> {
    match (status, decode(&body)) {
        (_, Err(TrackerWireError::Failure(reason))) => Err(TrackerError::Failure(reason)),
        (200, decoded) => decoded.map_err(TrackerError::from),
        (status, _) => Err(TrackerError::Status(status)),
    }
}

fn is_udp(url: &str) -> bool {
    url.get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("udp://"))
}

/// Announces `req` to the tracker at `url` (`udp://` goes to BEP 15).
pub fn announce(
    url: &str,
    req: &AnnounceRequest,
    timeout: Duration,
) -> Result<AnnounceResponse, TrackerError> {
    if is_udp(url) {
        return udp::announce(url, req, timeout);
    }
    let http = HttpParams {
        compact: true,
        no_peer_id: true,
        key: Some(format!("{:08x}", process_key())),
    };
    let query = codec::announce_query(req, &http);
    let reply = interpret(
        get(&codec::with_query(url, &query), timeout)?,
        AnnounceReply::decode,
    )?;
    Ok(reply.into())
}

/// Scrapes `hashes` (every torrent the tracker lists when empty) at the
/// scrape URL derived from `announce_url`.
pub fn scrape(
    announce_url: &str,
    hashes: &[InfoHash],
    timeout: Duration,
) -> Result<HashMap<InfoHash, ScrapeStats>, TrackerError> {
    if is_udp(announce_url) {
        return udp::scrape(announce_url, hashes, timeout);
    }
    let url = codec::scrape_url(announce_url).ok_or(TrackerError::NoScrape)?;
    let files = interpret(
        get(
            &codec::with_query(&url, &codec::scrape_query(hashes)),
            timeout,
        )?,
        codec::decode_scrape,
    )?;
    Ok(files.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_failure_reason_are_told_apart() {
        let failure = codec::encode_failure("go away");
        let decode = AnnounceReply::decode;
        assert!(matches!(
            interpret((400, failure.clone()), decode),
            Err(TrackerError::Failure(r)) if r == "go away"
        ));
        assert!(matches!(
            interpret((200, failure), decode),
            Err(TrackerError::Failure(_))
        ));
        assert!(matches!(
            interpret((502, b"<html>".to_vec()), decode),
            Err(TrackerError::Status(502))
        ));
        assert!(matches!(
            interpret((200, b"<html>".to_vec()), decode),
            Err(TrackerError::BadReply(_))
        ));
    }

    #[test]
    fn a_silent_tls_front_is_given_up_within_the_timeout() {
        // Accepts, then never says a word: the TLS handshake must not wait
        // past the request's deadline.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/announce", l.local_addr().unwrap());
        let hold = std::thread::spawn(move || l.accept().map(|(s, _)| s));
        let req = crate::wire::tracker::test_announce();
        let t0 = std::time::Instant::now();
        let r = announce(&url, &req, Duration::from_millis(700));
        assert!(matches!(r, Err(TrackerError::Transport(_))), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        drop(hold.join());
    }

    #[test]
    fn other_schemes_are_refused_before_any_io() {
        let req = crate::wire::tracker::test_announce();
        for url in ["wss://t/announce", "t/announce"] {
            assert!(matches!(
                announce(url, &req, Duration::from_secs(1)),
                Err(TrackerError::UnsupportedScheme(_))
            ));
        }
    }
}
