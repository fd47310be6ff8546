//! DNS over UDP (RFC 1035 wire format, parsed and built with simple-dns):
//! a pure `answer` function from a query's bytes to a reply's bytes, and
//! the socket loop around it.
//!
//! Replies: A/AAAA answers with the remaining TTL, round-robin order;
//! NXDOMAIN for unknown names (in the zone); NODATA (NOERROR, no answer)
//! for a known name without records of that family; NOTIMP for other
//! query types and opcodes; REFUSED for other classes and names outside
//! the zone; FORMERR for anything that does not parse as one question.
//! Errors are 12-byte header-only replies and unknown names echo only the
//! question, so no reply is much larger than its query (no amplification).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use simple_dns::rdata::{RData, A, AAAA};
use simple_dns::{Packet, PacketFlag, ResourceRecord, CLASS, QCLASS, QTYPE, RCODE, TYPE};

use super::records::{normalize_name, Records};

/// Answers per reply (keeps replies within 512 bytes).
pub const MAX_ANSWERS: usize = 16;

fn header_only(query: &[u8], rcode: u8) -> Vec<u8> {
    let mut h = vec![0u8; 12];
    h[..2].copy_from_slice(&query[..2]);
    let opcode_and_rd = query[2] & 0b0111_1001;
    h[2] = 0x80 | opcode_and_rd;
    h[3] = rcode & 0x0f;
    h
}

/// The reply to `query`, or `None` when it should be dropped (too short to
/// carry an id, or itself a response).
pub fn answer(
    query: &[u8],
    records: &Records,
    now_ms: u64,
    rotate: usize,
    zone: Option<&str>,
) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 {
        return None;
    }
    let opcode = (query[2] >> 3) & 0x0f;
    if opcode != 0 {
        return Some(header_only(query, RCODE::NotImplemented as u8));
    }
    let count = |i: usize| u16::from_be_bytes([query[i], query[i + 1]]);
    // Exactly one question, nothing else but perhaps an EDNS record; this
    // is checked before parsing so no count in a hostile header sizes an
    // allocation.
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return Some(header_only(query, RCODE::FormatError as u8));
    }
    let Ok(packet) = Packet::parse(query) else {
        return Some(header_only(query, RCODE::FormatError as u8));
    };
    let Some(q) = packet.questions.first() else {
        return Some(header_only(query, RCODE::FormatError as u8));
    };
    let mut reply = Packet::new_reply(packet.id());
    reply.set_flags(PacketFlag::AUTHORITATIVE_ANSWER);
    if packet.has_flags(PacketFlag::RECURSION_DESIRED) {
        reply.set_flags(PacketFlag::RECURSION_DESIRED);
    }
    reply.questions.push(q.clone());
    let qname = q.qname.to_string();
    let name = normalize_name(&qname);
    let in_zone = match (zone, &name) {
        (None, _) => true,
        (Some(z), Some(n)) => n == z || n.ends_with(&format!(".{z}")),
        (Some(_), None) => false,
    };
    let rcode = if !matches!(q.qclass, QCLASS::CLASS(CLASS::IN) | QCLASS::ANY) || !in_zone {
        RCODE::Refused
    } else {
        let family = match q.qtype {
            QTYPE::TYPE(TYPE::A) => Some(Some(false)),
            QTYPE::TYPE(TYPE::AAAA) => Some(Some(true)),
            QTYPE::ANY => Some(None),
            _ => None,
        };
        match family {
            None => RCODE::NotImplemented,
            Some(want_v6) => {
                let found = name
                    .as_deref()
                    .map(|n| records.lookup(n, now_ms))
                    .unwrap_or_default();
                if found.is_empty() {
                    RCODE::NameError
                } else {
                    let mut matching: Vec<_> = found
                        .into_iter()
                        .filter(|r| want_v6.is_none_or(|v6| r.ip.is_ipv6() == v6))
                        .collect();
                    matching.sort_by_key(|r| r.ip);
                    if !matching.is_empty() {
                        let k = rotate % matching.len();
                        matching.rotate_left(k);
                    }
                    for r in matching.iter().take(MAX_ANSWERS) {
                        let rdata = match r.ip {
                            IpAddr::V4(v4) => RData::A(A::from(v4)),
                            IpAddr::V6(v6) => RData::AAAA(AAAA::from(v6)),
                        };
                        reply.answers.push(ResourceRecord::new(
                            q.qname.clone(),
                            CLASS::IN,
                            r.remaining_ttl(now_ms),
                            rdata,
                        ));
                    }
                    RCODE::NoError
                }
            }
        }
    };
    *reply.rcode_mut() = rcode;
    reply
        .build_bytes_vec_compressed()
        .ok()
        .or_else(|| Some(header_only(query, RCODE::ServerFailure as u8)))
}

/// Serves queries on `socket` until `stop` is set; whoever sets it then
/// sends a datagram to the socket to wake the blocked receive (no polling).
pub fn serve_udp(
    socket: UdpSocket,
    records: Arc<RwLock<Records>>,
    zone: Option<String>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 4096];
    let mut rotate = 0usize;
    loop {
        let got = socket.recv_from(&mut buf);
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (n, from): (usize, SocketAddr) = match got {
            Ok(x) => x,
            Err(_) => continue,
        };
        rotate = rotate.wrapping_add(1);
        let reply = {
            let r = records.read();
            answer(
                &buf[..n],
                &r,
                crate::core::lww::now_ms(),
                rotate,
                zone.as_deref(),
            )
        };
        if let Some(bytes) = reply {
            let _ = socket.send_to(&bytes, from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::records::Record;
    use super::*;
    use proptest::prelude::*;
    use simple_dns::{Name, Question};

    const NOW: u64 = 50_000_000;

    fn query(name: &str, qtype: QTYPE) -> Vec<u8> {
        let mut p = Packet::new_query(0x1234);
        p.questions.push(Question::new(
            Name::new_unchecked(name),
            qtype,
            QCLASS::CLASS(CLASS::IN),
            false,
        ));
        p.build_bytes_vec().unwrap()
    }

    fn records() -> Records {
        let mut r = Records::default();
        for ip in ["10.0.0.1", "10.0.0.2", "fd00::1"] {
            r.merge(
                Record {
                    name: "boot.btnode".into(),
                    ip: ip.parse().unwrap(),
                    ttl: 60,
                    timestamp: NOW - 10_000,
                    deleted: false,
                },
                NOW,
            );
        }
        r
    }

    fn rcode(bytes: &[u8]) -> u8 {
        bytes[3] & 0x0f
    }

    #[test]
    fn answers_a_records_case_insensitively_with_remaining_ttl_round_robin() {
        let r = records();
        let q = query("BOOT.btnode", QTYPE::TYPE(TYPE::A));
        let a = answer(&q, &r, NOW, 0, None).unwrap();
        let p = Packet::parse(&a).unwrap();
        assert_eq!(p.rcode(), RCODE::NoError);
        assert_eq!(p.answers.len(), 2);
        assert_eq!(p.answers[0].ttl, 50);
        let rotated = answer(&q, &r, NOW, 1, None).unwrap();
        let b = format!("{:?}", Packet::parse(&rotated).unwrap().answers[0].rdata);
        assert_ne!(format!("{:?}", p.answers[0].rdata), b, "rotated");
        let v6 = answer(
            &query("boot.btnode", QTYPE::TYPE(TYPE::AAAA)),
            &r,
            NOW,
            0,
            None,
        )
        .unwrap();
        assert_eq!(Packet::parse(&v6).unwrap().answers.len(), 1);
    }

    #[test]
    fn error_codes() {
        let r = records();
        let nx = answer(
            &query("nobody.btnode", QTYPE::TYPE(TYPE::A)),
            &r,
            NOW,
            0,
            None,
        )
        .unwrap();
        assert_eq!(rcode(&nx), RCODE::NameError as u8);
        let mx = answer(
            &query("boot.btnode", QTYPE::TYPE(TYPE::MX)),
            &r,
            NOW,
            0,
            None,
        )
        .unwrap();
        assert_eq!(rcode(&mx), RCODE::NotImplemented as u8);
        let out = answer(
            &query("boot.btnode", QTYPE::TYPE(TYPE::A)),
            &r,
            NOW,
            0,
            Some("other"),
        )
        .unwrap();
        assert_eq!(rcode(&out), RCODE::Refused as u8);
        let expired = answer(
            &query("boot.btnode", QTYPE::TYPE(TYPE::A)),
            &r,
            NOW + 60_000,
            0,
            None,
        )
        .unwrap();
        assert_eq!(rcode(&expired), RCODE::NameError as u8);
    }

    #[test]
    fn malformed_queries_get_formerr_or_nothing() {
        let r = records();
        assert_eq!(answer(&[1, 2, 3], &r, NOW, 0, None), None);
        let mut q = query("boot.btnode", QTYPE::TYPE(TYPE::A));
        q.truncate(q.len() - 3);
        assert_eq!(
            rcode(&answer(&q, &r, NOW, 0, None).unwrap()),
            RCODE::FormatError as u8
        );
        // A compression pointer pointing at itself.
        let mut looped = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        looped.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        let a = answer(&looped, &r, NOW, 0, None).unwrap();
        assert_eq!(rcode(&a), RCODE::FormatError as u8);
        // A label longer than 63 bytes.
        let mut long = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 64];
        long.extend_from_slice(&[b'a'; 64]);
        long.extend_from_slice(&[0, 0, 1, 0, 1]);
        assert_eq!(
            rcode(&answer(&long, &r, NOW, 0, None).unwrap()),
            RCODE::FormatError as u8
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_never_amplifies(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Some(reply) = answer(&bytes, &records(), NOW, 0, None) {
                // Answers for real names can be larger; garbage never is.
                prop_assert!(reply.len() <= bytes.len() + 64);
            }
        }
    }
}
