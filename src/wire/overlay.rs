//! The overlay's wire format: JSON messages, each framed by a 4-byte
//! big-endian length. Pure codec: frames are checked against
//! [`MAX_FRAME`] before a byte of the body is read, then decoded with serde
//! and validated field by field. Ids are decoded here, once: an `info_hash`
//! or `peer_id` that is not 40 hex characters fails the decode, and the rest
//! of the overlay only sees [`InfoHash`] and [`PeerId`] (encoded back as
//! lowercase hex). Documented with examples in docs/OVERLAY.md.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::core::{InfoHash, PeerId};
use crate::wire::sealed::{self, Context, Keyring, Nonce, SealError};

/// Largest frame accepted (a gossip delta of a few thousand entries).
pub const MAX_FRAME: u32 = 1 << 20;
/// Most entries one gossip message may carry.
pub const MAX_ENTRIES: usize = 2000;
/// Most members one message may carry.
pub const MAX_MEMBERS: usize = 64;
/// Most providers a lookup returns, whatever it asks for.
pub const MAX_LIMIT: usize = 200;
/// Deepest BFS discovery a node will serve.
pub const MAX_TTL: u8 = 3;

/// A provider of a torrent, as lookups and gossip carry it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderMeta {
    /// The provider's peerwire address.
    pub addr: SocketAddr,
    /// 40 hex characters on the wire.
    #[serde(with = "hex_peer_id")]
    pub peer_id: PeerId,
    /// Bytes the provider still lacks (0 = seed).
    pub left: u64,
    /// Unix milliseconds of the provider's latest announce.
    pub last_seen: u64,
    /// A withdrawal ("stopped"); hidden from lookups, kept to spread.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gone: bool,
    /// The overlay node the provider announced through (its own overlay
    /// address): when that node is found dead, its providers are withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<SocketAddr>,
}

/// A provider entry with its torrent, as gossip carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    #[serde(with = "hex_info_hash")]
    pub info_hash: InfoHash,
    #[serde(flatten)]
    pub meta: ProviderMeta,
}

/// 20-byte ids as 40 hex characters (either case in, lowercase out).
fn hex_id<'de, D: serde::Deserializer<'de>>(
    d: D,
    what: &'static str,
) -> Result<[u8; 20], D::Error> {
    let text = String::deserialize(d)?;
    crate::core::ids::from_hex(&text)
        .and_then(|v| <[u8; 20]>::try_from(v).ok())
        .ok_or_else(|| serde::de::Error::custom(what))
}

mod hex_info_hash {
    use super::*;
    pub fn serialize<S: serde::Serializer>(h: &InfoHash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&h.to_hex())
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<InfoHash, D::Error> {
        hex_id(d, "info_hash must be 40 hex characters").map(InfoHash)
    }
}

mod hex_peer_id {
    use super::*;
    pub fn serialize<S: serde::Serializer>(p: &PeerId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::core::ids::to_hex(&p.0))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PeerId, D::Error> {
        hex_id(d, "peer_id must be 40 hex characters").map(PeerId)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// A node announces itself as a provider of `info_hash`. The receiver
    /// records the connection's source IP with `port`.
    Announce {
        #[serde(with = "hex_info_hash")]
        info_hash: InfoHash,
        #[serde(with = "hex_peer_id")]
        peer_id: PeerId,
        port: u16,
        left: u64,
        /// The sender's overlay port (so it can be health-checked).
        #[serde(default)]
        overlay_port: Option<u16>,
    },
    /// The sender stops providing `info_hash` on `port`.
    Withdraw {
        #[serde(with = "hex_info_hash")]
        info_hash: InfoHash,
        port: u16,
    },
    /// Who provides `info_hash`? `local_only` asks for the store only (what
    /// nodes ask each other); otherwise the receiver also asks peers.
    Lookup {
        #[serde(with = "hex_info_hash")]
        info_hash: InfoHash,
        limit: usize,
        #[serde(default)]
        local_only: bool,
    },
    Providers {
        #[serde(with = "hex_info_hash")]
        info_hash: InfoHash,
        providers: Vec<ProviderMeta>,
    },
    /// Anti-entropy push–pull: the sender's overlay port, its store digest,
    /// the entries that changed since it last synced with the receiver, and
    /// a sample of members. `full` asks the receiver for everything.
    Sync {
        overlay_port: u16,
        digest: u64,
        entries: Vec<Entry>,
        members: Vec<SocketAddr>,
        #[serde(default)]
        full: bool,
    },
    /// The reply to `Sync`: the receiver's digest, and entries the sender
    /// lacks (all when asked for `full` or when digests still differ).
    SyncReply {
        digest: u64,
        entries: Vec<Entry>,
        members: Vec<SocketAddr>,
    },
    /// BFS discovery: members of the receiver (ttl is advisory and capped).
    Members {
        ttl: u8,
    },
    MemberList {
        members: Vec<SocketAddr>,
    },
    /// Health check; the reply says the sender's address as seen here.
    Ping {
        #[serde(default)]
        overlay_port: Option<u16>,
    },
    Pong {
        observed: SocketAddr,
    },
    Ok {
        observed: SocketAddr,
    },
    /// Counters (for benchmarks and debugging).
    Stats,
    StatsReply {
        members: usize,
        providers: usize,
        bytes_in: u64,
        bytes_out: u64,
        messages: u64,
        /// Frames dropped because they did not open under the swarm key
        /// (or were stale or replayed).
        #[serde(default)]
        auth_failures: u64,
    },
    Error {
        message: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("frame of {0} bytes is over the limit")]
    TooLarge(u32),
    #[error("not a valid message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid field: {0}")]
    Invalid(&'static str),
    #[error("not authenticated: {0}")]
    Sealed(#[from] SealError),
}

fn check_provider(p: &ProviderMeta) -> Result<(), FrameError> {
    if p.addr.port() == 0 || p.addr.ip().is_unspecified() {
        return Err(FrameError::Invalid("provider address"));
    }
    Ok(())
}

impl Message {
    /// Field checks that serde's types do not express.
    pub fn validate(&self) -> Result<(), FrameError> {
        match self {
            Message::Announce { port: 0, .. } => {
                return Err(FrameError::Invalid("port"));
            }
            Message::Providers { providers, .. } => {
                if providers.len() > MAX_LIMIT {
                    return Err(FrameError::Invalid("too many providers"));
                }
                providers.iter().try_for_each(check_provider)?;
            }
            Message::Sync {
                entries, members, ..
            }
            | Message::SyncReply {
                entries, members, ..
            } => {
                if entries.len() > MAX_ENTRIES {
                    return Err(FrameError::Invalid("too many entries"));
                }
                entries.iter().try_for_each(|e| check_provider(&e.meta))?;
                if members.len() > MAX_MEMBERS {
                    return Err(FrameError::Invalid("too many members"));
                }
            }
            Message::MemberList { members } if members.len() > MAX_MEMBERS => {
                return Err(FrameError::Invalid("too many members"));
            }
            _ => {}
        }
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        let body = serde_json::to_vec(self).expect("messages always serialize");
        let mut out = Vec::with_capacity(4 + body.len());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes one frame body (without its length prefix).
    pub fn decode_body(body: &[u8]) -> Result<Message, FrameError> {
        let m: Message = serde_json::from_slice(body)?;
        m.validate()?;
        Ok(m)
    }
}

/// Reads one frame; refuses an oversized one before reading its body.
pub fn read_frame(r: &mut impl Read) -> Result<(Message, usize), FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok((Message::decode_body(&body)?, 4 + len as usize))
}

/// Reads one frame's body without decoding it (a sealed frame is opened
/// before a byte of it is parsed); refuses one longer than a sealed
/// [`MAX_FRAME`] before reading it.
pub fn read_raw_frame(r: &mut impl Read) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_FRAME + sealed::OVERHEAD as u32 {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// A sealed frame: the length prefix, then `m`'s JSON sealed under the
/// ring's sending key (see `wire::sealed` and docs/OVERLAY.md).
pub fn encode_sealed(
    m: &Message,
    keys: &Keyring,
    ctx: &Context,
    now_ms: u64,
    nonce: Nonce,
) -> Vec<u8> {
    let body = serde_json::to_vec(m).expect("messages always serialize");
    let sealed = keys.seal(ctx, &body, now_ms, nonce);
    let mut out = Vec::with_capacity(4 + sealed.len());
    out.extend_from_slice(&(sealed.len() as u32).to_be_bytes());
    out.extend_from_slice(&sealed);
    out
}

/// Opens a sealed frame body and decodes its message; freshness (the
/// replay guard) is the caller's, between the two when it needs it.
pub fn open_sealed<'a>(
    body: &'a [u8],
    keys: &Keyring,
    ctx: &Context,
) -> Result<sealed::Opened<'a>, FrameError> {
    let opened = keys.open(ctx, body)?;
    if opened.payload.len() > MAX_FRAME as usize {
        return Err(FrameError::TooLarge(opened.payload.len() as u32));
    }
    Ok(opened)
}

pub fn write_frame(w: &mut impl Write, m: &Message) -> io::Result<usize> {
    let bytes = m.encode();
    w.write_all(&bytes)?;
    w.flush()?;
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> InfoHash {
        InfoHash::from_hex("0123456789abcdef0123456789abcdef01234567").unwrap()
    }

    #[test]
    fn messages_round_trip_through_frames() {
        let msgs = vec![
            Message::Announce {
                info_hash: hash(),
                peer_id: PeerId([0xab; 20]),
                port: 6881,
                left: 0,
                overlay_port: Some(6000),
            },
            Message::Lookup {
                info_hash: hash(),
                limit: 10,
                local_only: true,
            },
            Message::Sync {
                overlay_port: 6000,
                digest: 42,
                entries: vec![],
                members: vec!["127.0.0.1:6000".parse().unwrap()],
                full: false,
            },
            Message::Ping { overlay_port: None },
        ];
        for m in msgs {
            let bytes = m.encode();
            let (back, used) = read_frame(&mut &bytes[..]).unwrap();
            assert_eq!(back, m);
            assert_eq!(used, bytes.len());
        }
    }

    #[test]
    fn known_json_shape() {
        let body = br#"{"type":"lookup","info_hash":"0123456789abcdef0123456789abcdef01234567","limit":5}"#;
        assert_eq!(
            Message::decode_body(body).unwrap(),
            Message::Lookup {
                info_hash: hash(),
                limit: 5,
                local_only: false
            }
        );
    }

    #[test]
    fn bad_frames_are_refused() {
        // Oversized: refused from the length alone (no body follows).
        let huge = (MAX_FRAME + 1).to_be_bytes();
        assert!(matches!(
            read_frame(&mut &huge[..]),
            Err(FrameError::TooLarge(_))
        ));
        // Truncated body.
        let mut t = 100u32.to_be_bytes().to_vec();
        t.extend_from_slice(b"{\"type\":");
        assert!(matches!(read_frame(&mut &t[..]), Err(FrameError::Io(_))));
        for body in [
            &b"not json"[..],
            br#"{"type":"lookup","info_hash":"xyz","limit":5}"#,
            br#"{"type":"announce","info_hash":"0123456789abcdef0123456789abcdef01234567","peer_id":"zz","port":1,"left":0}"#,
            br#"{"type":"lookup","info_hash":5,"limit":"many"}"#,
            br#"{"type":"warp_drive"}"#,
            br#"[]"#,
        ] {
            assert!(Message::decode_body(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }

    /// IPv6 providers (BEP 7 peers in the overlay) round-trip as `[ip]:port`.
    #[test]
    fn ipv6_provider_addresses_decode() {
        let body = br#"{"type":"sync","overlay_port":6000,"digest":7,"entries":[{"info_hash":"0123456789abcdef0123456789abcdef01234567","addr":"[::1]:6881","peer_id":"2d4a43303030312d616263646566303132333435","left":0,"last_seen":1,"overlay":"[::1]:6000"}],"members":["[::1]:6000"],"full":false}"#;
        let m = Message::decode_body(body).unwrap();
        let Message::Sync { ref entries, .. } = m else {
            panic!("{m:?}")
        };
        assert_eq!(entries[0].meta.addr, "[::1]:6881".parse().unwrap());
        assert_eq!(Message::decode_body(&m.encode()[4..]).unwrap(), m);
    }

    /// The bytes docs/OVERLAY.md shows: ids are 40 lowercase hex characters
    /// on the way out, either case on the way in, and anything else fails
    /// the decode (the handler never sees an unparsed id).
    #[test]
    fn ids_are_typed_and_their_bytes_unchanged() {
        let body = br#"{"type":"sync","overlay_port":6000,"digest":7,"entries":[{"info_hash":"0123456789abcdef0123456789abcdef01234567","addr":"10.0.0.5:6881","peer_id":"2d4a43303030312d616263646566303132333435","left":0,"last_seen":1795863978911,"gone":true,"overlay":"10.0.0.5:6000"}],"members":["10.0.0.7:6000"],"full":false}"#;
        let m = Message::decode_body(body).unwrap();
        let Message::Sync { ref entries, .. } = m else {
            panic!("{m:?}")
        };
        assert_eq!(entries[0].info_hash, hash());
        assert_eq!(&entries[0].meta.peer_id.0, b"-JC0001-abcdef012345");
        assert_eq!(&m.encode()[4..], &body[..]);
        let upper = br#"{"type":"withdraw","info_hash":"0123456789ABCDEF0123456789ABCDEF01234567","port":6881}"#;
        let m = Message::decode_body(upper).unwrap();
        assert_eq!(
            m,
            Message::Withdraw {
                info_hash: hash(),
                port: 6881
            }
        );
        assert_eq!(
            &m.encode()[4..],
            &br#"{"type":"withdraw","info_hash":"0123456789abcdef0123456789abcdef01234567","port":6881}"#[..]
        );
        for bad in [
            &br#"{"type":"withdraw","info_hash":"0123","port":6881}"#[..],
            br#"{"type":"withdraw","info_hash":"0123456789abcdef0123456789abcdef0123456g","port":6881}"#,
            br#"{"type":"sync","overlay_port":1,"digest":7,"entries":[{"info_hash":"0123456789abcdef0123456789abcdef01234567","addr":"10.0.0.5:6881","peer_id":"2d4a","left":0,"last_seen":1}],"members":[]}"#,
        ] {
            assert!(matches!(Message::decode_body(bad), Err(FrameError::Json(_))));
        }
    }
}
