//! UDP tracker protocol (BEP 15): connect, announce and scrape packets,
//! encoded and decoded as bytes, for the client (requests out, replies in)
//! and the server (the other way). Every integer is big-endian. Replies are
//! checked against the transaction id and action the request used; an
//! error reply (action 3) becomes [`UdpTrackerError::Failure`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::{InfoHash, PeerId};
use crate::wire::tracker::Event;

/// The constant a connect request starts with.
pub const PROTOCOL_ID: u64 = 0x0417_2710_1980;
/// Most info-hashes one scrape packet may carry (BEP 15).
pub const MAX_SCRAPE_HASHES: usize = 74;
/// A reply larger than this is not from a sane tracker (an announce reply
/// holds at most a few hundred peers).
pub const MAX_PACKET: usize = 8192;

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

/// The announce fields BEP 15 carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpAnnounce {
    pub connection_id: u64,
    pub transaction_id: u32,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub downloaded: u64,
    pub left: u64,
    pub uploaded: u64,
    pub event: Option<Event>,
    pub key: u32,
    /// `None` asks for the tracker's default.
    pub num_want: Option<u32>,
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpAnnounceReply {
    pub interval: u32,
    pub leechers: u32,
    pub seeders: u32,
    pub peers: Vec<SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpScrapeEntry {
    pub seeders: u32,
    pub completed: u32,
    pub leechers: u32,
}

/// A request as a tracker reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UdpRequest {
    Connect {
        transaction_id: u32,
    },
    Announce(UdpAnnounce),
    Scrape {
        connection_id: u64,
        transaction_id: u32,
        hashes: Vec<InfoHash>,
    },
}

impl UdpRequest {
    /// Decodes a request packet. Bytes after an announce's 98 (BEP 41
    /// options) are ignored.
    pub fn decode(packet: &[u8]) -> Result<UdpRequest, UdpTrackerError> {
        if packet.len() < 16 || packet.len() > MAX_PACKET {
            return Err(UdpTrackerError::Malformed("request"));
        }
        let u32_at = |i: usize| u32::from_be_bytes(packet[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(packet[i..i + 8].try_into().expect("8 bytes"));
        let (connection_id, action, transaction_id) = (u64_at(0), u32_at(8), u32_at(12));
        match action {
            ACTION_CONNECT if connection_id == PROTOCOL_ID => {
                Ok(UdpRequest::Connect { transaction_id })
            }
            ACTION_ANNOUNCE if packet.len() >= 98 => {
                let event = match u32_at(80) {
                    0 => None,
                    1 => Some(Event::Completed),
                    2 => Some(Event::Started),
                    3 => Some(Event::Stopped),
                    _ => return Err(UdpTrackerError::Malformed("announce")),
                };
                let num_want = i32::from_be_bytes(packet[92..96].try_into().expect("4 bytes"));
                Ok(UdpRequest::Announce(UdpAnnounce {
                    connection_id,
                    transaction_id,
                    info_hash: InfoHash(packet[16..36].try_into().expect("20 bytes")),
                    peer_id: PeerId(packet[36..56].try_into().expect("20 bytes")),
                    downloaded: u64_at(56),
                    left: u64_at(64),
                    uploaded: u64_at(72),
                    event,
                    key: u32_at(88),
                    num_want: u32::try_from(num_want).ok(),
                    port: u16::from_be_bytes([packet[96], packet[97]]),
                }))
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
            UdpRequest::Connect { transaction_id } | UdpRequest::Scrape { transaction_id, .. } => {
                *transaction_id
            }
            UdpRequest::Announce(a) => a.transaction_id,
        }
    }
}

pub fn encode_connect_reply(transaction_id: u32, connection_id: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..4].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    out[4..8].copy_from_slice(&transaction_id.to_be_bytes());
    out[8..].copy_from_slice(&connection_id.to_be_bytes());
    out
}

/// An announce reply. The caller lists peers of the request's address
/// family only: 6-byte IPv4 entries, or 18-byte IPv6 ones.
pub fn encode_announce_reply(transaction_id: u32, reply: &UdpAnnounceReply) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + 18 * reply.peers.len());
    out.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for n in [reply.interval, reply.leechers, reply.seeders] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    for p in &reply.peers {
        match p.ip() {
            IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
            IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
        }
        out.extend_from_slice(&p.port().to_be_bytes());
    }
    out
}

pub fn encode_scrape_reply(transaction_id: u32, entries: &[UdpScrapeEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 12 * entries.len());
    out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    for e in entries {
        for n in [e.seeders, e.completed, e.leechers] {
            out.extend_from_slice(&n.to_be_bytes());
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
    let mut out = Vec::with_capacity(8 + end);
    out.extend_from_slice(&ACTION_ERROR.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
    out.extend_from_slice(&message.as_bytes()[..end]);
    out
}

pub fn encode_connect(transaction_id: u32) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&PROTOCOL_ID.to_be_bytes());
    out[8..12].copy_from_slice(&ACTION_CONNECT.to_be_bytes());
    out[12..].copy_from_slice(&transaction_id.to_be_bytes());
    out
}

/// The connection id from a connect reply.
pub fn decode_connect(packet: &[u8], transaction_id: u32) -> Result<u64, UdpTrackerError> {
    let body = check_header(packet, ACTION_CONNECT, transaction_id, "connect")?;
    if body.len() < 8 {
        return Err(UdpTrackerError::Malformed("connect"));
    }
    Ok(u64::from_be_bytes(body[..8].try_into().expect("8 bytes")))
}

impl UdpAnnounce {
    pub fn encode(&self) -> [u8; 98] {
        let mut out = [0u8; 98];
        out[0..8].copy_from_slice(&self.connection_id.to_be_bytes());
        out[8..12].copy_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
        out[12..16].copy_from_slice(&self.transaction_id.to_be_bytes());
        out[16..36].copy_from_slice(&self.info_hash.0);
        out[36..56].copy_from_slice(&self.peer_id.0);
        out[56..64].copy_from_slice(&self.downloaded.to_be_bytes());
        out[64..72].copy_from_slice(&self.left.to_be_bytes());
        out[72..80].copy_from_slice(&self.uploaded.to_be_bytes());
        let event: u32 = match self.event {
            None => 0,
            Some(Event::Completed) => 1,
            Some(Event::Started) => 2,
            Some(Event::Stopped) => 3,
        };
        out[80..84].copy_from_slice(&event.to_be_bytes());
        // 84..88: IP address, 0 = the packet's source address.
        out[88..92].copy_from_slice(&self.key.to_be_bytes());
        let num_want = self.num_want.map_or(-1, |n| n.min(i32::MAX as u32) as i32);
        out[92..96].copy_from_slice(&num_want.to_be_bytes());
        out[96..98].copy_from_slice(&self.port.to_be_bytes());
        out
    }
}

/// Decodes an announce reply. Peers are 6-byte IPv4 entries, or 18-byte
/// IPv6 ones when the announce went over IPv6 (BEP 15's IPv6 rule).
pub fn decode_announce(
    packet: &[u8],
    transaction_id: u32,
    ipv6: bool,
) -> Result<UdpAnnounceReply, UdpTrackerError> {
    let body = check_header(packet, ACTION_ANNOUNCE, transaction_id, "announce")?;
    let entry = if ipv6 { 18 } else { 6 };
    if body.len() < 12 || (body.len() - 12) % entry != 0 {
        return Err(UdpTrackerError::Malformed("announce"));
    }
    let int = |i: usize| u32::from_be_bytes(body[i..i + 4].try_into().expect("4 bytes"));
    let peers = body[12..]
        .chunks_exact(entry)
        .map(|c| {
            let (ip, port) = c.split_at(entry - 2);
            let ip: IpAddr = if ipv6 {
                Ipv6Addr::from(<[u8; 16]>::try_from(ip).expect("16 bytes")).into()
            } else {
                Ipv4Addr::from(<[u8; 4]>::try_from(ip).expect("4 bytes")).into()
            };
            SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]]))
        })
        .collect();
    Ok(UdpAnnounceReply {
        interval: int(0),
        leechers: int(4),
        seeders: int(8),
        peers,
    })
}

/// A scrape request for at most [`MAX_SCRAPE_HASHES`] hashes (the rest are
/// left out; the caller splits long lists).
pub fn encode_scrape(connection_id: u64, transaction_id: u32, hashes: &[InfoHash]) -> Vec<u8> {
    let hashes = &hashes[..hashes.len().min(MAX_SCRAPE_HASHES)];
    let mut out = Vec::with_capacity(16 + 20 * hashes.len());
    out.extend_from_slice(&connection_id.to_be_bytes());
    out.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    out.extend_from_slice(&transaction_id.to_be_bytes());
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
) -> Result<Vec<UdpScrapeEntry>, UdpTrackerError> {
    let body = check_header(packet, ACTION_SCRAPE, transaction_id, "scrape")?;
    if body.len() != 12 * requested {
        return Err(UdpTrackerError::Malformed("scrape"));
    }
    Ok(body
        .chunks_exact(12)
        .map(|c| {
            let int = |i: usize| u32::from_be_bytes(c[i..i + 4].try_into().expect("4 bytes"));
            UdpScrapeEntry {
                seeders: int(0),
                completed: int(4),
                leechers: int(8),
            }
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
    let got_action = u32::from_be_bytes(packet[..4].try_into().expect("4 bytes"));
    let got_tid = u32::from_be_bytes(packet[4..8].try_into().expect("4 bytes"));
    if got_tid != transaction_id {
        return Err(UdpTrackerError::Mismatch);
    }
    let body = &packet[8..];
    match got_action {
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
        let a = UdpAnnounce {
            connection_id: 0x1122_3344_5566_7788,
            transaction_id: 7,
            info_hash: InfoHash([0xAA; 20]),
            peer_id: PeerId([0xBB; 20]),
            downloaded: 1,
            left: 2,
            uploaded: 3,
            event: Some(Event::Started),
            key: 0x0A0B_0C0D,
            num_want: None,
            port: 6881,
        };
        let b = a.encode();
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
        assert_eq!((got.leechers, got.seeders), (2, 1));
        assert_eq!(got.peers, vec!["127.0.0.1:6881".parse().unwrap()]);
        assert_eq!(
            decode_announce(&r[..r.len() - 1], 9, false),
            Err(UdpTrackerError::Malformed("announce"))
        );
        let mut r6 = r[..20].to_vec();
        r6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        r6.extend_from_slice(&[0x1A, 0xE1]);
        let got = decode_announce(&r6, 9, true).unwrap();
        assert_eq!(got.peers, vec!["[::1]:6881".parse().unwrap()]);
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
            UdpScrapeEntry {
                seeders: 1,
                completed: 5,
                leechers: 2
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
        let a = UdpAnnounce {
            connection_id: 99,
            transaction_id: 6,
            info_hash: InfoHash([1; 20]),
            peer_id: PeerId([2; 20]),
            downloaded: 10,
            left: 20,
            uploaded: 30,
            event: Some(Event::Stopped),
            key: 4,
            num_want: Some(12),
            port: 7000,
        };
        assert_eq!(
            UdpRequest::decode(&a.encode()),
            Ok(UdpRequest::Announce(a.clone()))
        );
        let mut with_options = a.encode().to_vec();
        with_options.extend_from_slice(&[2, 9, b'/', b'a', b'n', b'n', b'o', b'u', b'n', b'c']);
        assert_eq!(
            UdpRequest::decode(&with_options),
            Ok(UdpRequest::Announce(a))
        );
        let reply = UdpAnnounceReply {
            interval: 60,
            leechers: 1,
            seeders: 2,
            peers: vec!["10.1.2.3:4".parse().unwrap(), "10.1.2.4:5".parse().unwrap()],
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
        let entries = vec![UdpScrapeEntry {
            seeders: 1,
            completed: 2,
            leechers: 3,
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

    #[test]
    fn bad_requests_are_refused() {
        let mut c = encode_connect(1);
        c[0] = 1; // not the protocol id
        assert!(UdpRequest::decode(&c).is_err());
        let mut a = UdpAnnounce {
            connection_id: 1,
            transaction_id: 1,
            info_hash: InfoHash([0; 20]),
            peer_id: PeerId([0; 20]),
            downloaded: 0,
            left: 0,
            uploaded: 0,
            event: None,
            key: 0,
            num_want: None,
            port: 1,
        }
        .encode();
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
