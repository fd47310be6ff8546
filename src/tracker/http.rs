//! The tracker's HTTP front: `/announce` (compact or dictionary replies)
//! and `/scrape` on `runtime::http` over the bounded `runtime::listener`:
//! an accept thread and at most `max_connections` connection threads (a
//! quarter of them per source address), each serving one request under
//! one whole deadline. Each request takes the registry lock once, after
//! its query is parsed and before its reply is encoded.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::registry::{Families, Registry};
use crate::runtime::http::{self, HttpError, Request, RequestLimits, Response};
use crate::runtime::listener::{Limits, Service};
use crate::wire::tracker as codec;

/// One announce or scrape, headers and all, must arrive within this.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// Serves `listener` until the returned service is stopped.
pub fn start(
    listener: TcpListener,
    registry: Arc<Mutex<Registry>>,
    max_connections: usize,
) -> std::io::Result<Service> {
    let request = RequestLimits {
        // A GET: no body to speak of.
        max_body: 4096,
        deadline: REQUEST_DEADLINE,
        ..RequestLimits::default()
    };
    let limits = Limits::new(max_connections);
    http::serve(listener, "tracker", limits, request, move |req, peer| {
        handle(req, peer, &registry)
    })
}

/// The reply body to an announce query from `ip`: bencoded, a `failure
/// reason` when the query is bad or the tracker refuses.
pub fn announce_body(query: &str, ip: IpAddr, now: Instant, registry: &Mutex<Registry>) -> Vec<u8> {
    match codec::parse_announce_query(query) {
        Ok((req, http)) => {
            let reply = registry.lock().announce(&req, ip, now, Families::Both);
            match reply {
                Ok(reply) => reply.encode(http.compact, http.no_peer_id),
                Err(refusal) => codec::encode_failure(refusal),
            }
        }
        Err(e) => codec::encode_failure(&e.to_string()),
    }
}

/// The reply body to a scrape query.
pub fn scrape_body(query: &str, now: Instant, registry: &Mutex<Registry>) -> Vec<u8> {
    match codec::parse_scrape_query(query) {
        Ok(hashes) => {
            let counts = registry.lock().scrape(&hashes, now);
            codec::encode_scrape(&counts)
        }
        Err(e) => codec::encode_failure(&e.to_string()),
    }
}

fn handle(
    req: Result<Request, &HttpError>,
    peer: SocketAddr,
    registry: &Mutex<Registry>,
) -> Response {
    let ip = peer.ip().to_canonical();
    let now = Instant::now();
    // Bad requests get HTTP 200 with a `failure reason`, as trackers do, so
    // that clients show the reason instead of a bare status.
    let (status, body) = match req {
        Err(e) => (
            e.status().unwrap_or(400),
            codec::encode_failure(&e.to_string()),
        ),
        Ok(req) => match req.path() {
            "/announce" => (200, announce_body(req.query(), ip, now, registry)),
            "/scrape" => (200, scrape_body(req.query(), now, registry)),
            _ => (
                404,
                codec::encode_failure("not found: use /announce or /scrape"),
            ),
        },
    };
    Response {
        status,
        content_type: "text/plain",
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{InfoHash, PeerId};
    use crate::tracker::registry::ServerOptions;
    use crate::wire::tracker::{
        announce_query, AnnounceReply, AnnounceRequest, HttpParams, TrackerWireError,
    };

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn registry() -> Mutex<Registry> {
        Mutex::new(Registry::with_rng(
            ServerOptions::default(),
            Instant::now(),
            fastrand::Rng::with_seed(3),
        ))
    }

    fn query(port: u16, http: &HttpParams) -> String {
        let req = AnnounceRequest {
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([port as u8; 20]),
            port,
            uploaded: 0,
            downloaded: 0,
            left: 1,
            event: None,
            numwant: None,
        };
        announce_query(&req, http)
    }

    #[test]
    fn dictionary_replies_carry_peer_ids_unless_asked_not_to() {
        let (r, t) = (registry(), Instant::now());
        announce_body(&query(1000, &HttpParams::default()), LOCAL, t, &r);
        let mut http = HttpParams {
            compact: false,
            ..HttpParams::default()
        };
        let with_ids = AnnounceReply::decode(&announce_body(&query(2000, &http), LOCAL, t, &r));
        assert_eq!(with_ids.unwrap().peers[0].peer_id, Some(PeerId([232; 20])));
        http.no_peer_id = true;
        let without = AnnounceReply::decode(&announce_body(&query(2000, &http), LOCAL, t, &r));
        assert_eq!(without.unwrap().peers[0].peer_id, None);
    }

    #[test]
    fn compact_replies_and_scrapes_have_the_expected_bytes() {
        let (r, t) = (registry(), Instant::now());
        announce_body(&query(1000, &HttpParams::default()), LOCAL, t, &r);
        assert_eq!(
            announce_body(&query(2000, &HttpParams::default()), LOCAL, t, &r),
            b"d8:completei0e10:incompletei2e8:intervali60e5:peers6:\x7f\x00\x00\x01\x03\xe8e"
        );
        let scrape = format!("info_hash={}", "%01".repeat(20));
        assert_eq!(
            scrape_body(&scrape, t, &r),
            b"d5:filesd20:\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\x01\
              d8:completei0e10:downloadedi0e10:incompletei2eeee"
        );
    }

    #[test]
    fn bad_queries_and_refusals_are_failure_reasons() {
        let (r, t) = (registry(), Instant::now());
        let bad = AnnounceReply::decode(&announce_body("port=1", LOCAL, t, &r));
        assert!(matches!(bad, Err(TrackerWireError::Failure(m)) if m.contains("info_hash")));
        assert!(matches!(
            codec::decode_scrape(&scrape_body("info_hash=short", t, &r)),
            Err(TrackerWireError::Failure(_))
        ));
    }
}
