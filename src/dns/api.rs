//! The REST API and the gossip endpoint, as a pure function of method, path
//! and body (the HTTP front is `runtime::http`, bounded, in `dns::DnsServer`).
//!
//! - `POST /records {"name","ip","ttl"}` registers or refreshes (201).
//! - `GET /records`, `GET /records/NAME` list live records.
//! - `DELETE /records/NAME` and `DELETE /records/NAME/IP` remove (tombstones).
//! - `POST /gossip {"records":[…]}` merges a peer's records (LWW) and
//!   answers with ours, so one exchange is a push–pull.
//!
//! Bad JSON, names, IPs or TTLs: 400 with `{"error": "…"}`. Bodies are
//! capped at 1 MiB.

use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use super::records::{normalize_name, Record, Records, MAX_TTL};

pub const MAX_BODY: u64 = 1 << 20;

#[derive(Deserialize)]
struct Register {
    name: String,
    ip: String,
    ttl: u32,
}

#[derive(Serialize, Deserialize, Default)]
pub struct GossipBody {
    pub records: Vec<Record>,
}

/// What a request did, so the caller can push changes to peers.
pub struct Outcome {
    pub status: u16,
    pub body: String,
    pub changed: bool,
}

fn json<T: Serialize>(status: u16, v: &T) -> Outcome {
    Outcome {
        status,
        body: serde_json::to_string(v).expect("serializable"),
        changed: false,
    }
}

fn bad(msg: &str) -> Outcome {
    json(400, &serde_json::json!({ "error": msg }))
}

/// Handles one API request (pure apart from the shared records).
pub fn handle(
    method: &str,
    path: &str,
    body: &[u8],
    records: &RwLock<Records>,
    now_ms: u64,
) -> Outcome {
    let parts: Vec<&str> = path
        .trim_start_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    match (method, parts.as_slice()) {
        ("POST", ["records"]) => {
            let req: Register = match serde_json::from_slice(body) {
                Ok(r) => r,
                Err(e) => return bad(&format!("bad JSON: {e}")),
            };
            let Some(name) = normalize_name(&req.name) else {
                return bad("bad name: use letters, digits, '-' and '.' (labels of 1-63)");
            };
            let Ok(ip) = req.ip.parse::<IpAddr>() else {
                return bad("bad ip");
            };
            if req.ttl == 0 || req.ttl > MAX_TTL {
                return bad("ttl must be 1-86400 seconds");
            }
            let rec = Record {
                name,
                ip,
                ttl: req.ttl,
                timestamp: now_ms,
                deleted: false,
            };
            let changed = records.write().merge(rec.clone(), now_ms);
            Outcome {
                changed,
                ..json(201, &rec)
            }
        }
        ("GET", ["records"]) => json(200, &records.read().live(now_ms)),
        ("GET", ["records", name]) => {
            let found = records.read().lookup(name, now_ms);
            if found.is_empty() {
                json(404, &serde_json::json!({ "error": "no such name" }))
            } else {
                json(200, &found)
            }
        }
        ("DELETE", ["records", name]) | ("DELETE", ["records", name, _]) => {
            let only: Option<IpAddr> = match parts.get(2) {
                Some(ip) => match ip.parse() {
                    Ok(ip) => Some(ip),
                    Err(_) => return bad("bad ip"),
                },
                None => None,
            };
            let mut recs = records.write();
            let victims: Vec<Record> = recs
                .lookup(name, now_ms)
                .into_iter()
                .filter(|r| only.is_none_or(|ip| r.ip == ip))
                .collect();
            if victims.is_empty() {
                return json(404, &serde_json::json!({ "error": "no such record" }));
            }
            for mut r in victims.iter().cloned() {
                r.deleted = true;
                r.timestamp = now_ms.max(r.timestamp + 1);
                recs.merge(r, now_ms);
            }
            Outcome {
                changed: true,
                ..json(200, &serde_json::json!({ "deleted": victims.len() }))
            }
        }
        ("POST", ["gossip"]) => {
            let g: GossipBody = match serde_json::from_slice(body) {
                Ok(g) => g,
                Err(e) => return bad(&format!("bad JSON: {e}")),
            };
            let mut recs = records.write();
            let mut changed = false;
            for r in g.records.into_iter().take(super::records::MAX_RECORDS) {
                changed |= recs.merge(r, now_ms);
            }
            Outcome {
                changed,
                ..json(
                    200,
                    &GossipBody {
                        records: recs.all(),
                    },
                )
            }
        }
        _ => json(404, &serde_json::json!({ "error": "not found" })),
    }
}

pub type Shared = Arc<RwLock<Records>>;

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    #[test]
    fn register_list_delete() {
        let r = RwLock::new(Records::default());
        let o = handle(
            "POST",
            "/records",
            br#"{"name":"Boot","ip":"10.0.0.1","ttl":30}"#,
            &r,
            NOW,
        );
        assert_eq!(o.status, 201);
        assert!(o.changed);
        let o = handle("GET", "/records/boot", b"", &r, NOW);
        assert!(o.body.contains("10.0.0.1"));
        assert_eq!(
            handle("DELETE", "/records/boot/10.0.0.9", b"", &r, NOW).status,
            404
        );
        assert_eq!(
            handle("DELETE", "/records/boot/10.0.0.1", b"", &r, NOW + 1).status,
            200
        );
        assert_eq!(handle("GET", "/records/boot", b"", &r, NOW + 2).status, 404);
    }

    #[test]
    fn bad_input_is_400() {
        let r = RwLock::new(Records::default());
        for body in [
            &b"{"[..],
            br#"{"name":"a..b","ip":"10.0.0.1","ttl":30}"#,
            br#"{"name":"a","ip":"999.0.0.1","ttl":30}"#,
            br#"{"name":"a","ip":"10.0.0.1","ttl":0}"#,
            br#"{"name":"a","ip":"10.0.0.1"}"#,
        ] {
            assert_eq!(handle("POST", "/records", body, &r, NOW).status, 400);
        }
    }
}
