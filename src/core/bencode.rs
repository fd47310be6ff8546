//! Bencode (BEP 3) as a pure codec: bytes in, [`Value`] out, and back.
//!
//! Hand-written rather than taken from a crate because the info-hash must be
//! the SHA-1 of the exact `info` bytes as they were sent (key order included,
//! which re-encoding a parsed value would normalise), and because every
//! allocation is bounded here: nesting depth, element count, and string
//! lengths are checked against the input before anything is allocated.

use std::collections::BTreeMap;
use std::ops::Range;

/// Deepest nesting accepted; real torrents use 4 or 5 levels.
pub const MAX_DEPTH: usize = 64;
/// Most values one document may hold (bounds memory on hostile input).
pub const MAX_ELEMENTS: usize = 4_000_000;

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("bencode ends early at byte {0}")]
    Eof(usize),
    #[error("unexpected byte {byte:#04x} at {at}")]
    Unexpected { byte: u8, at: usize },
    #[error("bad integer at byte {0}")]
    BadInt(usize),
    #[error("bad string length at byte {0}")]
    BadLength(usize),
    #[error("dictionary key is not a string at byte {0}")]
    KeyNotString(usize),
    #[error("nesting deeper than {MAX_DEPTH} at byte {0}")]
    TooDeep(usize),
    #[error("more than {MAX_ELEMENTS} values")]
    TooManyElements,
    #[error("trailing bytes after the value at byte {0}")]
    Trailing(usize),
}

impl Value {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// Dictionary lookup; `None` when this is not a dict or lacks the key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.get(key.as_bytes())
    }

    pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(b.into())
    }

    pub fn dict<K: Into<Vec<u8>>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Dict(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

/// Decodes exactly one value that spans the whole input.
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    let mut p = Parser::new(input);
    let v = p.value(0)?;
    if p.pos != input.len() {
        return Err(DecodeError::Trailing(p.pos));
    }
    Ok(v)
}

/// Decodes one value at the start of `input`, returning it and the bytes used
/// (for replies that may carry trailing garbage).
pub fn decode_prefix(input: &[u8]) -> Result<(Value, usize), DecodeError> {
    let mut p = Parser::new(input);
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// The byte range of the value under `key` in the top-level dictionary of
/// `input`, exactly as written (used for the info-hash).
pub fn top_level_span(input: &[u8], key: &[u8]) -> Result<Option<Range<usize>>, DecodeError> {
    let mut p = Parser::new(input);
    p.expect(b'd')?;
    let mut found = None;
    loop {
        match p.peek()? {
            b'e' => break,
            b'0'..=b'9' => {
                let k = p.string()?;
                let start = p.pos;
                p.value(1)?;
                if k == key && found.is_none() {
                    found = Some(start..p.pos);
                }
            }
            _ => return Err(DecodeError::KeyNotString(p.pos)),
        }
    }
    Ok(found)
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    elements: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a [u8]) -> Self {
        Parser {
            input,
            pos: 0,
            elements: 0,
        }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Eof(self.pos))
    }

    fn expect(&mut self, byte: u8) -> Result<(), DecodeError> {
        let b = self.peek()?;
        if b != byte {
            return Err(DecodeError::Unexpected {
                byte: b,
                at: self.pos,
            });
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(self.pos));
        }
        self.elements += 1;
        if self.elements > MAX_ELEMENTS {
            return Err(DecodeError::TooManyElements);
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let n = self.integer(b'e')?;
                Ok(Value::Int(n))
            }
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut map = BTreeMap::new();
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(DecodeError::KeyNotString(self.pos));
                    }
                    let k = self.string()?.to_vec();
                    let v = self.value(depth + 1)?;
                    // Duplicate keys: the first one wins, as in libtorrent.
                    map.entry(k).or_insert(v);
                }
                self.pos += 1;
                Ok(Value::Dict(map))
            }
            b'0'..=b'9' => Ok(Value::Bytes(self.string()?.to_vec())),
            byte => Err(DecodeError::Unexpected { byte, at: self.pos }),
        }
    }

    /// Digits up to `end`, strict: no leading zeros, no "-0", fits in i64.
    fn integer(&mut self, end: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let rest = &self.input[start..];
        let len = rest
            .iter()
            .position(|&b| b == end)
            .ok_or(DecodeError::Eof(self.input.len()))?;
        let text = &rest[..len];
        let digits = text.strip_prefix(b"-").unwrap_or(text);
        let ok = !digits.is_empty()
            && digits.iter().all(u8::is_ascii_digit)
            && (digits == b"0" || digits[0] != b'0')
            && !(text[0] == b'-' && digits == b"0");
        if !ok {
            return Err(DecodeError::BadInt(start));
        }
        let n = std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(DecodeError::BadInt(start))?;
        self.pos = start + len + 1;
        Ok(n)
    }

    fn string(&mut self) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let len = self.integer(b':').map_err(|_| DecodeError::BadLength(at))?;
        let len = usize::try_from(len).map_err(|_| DecodeError::BadLength(at))?;
        if len > self.input.len() - self.pos {
            return Err(DecodeError::Eof(self.input.len()));
        }
        let s = &self.input[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }
}

/// Encodes canonically (dictionary keys sorted, as BTreeMap keeps them).
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

pub fn encode_into(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(i.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => {
            out.extend_from_slice(b.len().to_string().as_bytes());
            out.push(b':');
            out.extend_from_slice(b);
        }
        Value::List(items) => {
            out.push(b'l');
            for item in items {
                encode_into(item, out);
            }
            out.push(b'e');
        }
        Value::Dict(map) => {
            out.push(b'd');
            for (k, v) in map {
                encode_into(&Value::Bytes(k.clone()), out);
                encode_into(v, out);
            }
            out.push(b'e');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_basic_types() {
        assert_eq!(decode(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(decode(b"i-7e"), Ok(Value::Int(-7)));
        assert_eq!(decode(b"4:spam"), Ok(Value::bytes("spam")));
        assert_eq!(
            decode(b"l4:spami1ee"),
            Ok(Value::List(vec![Value::bytes("spam"), Value::Int(1)]))
        );
        let d = decode(b"d3:cow3:moo4:spam4:eggse").unwrap();
        assert_eq!(d.get("cow").and_then(Value::as_str), Some("moo"));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b"i01e"[..],
            b"i-0e",
            b"ie",
            b"i12",
            b"5:abc",
            b"-1:a",
            b"di1ei2ee",
            b"l",
            b"x",
            b"i1ei2e",
            b"i99999999999999999999e",
            b"18446744073709551616:a",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn depth_is_bounded() {
        let deep = [vec![b'l'; 100_000], vec![b'e'; 100_000]].concat();
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep(MAX_DEPTH + 1)));
    }

    #[test]
    fn span_is_exact_even_when_keys_are_unsorted() {
        let doc = b"d4:infod1:bi1e1:ai2ee3:zzz0:e";
        let span = top_level_span(doc, b"info").unwrap().unwrap();
        assert_eq!(&doc[span], b"d1:bi1e1:ai2ee");
    }

    fn value_strategy() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..6
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips(v in value_strategy()) {
            prop_assert_eq!(decode(&encode(&v)), Ok(v));
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = top_level_span(&bytes, b"info");
        }
    }
}
