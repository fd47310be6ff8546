//! Tracker vocabulary and the HTTP announce and scrape codec (BEP 3, BEP 23
//! compact peers, BEP 7 `peers6`, BEP 48 scrape): query strings and
//! bencoded replies, both directions, with no sockets.
//!
//! [`AnnounceRequest`], [`AnnounceReply`] and [`ScrapeEntry`] are the one
//! announce, reply and scrape shape of both transports and both sides: the
//! HTTP client and server here, and the BEP 15 codec in `udp_tracker`,
//! which adds only its own framing (connection and transaction ids, key).
//! What only HTTP carries (reply format, the text `key`) is [`HttpParams`].
//! Owns URL building (percent-encoding, query joining, the scrape URL
//! convention) and request validation for the server; it must not know
//! about HTTP itself or the tracker's state.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use crate::core::bencode::{self, Value};
use crate::core::{InfoHash, PeerId};

/// Longest query string the server parses; real announces are ~250 bytes.
pub const MAX_QUERY_LEN: usize = 4096;
/// Most `name=value` pairs in one query (also bounds hashes per scrape).
pub const MAX_QUERY_PAIRS: usize = 64;
/// Longest `key` accepted; clients send 8 or so characters.
pub const MAX_KEY_LEN: usize = 64;

/// Every byte but RFC 3986's unreserved ones (`A-Z a-z 0-9 - _ . ~`) is
/// escaped: binary `info_hash`/`peer_id` bytes must never pass raw.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

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

/// What a client sends in an announce, over either transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Option<Event>,
    /// `None` asks for the tracker's default.
    pub numwant: Option<u32>,
}

/// The announce parameters only HTTP carries: how the reply should look,
/// and the client's `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpParams {
    pub compact: bool,
    pub no_peer_id: bool,
    /// Lets a tracker recognise a client whose IP changed (BEP 7); opaque.
    pub key: Option<String>,
}

impl Default for HttpParams {
    /// What the server assumes when the query does not say.
    fn default() -> Self {
        HttpParams {
            compact: true,
            no_peer_id: false,
            key: None,
        }
    }
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
    /// The tracker refused the request and said why (`failure reason`).
    #[error("tracker said: {0}")]
    Failure(String),
    /// A reply that is not bencode at all.
    #[error("reply is not valid bencode: {0}")]
    Bencode(#[from] bencode::DecodeError),
    /// A reply that is bencode but lacks a field or has it with a bad type.
    #[error("reply is missing or has a bad `{0}`")]
    Field(&'static str),
    /// A query string that cannot be split into pairs (server side).
    #[error("bad request: {0}")]
    MalformedQuery(&'static str),
    /// A required request parameter is absent (server side).
    #[error("bad request: missing `{0}`")]
    MissingParam(&'static str),
    /// A request parameter is present but invalid (server side).
    #[error("bad request: `{param}` {problem}")]
    InvalidParam {
        param: &'static str,
        problem: &'static str,
    },
}

/// Percent-encodes every byte outside RFC 3986's unreserved set, with
/// upper-case hex.
pub fn percent_encode(bytes: &[u8]) -> String {
    percent_encoding::percent_encode(bytes, ESCAPED).to_string()
}

/// Decodes `%XX` escapes (either case of hex); `None` on a malformed
/// escape (the crate would pass it through as text). A `+` stays a `+`:
/// binary fields are always fully escaped by real clients, and treating `+`
/// as a form-encoded space would corrupt an info-hash holding a raw 0x2B.
pub fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let well_formed = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || b.get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    well_formed.then(|| percent_encoding::percent_decode(b).collect())
}

/// Appends `query` to `url`, after `?` or `&` as the URL needs (trackers
/// often carry their own parameters, e.g. a passkey), keeping any
/// `#fragment` out of the request.
pub fn with_query(url: &str, query: &str) -> String {
    let url = url.split_once('#').map_or(url, |(before, _)| before);
    if query.is_empty() {
        return url.to_string();
    }
    let sep = match url.find('?') {
        None => "?",
        Some(_) if url.ends_with('?') || url.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{url}{sep}{query}")
}

/// `name=value&...` pairs, percent-decoded; bounded in length and count.
pub fn parse_query(query: &str) -> Result<Vec<(String, Vec<u8>)>, TrackerWireError> {
    if query.len() > MAX_QUERY_LEN {
        return Err(TrackerWireError::MalformedQuery("query string too long"));
    }
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if out.len() >= MAX_QUERY_PAIRS {
            return Err(TrackerWireError::MalformedQuery("too many parameters"));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k)
            .and_then(|k| String::from_utf8(k).ok())
            .ok_or(TrackerWireError::MalformedQuery("bad percent-escape"))?;
        let v = percent_decode(v).ok_or(TrackerWireError::MalformedQuery("bad percent-escape"))?;
        out.push((k, v));
    }
    Ok(out)
}

/// The first value of `name`, as in most trackers (repeats are ignored).
fn first<'a>(params: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

fn twenty_bytes(value: &[u8], param: &'static str) -> Result<[u8; 20], TrackerWireError> {
    <[u8; 20]>::try_from(value).map_err(|_| TrackerWireError::InvalidParam {
        param,
        problem: "must be exactly 20 bytes",
    })
}

fn decimal(value: &[u8], param: &'static str) -> Result<u64, TrackerWireError> {
    // Digits only: `str::parse` would also take a leading `+`.
    let invalid = TrackerWireError::InvalidParam {
        param,
        problem: "must be a non-negative integer",
    };
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(invalid);
    }
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(invalid)
}

fn flag(
    value: Option<&[u8]>,
    param: &'static str,
    default: bool,
) -> Result<bool, TrackerWireError> {
    match value {
        None => Ok(default),
        Some(b"0") => Ok(false),
        Some(b"1") => Ok(true),
        Some(_) => Err(TrackerWireError::InvalidParam {
            param,
            problem: "must be 0 or 1",
        }),
    }
}

/// The announce query string (without `?`).
pub fn announce_query(req: &AnnounceRequest, http: &HttpParams) -> String {
    let mut q = format!(
        "info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact={}",
        percent_encode(&req.info_hash.0),
        percent_encode(&req.peer_id.0),
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        u8::from(http.compact)
    );
    if let Some(e) = req.event {
        q.push_str("&event=");
        q.push_str(e.as_str());
    }
    if let Some(n) = req.numwant {
        q.push_str(&format!("&numwant={n}"));
    }
    if http.no_peer_id {
        q.push_str("&no_peer_id=1");
    }
    if let Some(key) = &http.key {
        q.push_str("&key=");
        q.push_str(&percent_encode(key.as_bytes()));
    }
    q
}

/// Parses and validates an announce query string (server side), field by
/// field. Unknown parameters, `ip` included, are ignored: the server takes
/// the address from the connection, never from the request.
pub fn parse_announce_query(
    query: &str,
) -> Result<(AnnounceRequest, HttpParams), TrackerWireError> {
    let params = parse_query(query)?;
    let get = |name| first(&params, name);
    let required = |name| get(name).ok_or(TrackerWireError::MissingParam(name));
    let counter = |name| get(name).map_or(Ok(0), |v| decimal(v, name));

    let info_hash = InfoHash(twenty_bytes(required("info_hash")?, "info_hash")?);
    let peer_id = PeerId(twenty_bytes(required("peer_id")?, "peer_id")?);
    let port = decimal(required("port")?, "port")?;
    let port =
        u16::try_from(port)
            .ok()
            .filter(|&p| p != 0)
            .ok_or(TrackerWireError::InvalidParam {
                param: "port",
                problem: "must be 1-65535",
            })?;
    let event = match get("event") {
        None | Some(b"") | Some(b"empty") => None,
        Some(b"started") => Some(Event::Started),
        Some(b"completed") => Some(Event::Completed),
        Some(b"stopped") => Some(Event::Stopped),
        Some(_) => {
            return Err(TrackerWireError::InvalidParam {
                param: "event",
                problem: "must be started, completed, stopped or empty",
            })
        }
    };
    let numwant = match get("numwant") {
        None => None,
        Some(v) => Some(
            u32::try_from(decimal(v, "numwant")?).unwrap_or(u32::MAX), // capped later anyway
        ),
    };
    // The bound applies to the text kept: bytes that are not UTF-8 grow
    // (U+FFFD is three bytes), and what we keep must stay a valid request
    // when encoded again.
    let key = match get("key").map(String::from_utf8_lossy) {
        None => None,
        Some(k) if k.len() <= MAX_KEY_LEN => Some(k.into_owned()),
        Some(_) => {
            return Err(TrackerWireError::InvalidParam {
                param: "key",
                problem: "is too long",
            })
        }
    };
    let request = AnnounceRequest {
        info_hash,
        peer_id,
        port,
        uploaded: counter("uploaded")?,
        downloaded: counter("downloaded")?,
        left: counter("left")?,
        event,
        numwant,
    };
    let http = HttpParams {
        compact: flag(get("compact"), "compact", true)?,
        no_peer_id: flag(get("no_peer_id"), "no_peer_id", false)?,
        key,
    };
    Ok((request, http))
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
                let octets: [u8; 16] = c[..16].try_into().expect("chunk is 18 bytes");
                Ipv6Addr::from(octets).into()
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

/// One entry of the dictionary form; `None` for entries we cannot use (a
/// host name instead of an IP, port 0, wrong types) so one bad entry does
/// not cost the whole reply.
fn dict_peer(entry: &Value) -> Option<PeerEntry> {
    let ip: IpAddr = entry.get("ip")?.as_str()?.parse().ok()?;
    let port = u16::try_from(entry.get("port")?.as_int()?).ok()?;
    let peer_id = entry
        .get("peer id")
        .and_then(Value::as_bytes)
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .map(PeerId);
    (port != 0).then_some(PeerEntry {
        addr: SocketAddr::new(ip, port),
        peer_id,
    })
}

fn failure_text(reason: &Value) -> String {
    String::from_utf8_lossy(reason.as_bytes().unwrap_or(b"(not a string)")).into_owned()
}

impl AnnounceReply {
    /// Decodes a reply; a `failure reason` becomes `TrackerWireError::Failure`.
    pub fn decode(bytes: &[u8]) -> Result<AnnounceReply, TrackerWireError> {
        // Prefix: some trackers append a newline or padding after the dict.
        let (v, _) = bencode::decode_prefix(bytes)?;
        if let Some(reason) = v.get("failure reason") {
            return Err(TrackerWireError::Failure(failure_text(reason)));
        }
        if v.as_dict().is_none() {
            return Err(TrackerWireError::Field("reply"));
        }
        let int = |k: &'static str| match v.get(k) {
            None => Ok(None),
            Some(Value::Int(i)) if *i >= 0 => Ok(Some(*i as u64)),
            Some(_) => Err(TrackerWireError::Field(k)),
        };
        let seconds = |s: u64| u32::try_from(s).unwrap_or(u32::MAX);
        // An interval that is missing, negative or not a number does not
        // cost the reply its peers: 0 says "none usable", and the caller's
        // schedule picks the wait.
        let lenient = |k: &'static str| match v.get(k) {
            Some(Value::Int(i)) => u64::try_from(*i).unwrap_or(0),
            _ => 0,
        };
        let interval = lenient("interval");
        let mut peers = match v.get("peers") {
            Some(Value::Bytes(b)) => compact_peers(b, false)?,
            Some(Value::List(list)) => list.iter().filter_map(dict_peer).collect(),
            None => vec![],
            Some(_) => return Err(TrackerWireError::Field("peers")),
        };
        match v.get("peers6") {
            Some(Value::Bytes(b)) => peers.extend(compact_peers(b, true)?),
            None => {}
            Some(_) => return Err(TrackerWireError::Field("peers6")),
        }
        Ok(AnnounceReply {
            interval: seconds(interval),
            min_interval: Some(lenient("min interval"))
                .filter(|&m| m > 0)
                .map(seconds),
            complete: int("complete")?,
            incomplete: int("incomplete")?,
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
        let mut d: Vec<(&str, Value)> = vec![("interval", Value::Int(self.interval.into()))];
        if let Some(m) = self.min_interval {
            d.push(("min interval", Value::Int(m.into())));
        }
        if let Some(c) = self.complete {
            d.push(("complete", count(c)));
        }
        if let Some(i) = self.incomplete {
            d.push(("incomplete", count(i)));
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
                        ("port", Value::Int(p.addr.port().into())),
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
/// start with `announce`, which becomes `scrape`; anything after it and the
/// query are kept).
pub fn scrape_url(announce: &str) -> Option<String> {
    let announce = announce.split_once('#').map_or(announce, |(b, _)| b);
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

/// `info_hash=..&info_hash=..`; empty for "every torrent".
pub fn scrape_query(hashes: &[InfoHash]) -> String {
    hashes
        .iter()
        .map(|h| format!("info_hash={}", percent_encode(&h.0)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The info-hashes of a scrape request (server side); each must be exactly
/// 20 bytes, and there are at most [`MAX_QUERY_PAIRS`]. Empty means all.
pub fn parse_scrape_query(query: &str) -> Result<Vec<InfoHash>, TrackerWireError> {
    parse_query(query)?
        .iter()
        .filter(|(k, _)| k == "info_hash")
        .map(|(_, v)| twenty_bytes(v, "info_hash").map(InfoHash))
        .collect()
}

/// A count as a bencoded integer (saturating: bencode here is `i64`).
fn count(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

pub fn encode_scrape(files: &BTreeMap<InfoHash, ScrapeEntry>) -> Vec<u8> {
    let files = files
        .iter()
        .map(|(h, e)| {
            (
                h.0.to_vec(),
                Value::dict([
                    ("complete", count(e.complete)),
                    ("incomplete", count(e.incomplete)),
                    ("downloaded", count(e.downloaded)),
                ]),
            )
        })
        .collect::<Vec<_>>();
    bencode::encode(&Value::dict([("files", Value::dict(files))]))
}

/// Decodes a scrape reply. Entries whose key is not a 20-byte hash are
/// skipped; a missing count reads as 0, a negative or non-integer one is an
/// error.
pub fn decode_scrape(bytes: &[u8]) -> Result<BTreeMap<InfoHash, ScrapeEntry>, TrackerWireError> {
    let (v, _) = bencode::decode_prefix(bytes)?;
    if let Some(reason) = v.get("failure reason") {
        return Err(TrackerWireError::Failure(failure_text(reason)));
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
        let n = |f: &'static str| match e.get(f) {
            None => Ok(0),
            Some(Value::Int(i)) if *i >= 0 => Ok(*i as u64),
            Some(_) => Err(TrackerWireError::Field(f)),
        };
        out.insert(
            InfoHash(h),
            ScrapeEntry {
                complete: n("complete")?,
                incomplete: n("incomplete")?,
                downloaded: n("downloaded")?,
            },
        );
    }
    Ok(out)
}

/// An announce whose fields all differ, so a swap shows (for the codecs'
/// and transports' tests).
#[cfg(test)]
pub(crate) fn test_announce() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([0xAA; 20]),
        peer_id: PeerId([0xBB; 20]),
        port: 6881,
        uploaded: 3,
        downloaded: 1,
        left: 2,
        event: Some(Event::Started),
        numwant: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An announce with its HTTP-only parameters, as the server parses it.
    type Query = (AnnounceRequest, HttpParams);

    fn to_query((req, http): &Query) -> String {
        announce_query(req, http)
    }

    fn req() -> Query {
        (
            AnnounceRequest {
                info_hash: InfoHash([0x12; 20]),
                peer_id: PeerId(*b"-JC0001-abcdef012345"),
                port: 6881,
                uploaded: 1,
                downloaded: 2,
                left: 3,
                event: Some(Event::Started),
                numwant: Some(50),
            },
            HttpParams {
                compact: true,
                no_peer_id: false,
                key: Some("1a2b3c4d".into()),
            },
        )
    }

    #[test]
    fn query_string_has_the_exact_expected_bytes() {
        let mut r = req();
        r.0.info_hash = InfoHash(*b"\x00\xff ab+/%~-._01234567");
        assert_eq!(
            to_query(&r),
            "info_hash=%00%FF%20ab%2B%2F%25~-._01234567\
             &peer_id=-JC0001-abcdef012345&port=6881&uploaded=1&downloaded=2&left=3\
             &compact=1&event=started&numwant=50&key=1a2b3c4d"
        );
    }

    #[test]
    fn request_round_trips_through_the_query_string() {
        let r = req();
        assert_eq!(parse_announce_query(&to_query(&r)), Ok(r));
    }

    /// Found by the `tracker_request` fuzz target: a key of 22 bytes that
    /// are not UTF-8 became 66 bytes of U+FFFD, over the key limit, so the
    /// request we had accepted did not parse once encoded again.
    #[test]
    fn a_key_that_is_not_utf8_is_bounded_as_kept() {
        let q = to_query(&req());
        let at = q.find("&key=").expect("the request has a key");
        let base = &q[..at];
        let fits = format!("{base}&key={}", "%ab".repeat(MAX_KEY_LEN / 3));
        let r = parse_announce_query(&fits).unwrap();
        assert_eq!(parse_announce_query(&to_query(&r)), Ok(r));
        let grows = format!("{base}&key={}", "%ab".repeat(MAX_KEY_LEN / 3 + 1));
        assert!(parse_announce_query(&grows).is_err());
    }

    #[test]
    fn defaults_and_ignored_parameters() {
        let q = "info_hash=%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12%12\
                 &peer_id=-JC0001-abcdef012345&port=1&ip=10.9.9.9&supportcrypto=1";
        let (r, http) = parse_announce_query(q).unwrap();
        assert_eq!((r.uploaded, r.downloaded, r.left), (0, 0, 0));
        assert_eq!((r.event, r.numwant), (None, None));
        assert_eq!(http, HttpParams::default());
        assert!(http.compact && !http.no_peer_id && http.key.is_none());
        assert!(parse_announce_query(&q.replace("port=1", "port=65535")).is_ok());
    }

    #[test]
    fn each_bad_field_is_named() {
        /// What went wrong, without the prose.
        fn kind(e: &TrackerWireError) -> String {
            match e {
                TrackerWireError::InvalidParam { param, .. } => format!("invalid {param}"),
                TrackerWireError::MissingParam(param) => format!("missing {param}"),
                TrackerWireError::MalformedQuery(_) => "malformed".into(),
                other => format!("{other:?}"),
            }
        }
        let q = to_query(&req());
        let long_key = format!("key={}", "k".repeat(MAX_KEY_LEN + 1));
        for (query, expected) in [
            (q.replace("port=6881", "port=0"), "invalid port"),
            (q.replace("port=6881", "port=65536"), "invalid port"),
            (q.replace("port=6881", "port=+80"), "invalid port"),
            (q.replace("port=6881&", ""), "missing port"),
            (
                q.replace("info_hash=%12", "info_hash="),
                "invalid info_hash",
            ),
            (q.replace("info_hash=", "x="), "missing info_hash"),
            (q.replace("peer_id=-", "peer_id="), "invalid peer_id"),
            (
                q.replace("event=started", "event=exploded"),
                "invalid event",
            ),
            (q.replace("left=3", "left=-3"), "invalid left"),
            (q.replace("uploaded=1", "uploaded=1e3"), "invalid uploaded"),
            (
                q.replace("downloaded=2", "downloaded=99999999999999999999"),
                "invalid downloaded",
            ),
            (q.replace("numwant=50", "numwant=-1"), "invalid numwant"),
            (q.replace("compact=1", "compact=yes"), "invalid compact"),
            (q.replace("key=1a2b3c4d", &long_key), "invalid key"),
            ("info_hash=%zz".into(), "malformed"),
            ("a=%4".into(), "malformed"),
            ("a=%+1".into(), "malformed"),
            ("a&".repeat(MAX_QUERY_PAIRS + 1), "malformed"),
            ("a".repeat(MAX_QUERY_LEN + 1), "malformed"),
            (String::new(), "missing info_hash"),
        ] {
            let err = parse_announce_query(&query).unwrap_err();
            assert_eq!(kind(&err), expected, "{query}");
        }
    }

    /// Every byte but the 66 unreserved ones is escaped, upper-case: the
    /// bytes the hand-written encoder sent before the crate took over.
    #[test]
    fn percent_encoding_escapes_all_but_unreserved_bytes() {
        for b in 0..=255u8 {
            let unreserved = b.is_ascii_alphanumeric() || b"-_.~".contains(&b);
            let expected = if unreserved {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            };
            assert_eq!(percent_encode(&[b]), expected);
            assert_eq!(percent_decode(&expected), Some(vec![b]));
            assert_eq!(percent_decode(&format!("%{b:02x}")), Some(vec![b]));
        }
    }

    #[test]
    fn percent_decoding_is_strict_and_keeps_plus() {
        assert_eq!(percent_decode("a%2Bb+c%7e").unwrap(), b"a+b+c~");
        assert_eq!(percent_decode("%aB%Ab").unwrap(), [0xAB, 0xAB]);
        assert_eq!(percent_decode("%%41"), None);
        assert_eq!(percent_decode("%41%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%g0"), None);
        assert_eq!(percent_decode("%-1"), None);
    }

    #[test]
    fn queries_join_urls_with_and_without_parameters() {
        assert_eq!(
            with_query("http://t/announce", "a=1"),
            "http://t/announce?a=1"
        );
        assert_eq!(
            with_query("http://t/announce?pk=x", "a=1"),
            "http://t/announce?pk=x&a=1"
        );
        assert_eq!(
            with_query("http://t/announce?", "a=1"),
            "http://t/announce?a=1"
        );
        assert_eq!(
            with_query("http://t/announce?pk=x&", "a=1"),
            "http://t/announce?pk=x&a=1"
        );
        assert_eq!(
            with_query("http://t/a?pk=x#frag", "a=1"),
            "http://t/a?pk=x&a=1"
        );
        assert_eq!(with_query("http://t/a", ""), "http://t/a");
    }

    #[test]
    fn compact_reply_decodes_from_known_bytes() {
        let known = b"d8:completei2e10:incompletei3e8:intervali900e12:min intervali60e\
                      5:peers12:\x0a\x00\x00\x01\x1a\xe1\x7f\x00\x00\x01\x00\x00\
                      6:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x50\
                      15:warning message4:slowe\n";
        let r = AnnounceReply::decode(known).unwrap();
        assert_eq!(
            r,
            AnnounceReply {
                interval: 900,
                min_interval: Some(60),
                complete: Some(2),
                incomplete: Some(3),
                warning: Some("slow".into()),
                // The port-0 entry is dropped.
                peers: vec![
                    PeerEntry {
                        addr: "10.0.0.1:6881".parse().unwrap(),
                        peer_id: None
                    },
                    PeerEntry {
                        addr: "[::1]:80".parse().unwrap(),
                        peer_id: None
                    },
                ],
            }
        );
    }

    #[test]
    fn dictionary_reply_decodes_and_skips_unusable_entries() {
        let known = b"d8:intervali60e5:peersl\
                      d2:ip7:1.2.3.47:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti5678ee\
                      d2:ip9:host.name4:porti1ee\
                      d2:ip7:1.2.3.44:porti70000ee\
                      d2:ip3:::14:porti80ee\
                      ee";
        let r = AnnounceReply::decode(known).unwrap();
        assert_eq!(
            r.peers,
            vec![
                PeerEntry {
                    addr: "1.2.3.4:5678".parse().unwrap(),
                    peer_id: Some(PeerId([b'a'; 20]))
                },
                PeerEntry {
                    addr: "[::1]:80".parse().unwrap(),
                    peer_id: None
                },
            ]
        );
    }

    #[test]
    fn encodings_have_the_exact_expected_bytes() {
        let reply = AnnounceReply {
            interval: 60,
            min_interval: None,
            complete: Some(1),
            incomplete: Some(0),
            warning: None,
            peers: vec![PeerEntry {
                addr: "10.0.0.1:6881".parse().unwrap(),
                peer_id: Some(PeerId([b'p'; 20])),
            }],
        };
        assert_eq!(
            reply.encode(true, false),
            b"d8:completei1e10:incompletei0e8:intervali60e5:peers6:\x0a\x00\x00\x01\x1a\xe1e"
        );
        assert_eq!(
            reply.encode(false, false),
            b"d8:completei1e10:incompletei0e8:intervali60e5:peersl\
              d2:ip8:10.0.0.17:peer id20:pppppppppppppppppppp4:porti6881eeee"
                .to_vec()
        );
        assert_eq!(
            reply.encode(false, true),
            b"d8:completei1e10:incompletei0e8:intervali60e5:peersl\
              d2:ip8:10.0.0.14:porti6881eeee"
                .to_vec()
        );
        assert_eq!(encode_failure("no"), b"d14:failure reason2:noe");
    }

    #[test]
    fn an_unusable_interval_keeps_the_peers() {
        let peer = b"\x0a\x00\x00\x01\x1a\xe1";
        for (body, interval, min) in [
            (&b"d5:peers6:"[..], 0, None), // no interval
            (b"d8:intervali-1e12:min intervali-5e5:peers6:", 0, None), // negative
            (b"d8:interval2:xx5:peers6:", 0, None), // not a number
            (b"d8:intervali9223372036854775807e5:peers6:", u32::MAX, None), // 2^63 - 1
            (b"d8:intervali0e12:min intervali30e5:peers6:", 0, Some(30)),
        ] {
            let mut bytes = body.to_vec();
            bytes.extend_from_slice(peer);
            bytes.push(b'e');
            let r = AnnounceReply::decode(&bytes).unwrap();
            assert_eq!((r.interval, r.min_interval), (interval, min));
            assert_eq!(r.peers.len(), 1, "{}", String::from_utf8_lossy(&bytes));
        }
    }

    #[test]
    fn bad_replies_are_refused() {
        for bad in [
            &b"d5:peers5:abcdei1ee"[..], // peers not a multiple of 6, and no interval
            b"d8:intervali60e5:peers5:abcdee", // peers not a multiple of 6
            b"d8:intervali60e6:peers65:abcdee", // peers6 not a multiple of 18
            b"d8:intervali60e8:completei-1ee", // negative count
            b"d8:intervali60e5:peersi1ee", // peers of the wrong type
            b"li1ee",                    // not a dictionary
            b"<html>",
            b"",
        ] {
            assert!(
                AnnounceReply::decode(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn failure_reason_is_surfaced() {
        assert_eq!(
            AnnounceReply::decode(&encode_failure("unregistered torrent")),
            Err(TrackerWireError::Failure("unregistered torrent".into()))
        );
        assert_eq!(
            decode_scrape(&encode_failure("no scrape")),
            Err(TrackerWireError::Failure("no scrape".into()))
        );
    }

    #[test]
    fn scrape_url_follows_the_convention() {
        for (announce, scrape) in [
            ("http://t.example/announce", Some("http://t.example/scrape")),
            (
                "http://t/x/announce.php?k=1",
                Some("http://t/x/scrape.php?k=1"),
            ),
            ("http://t/announce?a=/b#f", Some("http://t/scrape?a=/b")),
            ("http://t/a", None),
            ("http://t/announce/x", None),
            ("http://t/x/annonce", None),
            ("nothing", None),
        ] {
            assert_eq!(scrape_url(announce).as_deref(), scrape, "{announce}");
        }
    }

    #[test]
    fn scrape_request_and_reply_have_the_expected_bytes() {
        let hashes = [InfoHash([0xaa; 20]), InfoHash([b'b'; 20])];
        let q = scrape_query(&hashes);
        assert_eq!(
            q,
            format!(
                "info_hash={}&info_hash={}",
                "%AA".repeat(20),
                "b".repeat(20)
            )
        );
        assert_eq!(parse_scrape_query(&q), Ok(hashes.to_vec()));
        assert_eq!(parse_scrape_query(""), Ok(vec![]));
        assert!(parse_scrape_query("info_hash=short").is_err());

        let files = BTreeMap::from([(
            InfoHash([b'h'; 20]),
            ScrapeEntry {
                complete: 1,
                incomplete: 2,
                downloaded: 3,
            },
        )]);
        assert_eq!(
            encode_scrape(&files),
            b"d5:filesd20:hhhhhhhhhhhhhhhhhhhhd8:completei1e10:downloadedi3e10:incompletei2eeee"
        );
        assert!(decode_scrape(b"d5:filesd20:hhhhhhhhhhhhhhhhhhhhd8:completei-1eeee").is_err());
        // Short keys are skipped, missing counts are zero.
        let lenient = decode_scrape(b"d5:filesd1:xde20:hhhhhhhhhhhhhhhhhhhhdeee").unwrap();
        assert_eq!(lenient.len(), 1);
        assert_eq!(lenient[&InfoHash([b'h'; 20])], ScrapeEntry::default());
    }

    fn addr_strategy() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), 1..=u16::MAX)
                .prop_map(|(ip, port)| SocketAddr::new(ip.into(), port)),
            (any::<[u8; 16]>(), 1..=u16::MAX)
                .prop_map(|(ip, port)| SocketAddr::new(ip.into(), port)),
        ]
    }

    fn request_strategy() -> impl Strategy<Value = Query> {
        (
            (any::<[u8; 20]>(), any::<[u8; 20]>(), 1..=u16::MAX),
            (any::<u64>(), any::<u64>(), any::<u64>()),
            proptest::option::of(prop_oneof![
                Just(Event::Started),
                Just(Event::Completed),
                Just(Event::Stopped)
            ]),
            (
                proptest::option::of(any::<u32>()),
                any::<bool>(),
                any::<bool>(),
            ),
            proptest::option::of("[ -~]{0,64}"),
        )
            .prop_map(
                |(
                    (h, id, port),
                    (uploaded, downloaded, left),
                    event,
                    (numwant, compact, no_peer_id),
                    key,
                )| {
                    (
                        AnnounceRequest {
                            info_hash: InfoHash(h),
                            peer_id: PeerId(id),
                            port,
                            uploaded,
                            downloaded,
                            left,
                            event,
                            numwant,
                        },
                        HttpParams {
                            compact,
                            no_peer_id,
                            key,
                        },
                    )
                },
            )
    }

    fn reply_strategy() -> impl Strategy<Value = AnnounceReply> {
        (
            any::<u32>(),
            proptest::option::of(any::<u32>()),
            proptest::option::of(0..=i64::MAX as u64),
            proptest::option::of(0..=i64::MAX as u64),
            proptest::option::of("\\PC{0,20}"),
            proptest::collection::vec(
                (addr_strategy(), proptest::option::of(any::<[u8; 20]>())),
                0..20,
            ),
        )
            .prop_map(
                |(interval, min_interval, complete, incomplete, warning, peers)| AnnounceReply {
                    interval,
                    min_interval,
                    complete,
                    incomplete,
                    warning,
                    peers: peers
                        .into_iter()
                        .map(|(addr, id)| PeerEntry {
                            addr,
                            peer_id: id.map(PeerId),
                        })
                        .collect(),
                },
            )
    }

    proptest! {
        #[test]
        fn requests_round_trip(r in request_strategy()) {
            prop_assert_eq!(parse_announce_query(&to_query(&r)), Ok(r));
        }

        #[test]
        fn dictionary_replies_round_trip(r in reply_strategy()) {
            prop_assert_eq!(AnnounceReply::decode(&r.encode(false, false)), Ok(r));
        }

        #[test]
        fn compact_replies_keep_addresses_v4_then_v6(r in reply_strategy()) {
            let decoded = AnnounceReply::decode(&r.encode(true, false)).unwrap();
            let (v4, v6): (Vec<_>, Vec<_>) = r.peers.iter().map(|p| p.addr).partition(SocketAddr::is_ipv4);
            let got: Vec<_> = decoded.peers.iter().map(|p| p.addr).collect();
            prop_assert_eq!(got, [v4, v6].concat());
            prop_assert!(decoded.peers.iter().all(|p| p.peer_id.is_none()));
            prop_assert_eq!(decoded.interval, r.interval);
        }

        #[test]
        fn scrapes_round_trip(files in proptest::collection::btree_map(
            any::<[u8; 20]>().prop_map(InfoHash),
            (0..=i64::MAX as u64, 0..=i64::MAX as u64, 0..=i64::MAX as u64)
                .prop_map(|(complete, incomplete, downloaded)| ScrapeEntry { complete, incomplete, downloaded }),
            0..10,
        )) {
            prop_assert_eq!(decode_scrape(&encode_scrape(&files)), Ok(files.clone()));
            let hashes: Vec<InfoHash> = files.keys().copied().collect();
            prop_assert_eq!(parse_scrape_query(&scrape_query(&hashes)), Ok(hashes));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256), s in "\\PC{0,128}") {
            let _ = AnnounceReply::decode(&bytes);
            let _ = decode_scrape(&bytes);
            let text = String::from_utf8_lossy(&bytes);
            for input in [s.as_str(), &text] {
                let _ = parse_announce_query(input);
                let _ = parse_scrape_query(input);
                let _ = scrape_url(input);
                let _ = with_query(input, input);
                let _ = percent_decode(input);
            }
        }
    }
}
