//! The swarm key's authenticated frame: a payload in the clear, a header
//! (key id, timestamp, nonce) and an HMAC-SHA256 tag over both and a
//! context label, so a frame sealed for one purpose (an overlay request, an
//! overlay reply bound to its request, a DNS gossip body) opens for no
//! other. Pure: bytes in, bytes out; the caller gives the time and the
//! nonce, and keeps the [`ReplayGuard`] (a plain struct: timestamp window
//! plus a bounded nonce cache). The byte layout is in docs/OVERLAY.md.
//!
//! ```text
//! offset  size  field
//! 0       4     magic "BTK1"
//! 4       4     key id: HMAC-SHA256(key, "btnode key id v1")[0..4]
//! 8       8     timestamp: unix milliseconds, big-endian
//! 16      16    nonce: random
//! 32      n     payload (an overlay frame's JSON, a DNS gossip body)
//! 32+n    32    tag: HMAC-SHA256(key, len(label) || label || bound || bytes[0..32+n])
//! ```
//! `len(label)` is one byte, `bound` the 16-byte nonce of the request a
//! reply answers (16 zero bytes for a request).
//!
//! HMAC-SHA256 rather than an AEAD: nothing the overlay or the DNS carries
//! is secret (addresses, ports, names the DNS serves to anyone), so
//! authentication is what is needed; a readable payload keeps tcpdump and
//! the JSON docs useful, and the same primitive derives the DNS write token.

use std::collections::BTreeSet;

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub const MAGIC: &[u8; 4] = b"BTK1";
pub const KEY_LEN: usize = 32;
pub const NONCE_LEN: usize = 16;
pub const TAG_LEN: usize = 32;
/// Magic, key id, timestamp, nonce.
pub const HEADER_LEN: usize = 32;
/// What sealing adds to a payload.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Most keys one keyring holds (a rotation needs two or three).
pub const MAX_KEYS: usize = 16;

/// Frames more than this far from our clock (either way) are refused.
pub const DEFAULT_WINDOW_MS: u64 = 30_000;
/// Nonces remembered at most (about 40 bytes each).
pub const DEFAULT_NONCE_CACHE: usize = 16_384;

/// Labels: what a sealed frame is for (part of what the tag covers).
pub const OVERLAY_REQUEST: &[u8] = b"btnode overlay request v1";
pub const OVERLAY_REPLY: &[u8] = b"btnode overlay reply v1";
pub const DNS_GOSSIP: &[u8] = b"btnode dns gossip v1";
pub const DNS_GOSSIP_REPLY: &[u8] = b"btnode dns gossip reply v1";
/// The DNS REST write token: hex(HMAC-SHA256(key, this)).
pub const DNS_WRITE_TOKEN: &[u8] = b"btnode dns write token v1";
const KEY_ID: &[u8] = b"btnode key id v1";

pub type Nonce = [u8; NONCE_LEN];

/// What a sealed frame is for: its label, and for a reply, the nonce of
/// the request it answers (so a captured reply answers nothing else).
#[derive(Clone, Copy, Debug)]
pub struct Context {
    pub label: &'static [u8],
    pub bound: Nonce,
}

impl Context {
    pub fn request(label: &'static [u8]) -> Context {
        Context {
            label,
            bound: [0; NONCE_LEN],
        }
    }

    pub fn reply(label: &'static [u8], request_nonce: Nonce) -> Context {
        Context {
            label,
            bound: request_nonce,
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("line {0}: a swarm key is 64 hex characters (32 bytes)")]
    BadKey(usize),
    #[error("the key file holds no key")]
    Empty,
    #[error("the key file holds more than {MAX_KEYS} keys")]
    TooMany,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("frame of {0} bytes is too short to be sealed")]
    TooShort(usize),
    #[error("not a sealed frame (no BTK1 magic)")]
    NotSealed,
    #[error("sealed under a key we do not hold")]
    UnknownKey,
    #[error("the tag does not match (tampered, or another key)")]
    BadTag,
    #[error("timestamp {skew_ms} ms away from our clock")]
    Stale { skew_ms: i64 },
    #[error("a replayed frame (nonce seen before)")]
    Replayed,
}

/// One 32-byte swarm key. Its bytes never appear in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct SwarmKey {
    bytes: [u8; KEY_LEN],
    id: [u8; 4],
}

impl std::fmt::Debug for SwarmKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SwarmKey(id {})", crate::core::ids::to_hex(&self.id))
    }
}

impl SwarmKey {
    pub fn new(bytes: [u8; KEY_LEN]) -> SwarmKey {
        let mut key = SwarmKey { bytes, id: [0; 4] };
        let id = key.mac_of(&[KEY_ID]);
        key.id.copy_from_slice(&id[..4]);
        key
    }

    /// 64 hex characters, either case.
    pub fn from_hex(text: &str) -> Option<SwarmKey> {
        let v = crate::core::ids::from_hex(text.trim())?;
        Some(SwarmKey::new(<[u8; KEY_LEN]>::try_from(v).ok()?))
    }

    pub fn to_hex(&self) -> String {
        crate::core::ids::to_hex(&self.bytes)
    }

    /// The 4 bytes a frame names its key by.
    pub fn id(&self) -> [u8; 4] {
        self.id
    }

    fn hmac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.bytes).expect("HMAC takes any key length")
    }

    fn mac_of(&self, parts: &[&[u8]]) -> [u8; TAG_LEN] {
        let mut m = self.hmac();
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().into()
    }

    /// hex(HMAC-SHA256(key, label)): a bearer token derived from the key.
    pub fn token(&self, label: &[u8]) -> String {
        crate::core::ids::to_hex(&self.mac_of(&[label]))
    }

    fn tagger(&self, ctx: &Context) -> HmacSha256 {
        let mut m = self.hmac();
        m.update(&[ctx.label.len() as u8]);
        m.update(ctx.label);
        m.update(&ctx.bound);
        m
    }
}

/// The parts of a frame that opened.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// Which key of the ring it opened under (0: the one we send with).
    pub key_index: usize,
    pub timestamp_ms: u64,
    pub nonce: Nonce,
    pub payload: &'a [u8],
}

/// The keys of a swarm: the first seals, every one opens (rotation).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<SwarmKey>,
}

impl Keyring {
    /// At least one key, at most [`MAX_KEYS`].
    pub fn new(keys: Vec<SwarmKey>) -> Result<Keyring, KeyError> {
        match keys.len() {
            0 => Err(KeyError::Empty),
            n if n > MAX_KEYS => Err(KeyError::TooMany),
            _ => Ok(Keyring { keys }),
        }
    }

    /// A key file's text: one key (64 hex characters) a line, the first
    /// sends; blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str) -> Result<Keyring, KeyError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if keys.len() == MAX_KEYS {
                return Err(KeyError::TooMany);
            }
            keys.push(SwarmKey::from_hex(line).ok_or(KeyError::BadKey(i + 1))?);
        }
        Keyring::new(keys)
    }

    pub fn keys(&self) -> &[SwarmKey] {
        &self.keys
    }

    /// The key frames are sealed with.
    pub fn sending(&self) -> &SwarmKey {
        &self.keys[0]
    }

    /// `payload` sealed with the sending key.
    pub fn seal(&self, ctx: &Context, payload: &[u8], now_ms: u64, nonce: Nonce) -> Vec<u8> {
        let key = self.sending();
        let mut out = Vec::with_capacity(OVERHEAD + payload.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key.id);
        out.extend_from_slice(&now_ms.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(payload);
        let mut m = key.tagger(ctx);
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        out
    }

    /// Checks the tag under each key whose id the frame names (ids are 4
    /// bytes: two keys may share one) in constant time per key; the
    /// payload is returned only when a tag matches. Freshness is the
    /// [`ReplayGuard`]'s business.
    pub fn open<'a>(&self, ctx: &Context, frame: &'a [u8]) -> Result<Opened<'a>, SealError> {
        if frame.len() < OVERHEAD {
            return Err(SealError::TooShort(frame.len()));
        }
        if &frame[..4] != MAGIC {
            return Err(SealError::NotSealed);
        }
        let (signed, tag) = frame.split_at(frame.len() - TAG_LEN);
        let mut named = false;
        for (key_index, key) in self.keys.iter().enumerate() {
            if frame[4..8] != key.id {
                continue;
            }
            named = true;
            let mut m = key.tagger(ctx);
            m.update(signed);
            if m.verify_slice(tag).is_ok() {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&frame[8..16]);
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(&frame[16..HEADER_LEN]);
                return Ok(Opened {
                    key_index,
                    timestamp_ms: u64::from_be_bytes(ts),
                    nonce,
                    payload: &signed[HEADER_LEN..],
                });
            }
        }
        Err(if named {
            SealError::BadTag
        } else {
            SealError::UnknownKey
        })
    }

    /// True if `token` (hex) is `label`'s token under any key of the ring;
    /// compared in constant time.
    pub fn accepts_token(&self, label: &[u8], token: &str) -> bool {
        let Some(bytes) = crate::core::ids::from_hex(token.trim()) else {
            return false;
        };
        self.keys.iter().any(|k| {
            let mut m = k.hmac();
            m.update(label);
            m.verify_slice(&bytes).is_ok()
        })
    }
}

/// Freshness of opened frames: a timestamp within `window_ms` of our clock
/// and a nonce not seen before. Remembers at most `capacity` (timestamp,
/// nonce) pairs; when full, the oldest is forgotten and nothing at or
/// before its timestamp is accepted any more (the floor), so a forgotten
/// frame can never be replayed: memory is bounded and replay protection
/// stays exact, at the price of refusing frames older than the floor.
/// Only frames whose tag matched reach it, so only key holders fill it.
#[derive(Debug)]
pub struct ReplayGuard {
    window_ms: u64,
    capacity: usize,
    seen: BTreeSet<(u64, Nonce)>,
    floor_ms: u64,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(DEFAULT_WINDOW_MS, DEFAULT_NONCE_CACHE)
    }
}

impl ReplayGuard {
    pub fn new(window_ms: u64, capacity: usize) -> ReplayGuard {
        ReplayGuard {
            window_ms,
            capacity: capacity.max(1),
            seen: BTreeSet::new(),
            floor_ms: 0,
        }
    }

    /// Accepts a frame stamped `timestamp_ms` with `nonce` once.
    pub fn check(&mut self, timestamp_ms: u64, nonce: Nonce, now_ms: u64) -> Result<(), SealError> {
        let skew_ms = timestamp_ms as i64 - now_ms as i64;
        if skew_ms.unsigned_abs() > self.window_ms {
            return Err(SealError::Stale { skew_ms });
        }
        if timestamp_ms <= self.floor_ms {
            return Err(SealError::Replayed);
        }
        // Entries past the window are refused by the timestamp alone.
        let oldest = now_ms.saturating_sub(self.window_ms);
        while self.seen.first().is_some_and(|&(ts, _)| ts < oldest) {
            self.seen.pop_first();
        }
        if !self.seen.insert((timestamp_ms, nonce)) {
            return Err(SealError::Replayed);
        }
        while self.seen.len() > self.capacity {
            if let Some((ts, _)) = self.seen.pop_first() {
                self.floor_ms = self.floor_ms.max(ts);
            }
        }
        // The newcomer itself may have been the oldest.
        if timestamp_ms <= self.floor_ms {
            return Err(SealError::Replayed);
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A fresh random nonce (the OS's generator).
pub fn fresh_nonce() -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    if getrandom::getrandom(&mut n).is_err() {
        // No OS randomness: fastrand's seeded generator still keeps nonces
        // unique, which is what the replay cache needs.
        n = fastrand::u128(..).to_be_bytes();
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn key(b: u8) -> SwarmKey {
        SwarmKey::new([b; KEY_LEN])
    }

    fn ring(keys: &[u8]) -> Keyring {
        Keyring::new(keys.iter().map(|&b| key(b)).collect()).unwrap()
    }

    fn req() -> Context {
        Context::request(OVERLAY_REQUEST)
    }

    /// RFC 4231 test case 2 through the same HMAC the frames use, and the
    /// layout byte for byte (so docs/OVERLAY.md's description is checked).
    #[test]
    fn hmac_and_layout_match_the_spec() {
        let mut m = HmacSha256::new_from_slice(b"Jefe").unwrap();
        m.update(b"what do ya want for nothing?");
        assert_eq!(
            crate::core::ids::to_hex(&m.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let k = key(7);
        let frame = ring(&[7]).seal(&req(), b"{}", NOW, [9; 16]);
        assert_eq!(frame.len(), 2 + OVERHEAD);
        assert_eq!(&frame[..4], b"BTK1");
        assert_eq!(frame[4..8], k.id());
        assert_eq!(frame[8..16], NOW.to_be_bytes());
        assert_eq!(frame[16..32], [9; 16]);
        assert_eq!(&frame[32..34], b"{}");
        let mut expect = HmacSha256::new_from_slice(&[7; 32]).unwrap();
        expect.update(&[OVERLAY_REQUEST.len() as u8]);
        expect.update(OVERLAY_REQUEST);
        expect.update(&[0; 16]);
        expect.update(&frame[..34]);
        assert_eq!(frame[34..], expect.finalize().into_bytes()[..]);
        let mut id = HmacSha256::new_from_slice(&[7; 32]).unwrap();
        id.update(b"btnode key id v1");
        assert_eq!(k.id(), id.finalize().into_bytes()[..4]);
    }

    #[test]
    fn a_sealed_frame_opens_and_any_flipped_bit_fails() {
        let r = ring(&[1]);
        let frame = r.seal(&req(), br#"{"type":"stats"}"#, NOW, [3; 16]);
        let opened = r.open(&req(), &frame).unwrap();
        assert_eq!(opened.payload, br#"{"type":"stats"}"#);
        assert_eq!((opened.timestamp_ms, opened.nonce), (NOW, [3; 16]));
        for i in 0..frame.len() {
            let mut bad = frame.clone();
            bad[i] ^= 0x01;
            assert!(r.open(&req(), &bad).is_err(), "bit flipped at byte {i}");
        }
        assert_eq!(
            r.open(&req(), &frame[..frame.len() - 1]),
            Err(SealError::BadTag)
        );
        assert_eq!(r.open(&req(), &frame[..10]), Err(SealError::TooShort(10)));
        assert_eq!(r.open(&req(), &[b'{'; OVERHEAD]), Err(SealError::NotSealed));
    }

    #[test]
    fn another_key_or_another_context_does_not_open() {
        let frame = ring(&[1]).seal(&req(), b"x", NOW, [3; 16]);
        assert_eq!(ring(&[2]).open(&req(), &frame), Err(SealError::UnknownKey));
        let r = ring(&[1]);
        assert_eq!(
            r.open(&Context::request(DNS_GOSSIP), &frame),
            Err(SealError::BadTag)
        );
        // A reply opens only as the reply to the request it names.
        let reply = r.seal(&Context::reply(OVERLAY_REPLY, [5; 16]), b"y", NOW, [6; 16]);
        assert!(r
            .open(&Context::reply(OVERLAY_REPLY, [5; 16]), &reply)
            .is_ok());
        assert_eq!(
            r.open(&Context::reply(OVERLAY_REPLY, [4; 16]), &reply),
            Err(SealError::BadTag)
        );
        assert_eq!(r.open(&req(), &reply), Err(SealError::BadTag));
        // A key with the same id but other bytes: the tag decides.
        let mut forged = frame.clone();
        let n = forged.len();
        forged[n - TAG_LEN..].copy_from_slice(&[0; TAG_LEN]);
        assert_eq!(r.open(&req(), &forged), Err(SealError::BadTag));
    }

    #[test]
    fn rotation_any_key_of_the_ring_opens_and_the_first_seals() {
        let old = ring(&[1]);
        let both = ring(&[1, 2]);
        let new_first = ring(&[2, 1]);
        let new = ring(&[2]);
        let from_old = old.seal(&req(), b"a", NOW, [1; 16]);
        let from_new = new.seal(&req(), b"b", NOW, [2; 16]);
        assert_eq!(both.open(&req(), &from_old).unwrap().key_index, 0);
        assert_eq!(both.open(&req(), &from_new).unwrap().key_index, 1);
        assert_eq!(new_first.open(&req(), &from_old).unwrap().key_index, 1);
        // Each stage of the roll talks to its neighbours.
        assert!(old
            .open(&req(), &both.seal(&req(), b"c", NOW, [3; 16]))
            .is_ok());
        assert!(new
            .open(&req(), &new_first.seal(&req(), b"d", NOW, [4; 16]))
            .is_ok());
        assert_eq!(new.open(&req(), &from_old), Err(SealError::UnknownKey));
    }

    #[test]
    fn key_files_parse_with_comments_and_refuse_bad_lines() {
        let a = "00".repeat(32);
        let b = "AB".repeat(32);
        let text = format!("# rotation: new first\n\n{b}\n  {a}  \n");
        let r = Keyring::parse(&text).unwrap();
        assert_eq!(r.keys().len(), 2);
        assert_eq!(r.sending().to_hex(), "ab".repeat(32));
        assert_eq!(Keyring::parse("# none\n"), Err(KeyError::Empty));
        assert_eq!(
            Keyring::parse(&format!("{a}\n{}\n", "0".repeat(63))),
            Err(KeyError::BadKey(2))
        );
        assert_eq!(Keyring::parse("zz"), Err(KeyError::BadKey(1)));
        let many = format!("{a}\n").repeat(MAX_KEYS + 1);
        assert_eq!(Keyring::parse(&many), Err(KeyError::TooMany));
        assert!(!format!("{:?}", r).contains(&"ab".repeat(4)));
    }

    #[test]
    fn tokens_are_derived_and_checked_against_every_key() {
        let r = ring(&[1, 2]);
        let t1 = key(1).token(DNS_WRITE_TOKEN);
        let t2 = key(2).token(DNS_WRITE_TOKEN);
        assert_eq!(t1.len(), 64);
        assert_ne!(t1, t2);
        assert!(r.accepts_token(DNS_WRITE_TOKEN, &t1));
        assert!(r.accepts_token(DNS_WRITE_TOKEN, &t2.to_uppercase()));
        assert!(!r.accepts_token(DNS_WRITE_TOKEN, &key(3).token(DNS_WRITE_TOKEN)));
        assert!(!r.accepts_token(DNS_WRITE_TOKEN, &t1[..62]));
        assert!(!r.accepts_token(DNS_WRITE_TOKEN, ""));
        assert!(!r.accepts_token(DNS_GOSSIP, &t1));
    }

    #[test]
    fn old_and_future_timestamps_are_refused() {
        let mut g = ReplayGuard::new(30_000, 100);
        assert!(g.check(NOW - 30_000, [1; 16], NOW).is_ok());
        assert!(g.check(NOW + 30_000, [2; 16], NOW).is_ok());
        assert_eq!(
            g.check(NOW - 30_001, [3; 16], NOW),
            Err(SealError::Stale { skew_ms: -30_001 })
        );
        assert_eq!(
            g.check(NOW + 30_001, [4; 16], NOW),
            Err(SealError::Stale { skew_ms: 30_001 })
        );
        assert_eq!(
            g.check(0, [5; 16], NOW),
            Err(SealError::Stale {
                skew_ms: -(NOW as i64)
            })
        );
    }

    #[test]
    fn a_replayed_nonce_is_refused_and_a_fresh_one_accepted() {
        let mut g = ReplayGuard::default();
        assert!(g.check(NOW, [1; 16], NOW).is_ok());
        assert_eq!(g.check(NOW, [1; 16], NOW + 5), Err(SealError::Replayed));
        assert!(g.check(NOW, [2; 16], NOW + 5).is_ok());
        // The same nonce at another time is another frame (the tag covers
        // both), and is accepted.
        assert!(g.check(NOW + 1, [1; 16], NOW + 5).is_ok());
        assert_eq!(g.len(), 3);
    }

    /// The cache never holds more than its capacity, and what it forgot
    /// cannot come back: the floor refuses everything at or before it.
    #[test]
    fn the_nonce_cache_is_bounded_and_forgetting_never_reopens_a_replay() {
        let mut g = ReplayGuard::new(30_000, 4);
        for i in 0..10u8 {
            assert!(g.check(NOW + u64::from(i), [i; 16], NOW).is_ok(), "{i}");
            assert!(g.len() <= 4);
        }
        // Frames 0..=5 were forgotten; replaying any is still refused.
        for i in 0..10u8 {
            assert_eq!(
                g.check(NOW + u64::from(i), [i; 16], NOW),
                Err(SealError::Replayed),
                "{i}"
            );
        }
        // A fresh frame newer than the floor is fine; one older is not.
        assert!(g.check(NOW + 20, [50; 16], NOW).is_ok());
        assert_eq!(g.check(NOW + 3, [51; 16], NOW), Err(SealError::Replayed));
        // Time passing empties the cache without raising the floor.
        let later = NOW + 60_000;
        assert!(g.check(later, [60; 16], later).is_ok());
        assert_eq!(g.len(), 1);
    }

    #[test]
    fn fresh_nonces_differ() {
        assert_ne!(fresh_nonce(), fresh_nonce());
    }
}
