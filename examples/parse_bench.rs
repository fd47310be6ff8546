//! Prints parse time (and bytes held at peak) against input size for the
//! parsers of untrusted bytes, on the large structured inputs of
//! `tests/parse_cost.rs`. Numbers only, no assertions: run it through
//! `scripts/parse-bench.sh` and compare the growth per row.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

use btnode::core::bencode;
use btnode::core::metainfo::Metainfo;

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(now, Relaxed);
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size(), Relaxed);
        System.dealloc(p, l)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn bstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(s);
}

fn torrent(files: &[u8], total: u64, extra: &[u8]) -> Vec<u8> {
    let pieces = total.div_ceil(16384).max(1) as usize;
    let mut t = b"d".to_vec();
    t.extend_from_slice(extra);
    t.extend_from_slice(b"4:infod5:filesl");
    t.extend_from_slice(files);
    t.extend_from_slice(b"e4:name4:root12:piece lengthi16384e6:pieces");
    bstr(&mut t, &vec![0u8; pieces * 20]);
    t.extend_from_slice(b"ee");
    t
}

fn files(n: usize, depth: usize) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    for i in 0..n {
        out.extend_from_slice(b"d6:lengthi1e4:pathl");
        for d in 0..depth {
            bstr(&mut out, format!("d{d}").as_bytes());
        }
        bstr(&mut out, i.to_string().as_bytes());
        out.extend_from_slice(b"ee");
    }
    (out, n as u64)
}

fn row(what: &str, input: &[u8], f: impl Fn(&[u8]) -> String) {
    let base = CURRENT.load(Relaxed);
    PEAK.store(base, Relaxed);
    let start = Instant::now();
    let outcome = f(input);
    let took = start.elapsed();
    let peak = PEAK.load(Relaxed).saturating_sub(base);
    println!(
        "{what:<28} {:>10} B  {:>9.2} ms  {:>11} B peak  {:>5.1}x  {outcome}",
        input.len(),
        took.as_secs_f64() * 1e3,
        peak,
        peak as f64 / input.len() as f64
    );
}

fn meta(b: &[u8]) -> String {
    match Metainfo::from_bytes(b) {
        Ok(m) => format!("ok, {} files", m.files.len()),
        Err(e) => format!(
            "refused: {}",
            e.to_string().chars().take(50).collect::<String>()
        ),
    }
}

fn main() {
    println!(
        "{:<28} {:>12}  {:>12}  {:>16}  {:>6}",
        "input", "size", "time", "allocated", "ratio"
    );
    for n in [1_000, 10_000, 100_000, 300_000] {
        let (f, total) = files(n, 0);
        row(
            &format!("metainfo: {n} files"),
            &torrent(&f, total, b""),
            meta,
        );
    }
    for depth in [16, 64, 127] {
        let (f, total) = files(2_000, depth);
        row(
            &format!("metainfo: 2000 files {depth} deep"),
            &torrent(&f, total, b""),
            meta,
        );
    }
    for depth in [1_000, 12_000] {
        let mut f = b"d6:lengthi1e4:pathl".to_vec();
        for _ in 0..depth {
            f.extend_from_slice(b"1:a");
        }
        f.extend_from_slice(b"ee");
        row(
            &format!("metainfo: 1 path {depth} deep"),
            &torrent(&f, 1, b""),
            meta,
        );
    }
    for n in [100_000, 1_000_000, 4_000_000] {
        let mut extra = b"13:announce-listl".to_vec();
        extra.extend(std::iter::repeat_n(&b"le"[..], n).flatten());
        extra.push(b'e');
        let (f, total) = files(1, 0);
        row(
            &format!("metainfo: {n} empty tiers"),
            &torrent(&f, total, &extra),
            meta,
        );
    }
    for n in [10_000, 100_000, 1_000_000] {
        let mut l = b"l".to_vec();
        for i in 0..n {
            l.push(b'd');
            bstr(&mut l, i.to_string().as_bytes());
            l.extend_from_slice(b"le");
            l.push(b'e');
        }
        l.push(b'e');
        row(&format!("bencode: {n} dicts (owned)"), &l, |b| {
            format!("{:?}", bencode::decode(b).map(|_| ()))
        });
        row(&format!("bencode: {n} dicts (doc)"), &l, |b| {
            format!("{:?}", bencode::Doc::parse(b).map(|d| d.len()))
        });
    }
}
