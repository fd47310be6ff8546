//! The `/metrics` page: the session's snapshot in the OpenMetrics text
//! format, written by `prometheus-client`. A [`Registry`] is built per
//! scrape from [`SessionInfo`] and the [`TorrentSummary`] list rather than
//! kept live beside the session: the session already keeps every number
//! (the API shows the same ones), so a second set of atomics would only be
//! a second truth to keep in step. Counters are set from the cumulative
//! values; a torrent's counters start at 0 when it is added, so a removed
//! and re-added torrent looks like a counter reset, which Prometheus's
//! `rate()` handles.
//!
//! Names, labels and units are listed in docs/API.md ("Metrics").

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};

use super::{SessionInfo, TorrentSummary};
use crate::runtime::http::Response;

/// OpenMetrics 1.0, because that is what `prometheus-client` writes
/// (`_total` counter samples, `# UNIT`, the closing `# EOF`): Prometheus
/// asks for it first in its `Accept` and parses it strictly, while the
/// older `text/plain; version=0.0.4` would label the same bytes as a
/// format they are not quite in.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The labels on every per-torrent sample.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TorrentLabels {
    info_hash: String,
    name: String,
}

type CounterFamily = Family<TorrentLabels, Counter<u64>>;
type GaugeFamily = Family<TorrentLabels, Gauge<u64, AtomicU64>>;
type RatioFamily = Family<TorrentLabels, Gauge<f64, AtomicU64>>;

/// A per-torrent metric: its name (before the unit and `_total`), help,
/// unit, and where its value comes from.
struct PerTorrent<T> {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    value: fn(&TorrentSummary) -> T,
}

fn per_torrent_counters() -> [PerTorrent<u64>; 5] {
    [
        PerTorrent {
            name: "torrent_downloaded",
            help: "Payload bytes downloaded since this run started.",
            unit: Some(Unit::Bytes),
            value: |t| t.downloaded,
        },
        PerTorrent {
            name: "torrent_uploaded",
            help: "Payload bytes uploaded since this run started.",
            unit: Some(Unit::Bytes),
            value: |t| t.uploaded,
        },
        PerTorrent {
            name: "torrent_pieces_verified",
            help: "Pieces that passed the hash check after download.",
            unit: None,
            value: |t| t.pieces_verified,
        },
        PerTorrent {
            name: "torrent_hash_failures",
            help: "Downloaded pieces that failed the hash check.",
            unit: None,
            value: |t| t.hash_failures,
        },
        PerTorrent {
            name: "torrent_pieces_checked_at_start",
            help: "Pieces hashed at start to check data already on disk.",
            unit: None,
            value: |t| t.pieces_checked_at_start,
        },
    ]
}

fn per_torrent_gauges() -> [PerTorrent<u64>; 3] {
    [
        PerTorrent {
            name: "torrent_peers",
            help: "Peers connected.",
            unit: None,
            value: |t| t.peers as u64,
        },
        PerTorrent {
            name: "torrent_download_rate",
            help: "Payload download rate over the last few seconds.",
            unit: Some(Unit::Other("bytes_per_second".into())),
            value: |t| t.down_rate,
        },
        PerTorrent {
            name: "torrent_upload_rate",
            help: "Payload upload rate over the last few seconds.",
            unit: Some(Unit::Other("bytes_per_second".into())),
            value: |t| t.up_rate,
        },
    ]
}

fn register(
    reg: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    metric: impl prometheus_client::registry::Metric,
) {
    match unit {
        Some(unit) => reg.register_with_unit(name, help, unit, metric),
        None => reg.register(name, help, metric),
    }
}

/// The snapshot as one OpenMetrics exposition, `# EOF` included.
pub fn render(session: &SessionInfo, torrents: &[TorrentSummary]) -> String {
    let mut reg = Registry::with_prefix("btnode");
    let labels = |t: &TorrentSummary| TorrentLabels {
        info_hash: t.info_hash.clone(),
        name: t.name.clone(),
    };

    for m in per_torrent_counters() {
        let family = CounterFamily::default();
        for t in torrents {
            family.get_or_create(&labels(t)).inc_by((m.value)(t));
        }
        register(&mut reg, m.name, m.help, m.unit, family);
    }
    for m in per_torrent_gauges() {
        let family = GaugeFamily::default();
        for t in torrents {
            family.get_or_create(&labels(t)).set((m.value)(t));
        }
        register(&mut reg, m.name, m.help, m.unit, family);
    }
    let progress = RatioFamily::default();
    for t in torrents {
        // A NaN or out-of-range progress would be a session bug; the gauge
        // is documented as 0..1, so clamp rather than pass it on.
        let p = if t.progress.is_nan() {
            0.0
        } else {
            t.progress.clamp(0.0, 1.0)
        };
        progress.get_or_create(&labels(t)).set(p);
    }
    register(
        &mut reg,
        "torrent_progress",
        "Verified bytes over size, 0 to 1.",
        None,
        progress,
    );

    let c = &session.counters;
    let bytes = || Some(Unit::Bytes);
    let counters: [(&str, &str, Option<Unit>, u64); 6] = [
        (
            "gossip_received",
            "Overlay gossip bytes received.",
            bytes(),
            c.gossip_bytes_in,
        ),
        (
            "gossip_sent",
            "Overlay gossip bytes sent.",
            bytes(),
            c.gossip_bytes_out,
        ),
        (
            "tracker_announces",
            "Tracker announces sent.",
            None,
            c.tracker_announces,
        ),
        (
            "tracker_failures",
            "Tracker announces that failed.",
            None,
            c.tracker_failures,
        ),
        (
            "dns_queries",
            "DNS queries sent to the DNS service (bootstrap names).",
            None,
            c.dns_queries,
        ),
        (
            "overlay_auth_failures",
            "Overlay frames dropped before parsing: not sealed under the swarm key, stale or replayed.",
            None,
            c.overlay_auth_failures,
        ),
    ];
    for (name, help, unit, value) in counters {
        register(&mut reg, name, help, unit, ConstCounter::new(value));
    }
    let gauges: [(&str, &str, Option<Unit>, u64); 5] = [
        (
            "overlay_members",
            "Members of the gossip overlay this node knows.",
            None,
            session.overlay_members as u64,
        ),
        (
            "torrents",
            "Torrents in the session.",
            None,
            session.torrents as u64,
        ),
        (
            "uptime",
            "Time since the daemon started.",
            Some(Unit::Seconds),
            session.uptime_secs,
        ),
        (
            "download_rate",
            "Payload download rate of all torrents.",
            Some(Unit::Other("bytes_per_second".into())),
            session.down_rate,
        ),
        (
            "upload_rate",
            "Payload upload rate of all torrents.",
            Some(Unit::Other("bytes_per_second".into())),
            session.up_rate,
        ),
    ];
    for (name, help, unit, value) in gauges {
        register(&mut reg, name, help, unit, ConstGauge::new(value));
    }

    let mut out = String::new();
    // Writing to a String cannot fail; an error here could only come from
    // an encoder bug, and a partial page is still better than none.
    if let Err(e) = encode(&mut out, &reg) {
        log::warn!("metrics: encoding failed: {e}");
    }
    out
}

/// [`render`] as the `/metrics` page.
pub fn metrics_response(session: &SessionInfo, torrents: &[TorrentSummary]) -> Response {
    Response {
        status: 200,
        content_type: CONTENT_TYPE,
        body: render(session, torrents).into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::api::exposition::{parse, MetricFamily, Sample};
    use crate::api::SessionCounters;

    fn torrent(hash: char, name: &str, k: u64) -> TorrentSummary {
        TorrentSummary {
            info_hash: hash.to_string().repeat(40),
            name: name.to_string(),
            size: 1 << 20,
            progress: 0.25 * k as f64,
            pieces_have: k as usize,
            pieces_total: 8,
            state: "downloading".into(),
            down_rate: 1000 * k + 1,
            up_rate: 1000 * k + 2,
            peers: k as usize + 3,
            eta_secs: Some(9),
            downloaded: 1_000_000 * k + 4,
            uploaded: 1_000_000 * k + 5,
            pieces_verified: 10 * k + 6,
            hash_failures: 10 * k + 7,
            pieces_checked_at_start: 10 * k + 8,
        }
    }

    fn session() -> SessionInfo {
        SessionInfo {
            version: "0.1.0".into(),
            uptime_secs: 3600,
            peer_port: 6881,
            overlay_addr: None,
            overlay_members: 12,
            dns_registration: None,
            torrents: 2,
            down_rate: 3003,
            up_rate: 3006,
            counters: SessionCounters {
                gossip_bytes_in: 111,
                gossip_bytes_out: 222,
                tracker_announces: 33,
                tracker_failures: 4,
                dns_queries: 55,
                overlay_auth_failures: 66,
            },
        }
    }

    /// The value of `family`'s one sample whose labels include `info_hash`
    /// (or its only sample when `hash` is None).
    fn value(f: &BTreeMap<String, MetricFamily>, family: &str, hash: Option<&str>) -> f64 {
        let fam = f
            .get(family)
            .unwrap_or_else(|| panic!("no family {family}"));
        let found: Vec<&Sample> = fam
            .samples
            .iter()
            .filter(|s| hash.is_none() || s.labels.get("info_hash").map(String::as_str) == hash)
            .collect();
        assert_eq!(found.len(), 1, "{family} {hash:?}: {found:?}");
        found[0].value
    }

    #[test]
    fn every_value_is_the_snapshots() {
        let torrents = [torrent('a', "alpha", 1), torrent('b', "beta", 2)];
        let text = render(&session(), &torrents);
        let f = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

        for t in &torrents {
            let h = Some(t.info_hash.as_str());
            let expect: [(&str, f64); 9] = [
                ("btnode_torrent_downloaded_bytes", t.downloaded as f64),
                ("btnode_torrent_uploaded_bytes", t.uploaded as f64),
                ("btnode_torrent_pieces_verified", t.pieces_verified as f64),
                ("btnode_torrent_hash_failures", t.hash_failures as f64),
                (
                    "btnode_torrent_pieces_checked_at_start",
                    t.pieces_checked_at_start as f64,
                ),
                ("btnode_torrent_peers", t.peers as f64),
                (
                    "btnode_torrent_download_rate_bytes_per_second",
                    t.down_rate as f64,
                ),
                (
                    "btnode_torrent_upload_rate_bytes_per_second",
                    t.up_rate as f64,
                ),
                ("btnode_torrent_progress", t.progress),
            ];
            for (family, v) in expect {
                assert_eq!(value(&f, family, h), v, "{family} of {}", t.name);
            }
        }
        for fam in f.values().filter(|fam| {
            fam.samples
                .iter()
                .any(|s| s.labels.contains_key("info_hash"))
        }) {
            assert_eq!(fam.samples.len(), 2);
            for s in &fam.samples {
                let keys: Vec<&str> = s.labels.keys().map(String::as_str).collect();
                assert_eq!(keys, ["info_hash", "name"], "{}", s.name);
            }
        }
        let s = session();
        let expect: [(&str, f64, &str); 11] = [
            ("btnode_gossip_received_bytes", 111.0, "counter"),
            ("btnode_gossip_sent_bytes", 222.0, "counter"),
            ("btnode_tracker_announces", 33.0, "counter"),
            ("btnode_tracker_failures", 4.0, "counter"),
            ("btnode_dns_queries", 55.0, "counter"),
            ("btnode_overlay_auth_failures", 66.0, "counter"),
            ("btnode_overlay_members", 12.0, "gauge"),
            ("btnode_torrents", 2.0, "gauge"),
            ("btnode_uptime_seconds", s.uptime_secs as f64, "gauge"),
            ("btnode_download_rate_bytes_per_second", 3003.0, "gauge"),
            ("btnode_upload_rate_bytes_per_second", 3006.0, "gauge"),
        ];
        for (family, v, kind) in expect {
            assert_eq!(value(&f, family, None), v, "{family}");
            assert_eq!(f[family].kind, kind, "{family}");
        }
        assert_eq!(f["btnode_torrent_downloaded_bytes"].kind, "counter");
        assert_eq!(
            f["btnode_torrent_downloaded_bytes"].unit.as_deref(),
            Some("bytes")
        );
        assert_eq!(f["btnode_torrent_progress"].kind, "gauge");
        assert_eq!(f.len(), 20, "{:?}", f.keys().collect::<Vec<_>>());
    }

    #[test]
    fn a_name_with_quote_backslash_and_newline_is_escaped() {
        let name = "say \"hi\" C:\\dir\nline two";
        let text = render(&session(), &[torrent('c', name, 1)]);
        assert!(
            text.contains(r#"name="say \"hi\" C:\\dir\nline two""#),
            "{text}"
        );
        // No sample spills onto a second line.
        assert!(!text.lines().any(|l| l.starts_with("line two")));
        let f = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let s = &f["btnode_torrent_peers"].samples[0];
        assert_eq!(s.labels["name"], name);
    }

    #[test]
    fn weird_names_round_trip() {
        let names = [
            "",
            "\\",
            "\"",
            "\n",
            "\\n",
            "\\\"",
            "a}b{c=\"d\",e",
            "# EOF",
            "tab\tcr\rend",
            "ünïcødé 日本語 🎉",
            "trailing\\",
        ];
        let hashes = "0123456789a";
        let torrents: Vec<TorrentSummary> = names
            .iter()
            .zip(hashes.chars())
            .map(|(n, h)| torrent(h, n, 1))
            .collect();
        let text = render(&session(), &torrents);
        let f = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for t in &torrents {
            let s = f["btnode_torrent_hash_failures"]
                .samples
                .iter()
                .find(|s| s.labels["info_hash"] == t.info_hash)
                .unwrap_or_else(|| panic!("no sample for {:?}", t.name));
            assert_eq!(s.labels["name"], t.name);
            assert_eq!(s.value, t.hash_failures as f64);
        }
    }

    #[test]
    fn progress_out_of_range_is_clamped_and_empty_session_parses() {
        let mut t = torrent('d', "x", 1);
        t.progress = f64::NAN;
        let f = parse(&render(&session(), &[t.clone()])).unwrap();
        assert_eq!(value(&f, "btnode_torrent_progress", None), 0.0);
        t.progress = 1.5;
        let f = parse(&render(&session(), &[t])).unwrap();
        assert_eq!(value(&f, "btnode_torrent_progress", None), 1.0);

        let f = parse(&render(&SessionInfo::default(), &[])).unwrap();
        // prometheus-client leaves a family with no samples out altogether.
        assert!(!f.contains_key("btnode_torrent_peers"));
        assert_eq!(value(&f, "btnode_torrents", None), 0.0);
    }

    #[test]
    fn the_parser_is_strict() {
        let ok = "# HELP x_a A.\n# TYPE x_a counter\nx_a_total{l=\"v\"} 1\n# EOF\n";
        assert!(parse(ok).is_ok());
        for bad in [
            "# HELP x_a A.\n# TYPE x_a counter\nx_a_total{l=\"v\"} 1\n",
            "# HELP x_a A.\n# TYPE x_a counter\nx_a{l=\"v\"} 1\n# EOF\n",
            "# HELP x_a A.\n# TYPE x_a counter\nx_a_total{l=\"v\\t\"} 1\n# EOF\n",
            "# HELP x_a A.\n# TYPE x_a counter\nx_a_total{l=\"v} 1\n# EOF\n",
            "x_a_total 1\n# EOF\n",
            "# HELP x_a A.\n# TYPE x_a gauge\nx_a one\n# EOF\n",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_response_is_openmetrics() {
        let r = metrics_response(&session(), &[]);
        assert_eq!(r.status, 200);
        assert!(r
            .content_type
            .starts_with("application/openmetrics-text; version=1.0.0"));
        assert!(String::from_utf8(r.body).unwrap().ends_with("# EOF\n"));
    }
}
