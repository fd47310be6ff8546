//! Identifiers that travel on the wire: info-hashes and peer ids.
//! Both are 20 opaque bytes; newtypes keep them from being swapped.

use std::fmt;

/// SHA-1 of the bencoded `info` dictionary of a torrent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

/// The 20-byte id a peer introduces itself with in the handshake.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub [u8; 20]);

/// Client prefix of our peer ids (Azureus style: `-JC0001-`).
pub const PEER_ID_PREFIX: &[u8; 8] = b"-JC0001-";

impl PeerId {
    /// `-JC0001-` followed by 12 random lowercase hex characters.
    pub fn generate() -> PeerId {
        let mut random = [0u8; 6];
        getrandom::getrandom(&mut random).expect("the OS random source is available");
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(PEER_ID_PREFIX);
        let hex = to_hex(&random);
        id[8..].copy_from_slice(hex.as_bytes());
        PeerId(id)
    }

    /// Printable form: ASCII where printable, `%XX` otherwise (tracker style).
    pub fn display_lossy(&self) -> String {
        self.0
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }
}

impl InfoHash {
    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Parses 40 hex characters (either case).
    pub fn from_hex(text: &str) -> Option<InfoHash> {
        let bytes = from_hex(text)?;
        Some(InfoHash(bytes.try_into().ok()?))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerId({})", self.display_lossy())
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_lossy())
    }
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

pub fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_has_prefix_and_hex_tail() {
        let id = PeerId::generate();
        assert_eq!(&id.0[..8], PEER_ID_PREFIX);
        assert!(id.0[8..].iter().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(id, PeerId::generate());
    }

    #[test]
    fn hex_round_trip() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(InfoHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(InfoHash::from_hex("zz"), None);
        assert_eq!(InfoHash::from_hex(&"AB".repeat(20)), Some(h));
    }
}
