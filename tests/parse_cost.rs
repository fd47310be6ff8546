//! What parsing costs, measured: large structured inputs (deep nesting, long
//! paths, many entries, long strings) fed to each parser of untrusted bytes,
//! with the bytes it allocates counted by a per-thread counting allocator.
//!
//! Fuzzing finds crashes; these find cost. Each bound is a multiple of the
//! input size (plus a small constant), generous enough not to be flaky and
//! tight enough that a parser doing quadratic work or keeping a tree of
//! per-node heap objects fails it. Only this test binary installs the
//! counting allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use btnode::core::bencode;
use btnode::core::metainfo::Metainfo;

struct Counting;

thread_local! {
    // Per thread, so tests running in parallel do not see each other.
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: the allocator runs during thread teardown too.
    let _ = CURRENT.try_with(|c| {
        let now = c.get() + delta;
        c.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note(-(layout.size() as isize));
        System.dealloc(ptr, layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size() as isize);
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Counted as alloc-then-free: a moving realloc briefly holds both.
        note(new_size as isize);
        let p = System.realloc(ptr, layout, new_size);
        note(-(layout.size() as isize));
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`, returning its result, the most bytes it held at once beyond
/// what was live before, and how long it took.
fn measure<R>(f: impl FnOnce() -> R) -> (R, usize, Duration) {
    let base = CURRENT.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let start = Instant::now();
    let r = f();
    let took = start.elapsed();
    let peak = PEAK.with(Cell::get) - base;
    (r, peak.max(0) as usize, took)
}

/// Asserts `peak <= factor * input + slack` and a generous time bound.
fn assert_cost(what: &str, input: usize, peak: usize, took: Duration, factor: usize) {
    let slack = 256 * 1024;
    eprintln!("{what}: {input} B in, {peak} B peak, {took:?}");
    assert!(
        peak <= factor * input + slack,
        "{what}: {peak} bytes allocated for {input} bytes of input (bound {factor}x + {slack})"
    );
    // Generous: a debug build on a loaded machine; the old path-prefix
    // code took minutes here.
    assert!(took < Duration::from_secs(20), "{what}: took {took:?}");
}

// ---- builders (raw bencode, so the builders cost nothing to measure) ----

fn bstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

/// A torrent with `files` (already encoded as the bencoded list body) and
/// a `length`-byte total at 16 KiB pieces.
fn torrent_with(files_body: &[u8], total: u64, extra_root: &[u8]) -> Vec<u8> {
    let pieces = total.div_ceil(16384).max(1) as usize;
    let mut t = Vec::with_capacity(files_body.len() + 64 + pieces * 20 + extra_root.len());
    t.extend_from_slice(extra_root);
    // Root keys are written in any order; the parser accepts that.
    t.splice(0..0, b"d".iter().copied());
    t.extend_from_slice(b"4:infod5:filesl");
    t.extend_from_slice(files_body);
    t.extend_from_slice(b"e4:name4:root12:piece lengthi16384e6:pieces");
    bstr(&mut t, &vec![0u8; pieces * 20]);
    t.extend_from_slice(b"ee");
    t
}

fn file_entry(out: &mut Vec<u8>, length: u64, path: &[&[u8]]) {
    out.extend_from_slice(b"d6:lengthi");
    out.extend_from_slice(length.to_string().as_bytes());
    out.extend_from_slice(b"e4:pathl");
    for c in path {
        bstr(out, c);
    }
    out.extend_from_slice(b"ee");
}

// ---- metainfo ----

#[test]
fn one_deep_path_costs_in_proportion() {
    // Issue 10 item 7: 8,000 components took 3.3 s and 1.75 GB before.
    let comps: Vec<&[u8]> = vec![b"a"; 4_000];
    let mut files = Vec::new();
    file_entry(&mut files, 1, &comps);
    let t = torrent_with(&files, 1, b"");
    let (r, peak, took) = measure(|| Metainfo::from_bytes(&t).map(|m| m.files.len()));
    eprintln!("deep path: {r:?}");
    assert_cost("4,000-component path", t.len(), peak, took, 16);
}

#[test]
fn many_deep_paths_cost_in_proportion() {
    // The folder check must not store every prefix of every path.
    let mut files = Vec::new();
    let comps: Vec<Vec<u8>> = (0..100).map(|i| format!("d{i}").into_bytes()).collect();
    for f in 0..2_000 {
        let mut path: Vec<&[u8]> = comps.iter().map(Vec::as_slice).collect();
        let leaf = format!("f{f}");
        path.push(leaf.as_bytes());
        file_entry(&mut files, 1, &path);
    }
    let t = torrent_with(&files, 2_000, b"");
    let (r, peak, took) = measure(|| Metainfo::from_bytes(&t).map(|m| m.files.len()));
    assert_eq!(r.unwrap(), 2_000);
    assert_cost("2,000 files 100 deep", t.len(), peak, took, 16);
}

#[test]
fn a_million_empty_file_entries_are_refused_cheaply() {
    // Issue 10 item 8: 31 MB of `files` entries peaked at 902 MiB.
    let mut files = Vec::new();
    for i in 0..1_000_000u32 {
        file_entry(&mut files, 0, &[i.to_string().as_bytes()]);
    }
    let t = torrent_with(&files, 1, b"");
    let (r, peak, took) = measure(|| Metainfo::from_bytes(&t).map(|m| m.files.len()));
    assert!(r.is_err(), "a {} byte torrent was accepted", t.len());
    assert_cost("1,000,000 empty files", t.len(), peak, took, 1);
}

#[test]
fn many_file_entries_under_the_size_cap_cost_in_proportion() {
    let mut files = Vec::new();
    let mut n = 0u32;
    while files.len() < 4 * 1024 * 1024 {
        file_entry(&mut files, 1, &[n.to_string().as_bytes()]);
        n += 1;
    }
    let t = torrent_with(&files, n as u64, b"");
    let (r, peak, took) = measure(|| Metainfo::from_bytes(&t).map(|m| m.files.len()));
    eprintln!("{n} files: {:?}", r.as_ref().map_err(ToString::to_string));
    assert_cost("4 MB of file entries", t.len(), peak, took, 16);
}

#[test]
fn millions_of_empty_lists_cost_in_proportion() {
    // Issue 10 item 8: 8 MB of 4 million empty lists loaded at 255 MiB.
    let mut extra = b"13:announce-listl".to_vec();
    for _ in 0..4_000_000 {
        extra.extend_from_slice(b"le");
    }
    extra.push(b'e');
    let mut files = Vec::new();
    file_entry(&mut files, 1, &[b"x"]);
    let t = torrent_with(&files, 1, &extra);
    let (r, peak, took) = measure(|| Metainfo::from_bytes(&t).map(|m| m.trackers.len()));
    eprintln!("empty lists: {:?}", r.as_ref().map_err(ToString::to_string));
    assert_cost("4,000,000 empty lists", t.len(), peak, took, 12);
}

#[test]
fn long_strings_are_not_copied_more_than_once() {
    let mut extra = b"8:announce".to_vec();
    bstr(&mut extra, &vec![b'a'; 9 * 1024 * 1024]);
    let mut files = Vec::new();
    file_entry(&mut files, 1, &[b"x"]);
    let t = torrent_with(&files, 1, &extra);
    let (r, peak, took) = measure(|| Metainfo::from_bytes(&t).map(|m| m.trackers.len()));
    assert!(r.is_ok());
    assert_cost("9 MB announce URL", t.len(), peak, took, 1);
}

// ---- bencode ----

#[test]
fn bencode_nesting_and_lists_cost_in_proportion() {
    let mut wide = b"l".to_vec();
    for _ in 0..2_000_000 {
        wide.extend_from_slice(b"le");
    }
    wide.push(b'e');
    let (r, peak, took) = measure(|| bencode::decode(&wide).is_ok());
    assert!(r);
    assert_cost("2,000,000 empty lists (owned)", wide.len(), peak, took, 48);

    let mut deep = Vec::new();
    for _ in 0..20_000 {
        deep.extend_from_slice(&[b"l".repeat(63), b"e".repeat(63)].concat());
    }
    deep.insert(0, b'l');
    deep.push(b'e');
    let (r, peak, took) = measure(|| bencode::decode(&deep).is_ok());
    assert!(r);
    assert_cost("20,000 trees 63 deep (owned)", deep.len(), peak, took, 48);

    let mut dicts = b"l".to_vec();
    for i in 0..300_000u32 {
        dicts.push(b'd');
        bstr(&mut dicts, i.to_string().as_bytes());
        dicts.extend_from_slice(b"0:e");
    }
    dicts.push(b'e');
    let (r, peak, took) = measure(|| bencode::decode(&dicts).is_ok());
    assert!(r);
    assert_cost("300,000 one-key dicts (owned)", dicts.len(), peak, took, 48);
}

// ---- the other parsers of untrusted bytes (bounded by their transports;
// these check the cost stays in proportion within those bounds) ----

#[test]
fn tracker_replies_cost_in_proportion() {
    use btnode::wire::tracker::{decode_scrape, AnnounceReply};
    // 1 MiB (the client's reply cap) of dictionary-form peers.
    let mut r = b"d8:intervali1800e5:peersl".to_vec();
    while r.len() < (1 << 20) - 64 {
        r.extend_from_slice(b"d2:ip8:10.0.0.17:peer id20:abcdefghijklmnopqrst4:porti6881ee");
    }
    r.extend_from_slice(b"ee");
    let (res, peak, took) = measure(|| AnnounceReply::decode(&r).map(|a| a.peers.len()));
    assert!(res.unwrap() > 10_000);
    assert_cost("1 MiB of dict peers", r.len(), peak, took, 32);

    let mut s = b"d5:filesd".to_vec();
    let mut i = 0u32;
    while s.len() < (1 << 20) - 64 {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(&i.to_be_bytes());
        bstr(&mut s, &h);
        s.extend_from_slice(b"d8:completei1e10:downloadedi2e10:incompletei3ee");
        i += 1;
    }
    s.extend_from_slice(b"ee");
    let (res, peak, took) = measure(|| decode_scrape(&s).map(|m| m.len()));
    assert_eq!(res.unwrap(), i as usize);
    assert_cost("1 MiB scrape reply", s.len(), peak, took, 32);
}

#[test]
fn peer_extension_payloads_cost_in_proportion() {
    use btnode::wire::peer::ExtendedHandshake;
    use btnode::wire::pex::PexMessage;
    // A frame is at most a block plus header (~16 KiB) for small torrents,
    // more for large bitfields; 1 MiB covers both.
    let mut e = b"d1:md6:ut_pexi1ee1:v".to_vec();
    bstr(&mut e, &vec![b'v'; 1 << 19]);
    e.extend_from_slice(b"4:junkl");
    while e.len() < 1 << 20 {
        e.extend_from_slice(b"lelelelede");
    }
    e.extend_from_slice(b"ee");
    let (res, peak, took) = measure(|| ExtendedHandshake::decode(&e).is_ok());
    assert!(res);
    assert_cost("1 MiB BEP 10 handshake", e.len(), peak, took, 48);

    let mut p = b"d5:added".to_vec();
    bstr(&mut p, &vec![7u8; 6 * 100_000]);
    p.extend_from_slice(b"7:dropped");
    bstr(&mut p, &vec![9u8; 6 * 50_000]);
    p.push(b'e');
    let (res, peak, took) = measure(|| PexMessage::decode(&p).map(|m| m.added.len()));
    assert!(res.unwrap() <= btnode::wire::pex::MAX_PEX_PEERS);
    assert_cost("900 KB PEX message", p.len(), peak, took, 4);
}

#[test]
fn metadata_payloads_and_magnet_links_cost_in_proportion() {
    use btnode::core::Magnet;
    use btnode::wire::metadata::MetadataMessage;
    let mut m = b"d8:msg_typei1e5:piecei0e10:total_sizei99e4:junkl".to_vec();
    while m.len() < 1 << 20 {
        m.extend_from_slice(b"lelelelede");
    }
    m.extend_from_slice(b"ee");
    m.extend_from_slice(&[0u8; 16384]);
    let (res, peak, took) = measure(|| MetadataMessage::decode(&m).is_ok());
    assert!(res);
    assert_cost("1 MiB ut_metadata message", m.len(), peak, took, 8);

    let mut link = format!("magnet:?xt=urn:btih:{}", "ab".repeat(20));
    while link.len() < 60 * 1024 {
        link.push_str("&dn=%41%42%43&xl=1&so=0-1&tr=http://t/a&x.pe=h:1");
    }
    let (res, peak, took) = measure(|| Magnet::parse(&link).map(|m| m.trackers.len()));
    assert_eq!(res, Ok(1));
    assert_cost("60 KiB magnet link", link.len(), peak, took, 4);
}

#[test]
fn overlay_frames_cost_in_proportion() {
    use btnode::wire::overlay::{read_frame, MAX_ENTRIES, MAX_FRAME};
    let entry = br#"{"info_hash":"0123456789abcdef0123456789abcdef01234567","addr":"10.0.0.1:6881","peer_id":"6162636465666768696a6b6c6d6e6f7071727374","left":0,"last_seen":1000000},"#;
    // The most entries a frame may carry, then a frame full of them (over
    // the entry cap: refused, still at a cost in proportion).
    for count in [MAX_ENTRIES, (MAX_FRAME as usize - 200) / entry.len()] {
        let mut body = br#"{"type":"sync","overlay_port":6000,"digest":1,"full":true,"members":[],"entries":["#.to_vec();
        for _ in 0..count {
            body.extend_from_slice(entry);
        }
        body.pop();
        body.extend_from_slice(b"]}");
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        let (res, peak, took) = measure(|| read_frame(&mut &frame[..]).map(|_| ()));
        assert_eq!(res.is_ok(), count <= MAX_ENTRIES, "{res:?}");
        assert_cost(
            &format!("overlay frame of {count} entries"),
            frame.len(),
            peak,
            took,
            8,
        );
    }

    let mut deep = (MAX_FRAME).to_be_bytes().to_vec();
    deep.extend(std::iter::repeat_n(b'[', MAX_FRAME as usize));
    let (res, peak, took) = measure(|| read_frame(&mut &deep[..]).is_err());
    assert!(res);
    assert_cost("1 MiB of nested JSON", deep.len(), peak, took, 2);
}

#[test]
fn dns_bodies_and_queries_cost_in_proportion() {
    use btnode::dns::api::{handle, MAX_BODY};
    use btnode::dns::records::Records;
    let mut body = br#"{"records":["#.to_vec();
    let mut i = 0u32;
    while body.len() < MAX_BODY as usize - 200 {
        body.extend_from_slice(
            format!(
                r#"{{"name":"n{i}","ip":"10.0.{}.{}","ttl":60,"timestamp":1000000}},"#,
                i / 256 % 256,
                i % 256
            )
            .as_bytes(),
        );
        i += 1;
    }
    body.pop();
    body.extend_from_slice(b"]}");
    let records = parking_lot::RwLock::new(Records::default());
    let (res, peak, took) =
        measure(|| handle("POST", "/gossip", &body, &records, 1_000_000).status);
    eprintln!("gossip of {i} records: status {res}");
    assert_cost("1 MiB gossip body", body.len(), peak, took, 48);

    let records = Records::default();
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for _ in 0..127 {
        q.extend_from_slice(b"\x01a");
    }
    q.push(0);
    q.extend_from_slice(&[0, 1, 0, 1]);
    let (_, peak, took) =
        measure(|| btnode::dns::server::answer(&q, &records, 1_000_000, 0, Some("btnode")));
    assert_cost("deepest DNS name", q.len(), peak, took, 64);
}
