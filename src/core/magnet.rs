//! Magnet links (BEP 9): `magnet:?xt=urn:btih:HASH&dn=NAME&tr=URL&x.pe=HOST:PORT`.
//!
//! The info-hash is 40 hex characters or 32 base32 ones; `dn` (display
//! name), every `tr` (tracker) and every `x.pe` (peer address) are
//! percent-decoded. Anything else (`xl`, `ws`, `so`, a v2 `urn:btmh`) is
//! ignored, as clients do. What a link may hold is capped, so a pasted or
//! hostile link cannot make us keep much.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::ids::InfoHash;
use super::metainfo::{Metainfo, MAX_TRACKERS, MAX_TRACKER_URL};

/// Longest link we parse (real ones with dozens of trackers are < 4 KiB).
pub const MAX_MAGNET_LEN: usize = 64 * 1024;
/// Most `x.pe` peers kept.
pub const MAX_MAGNET_PEERS: usize = 64;
/// Longest display name kept.
pub const MAX_DISPLAY_NAME: usize = 1024;
/// Longest `x.pe` entry (a bracketed IPv6 address or a host name and port).
const MAX_PEER_LEN: usize = 300;

/// What encoding leaves as is in a value: RFC 3986 unreserved characters.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MagnetError {
    #[error("not a magnet link (it must start with `magnet:?`)")]
    NotMagnet,
    #[error("magnet link is {0} bytes, over the {MAX_MAGNET_LEN} byte limit")]
    TooLong(usize),
    #[error("magnet link has no `xt=urn:btih:` info-hash")]
    MissingInfoHash,
    #[error("magnet info-hash {0:?} is neither 40 hex nor 32 base32 characters")]
    BadInfoHash(String),
    #[error("magnet link names two different info-hashes")]
    ConflictingInfoHash,
    #[error("magnet parameter `{0}` is not valid percent-encoded UTF-8")]
    BadEncoding(String),
    #[error("magnet peer {0:?} is not HOST:PORT (an IPv6 address in brackets)")]
    BadPeer(String),
    #[error(
        "magnet tracker {0:?} is not an http, https or udp URL of at most {MAX_TRACKER_URL} bytes"
    )]
    BadTracker(String),
    #[error("magnet link has more than {max} `{what}` entries")]
    TooMany { what: &'static str, max: usize },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `dn`: a name to show until the metadata arrives (never a path).
    pub name: Option<String>,
    /// `tr`: tracker URLs, each once, in order.
    pub trackers: Vec<String>,
    /// `x.pe`: peers to dial, `host:port` or `[v6]:port`.
    pub peers: Vec<String>,
}

impl Magnet {
    /// Whether `text` looks like a magnet link (for callers choosing
    /// between a path and a link).
    pub fn is_magnet(text: &str) -> bool {
        text.get(..7)
            .is_some_and(|s| s.eq_ignore_ascii_case("magnet:"))
    }

    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        if uri.len() > MAX_MAGNET_LEN {
            return Err(MagnetError::TooLong(uri.len()));
        }
        let query = uri
            .get(..8)
            .filter(|s| s.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &uri[8..])
            .ok_or(MagnetError::NotMagnet)?;
        let mut info_hash = None;
        let mut name = None;
        let mut trackers: Vec<String> = Vec::new();
        let mut peers: Vec<String> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            // `xt.1`, `tr.2`: BEP 9's numbered forms mean the same.
            let base = key.split_once('.').map_or(key, |(b, n)| {
                if n.bytes().all(|c| c.is_ascii_digit()) {
                    b
                } else {
                    key
                }
            });
            match base {
                "xt" => {
                    let value = decode(key, raw, false)?;
                    let Some(hash) = strip_prefix_ci(&value, "urn:btih:") else {
                        continue; // urn:btmh (v2) and others: not ours.
                    };
                    let hash = parse_btih(hash)?;
                    if info_hash.is_some_and(|h| h != hash) {
                        return Err(MagnetError::ConflictingInfoHash);
                    }
                    info_hash = Some(hash);
                }
                "dn" => {
                    let value = decode(key, raw, true)?;
                    let mut value = value.trim().to_string();
                    if value.len() > MAX_DISPLAY_NAME {
                        let mut cut = MAX_DISPLAY_NAME;
                        while !value.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        value.truncate(cut);
                        // What is kept reads back the same.
                        value.truncate(value.trim_end().len());
                    }
                    if !value.is_empty() {
                        name = Some(value);
                    }
                }
                "tr" => {
                    let url = decode(key, raw, false)?;
                    let url = url.trim();
                    if !is_tracker_url(url) {
                        return Err(MagnetError::BadTracker(url.to_string()));
                    }
                    if trackers.iter().any(|t| t == url) {
                        continue;
                    }
                    if trackers.len() == MAX_TRACKERS {
                        return Err(MagnetError::TooMany {
                            what: "tr",
                            max: MAX_TRACKERS,
                        });
                    }
                    trackers.push(url.to_string());
                }
                "x.pe" => {
                    let peer = decode(key, raw, false)?;
                    let peer = peer.trim();
                    if !is_host_port(peer) {
                        return Err(MagnetError::BadPeer(peer.to_string()));
                    }
                    if peers.iter().any(|p| p == peer) {
                        continue;
                    }
                    if peers.len() == MAX_MAGNET_PEERS {
                        return Err(MagnetError::TooMany {
                            what: "x.pe",
                            max: MAX_MAGNET_PEERS,
                        });
                    }
                    peers.push(peer.to_string());
                }
                _ => {}
            }
        }
        Ok(Magnet {
            info_hash: info_hash.ok_or(MagnetError::MissingInfoHash)?,
            name,
            trackers,
            peers,
        })
    }

    /// The link of a torrent: its info-hash, name and trackers.
    pub fn of_metainfo(meta: &Metainfo) -> Magnet {
        Magnet {
            info_hash: meta.info_hash,
            name: Some(meta.name.clone()),
            trackers: meta.tracker_urls(),
            peers: Vec::new(),
        }
    }

    /// The link as text: hex info-hash, then `dn`, `tr` and `x.pe`
    /// percent-encoded; [`Magnet::parse`] reads it back unchanged.
    pub fn to_uri(&self) -> String {
        let mut out = format!("magnet:?xt=urn:btih:{}", self.info_hash.to_hex());
        let mut add = |key: &str, value: &str| {
            out.push('&');
            out.push_str(key);
            out.push('=');
            out.extend(utf8_percent_encode(value, VALUE));
        };
        if let Some(name) = &self.name {
            add("dn", name);
        }
        for t in &self.trackers {
            add("tr", t);
        }
        for p in &self.peers {
            add("x.pe", p);
        }
        out
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    s.get(..prefix.len())
        .filter(|p| p.eq_ignore_ascii_case(prefix))
        .map(|_| &s[prefix.len()..])
}

/// Percent-decodes a value; in `dn`, `+` is a space (form encoding, which
/// many sites use for names).
fn decode(key: &str, raw: &str, plus_is_space: bool) -> Result<String, MagnetError> {
    let spaced;
    let raw = if plus_is_space && raw.contains('+') {
        spaced = raw.replace('+', " ");
        &spaced
    } else {
        raw
    };
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| MagnetError::BadEncoding(key.to_string()))
}

fn parse_btih(text: &str) -> Result<InfoHash, MagnetError> {
    let bad = || MagnetError::BadInfoHash(text.chars().take(64).collect());
    match text.len() {
        40 => InfoHash::from_hex(text).ok_or_else(bad),
        32 => base32_decode(text).map(InfoHash).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// RFC 4648 base32 (either case) of exactly 20 bytes: 32 characters, no
/// padding. Eight lines are not worth a dependency.
fn base32_decode(text: &str) -> Option<[u8; 20]> {
    let mut out = [0u8; 20];
    let (mut acc, mut bits, mut at) = (0u64, 0u32, 0usize);
    for c in text.bytes() {
        let v = match c.to_ascii_uppercase() {
            c @ b'A'..=b'Z' => c - b'A',
            c @ b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        acc = (acc << 5) | u64::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(at)? = (acc >> bits) as u8;
            at += 1;
        }
    }
    (at == 20 && bits == 0).then_some(out)
}

fn is_tracker_url(url: &str) -> bool {
    url.len() <= MAX_TRACKER_URL
        && ["http://", "https://", "udp://"]
            .iter()
            .any(|s| strip_prefix_ci(url, s).is_some_and(|rest| !rest.is_empty()))
}

/// `host:port` with a non-zero numeric port; an IPv6 address in brackets.
fn is_host_port(s: &str) -> bool {
    if s.len() > MAX_PEER_LEN {
        return false;
    }
    if s.parse::<std::net::SocketAddr>().is_ok() {
        return s.rsplit_once(':').is_some_and(|(_, p)| p != "0");
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let name_ok = !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_');
    name_ok && port.parse::<u16>().is_ok_and(|p| p != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn parses_hex_and_base32_names_trackers_and_peers() {
        let m = Magnet::parse(&format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Big+Buck%20Bunny&tr=udp%3A%2F%2Ft.example%3A6969\
             &tr=http://t2/announce&tr=udp%3A%2F%2Ft.example%3A6969\
             &x.pe=10.0.0.1:6881&x.pe=%5B2001:db8::1%5D:51413&x.pe=seed.example:7000&xl=123"
        ))
        .unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.name.as_deref(), Some("Big Buck Bunny"));
        assert_eq!(m.trackers, ["udp://t.example:6969", "http://t2/announce"]);
        assert_eq!(
            m.peers,
            ["10.0.0.1:6881", "[2001:db8::1]:51413", "seed.example:7000"]
        );
        // The same hash in base32, upper and lower case, under `xt.1`.
        let b32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK";
        for text in [b32.to_string(), b32.to_lowercase()] {
            let m = Magnet::parse(&format!("MAGNET:?xt.1=urn:btih:{text}")).unwrap();
            assert_eq!(m.info_hash.to_hex(), HEX);
        }
    }

    #[test]
    fn round_trips_through_to_uri() {
        let m = Magnet {
            info_hash: InfoHash::from_hex(HEX).unwrap(),
            name: Some("a b&c=d/é+".into()),
            trackers: vec!["http://t:1/announce?x=1&y=2".into()],
            peers: vec!["[::1]:5".into(), "127.0.0.1:6".into()],
        };
        let uri = m.to_uri();
        assert!(uri.starts_with(&format!("magnet:?xt=urn:btih:{HEX}&dn=")));
        assert_eq!(Magnet::parse(&uri), Ok(m));
    }

    #[test]
    fn malformed_links_get_clear_errors() {
        let cases: Vec<(String, MagnetError)> = vec![
            ("http://x".into(), MagnetError::NotMagnet),
            ("magnet:?dn=x".into(), MagnetError::MissingInfoHash),
            (
                "magnet:?xt=urn:btih:abc".into(),
                MagnetError::BadInfoHash("abc".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{}", "g".repeat(40)),
                MagnetError::BadInfoHash("g".repeat(40)),
            ),
            (
                format!("magnet:?xt=urn:btih:{}", "1".repeat(32)),
                MagnetError::BadInfoHash("1".repeat(32)),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{}", "0".repeat(40)),
                MagnetError::ConflictingInfoHash,
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&dn=%FF"),
                MagnetError::BadEncoding("dn".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&x.pe=10.0.0.1"),
                MagnetError::BadPeer("10.0.0.1".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&x.pe=::1:5"),
                MagnetError::BadPeer("::1:5".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&x.pe=h:0"),
                MagnetError::BadPeer("h:0".into()),
            ),
            (
                format!("magnet:?xt=urn:btih:{HEX}&tr=file:///etc/passwd"),
                MagnetError::BadTracker("file:///etc/passwd".into()),
            ),
        ];
        for (uri, want) in cases {
            let got = Magnet::parse(&uri);
            assert_eq!(got, Err(want), "{uri}");
            assert!(!got.unwrap_err().to_string().is_empty());
        }
    }

    #[test]
    fn counts_and_lengths_are_capped() {
        let huge = format!(
            "magnet:?xt=urn:btih:{HEX}&dn={}",
            "x".repeat(MAX_MAGNET_LEN)
        );
        assert!(matches!(Magnet::parse(&huge), Err(MagnetError::TooLong(_))));
        let many_tr: String = (0..=MAX_TRACKERS)
            .map(|i| format!("&tr=http://t{i}/a"))
            .collect();
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}{many_tr}")),
            Err(MagnetError::TooMany {
                what: "tr",
                max: MAX_TRACKERS
            })
        );
        let many_pe: String = (0..=MAX_MAGNET_PEERS)
            .map(|i| format!("&x.pe=10.0.0.1:{}", i + 1))
            .collect();
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}{many_pe}")),
            Err(MagnetError::TooMany { what: "x.pe", .. })
        ));
        let long_name = format!("magnet:?xt=urn:btih:{HEX}&dn={}", "é".repeat(2000));
        let name = Magnet::parse(&long_name).unwrap().name.unwrap();
        assert!(name.len() <= MAX_DISPLAY_NAME && name.starts_with('é'));
    }

    proptest::proptest! {
        /// Whatever parses prints back to a link that parses the same.
        #[test]
        fn parsed_links_round_trip(rest in "[a-zA-Z0-9.=&%+:/\\[\\] _~-]{0,120}") {
            let uri = format!("magnet:?xt=urn:btih:{HEX}&{rest}");
            if let Ok(m) = Magnet::parse(&uri) {
                proptest::prop_assert_eq!(Magnet::parse(&m.to_uri()), Ok(m));
            }
        }

        #[test]
        fn printed_links_parse_back(name in "\\PC{1,40}", tracker in "[a-z0-9./:?=&%]{1,40}") {
            let m = Magnet {
                info_hash: InfoHash([7; 20]),
                name: Some(name.trim().to_string()).filter(|n| !n.is_empty()),
                trackers: vec![format!("http://{}", tracker.trim())],
                peers: vec!["[::1]:9".into()],
            };
            proptest::prop_assert_eq!(Magnet::parse(&m.to_uri()), Ok(m));
        }
    }

    #[test]
    fn base32_is_exact() {
        assert_eq!(base32_decode(&"A".repeat(32)), Some([0; 20]));
        assert_eq!(base32_decode(&"7".repeat(32)), Some([0xff; 20]));
        assert_eq!(base32_decode(&"A".repeat(31)), None);
        assert_eq!(base32_decode(&"A".repeat(33)), None);
        assert_eq!(base32_decode(&format!("{}=", "A".repeat(31))), None);
    }
}
