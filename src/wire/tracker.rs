//! Tracker announce and scrape codec (BEP 3, BEP 23 compact peers, BEP 7
//! `peers6`, BEP 48 scrape): query strings and bencoded replies, both
//! directions, with no sockets.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::bencode::{self, Value};
use crate::core::{InfoHash, PeerId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Started,
    Completed,
    Stopped,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Started => "started",
            Event::Completed => "completed",
            Event::Stopped => "stopped",
        }
    }
}

/// What a client sends in an announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Option<Event>,
    pub numwant: Option<u32>,
    pub compact: bool,
    pub no_peer_id: bool,
}

/// A peer in a reply; `peer_id` only in the dictionary form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerEntry {
    pub addr: SocketAddr,
    pub peer_id: Option<PeerId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceReply {
    pub interval: u32,
    pub min_interval: Option<u32>,
    pub complete: Option<u64>,
    pub incomplete: Option<u64>,
    pub warning: Option<String>,
    pub peers: Vec<PeerEntry>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScrapeEntry {
    pub complete: u64,
    pub incomplete: u64,
    pub downloaded: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrackerWireError {
    #[error("tracker said: {0}")]
    Failure(String),
    #[error("reply is not valid bencode: {0}")]
    Bencode(#[from] bencode::DecodeError),
    #[error("reply is missing or has a bad `{0}`")]
    Field(&'static str),
    #[error("bad request: {0}")]
    BadRequest(String),
}

/// Percent-encodes every byte outside RFC 3986's unreserved set.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` and `+`; `None` on a malformed escape.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Some(out)
}

impl AnnounceRequest {
    /// The query string (without `?`).
    pub fn to_query(&self) -> String {
        let mut q = format!(
            "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact={}",
            percent_encode(&self.info_hash.0),
            percent_encode(&self.peer_id.0),
            self.port,
            self.uploaded,
            self.downloaded,
            self.left,
            u8::from(self.compact)
        );
        if let Some(e) = self.event {
            q.push_str("&event=");
            q.push_str(e.as_str());
        }
        if let Some(n) = self.numwant {
            q.push_str(&format!("&numwant={n}"));
        }
        if self.no_peer_id {
            q.push_str("&no_peer_id=1");
        }
        q
    }

    /// Parses and validates an announce query string (server side).
    pub fn from_query(query: &str) -> Result<AnnounceRequest, TrackerWireError> {
        let bad = |m: &str| TrackerWireError::BadRequest(m.to_string());
        let params = parse_query(query).ok_or_else(|| bad("malformed query string"))?;
        let get = |k: &str| {
            params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_slice())
        };
        let bytes20 = |k: &str| -> Result<[u8; 20], TrackerWireError> {
            get(k)
                .and_then(|v| <[u8; 20]>::try_from(v).ok())
                .ok_or_else(|| bad(&format!("`{k}` must be 20 bytes")))
        };
        let number = |k: &str, default: Option<u64>| -> Result<u64, TrackerWireError> {
            match get(k) {
                None => default.ok_or_else(|| bad(&format!("missing `{k}`"))),
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| bad(&format!("`{k}` is not a non-negative number"))),
            }
        };
        let port = number("port", None)?;
        if port == 0 || port > 65535 {
            return Err(bad("`port` must be 1-65535"));
        }
        let event = match get("event") {
            None | Some(b"") | Some(b"empty") => None,
            Some(b"started") => Some(Event::Started),
            Some(b"completed") => Some(Event::Completed),
            Some(b"stopped") => Some(Event::Stopped),
            Some(_) => return Err(bad("unknown `event`")),
        };
        Ok(AnnounceRequest {
            info_hash: InfoHash(bytes20("info_hash")?),
            peer_id: PeerId(bytes20("peer_id")?),
            port: port as u16,
            uploaded: number("uploaded", Some(0))?,
            downloaded: number("downloaded", Some(0))?,
            left: number("left", Some(0))?,
            event,
            numwant: get("numwant").and_then(|v| std::str::from_utf8(v).ok()?.parse::<u32>().ok()),
            compact: get("compact") != Some(b"0"),
            no_peer_id: get("no_peer_id") == Some(b"1"),
        })
    }
}

/// `name=value&...` pairs, percent-decoded; bounded to 64 pairs.
pub fn parse_query(query: &str) -> Option<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if out.len() >= 64 {
            return None;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = String::from_utf8(percent_decode(k)?).ok()?;
        out.push((k, percent_decode(v)?));
    }
    Some(out)
}

fn compact_peers(bytes: &[u8], v6: bool) -> Result<Vec<PeerEntry>, TrackerWireError> {
    let size = if v6 { 18 } else { 6 };
    if !bytes.len().is_multiple_of(size) {
        return Err(TrackerWireError::Field(if v6 { "peers6" } else { "peers" }));
    }
    Ok(bytes
        .chunks_exact(size)
        .map(|c| {
            let ip: IpAddr = if v6 {
                Ipv6Addr::from(<[u8; 16]>::try_from(&c[..16]).unwrap()).into()
            } else {
                Ipv4Addr::new(c[0], c[1], c[2], c[3]).into()
            };
            let port = u16::from_be_bytes([c[size - 2], c[size - 1]]);
            PeerEntry {
                addr: SocketAddr::new(ip, port),
                peer_id: None,
            }
        })
        .filter(|p| p.addr.port() != 0)
        .collect())
}

impl AnnounceReply {
    /// Decodes a reply; a `failure reason` becomes `TrackerWireError::Failure`.
    pub fn decode(bytes: &[u8]) -> Result<AnnounceReply, TrackerWireError> {
        let (v, _) = bencode::decode_prefix(bytes)?;
        if let Some(reason) = v.get("failure reason") {
            let text = String::from_utf8_lossy(reason.as_bytes().unwrap_or(b"(not a string)"));
            return Err(TrackerWireError::Failure(text.into_owned()));
        }
        if v.as_dict().is_none() {
            return Err(TrackerWireError::Field("reply"));
        }
        let int = |k: &str| v.get(k).and_then(Value::as_int).filter(|&i| i >= 0);
        let interval = int("interval").ok_or(TrackerWireError::Field("interval"))?;
        let mut peers = match v.get("peers") {
            Some(Value::Bytes(b)) => compact_peers(b, false)?,
            Some(Value::List(list)) => list
                .iter()
                .filter_map(|p| {
                    let ip: IpAddr = p.get("ip")?.as_str()?.parse().ok()?;
                    let port = u16::try_from(p.get("port")?.as_int()?).ok()?;
                    let peer_id = p
                        .get("peer id")
                        .and_then(Value::as_bytes)
                        .and_then(|b| <[u8; 20]>::try_from(b).ok())
                        .map(PeerId);
                    (port != 0).then_some(PeerEntry {
                        addr: SocketAddr::new(ip, port),
                        peer_id,
                    })
                })
                .collect(),
            None => vec![],
            Some(_) => return Err(TrackerWireError::Field("peers")),
        };
        if let Some(Value::Bytes(b)) = v.get("peers6") {
            peers.extend(compact_peers(b, true)?);
        }
        Ok(AnnounceReply {
            interval: interval.min(u32::MAX as i64) as u32,
            min_interval: int("min interval").map(|i| i.min(u32::MAX as i64) as u32),
            complete: int("complete").map(|i| i as u64),
            incomplete: int("incomplete").map(|i| i as u64),
            warning: v
                .get("warning message")
                .and_then(Value::as_bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned()),
            peers,
        })
    }

    /// Encodes a reply, compact (IPv4 in `peers`, IPv6 in `peers6`) or as a
    /// dictionary list (with peer ids unless `no_peer_id`).
    pub fn encode(&self, compact: bool, no_peer_id: bool) -> Vec<u8> {
        let mut d: Vec<(&str, Value)> = vec![("interval", Value::Int(self.interval as i64))];
        if let Some(m) = self.min_interval {
            d.push(("min interval", Value::Int(m as i64)));
        }
        if let Some(c) = self.complete {
            d.push(("complete", Value::Int(c as i64)));
        }
        if let Some(i) = self.incomplete {
            d.push(("incomplete", Value::Int(i as i64)));
        }
        if let Some(w) = &self.warning {
            d.push(("warning message", Value::bytes(w.as_bytes())));
        }
        if compact {
            let (mut v4, mut v6) = (Vec::new(), Vec::new());
            for p in &self.peers {
                match p.addr {
                    SocketAddr::V4(a) => {
                        v4.extend_from_slice(&a.ip().octets());
                        v4.extend_from_slice(&a.port().to_be_bytes());
                    }
                    SocketAddr::V6(a) => {
                        v6.extend_from_slice(&a.ip().octets());
                        v6.extend_from_slice(&a.port().to_be_bytes());
                    }
                }
            }
            d.push(("peers", Value::Bytes(v4)));
            if !v6.is_empty() {
                d.push(("peers6", Value::Bytes(v6)));
            }
        } else {
            let list = self
                .peers
                .iter()
                .map(|p| {
                    let mut e = vec![
                        ("ip", Value::bytes(p.addr.ip().to_string())),
                        ("port", Value::Int(p.addr.port() as i64)),
                    ];
                    if let (false, Some(id)) = (no_peer_id, p.peer_id) {
                        e.push(("peer id", Value::bytes(id.0.to_vec())));
                    }
                    Value::dict(e)
                })
                .collect();
            d.push(("peers", Value::List(list)));
        }
        bencode::encode(&Value::dict(d))
    }
}

/// A bencoded `failure reason` reply.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    bencode::encode(&Value::dict([("failure reason", Value::bytes(reason))]))
}

/// The scrape URL for an announce URL (BEP 48: the last path segment must
/// start with `announce`, which becomes `scrape`).
pub fn scrape_url(announce: &str) -> Option<String> {
    let (base, query) = match announce.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (announce, None),
    };
    let slash = base.rfind('/')?;
    let last = &base[slash + 1..];
    let rest = last.strip_prefix("announce")?;
    let mut url = format!("{}/scrape{}", &base[..slash], rest);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    Some(url)
}

pub fn scrape_query(hashes: &[InfoHash]) -> String {
    hashes
        .iter()
        .map(|h| format!("info_hash={}", percent_encode(&h.0)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn encode_scrape(files: &BTreeMap<InfoHash, ScrapeEntry>) -> Vec<u8> {
    let files = files
        .iter()
        .map(|(h, e)| {
            (
                h.0.to_vec(),
                Value::dict([
                    ("complete", Value::Int(e.complete as i64)),
                    ("incomplete", Value::Int(e.incomplete as i64)),
                    ("downloaded", Value::Int(e.downloaded as i64)),
                ]),
            )
        })
        .collect::<Vec<_>>();
    bencode::encode(&Value::dict([("files", Value::dict(files))]))
}

pub fn decode_scrape(bytes: &[u8]) -> Result<BTreeMap<InfoHash, ScrapeEntry>, TrackerWireError> {
    let (v, _) = bencode::decode_prefix(bytes)?;
    if let Some(reason) = v.get("failure reason") {
        let text = String::from_utf8_lossy(reason.as_bytes().unwrap_or(b"?"));
        return Err(TrackerWireError::Failure(text.into_owned()));
    }
    let files = v
        .get("files")
        .and_then(Value::as_dict)
        .ok_or(TrackerWireError::Field("files"))?;
    let mut out = BTreeMap::new();
    for (k, e) in files {
        let Ok(h) = <[u8; 20]>::try_from(k.as_slice()) else {
            continue;
        };
        let n = |f: &str| e.get(f).and_then(Value::as_int).unwrap_or(0).max(0) as u64;
        out.insert(
            InfoHash(h),
            ScrapeEntry {
                complete: n("complete"),
                incomplete: n("incomplete"),
                downloaded: n("downloaded"),
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([0x12; 20]),
            peer_id: PeerId(*b"-JC0001-abcdef012345"),
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Some(Event::Started),
            numwant: Some(50),
            compact: true,
            no_peer_id: false,
        }
    }

    #[test]
    fn request_round_trips_through_the_query_string() {
        let r = req();
        let q = r.to_query();
        assert!(q.starts_with("info_hash=%12%12"));
        assert_eq!(AnnounceRequest::from_query(&q), Ok(r));
    }

    #[test]
    fn bad_requests_are_refused() {
        let q = req().to_query();
        for bad in [
            q.replace("port=6881", "port=0"),
            q.replace("info_hash=%12", "info_hash="),
            q.replace("event=started", "event=exploded"),
            q.replace("left=3", "left=-3"),
            "info_hash=%zz".to_string(),
            String::new(),
        ] {
            assert!(AnnounceRequest::from_query(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn compact_and_dict_replies_decode() {
        let reply = AnnounceReply {
            interval: 60,
            min_interval: Some(30),
            complete: Some(1),
            incomplete: Some(2),
            warning: None,
            peers: vec![
                PeerEntry {
                    addr: "1.2.3.4:5678".parse().unwrap(),
                    peer_id: Some(PeerId([1; 20])),
                },
                PeerEntry {
                    addr: "[::1]:80".parse().unwrap(),
                    peer_id: Some(PeerId([2; 20])),
                },
            ],
        };
        let compact = AnnounceReply::decode(&reply.encode(true, false)).unwrap();
        assert_eq!(compact.peers.len(), 2);
        assert_eq!(compact.peers[0].addr, reply.peers[0].addr);
        assert_eq!(compact.peers[0].peer_id, None);
        assert_eq!(
            AnnounceReply::decode(&reply.encode(false, false)).unwrap(),
            reply
        );
        // Known bytes: one compact peer 10.0.0.1:6881.
        let known = b"d8:intervali900e5:peers6:\x0a\x00\x00\x01\x1a\xe1e";
        let r = AnnounceReply::decode(known).unwrap();
        assert_eq!(r.peers[0].addr, "10.0.0.1:6881".parse().unwrap());
        assert_eq!(r.interval, 900);
    }

    #[test]
    fn failure_reason_is_surfaced() {
        assert_eq!(
            AnnounceReply::decode(&encode_failure("unregistered torrent")),
            Err(TrackerWireError::Failure("unregistered torrent".into()))
        );
        assert!(AnnounceReply::decode(b"d5:peers5:abcdei1ee").is_err());
    }

    #[test]
    fn scrape_url_and_round_trip() {
        assert_eq!(
            scrape_url("http://t.example/announce").as_deref(),
            Some("http://t.example/scrape")
        );
        assert_eq!(
            scrape_url("http://t/x/announce.php?k=1").as_deref(),
            Some("http://t/x/scrape.php?k=1")
        );
        assert_eq!(scrape_url("http://t/a"), None);
        let mut files = BTreeMap::new();
        files.insert(
            InfoHash([3; 20]),
            ScrapeEntry {
                complete: 1,
                incomplete: 2,
                downloaded: 3,
            },
        );
        assert_eq!(decode_scrape(&encode_scrape(&files)), Ok(files));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128), s in ".{0,64}") {
            let _ = AnnounceReply::decode(&bytes);
            let _ = decode_scrape(&bytes);
            let _ = AnnounceRequest::from_query(&s);
            let _ = scrape_url(&s);
        }
    }
}
