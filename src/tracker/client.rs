//! Tracker client: announce and scrape over HTTP (minreq, blocking, with a
//! timeout and a bounded reply size), or over UDP (BEP 15, in `udp`) for
//! `udp://` URLs. Owns the mapping from HTTP outcomes to [`TrackerError`];
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

/// minreq takes whole seconds: round up, so a 1.5 s budget is not cut to 1 s.
fn whole_seconds(timeout: Duration) -> u64 {
    (timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0)).max(1)
}

/// GETs `url`; the body of any status, or why there is none.
fn get(url: &str, timeout: Duration) -> Result<(i32, Vec<u8>), TrackerError> {
    let scheme_len = url.find("://").unwrap_or(url.len());
    if !url[..scheme_len].eq_ignore_ascii_case("http") {
        return Err(TrackerError::UnsupportedScheme(
            url[..scheme_len].to_string(),
        ));
    }
    let resp = minreq::get(url)
        .with_timeout(whole_seconds(timeout))
        .with_max_redirects(3)
        .with_max_headers_size(16 * 1024)
        .with_max_status_line_length(1024)
        .send_lazy()
        .map_err(|e| match e {
            minreq::Error::TooManyRedirections | minreq::Error::InfiniteRedirectionLoop => {
                TrackerError::Redirects
            }
            e => TrackerError::Transport(e.to_string()),
        })?;
    let status = resp.status_code;
    let declared = resp
        .headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_REPLY_BYTES as u64) {
        return Err(TrackerError::BadReply("reply over 1 MiB".into()));
    }
    let mut body = Vec::new();
    Read::take(resp, MAX_REPLY_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| TrackerError::Transport(e.to_string()))?;
    if body.len() > MAX_REPLY_BYTES {
        return Err(TrackerError::BadReply("reply over 1 MiB".into()));
    }
    Ok((status, body))
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
    fn timeouts_round_up_to_whole_seconds() {
        assert_eq!(whole_seconds(Duration::ZERO), 1);
        assert_eq!(whole_seconds(Duration::from_millis(800)), 1);
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(5)), 5);
    }

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
    fn other_schemes_are_refused_before_any_io() {
        let req = crate::wire::tracker::test_announce();
        for url in ["https://t/announce", "t/announce"] {
            assert!(matches!(
                announce(url, &req, Duration::from_secs(1)),
                Err(TrackerError::UnsupportedScheme(_))
            ));
        }
    }
}
