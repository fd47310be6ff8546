//! Peer exchange (BEP 11, `ut_pex`): the bencoded payload of the extension
//! message that tells a peer which peers we connected to and dropped since
//! the last one. Compact addresses: 6 bytes for IPv4 (`added`, `dropped`),
//! 18 for IPv6 (`added6`, `dropped6`). Decoding keeps at most
//! [`MAX_PEX_PEERS`] of each list, so a hostile message cannot grow memory.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::core::bencode::{self, Value};

/// The extension id we ask peers to use for `ut_pex` in our handshake.
pub const OUR_UT_PEX_ID: u8 = 1;
/// Most addresses one message may add or drop (BEP 11 says 50; we read a
/// little more from generous peers and send at most 50).
pub const MAX_PEX_PEERS: usize = 200;
pub const SEND_PEX_PEERS: usize = 50;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PexMessage {
    pub added: Vec<SocketAddr>,
    pub dropped: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed ut_pex message")]
pub struct PexError;

impl PexMessage {
    pub fn encode(&self) -> Vec<u8> {
        let (a4, a6) = compact(&self.added);
        let (d4, d6) = compact(&self.dropped);
        // One flags byte per added peer; 0: nothing claimed about it.
        let f4 = vec![0u8; a4.len() / 6];
        let f6 = vec![0u8; a6.len() / 18];
        bencode::encode(&Value::dict(vec![
            ("added", Value::Bytes(a4)),
            ("added.f", Value::Bytes(f4)),
            ("added6", Value::Bytes(a6)),
            ("added6.f", Value::Bytes(f6)),
            ("dropped", Value::Bytes(d4)),
            ("dropped6", Value::Bytes(d6)),
        ]))
    }

    /// Decodes a payload. Absent lists are empty; a list whose length is
    /// not a whole number of entries, or a payload that is not a dict, is
    /// an error. Port 0 and unspecified addresses are skipped.
    pub fn decode(payload: &[u8]) -> Result<PexMessage, PexError> {
        let (v, _) = bencode::decode_prefix(payload).map_err(|_| PexError)?;
        if v.as_dict().is_none() {
            return Err(PexError);
        }
        let list = |key4: &str, key6: &str| -> Result<Vec<SocketAddr>, PexError> {
            let mut out = Vec::new();
            for (key, size) in [(key4, 6), (key6, 18)] {
                let Some(bytes) = v.get(key) else { continue };
                let bytes = bytes.as_bytes().ok_or(PexError)?;
                if bytes.len() % size != 0 {
                    return Err(PexError);
                }
                out.extend(
                    bytes
                        .chunks_exact(size)
                        .map(parse_compact)
                        .filter(|a| a.port() != 0 && !a.ip().is_unspecified())
                        .take(MAX_PEX_PEERS - out.len().min(MAX_PEX_PEERS)),
                );
            }
            Ok(out)
        };
        Ok(PexMessage {
            added: list("added", "added6")?,
            dropped: list("dropped", "dropped6")?,
        })
    }
}

fn compact(addrs: &[SocketAddr]) -> (Vec<u8>, Vec<u8>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for a in addrs {
        match a.ip() {
            IpAddr::V4(ip) => {
                v4.extend_from_slice(&ip.octets());
                v4.extend_from_slice(&a.port().to_be_bytes());
            }
            IpAddr::V6(ip) => {
                v6.extend_from_slice(&ip.octets());
                v6.extend_from_slice(&a.port().to_be_bytes());
            }
        }
    }
    (v4, v6)
}

fn parse_compact(c: &[u8]) -> SocketAddr {
    let (ip, port) = c.split_at(c.len() - 2);
    let ip: IpAddr = match ip.len() {
        4 => Ipv4Addr::from(<[u8; 4]>::try_from(ip).expect("4 bytes")).into(),
        _ => Ipv6Addr::from(<[u8; 16]>::try_from(ip).expect("16 bytes")).into(),
    };
    SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_v4_and_v6() {
        let m = PexMessage {
            added: vec![
                "10.0.0.1:6881".parse().unwrap(),
                "[2001:db8::1]:51413".parse().unwrap(),
            ],
            dropped: vec!["10.0.0.2:1".parse().unwrap()],
        };
        assert_eq!(PexMessage::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn reads_what_other_clients_send() {
        // As libtorrent lays it out: keys sorted, flags, empty v6 lists.
        let payload =
            b"d5:added12:\x0a\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x1a\xe27:added.f2:\x10\x00\
              6:added60:7:dropped6:\x0a\x00\x00\x03\x00\x50e";
        let m = PexMessage::decode(payload).unwrap();
        assert_eq!(
            m.added,
            vec![
                "10.0.0.1:6881".parse::<SocketAddr>().unwrap(),
                "10.0.0.2:6882".parse().unwrap()
            ]
        );
        assert_eq!(m.dropped, vec!["10.0.0.3:80".parse().unwrap()]);
    }

    #[test]
    fn bad_and_huge_messages_are_bounded() {
        assert_eq!(PexMessage::decode(b"le"), Err(PexError));
        assert_eq!(PexMessage::decode(b"d5:added5:12345e"), Err(PexError));
        assert_eq!(PexMessage::decode(b"d5:addedi1ee"), Err(PexError));
        let mut many = Vec::new();
        for i in 0..1000u32 {
            many.extend_from_slice(&(0x0a00_0000 + i).to_be_bytes());
            many.extend_from_slice(&[0x1a, 0xe1]);
        }
        let m = PexMessage {
            added: many.chunks(6).map(parse_compact).collect(),
            dropped: vec![],
        };
        assert_eq!(
            PexMessage::decode(&m.encode()).unwrap().added.len(),
            MAX_PEX_PEERS
        );
        // Port 0 and 0.0.0.0 are not peers.
        let junk = PexMessage {
            added: vec!["0.0.0.0:1".parse().unwrap(), "10.0.0.1:0".parse().unwrap()],
            dropped: vec![],
        };
        assert!(PexMessage::decode(&junk.encode()).unwrap().added.is_empty());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = PexMessage::decode(&bytes);
        }
    }
}
