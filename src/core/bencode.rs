//! Bencode (BEP 3) as a pure codec: bytes in, a [`Doc`] or a [`Value`] out,
//! and [`Value`] back to bytes.
//!
//! Hand-written rather than taken from a crate because the info-hash must be
//! the SHA-1 of the exact `info` bytes as they were sent (key order included,
//! which re-encoding a parsed value would normalise), and because the cost
//! of parsing hostile input is bounded here:
//!
//! - [`Doc`] is the borrowed form: one 8-byte token per value, byte strings
//!   and integers read from the input in place (as libtorrent's
//!   `bdecode_node`). Parsing holds at most 8 bytes per value, and a value
//!   takes at least 2 input bytes, so memory is at most ~4x the input
//!   (about 6x while the token vector grows). Metainfo uses this form.
//! - [`Value`] is the owned tree for small messages (tracker replies, BEP 10
//!   and PEX payloads, all bounded by their transports). It is built from a
//!   [`Doc`] with exact capacities: 32 bytes per value plus its bytes.
//!
//! Both bound nesting depth ([`MAX_DEPTH`]), value count ([`MAX_ELEMENTS`])
//! and check string lengths against the input before slicing.

use std::ops::Range;

/// Deepest nesting accepted; real torrents use 4 or 5 levels.
pub const MAX_DEPTH: usize = 64;
/// Most values one document may hold (bounds memory on hostile input).
pub const MAX_ELEMENTS: usize = 4_000_000;
/// Token offsets are `u32`; longer input is refused outright.
pub const MAX_INPUT: usize = u32::MAX as usize;

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// Sorted by key, keys unique (the first of duplicates wins, as in
    /// libtorrent). A sorted vector rather than a map: a map node per
    /// dictionary costs hundreds of bytes, a hostile one-key dict is 6.
    Dict(Vec<(Vec<u8>, Value)>),
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
    #[error("input of {0} bytes is over the {MAX_INPUT} byte limit")]
    TooLarge(usize),
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
    /// The entries of a dictionary, sorted by key.
    pub fn as_dict(&self) -> Option<&[(Vec<u8>, Value)]> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
    /// Dictionary lookup; `None` when this is not a dict or lacks the key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let d = self.as_dict()?;
        let i = d
            .binary_search_by(|(k, _)| k.as_slice().cmp(key.as_bytes()))
            .ok()?;
        Some(&d[i].1)
    }

    pub fn bytes(b: impl Into<Vec<u8>>) -> Value {
        Value::Bytes(b.into())
    }

    /// A dictionary from entries in any order; of duplicate keys the first
    /// is kept.
    pub fn dict<K: Into<Vec<u8>>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        let mut d: Vec<(Vec<u8>, Value)> =
            entries.into_iter().map(|(k, v)| (k.into(), v)).collect();
        // Stable, so the first of equal keys stays first and survives dedup.
        d.sort_by(|a, b| a.0.cmp(&b.0));
        d.dedup_by(|later, first| later.0 == first.0);
        Value::Dict(d)
    }
}

/// Decodes exactly one value that spans the whole input.
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    Ok(Doc::parse(input)?.root().to_value())
}

/// Decodes one value at the start of `input`, returning it and the bytes used
/// (for replies that may carry trailing garbage).
pub fn decode_prefix(input: &[u8]) -> Result<(Value, usize), DecodeError> {
    let (doc, used) = Doc::parse_prefix(input)?;
    Ok((doc.root().to_value(), used))
}

/// The byte range of the value under `key` in the top-level dictionary of
/// `input`, exactly as written (used for the info-hash). Of duplicate keys
/// the first counts.
pub fn top_level_span(input: &[u8], key: &[u8]) -> Result<Option<Range<usize>>, DecodeError> {
    let (doc, _) = Doc::parse_prefix(input)?;
    let root = doc.root();
    if root.kind() != Kind::Dict {
        let at = 0;
        return Err(DecodeError::Unexpected {
            byte: input[at],
            at,
        });
    }
    Ok(root.get_bytes_key(key).map(|v| v.span()))
}

/// One parsed value: where it starts in the input, and the index of the
/// token after its subtree (so siblings are one hop apart). The kind is the
/// input byte at `start`.
#[derive(Clone, Copy, Debug)]
struct Token {
    start: u32,
    next: u32,
}

/// A parsed, validated document that borrows its input.
#[derive(Debug)]
pub struct Doc<'a> {
    input: &'a [u8],
    tokens: Vec<Token>,
}

/// What a [`Node`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int,
    Bytes,
    List,
    Dict,
}

/// A value inside a [`Doc`]; cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Node<'d> {
    input: &'d [u8],
    tokens: &'d [Token],
    idx: usize,
}

impl<'a> Doc<'a> {
    /// Parses exactly one value spanning the whole input.
    pub fn parse(input: &'a [u8]) -> Result<Doc<'a>, DecodeError> {
        let (doc, used) = Doc::parse_prefix(input)?;
        if used != input.len() {
            return Err(DecodeError::Trailing(used));
        }
        Ok(doc)
    }

    /// Parses one value at the start of `input`; returns it and the bytes used.
    pub fn parse_prefix(input: &'a [u8]) -> Result<(Doc<'a>, usize), DecodeError> {
        if input.len() > MAX_INPUT {
            return Err(DecodeError::TooLarge(input.len()));
        }
        let mut p = Parser {
            input,
            pos: 0,
            tokens: Vec::new(),
        };
        p.value(0)?;
        let used = p.pos;
        Ok((
            Doc {
                input,
                tokens: p.tokens,
            },
            used,
        ))
    }

    pub fn root(&self) -> Node<'_> {
        Node {
            input: self.input,
            tokens: &self.tokens,
            idx: 0,
        }
    }

    /// Number of values in the document.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

impl<'d> Node<'d> {
    fn start(&self) -> usize {
        self.tokens[self.idx].start as usize
    }

    pub fn kind(&self) -> Kind {
        match self.input[self.start()] {
            b'i' => Kind::Int,
            b'l' => Kind::List,
            b'd' => Kind::Dict,
            _ => Kind::Bytes,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        if self.kind() != Kind::Int {
            return None;
        }
        let (n, _) = read_int(self.input, self.start() + 1, b'e').ok()?;
        Some(n)
    }

    pub fn as_bytes(&self) -> Option<&'d [u8]> {
        if self.kind() != Kind::Bytes {
            return None;
        }
        let (len, body) = read_int(self.input, self.start(), b':').ok()?;
        Some(&self.input[body..body + len as usize])
    }

    pub fn as_str(&self) -> Option<&'d str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    fn children(&self) -> Children<'d> {
        Children {
            input: self.input,
            tokens: self.tokens,
            at: self.idx + 1,
            end: self.tokens[self.idx].next as usize,
        }
    }

    /// The items of a list; `None` when this is not a list.
    pub fn list(&self) -> Option<Children<'d>> {
        (self.kind() == Kind::List).then(|| self.children())
    }

    /// The `(key, value)` entries of a dict in input order; `None` when
    /// this is not a dict.
    pub fn entries(&self) -> Option<Entries<'d>> {
        (self.kind() == Kind::Dict).then(|| Entries(self.children()))
    }

    /// Dictionary lookup (first of duplicate keys); `None` when this is not
    /// a dict or lacks the key. Linear in the dict's size.
    pub fn get(&self, key: &str) -> Option<Node<'d>> {
        self.get_bytes_key(key.as_bytes())
    }

    pub fn get_bytes_key(&self, key: &[u8]) -> Option<Node<'d>> {
        self.entries()?.find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The bytes of this value exactly as written in the input.
    pub fn span(&self) -> Range<usize> {
        let start = self.start();
        let end = match self.kind() {
            Kind::Int => read_int(self.input, start + 1, b'e').map_or(start, |(_, e)| e),
            Kind::Bytes => {
                read_int(self.input, start, b':').map_or(start, |(len, body)| body + len as usize)
            }
            // The last child's end plus the closing `e`; recursion is bounded
            // by MAX_DEPTH.
            Kind::List | Kind::Dict => match self.children().last() {
                Some(last) => last.span().end + 1,
                None => start + 2,
            },
        };
        start..end
    }

    /// The owned form of this value (and everything under it).
    pub fn to_value(&self) -> Value {
        match self.kind() {
            Kind::Int => Value::Int(self.as_int().unwrap_or(0)),
            Kind::Bytes => Value::Bytes(self.as_bytes().unwrap_or(b"").to_vec()),
            Kind::List => {
                // Exact capacity: `collect` would start at 4 items per list.
                let mut items = Vec::with_capacity(self.children().count());
                items.extend(self.children().map(|c| c.to_value()));
                Value::List(items)
            }
            Kind::Dict => {
                let mut d: Vec<(Vec<u8>, Value)> = Vec::with_capacity(self.children().count() / 2);
                for (k, v) in Entries(self.children()) {
                    d.push((k.to_vec(), v.to_value()));
                }
                // Stable sort keeps the first of duplicate keys first.
                d.sort_by(|a, b| a.0.cmp(&b.0));
                d.dedup_by(|later, first| later.0 == first.0);
                d.shrink_to_fit();
                Value::Dict(d)
            }
        }
    }
}

/// Iterator over the items of a list (or the raw key/value items of a dict).
#[derive(Clone, Debug)]
pub struct Children<'d> {
    input: &'d [u8],
    tokens: &'d [Token],
    at: usize,
    end: usize,
}

impl<'d> Iterator for Children<'d> {
    type Item = Node<'d>;
    fn next(&mut self) -> Option<Node<'d>> {
        if self.at >= self.end {
            return None;
        }
        let n = Node {
            input: self.input,
            tokens: self.tokens,
            idx: self.at,
        };
        self.at = self.tokens[self.at].next as usize;
        Some(n)
    }
}

/// Iterator over the `(key, value)` entries of a dict, in input order.
#[derive(Clone, Debug)]
pub struct Entries<'d>(Children<'d>);

impl<'d> Iterator for Entries<'d> {
    type Item = (&'d [u8], Node<'d>);
    fn next(&mut self) -> Option<Self::Item> {
        let k = self.0.next()?;
        let v = self.0.next()?;
        Some((k.as_bytes().unwrap_or(b""), v))
    }
}

/// Reads the validated integer that starts at `at` and ends at `end`;
/// returns it and the position after the terminator.
fn read_int(input: &[u8], at: usize, end: u8) -> Result<(i64, usize), DecodeError> {
    let rest = &input[at.min(input.len())..];
    let len = rest
        .iter()
        .position(|&b| b == end)
        .ok_or(DecodeError::Eof(input.len()))?;
    let text = &rest[..len];
    let digits = text.strip_prefix(b"-").unwrap_or(text);
    let ok = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits == b"0" || digits[0] != b'0')
        && !(text[0] == b'-' && digits == b"0");
    if !ok {
        return Err(DecodeError::BadInt(at));
    }
    let n = std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .ok_or(DecodeError::BadInt(at))?;
    Ok((n, at + len + 1))
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    tokens: Vec<Token>,
}

impl Parser<'_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Eof(self.pos))
    }

    fn value(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep(self.pos));
        }
        if self.tokens.len() >= MAX_ELEMENTS {
            return Err(DecodeError::TooManyElements);
        }
        let idx = self.tokens.len();
        // Offsets fit: the input is at most MAX_INPUT bytes.
        self.tokens.push(Token {
            start: self.pos as u32,
            next: 0,
        });
        match self.peek()? {
            b'i' => {
                let (_, after) = read_int(self.input, self.pos + 1, b'e')?;
                self.pos = after;
            }
            b'l' => {
                self.pos += 1;
                while self.peek()? != b'e' {
                    self.value(depth + 1)?;
                }
                self.pos += 1;
            }
            b'd' => {
                self.pos += 1;
                while self.peek()? != b'e' {
                    if !self.peek()?.is_ascii_digit() {
                        return Err(DecodeError::KeyNotString(self.pos));
                    }
                    self.value(depth + 1)?;
                    self.value(depth + 1)?;
                }
                self.pos += 1;
            }
            b'0'..=b'9' => self.string()?,
            byte => return Err(DecodeError::Unexpected { byte, at: self.pos }),
        }
        self.tokens[idx].next = self.tokens.len() as u32;
        Ok(())
    }

    fn string(&mut self) -> Result<(), DecodeError> {
        let at = self.pos;
        let (len, body) = read_int(self.input, at, b':').map_err(|_| DecodeError::BadLength(at))?;
        let len = usize::try_from(len).map_err(|_| DecodeError::BadLength(at))?;
        if len > self.input.len() - body {
            return Err(DecodeError::Eof(self.input.len()));
        }
        self.pos = body + len;
        Ok(())
    }
}

/// Encodes canonically (dictionary keys sorted, as [`Value::Dict`] keeps them).
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
                out.extend_from_slice(k.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(k);
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

    #[test]
    fn duplicate_keys_keep_the_first_in_both_forms() {
        let doc = b"d1:ai1e1:bi2e1:ai3ee";
        let v = decode(doc).unwrap();
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
        assert_eq!(v.as_dict().unwrap().len(), 2);
        let d = Doc::parse(doc).unwrap();
        assert_eq!(d.root().get("a").and_then(|n| n.as_int()), Some(1));
        assert_eq!(
            Value::dict([("k", Value::Int(1)), ("k", Value::Int(2))]).get("k"),
            Some(&Value::Int(1))
        );
    }

    #[test]
    fn doc_reads_in_place_and_spans_nested_values() {
        let doc = b"d1:xl0:lei-5ed1:y3:abceee";
        let d = Doc::parse(doc).unwrap();
        assert_eq!(d.len(), 9);
        let x = d.root().get("x").unwrap();
        assert_eq!(
            &doc[x.span()],
            b"l0:lei-5ed1:y3:abceee".strip_suffix(b"e").unwrap()
        );
        let items: Vec<Kind> = x.list().unwrap().map(|n| n.kind()).collect();
        assert_eq!(items, [Kind::Bytes, Kind::List, Kind::Int, Kind::Dict]);
        let last = x.list().unwrap().last().unwrap();
        assert_eq!(last.get("y").and_then(|n| n.as_bytes()), Some(&b"abc"[..]));
        assert_eq!(x.list().unwrap().nth(2).and_then(|n| n.as_int()), Some(-5));
        assert!(x.get("y").is_none() && x.as_int().is_none() && x.as_bytes().is_none());
    }

    #[test]
    fn element_count_is_bounded() {
        let mut many = b"l".to_vec();
        many.extend(std::iter::repeat_n(&b"le"[..], MAX_ELEMENTS).flatten());
        many.push(b'e');
        assert_eq!(decode(&many), Err(DecodeError::TooManyElements));
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
                .prop_map(Value::dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trips(v in value_strategy()) {
            prop_assert_eq!(decode(&encode(&v)), Ok(v));
        }

        #[test]
        fn doc_spans_are_the_encoding(v in value_strategy()) {
            let bytes = encode(&v);
            let d = Doc::parse(&bytes).unwrap();
            prop_assert_eq!(d.root().span(), 0..bytes.len());
            prop_assert_eq!(d.root().to_value(), v);
            if let Some(items) = d.root().list() {
                for item in items {
                    prop_assert_eq!(encode(&item.to_value()), bytes[item.span()].to_vec());
                }
            }
        }

        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&bytes);
            let _ = top_level_span(&bytes, b"info");
        }
    }
}
