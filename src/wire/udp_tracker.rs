//! UDP tracker protocol (BEP 15): connect, announce and scrape packets,
//! encoded and decoded as bytes, for the client (requests out, replies in)
//! and the server (the other way). Every integer is big-endian. Replies are
//! checked against the transaction id and action the request used; an
//! error reply (action 3) becomes [`UdpTrackerError::Failure`].
//!
//! The announce, its reply and scrape counts are `wire::tracker`'s types,
//! the same the HTTP codec uses; this codec adds only BEP 15's framing
//! (connection id, action, transaction id) and its numeric `key`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::{InfoHash, PeerId};
use crate::wire::tracker::{AnnounceReply, AnnounceRequest, Event, PeerEntry, ScrapeEntry};

/// The constant a connect request starts with.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// Most info-hashes one scrape packet may carry (BEP 15).
pub const MAX_SCRAPE_HASHES: usize = 74;
/// A reply larger than this is not from a sane tracker (an announce reply
/// holds at most a few hundred peers).
pub const MAX_PACKET: usize = 8192;
/// An announce request without BEP 41 options.
pub const ANNOUNCE_LEN: usize = 98;

const ACTION_CONNECT: u32 = 0;
const ACTION_ANNOUNCE: u32 = 1;
const ACTION_SCRAPE: u32 = 2;
const ACTION_ERROR: u32 = 3;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UdpTrackerError {
    /// The tracker answered with an error packet and this message.
    #[error("tracker refused: {0}")]
    Failure(String),
    /// Too short, or the wrong size for what it claims to hold.
    #[error("malformed {0} reply")]
    Malformed(&'static str),
    /// A reply to some other request (stale, or spoofed): ignore it.
    #[error("reply does not match the request")]
    Mismatch,
}

/// A request as a tracker reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpRequest {
    Connect {
        transaction_id: u32,
    },
    Announce {
        connection_id: u64,
        transaction_id: u32,
        /// BEP 15's numeric `key` (the tracker does not use it).
        key: u32,
        announce: AnnounceRequest,
    },
    Scrape {
        connection_id: u64,
        transaction_id: u32,
        hashes: Vec<InfoHash>,
    },
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_be_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

/// BEP 15's event numbers.
fn event_code(event: Option<Event>) -> u32 {
    match event {
        None => 0,
        Some(Event::Completed) => 1,
        Some(Event::Started) => 2,
        Some(Event::Stopped) => 3,
    }
}

fn event_of(code: u32) -> Option<Option<Event>> {
    match code {
        0 => Some(None),
        1 => Some(Some(Event::Completed)),
        2 => Some(Some(Event::Started)),
        3 => Some(Some(Event::Stopped)),
        _ => None,
    }
}

/// The 16 bytes every request starts with.
fn request_header(connection_id: u64, action: u32, transaction_id: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&connection_id.to_be_bytes());
    out[8..12].copy_from_slice(&action.to_be_bytes());
    out[12..].copy_from_slice(&transaction_id.to_be_bytes());
    out
}

/// The 8 bytes every reply starts with, and room for `body` more.
fn reply_header(action: u32, transaction_id: u32, body: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + body);
    out.extend_from_slice(&action.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out
}

/// A count in a 32-bit field (saturating).
fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl UdpRequest {
    /// Decodes a request packet. Bytes after an announce's 98 (BEP 41
    /// options) are ignored.
    pub fn decode(packet: &[u8]) -> Result<UdpRequest, UdpTrackerError> {
        if packet.len() < 16 || packet.len() > MAX_PACKET {
            return Err(UdpTrackerError::Malformed("request"));
        }
        let (connection_id, action, transaction_id) =
            (u64_at(packet, 0), u32_at(packet, 8), u32_at(packet, 12));
        match action {
            ACTION_CONNECT if connection_id == PROTOCOL_ID => {
                Ok(UdpRequest::Connect { transaction_id })
            }
            ACTION_ANNOUNCE if packet.len() >= ANNOUNCE_LEN => {
                let event =
                    event_of(u32_at(packet, 80)).ok_or(UdpTrackerError::Malformed("announce"))?;
                let num_want = i32::from_be_bytes(packet[92..96].try_into().expect("4 bytes"));
                Ok(UdpRequest::Announce {
                    connection_id,
                    transaction_id,
                    key: u32_at(packet, 88),
                    announce: AnnounceRequest {
                        info_hash: InfoHash(packet[16..36].try_into().expect("20 bytes")),
                        peer_id: PeerId(packet[36..56].try_into().expect("20 bytes")),
                        downloaded: u64_at(packet, 56),
                        left: u64_at(packet, 64),
                        uploaded: u64_at(packet, 72),
                        event,
                        numwant: u32::try_from(num_want).ok(),
                        port: u16::from_be_bytes([packet[96], packet[97]]),
                    },
                })
            }
            ACTION_SCRAPE if (packet.len() - 16).is_multiple_of(20) && packet.len() > 16 => {
                let hashes: Vec<InfoHash> = packet[16..]
                    .chunks_exact(20)
                    .take(MAX_SCRAPE_HASHES)
                    .map(|c| InfoHash(c.try_into().expect("20 bytes")))
                    .collect();
                Ok(UdpRequest::Scrape {
                    connection_id,
                    transaction_id,
                    hashes,
                })
            }
            _ => Err(UdpTrackerError::Malformed("request")),
        }
    }

    pub fn transaction_id(&self) -> u32 {
        match self {
            UdpRequest::Connect { transaction_id }
            | UdpRequest::Announce { transaction_id, .. }
            | UdpRequest::Scrape { transaction_id, .. } => *transaction_id,
        }
    }
}

pub fn encode_connect_reply(transaction_id: u32, connection_id: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&reply_header(ACTION_CONNECT, transaction_id, 0));
    out[8..].copy_from_slice(&connection_id.to_be_bytes());
    out
}

/// An announce reply: interval, leechers (`incomplete`), seeders
/// (`complete`), then the peers' addresses. The caller lists peers of the
/// request's address family only: 6-byte IPv4 entries, or 18-byte IPv6
/// ones.
pub fn encode_announce_reply(transaction_id: u32, reply: &AnnounceReply) -> Vec<u8> {
    let mut out = reply_header(ACTION_ANNOUNCE, transaction_id, 12 + 18 * reply.peers.len());
    let counts = [
        reply.interval,
        saturate(reply.incomplete.unwrap_or(0)),
        saturate(reply.complete.unwrap_or(0)),
    ];
    for n in counts {
        out.extend_from_slice(&n.to_be_bytes());
    }
    for p in &reply.peers {
        match p.addr.ip() {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&p.addr.port().to_be_bytes());
    }
    out
}

/// A scrape reply: seeders, completed, leechers per requested hash.
pub fn encode_scrape_reply(transaction_id: u32, entries: &[ScrapeEntry]) -> Vec<u8> {
    let mut out = reply_header(ACTION_SCRAPE, transaction_id, 12 * entries.len());
    for e in entries {
        for n in [e.complete, e.downloaded, e.incomplete] {
            out.extend_from_slice(&saturate(n).to_be_bytes());
        }
    }
    out
}

/// An error reply; the message is cut to 200 bytes.
pub fn encode_error(transaction_id: u32, message: &str) -> Vec<u8> {
    let mut end = message.len().min(200);
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = reply_header(ACTION_ERROR, transaction_id, end);
    out.extend_from_slice(&message.as_bytes()[..end]);
    out
}

pub fn encode_connect(transaction_id: u32) -> [u8; 16] {
    request_header(PROTOCOL_ID, ACTION_CONNECT, transaction_id)
}

/// The connection id from a connect reply.
pub fn decode_connect(packet: &[u8], transaction_id: u32) -> Result<u64, UdpTrackerError> {
    let body = check_header(packet, ACTION_CONNECT, transaction_id, "connect")?;
    if body.len() < 8 {
        return Err(UdpTrackerError::Malformed("connect"));
    }
    Ok(u64_at(body, 0))
}

/// An announce request: `req` in BEP 15's layout, framed by the connection
/// and transaction ids, with the client's numeric `key`.
pub fn encode_announce(
    connection_id: u64,
    transaction_id: u32,
    key: u32,
    req: &AnnounceRequest,
) -> [u8; ANNOUNCE_LEN] {
    let mut out = [0u8; ANNOUNCE_LEN];
    out[..16].copy_from_slice(&request_header(
        connection_id,
        ACTION_ANNOUNCE,
        transaction_id,
    ));
    out[16..36].copy_from_slice(&req.info_hash.0);
    out[36..56].copy_from_slice(&req.peer_id.0);
    out[56..64].copy_from_slice(&req.downloaded.to_be_bytes());
    out[64..72].copy_from_slice(&req.left.to_be_bytes());
    out[72..80].copy_from_slice(&req.uploaded.to_be_bytes());
    out[80..84].copy_from_slice(&event_code(req.event).to_be_bytes());
    // 84..88: IP address, 0 = the packet's source address.
    out[88..92].copy_from_slice(&key.to_be_bytes());
    let num_want = req.numwant.map_or(-1, |n| n.min(i32::MAX as u32) as i32);
    out[92..96].copy_from_slice(&num_want.to_be_bytes());
    out[96..98].copy_from_slice(&req.port.to_be_bytes());
    out
}

/// Decodes an announce reply. Peers are 6-byte IPv4 entries, or 18-byte
/// IPv6 ones when the announce went over IPv6 (BEP 15's IPv6 rule). BEP 15
/// has no minimum interval, warning or peer ids: those are absent.
pub fn decode_announce(
    packet: &[u8],
    transaction_id: u32,
    ipv6: bool,
) -> Result<AnnounceReply, UdpTrackerError> {
    let body = check_header(packet, ACTION_ANNOUNCE, transaction_id, "announce")?;
    let entry = if ipv6 { 18 } else { 6 };
    if body.len() < 12 || (body.len() - 12) % entry != 0 {
        return Err(UdpTrackerError::Malformed("announce"));
    }
    let peers = body[12..]
        .chunks_exact(entry)
        .map(|c| {
            let (ip, port) = c.split_at(entry - 2);
            let ip: IpAddr = if ipv6 {
                Ipv6Addr::from(<[u8; 16]>::try_from(ip).expect("16 bytes")).into()
            } else {
                Ipv4Addr::from(<[u8; 4]>::try_from(ip).expect("4 bytes")).into()
            };
            PeerEntry {
                addr: SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]])),
                peer_id: None,
            }
        })
        .collect();
    Ok(AnnounceReply {
        interval: u32_at(body, 0),
        min_interval: None,
        incomplete: Some(u32_at(body, 4).into()),
        complete: Some(u32_at(body, 8).into()),
        warning: None,
        peers,
    })
}

/// A scrape request for at most [`MAX_SCRAPE_HASHES`] hashes (the rest are
/// left out; the caller splits long lists).
pub fn encode_scrape(connection_id: u64, transaction_id: u32, hashes: &[InfoHash]) -> Vec<u8> {
    let hashes = &hashes[..hashes.len().min(MAX_SCRAPE_HASHES)];
    let mut out = Vec::with_capacity(16 + 20 * hashes.len());
    out.extend_from_slice(&request_header(
        connection_id,
        ACTION_SCRAPE,
        transaction_id,
    ));
    for h in hashes {
        out.extend_from_slice(&h.0);
    }
    out
}

/// Decodes a scrape reply: one entry per requested hash, in request order.
pub fn decode_scrape(
    packet: &[u8],
    transaction_id: u32,
    requested: usize,
) -> Result<Vec<ScrapeEntry>, UdpTrackerError> {
    let body = check_header(packet, ACTION_SCRAPE, transaction_id, "scrape")?;
    if body.len() != 12 * requested {
        return Err(UdpTrackerError::Malformed("scrape"));
    }
    Ok(body
        .chunks_exact(12)
        .map(|c| ScrapeEntry {
            complete: u32_at(c, 0).into(),
            downloaded: u32_at(c, 4).into(),
            incomplete: u32_at(c, 8).into(),
        })
        .collect())
}

/// Checks action and transaction id; the bytes after the 8-byte header.
/// An error packet for this transaction becomes `Failure`.
fn check_header<'a>(
    packet: &'a [u8],
    action: u32,
    transaction_id: u32,
    what: &'static str,
) -> Result<&'a [u8], UdpTrackerError> {
    if packet.len() < 8 || packet.len() > MAX_PACKET {
        return Err(UdpTrackerError::Malformed(what));
    }
    if u32_at(packet, 4) != transaction_id {
        return Err(UdpTrackerError::Mismatch);
    }
    let body = &packet[8..];
    match u32_at(packet, 0) {
        a if a == action => Ok(body),
        ACTION_ERROR => {
            let text = String::from_utf8_lossy(&body[..body.len().min(512)]);
            Err(UdpTrackerError::Failure(
                text.trim_end_matches('\0').to_string(),
            ))
        }
        _ => Err(UdpTrackerError::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tracker::test_announce;
    use proptest::prelude::*;

    #[test]
    fn connect_request_is_the_bep15_bytes() {
        let c = encode_connect(0xDEAD_BEEF);
        assert_eq!(
            c,
            [0, 0, 4, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF]
        );
        let reply = [0, 0, 0, 0, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            decode_connect(&reply, 0xDEAD_BEEF),
            Ok(0x0102_0304_0506_0708)
        );
        assert_eq!(decode_connect(&reply, 1), Err(UdpTrackerError::Mismatch));
        assert_eq!(
            decode_connect(&reply[..12], 0xDEAD_BEEF),
            Err(UdpTrackerError::Malformed("connect"))
        );
    }

    #[test]
    fn announce_request_lays_out_every_field() {
        let b = encode_announce(0x1122_3344_5566_7788, 7, 0x0A0B_0C0D, &test_announce());
        assert_eq!(&b[0..8], &0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(&b[8..16], &[0, 0, 0, 1, 0, 0, 0, 7]);
        assert_eq!(&b[16..36], &[0xAA; 20]);
        assert_eq!(&b[36..56], &[0xBB; 20]);
        assert_eq!(
            &b[56..80],
            &[0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]
        );
        assert_eq!(&b[80..84], &[0, 0, 0, 2], "started is 2");
        assert_eq!(&b[84..88], &[0; 4]);
        assert_eq!(&b[88..92], &[0x0A, 0x0B, 0x0C, 0x0D]);
        assert_eq!(&b[92..96], &[0xFF; 4], "num_want -1: the default");
        assert_eq!(&b[96..98], &6881u16.to_be_bytes());
    }

    #[test]
    fn announce_reply_peers_v4_and_v6() {
        let mut r = vec![0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 60, 0, 0, 0, 2, 0, 0, 0, 1];
        r.extend_from_slice(&[127, 0, 0, 1, 0x1A, 0xE1]);
        let got = decode_announce(&r, 9, false).unwrap();
        assert_eq!(got.interval, 60);
        assert_eq!((got.incomplete, got.complete), (Some(2), Some(1)));
        assert_eq!((got.min_interval, got.warning.as_deref()), (None, None));
        let addrs = |r: AnnounceReply| r.peers.into_iter().map(|p| p.addr).collect::<Vec<_>>();
        assert_eq!(addrs(got), vec!["127.0.0.1:6881".parse().unwrap()]);
        assert_eq!(
            decode_announce(&r[..r.len() - 1], 9, false),
            Err(UdpTrackerError::Malformed("announce"))
        );
        let mut r6 = r[..20].to_vec();
        r6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        r6.extend_from_slice(&[0x1A, 0xE1]);
        let got = decode_announce(&r6, 9, true).unwrap();
        assert_eq!(addrs(got), vec!["[::1]:6881".parse().unwrap()]);
    }

    #[test]
    fn error_packets_carry_the_message() {
        let mut e = vec![0, 0, 0, 3, 0, 0, 0, 5];
        e.extend_from_slice(b"torrent not registered\0");
        assert_eq!(
            decode_announce(&e, 5, false),
            Err(UdpTrackerError::Failure("torrent not registered".into()))
        );
        assert_eq!(
            decode_announce(&e, 6, false),
            Err(UdpTrackerError::Mismatch)
        );
    }

    #[test]
    fn scrape_round_trip_of_the_layout() {
        let hashes = [InfoHash([1; 20]), InfoHash([2; 20])];
        let req = encode_scrape(42, 3, &hashes);
        assert_eq!(req.len(), 16 + 40);
        assert_eq!(&req[8..12], &[0, 0, 0, 2]);
        let mut r = vec![0, 0, 0, 2, 0, 0, 0, 3];
        r.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 2]);
        r.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let got = decode_scrape(&r, 3, 2).unwrap();
        assert_eq!(
            got[0],
            ScrapeEntry {
                complete: 1,
                downloaded: 5,
                incomplete: 2
            }
        );
        assert_eq!(
            decode_scrape(&r, 3, 3),
            Err(UdpTrackerError::Malformed("scrape"))
        );
        let many = vec![InfoHash([0; 20]); 100];
        assert_eq!(
            encode_scrape(1, 1, &many).len(),
            16 + 20 * MAX_SCRAPE_HASHES
        );
    }

    #[test]
    fn server_side_round_trips_with_the_client_side() {
        let c = encode_connect(5);
        assert_eq!(
            UdpRequest::decode(&c),
            Ok(UdpRequest::Connect { transaction_id: 5 })
        );
        assert_eq!(decode_connect(&encode_connect_reply(5, 99), 5), Ok(99));
        let a = AnnounceRequest {
            event: Some(Event::Stopped),
            numwant: Some(12),
            ..test_announce()
        };
        let decoded = UdpRequest::Announce {
            connection_id: 99,
            transaction_id: 6,
            key: 4,
            announce: a.clone(),
        };
        let packet = encode_announce(99, 6, 4, &a);
        assert_eq!(UdpRequest::decode(&packet), Ok(decoded.clone()));
        assert_eq!(decoded.transaction_id(), 6);
        let mut with_options = packet.to_vec();
        with_options.extend_from_slice(&[2, 9, b'/', b'a', b'n', b'n', b'o', b'u', b'n', b'c']);
        assert_eq!(UdpRequest::decode(&with_options), Ok(decoded));
        let peer = |addr: &str| PeerEntry {
            addr: addr.parse().unwrap(),
            peer_id: None,
        };
        let reply = AnnounceReply {
            interval: 60,
            min_interval: None,
            incomplete: Some(1),
            complete: Some(2),
            warning: None,
            peers: vec![peer("10.1.2.3:4"), peer("10.1.2.4:5")],
        };
        assert_eq!(
            decode_announce(&encode_announce_reply(6, &reply), 6, false),
            Ok(reply)
        );
        let hashes = vec![InfoHash([7; 20]), InfoHash([8; 20])];
        assert_eq!(
            UdpRequest::decode(&encode_scrape(99, 8, &hashes)),
            Ok(UdpRequest::Scrape {
                connection_id: 99,
                transaction_id: 8,
                hashes
            })
        );
        let entries = vec![ScrapeEntry {
            complete: 1,
            downloaded: 2,
            incomplete: 3,
        }];
        assert_eq!(
            decode_scrape(&encode_scrape_reply(8, &entries), 8, 1),
            Ok(entries)
        );
        assert_eq!(
            decode_connect(&encode_error(5, &"é".repeat(150)), 5),
            Err(UdpTrackerError::Failure("é".repeat(100)))
        );
    }

    /// The 32-bit fields of BEP 15 saturate counts the shared types hold
    /// as 64 bits; absent counts are zero.
    #[test]
    fn replies_saturate_large_counts() {
        let reply = AnnounceReply {
            interval: 5,
            min_interval: Some(1),
            incomplete: Some(u64::MAX),
            complete: None,
            warning: Some("not carried".into()),
            peers: vec![],
        };
        assert_eq!(
            encode_announce_reply(1, &reply),
            [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 5, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0]
        );
        let big = ScrapeEntry {
            complete: 1 << 40,
            downloaded: 7,
            incomplete: 0,
        };
        assert_eq!(
            encode_scrape_reply(2, &[big])[8..],
            [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 7, 0, 0, 0, 0]
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut c = encode_connect(1);
        c[0] = 1; // not the protocol id
        assert!(UdpRequest::decode(&c).is_err());
        let mut a = encode_announce(1, 1, 0, &test_announce());
        assert!(UdpRequest::decode(&a[..97]).is_err(), "short announce");
        a[83] = 9;
        assert!(UdpRequest::decode(&a).is_err(), "unknown event");
        assert!(
            UdpRequest::decode(&encode_scrape(1, 1, &[])).is_err(),
            "no hashes"
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200), tid: u32) {
            let _ = UdpRequest::decode(&bytes);
            let _ = decode_connect(&bytes, tid);
            let _ = decode_announce(&bytes, tid, false);
            let _ = decode_announce(&bytes, tid, true);
            let _ = decode_scrape(&bytes, tid, 1);
        }
    }
}
