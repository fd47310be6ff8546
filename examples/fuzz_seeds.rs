//! Writes the seed corpora of the fuzz targets (`fuzz/fuzz_targets/`):
//! small valid inputs built with btnode's own encoders, plus the fixture
//! torrents. Run by `scripts/fuzz.sh` before fuzzing, so no seed file is
//! kept in the repository. Usage: `fuzz_seeds OUT_DIR [FIXTURE_DIR...]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use btnode::core::bencode::{self, Value};
use btnode::core::{InfoHash, Magnet, PeerId};
use btnode::wire::metadata::MetadataMessage;
use btnode::wire::peer::{ExtendedHandshake, Handshake, Message};
use btnode::wire::pex::PexMessage;
use btnode::wire::udp_tracker;

fn write(out: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = out.join(target);
    std::fs::create_dir_all(&dir).expect("corpus dir");
    std::fs::write(dir.join(name), bytes).expect("seed");
}

fn torrent(info: Vec<(&str, Value)>, root: Vec<(&str, Value)>) -> Vec<u8> {
    let mut r = vec![("info", Value::dict(info))];
    r.extend(root);
    bencode::encode(&Value::dict(r))
}

fn fixtures(dirs: &[PathBuf], out: &mut Vec<(String, Vec<u8>)>) {
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                fixtures(&[p], out);
            } else if p.extension().is_some_and(|x| x == "torrent")
                && e.metadata().is_ok_and(|m| m.len() <= 256 * 1024)
            {
                if let Ok(b) = std::fs::read(&p) {
                    let name = p.file_name().unwrap().to_string_lossy().into_owned();
                    out.push((name, b));
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let out = PathBuf::from(
        args.first()
            .expect("usage: fuzz_seeds OUT_DIR [FIXTURES...]"),
    );
    let dirs: Vec<PathBuf> = args[1..].iter().map(PathBuf::from).collect();

    // bencode and metainfo
    let single = torrent(
        vec![
            ("name", Value::bytes("a.bin")),
            ("length", Value::Int(40000)),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(vec![7; 60])),
        ],
        vec![("announce", Value::bytes("http://127.0.0.1:6969/announce"))],
    );
    let file = |len: i64, path: &[&str]| {
        Value::dict([
            ("length", Value::Int(len)),
            (
                "path",
                Value::List(path.iter().map(|c| Value::bytes(*c)).collect()),
            ),
        ])
    };
    let multi = torrent(
        vec![
            ("name", Value::bytes("set")),
            ("piece length", Value::Int(16384)),
            ("pieces", Value::Bytes(vec![1; 40])),
            (
                "files",
                Value::List(vec![
                    file(20000, &["a", "b.txt"]),
                    file(1, &["a", "b.txt"]),
                    Value::dict([("length", Value::Int(10)), ("attr", Value::bytes("p"))]),
                    file(5, &["c"]),
                ]),
            ),
        ],
        vec![(
            "announce-list",
            Value::List(vec![
                Value::List(vec![
                    Value::bytes("http://t1/announce"),
                    Value::bytes("udp://t2:80"),
                ]),
                Value::List(vec![Value::bytes("http://t3/announce")]),
            ]),
        )],
    );
    let mut found = Vec::new();
    fixtures(&dirs, &mut found);
    for (i, (name, bytes)) in found.iter().enumerate().take(150) {
        write(&out, "metainfo", &format!("fixture-{i}-{name}"), bytes);
        write(&out, "bencode", &format!("fixture-{i}-{name}"), bytes);
    }
    for (name, b) in [("single", &single), ("multi", &multi)] {
        write(&out, "metainfo", name, b);
        write(&out, "bencode", name, b);
    }
    for (i, b) in [
        &b"i-42e"[..],
        b"4:spam",
        b"l4:spami1ee",
        b"d3:cow3:moo4:spam4:eggse",
        b"lld0:leee",
    ]
    .iter()
    .enumerate()
    {
        write(&out, "bencode", &format!("small-{i}"), b);
    }

    // peer wire
    let hs = Handshake {
        reserved: [0, 0, 0, 0, 0, 0x10, 0, 0],
        info_hash: InfoHash([3; 20]),
        peer_id: PeerId(*b"-BT0001-abcdefghijkl"),
    };
    write(&out, "peer_handshake", "bep10", &hs.encode());
    // `..Default::default()`: stays valid when fields are added.
    #[allow(clippy::needless_update)]
    let ext = ExtendedHandshake {
        reqq: Some(250),
        client: Some("btnode".into()),
        listen_port: Some(6881),
        ut_pex: Some(1),
        ut_metadata: Some(2),
        metadata_size: Some(20_000),
        ..Default::default()
    };
    write(&out, "peer_extended", "ours", &ext.encode());
    // BEP 9: ut_metadata payloads and magnet links.
    let metadata = [
        MetadataMessage::Request { piece: 1 },
        MetadataMessage::Data {
            piece: 1,
            total_size: 20_000,
            data: vec![7; 20_000 - 16_384],
        },
        MetadataMessage::Reject { piece: 2 },
    ];
    for (i, m) in metadata.iter().enumerate() {
        write(&out, "ut_metadata", &format!("msg{i}"), &m.encode());
    }
    let link = Magnet {
        info_hash: InfoHash([0xab; 20]),
        name: Some("a b.bin".into()),
        trackers: vec!["udp://t.example:6969".into(), "http://t/announce".into()],
        peers: vec!["10.0.0.1:6881".into(), "[::1]:7000".into()],
    };
    write(&out, "magnet", "hex", link.to_uri().as_bytes());
    write(
        &out,
        "magnet",
        "base32",
        b"magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK&dn=x+y&x.pe=h:1",
    );
    let addrs: Vec<SocketAddr> = vec![
        "10.0.0.1:6881".parse().unwrap(),
        "[::1]:7000".parse().unwrap(),
    ];
    let pex = PexMessage {
        added: addrs.clone(),
        dropped: addrs[..1].to_vec(),
    };
    write(&out, "pex", "ours", &pex.encode());
    let msgs = [
        Message::KeepAlive,
        Message::Unchoke,
        Message::Interested,
        Message::Have(1),
        Message::Bitfield(vec![0xff]),
        Message::Request(btnode::wire::peer::BlockRequest {
            index: 0,
            begin: 0,
            length: 16384,
        }),
        Message::Piece {
            index: 0,
            begin: 0,
            data: vec![1; 64],
        },
        Message::Cancel(btnode::wire::peer::BlockRequest {
            index: 0,
            begin: 16384,
            length: 16384,
        }),
        Message::Port(6881),
        Message::Extended {
            ext_id: 0,
            payload: ext.encode(),
        },
        Message::Extended {
            ext_id: 1,
            payload: pex.encode(),
        },
        Message::Metadata {
            ext_id: 2,
            msg: MetadataMessage::Request { piece: 0 },
        },
    ];
    let mut stream = Vec::new();
    for m in &msgs {
        m.encode(&mut stream);
    }
    let mut frames = vec![0, 1];
    frames.extend_from_slice(&stream);
    write(&out, "peer_frames", "all", &frames);
    let mut state = vec![3, 0, 200, 1];
    state.extend_from_slice(&stream);
    write(&out, "torrent_state", "all", &state);

    // HTTP tracker: replies and requests
    let reply = Value::dict([
        ("interval", Value::Int(1800)),
        ("min interval", Value::Int(60)),
        ("peers", Value::Bytes(vec![127, 0, 0, 1, 0x1a, 0xe1])),
        ("peers6", Value::Bytes(vec![0; 18])),
    ]);
    write(&out, "tracker_reply", "compact", &bencode::encode(&reply));
    let dict_peers = Value::dict([
        ("interval", Value::Int(0)),
        (
            "peers",
            Value::List(vec![Value::dict([
                ("ip", Value::bytes("10.0.0.1")),
                ("port", Value::Int(6881)),
                ("peer id", Value::Bytes(vec![b'x'; 20])),
            ])]),
        ),
    ]);
    write(&out, "tracker_reply", "dict", &bencode::encode(&dict_peers));
    write(
        &out,
        "tracker_reply",
        "failure",
        b"d14:failure reason4:nopee",
    );
    let scrape = Value::dict([(
        "files",
        Value::dict([(
            vec![3u8; 20],
            Value::dict([
                ("complete", Value::Int(1)),
                ("incomplete", Value::Int(2)),
                ("downloaded", Value::Int(3)),
            ]),
        )]),
    )]);
    write(&out, "tracker_reply", "scrape", &bencode::encode(&scrape));
    let ih = "%03".repeat(20);
    write(
        &out,
        "tracker_request",
        "announce",
        format!("info_hash={ih}&peer_id=-BT0001-abcdefghijkl&port=6881&uploaded=0&downloaded=0&left=10&event=started&compact=1&numwant=50&key=abc").as_bytes(),
    );
    write(
        &out,
        "tracker_request",
        "scrape",
        format!("info_hash={ih}&info_hash={}", "%04".repeat(20)).as_bytes(),
    );

    // BEP 15
    write(
        &out,
        "udp_tracker",
        "connect",
        &udp_tracker::encode_connect(7),
    );
    write(
        &out,
        "udp_tracker",
        "connect_reply",
        &udp_tracker::encode_connect_reply(7, 99),
    );
    write(
        &out,
        "udp_tracker",
        "scrape",
        &udp_tracker::encode_scrape(99, 7, &[InfoHash([3; 20])]),
    );
    write(
        &out,
        "udp_tracker",
        "error",
        &udp_tracker::encode_error(7, "go away"),
    );
    let mut announce = 99u64.to_be_bytes().to_vec();
    announce.extend_from_slice(&1u32.to_be_bytes());
    announce.extend_from_slice(&7u32.to_be_bytes());
    announce.extend_from_slice(&[3; 20]);
    announce.extend_from_slice(b"-BT0001-abcdefghijkl");
    announce.extend_from_slice(&[0; 24]);
    announce.extend_from_slice(&2u32.to_be_bytes());
    announce.extend_from_slice(&[0; 8]);
    announce.extend_from_slice(&(-1i32).to_be_bytes());
    announce.extend_from_slice(&6881u16.to_be_bytes());
    write(&out, "udp_tracker", "announce", &announce);
    let mut reply = 1u32.to_be_bytes().to_vec();
    reply.extend_from_slice(&7u32.to_be_bytes());
    reply.extend_from_slice(&[0, 0, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2, 127, 0, 0, 1, 0x1a, 0xe1]);
    write(&out, "udp_tracker", "announce_reply", &reply);

    // overlay frames (length-prefixed JSON)
    let h = "0123456789abcdef0123456789abcdef01234567";
    for (i, body) in [
        format!(r#"{{"type":"lookup","info_hash":"{h}","limit":5}}"#),
        format!(r#"{{"type":"announce","info_hash":"{h}","peer_id":"{}","port":6881,"left":0,"overlay_port":6000}}"#, "ab".repeat(20)),
        r#"{"type":"sync","overlay_port":6000,"digest":42,"entries":[],"members":["127.0.0.1:6000"],"full":false}"#.to_string(),
        r#"{"type":"ping","overlay_port":null}"#.to_string(),
    ]
    .iter()
    .enumerate()
    {
        let mut f = (body.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(body.as_bytes());
        write(&out, "overlay_frame", &format!("m{i}"), &f);
        // The same messages sealed under the fuzz target's sending key.
        use btnode::wire::sealed::{Context, Keyring, SwarmKey, OVERLAY_REQUEST};
        let ring = Keyring::new(vec![SwarmKey::new([1; 32]), SwarmKey::new([2; 32])]).expect("ring");
        let ctx = Context::request(OVERLAY_REQUEST);
        let sealed = ring.seal(&ctx, body.as_bytes(), 1_800_000_000_000, [i as u8; 16]);
        let mut f = (sealed.len() as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&sealed);
        write(&out, "sealed_frame", &format!("m{i}"), &f);
    }

    // DNS: queries, and REST requests (method byte, path, newline, body)
    for (i, (name, qtype)) in [
        ("boot.btnode", 1u16),
        ("BOOT", 1),
        ("boot", 28),
        ("nope.btnode", 1),
    ]
    .iter()
    .enumerate()
    {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        write(&out, "dns_query", &format!("q{i}"), &q);
    }
    for (i, req) in [
        &b"\x01/records\n{\"name\":\"boot\",\"ip\":\"10.0.0.1\",\"ttl\":30}"[..],
        b"\x01/gossip\n{\"records\":[{\"name\":\"a\",\"ip\":\"10.0.0.2\",\"ttl\":30,\"timestamp\":1000000}]}",
        b"\x00/records/boot\n",
        b"\x02/records/boot/10.0.0.1\n",
    ]
    .iter()
    .enumerate()
    {
        write(&out, "dns_api", &format!("r{i}"), req);
    }
    eprintln!(
        "seeds written to {} ({} fixture torrents)",
        out.display(),
        found.len()
    );
}
