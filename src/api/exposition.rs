//! A strict reader of the OpenMetrics text exposition, as far as
//! `/metrics` uses it (counters and gauges): the unit tests of
//! [`super::metrics`] and the daemon's integration tests read scrapes with
//! it, so a malformed page fails a test instead of passing a grep.

use std::collections::BTreeMap;

/// One sample line: its name, labels (unescaped) and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct MetricFamily {
    pub kind: String,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `{k="v",...}` from `s` (which starts with `{`); the labels and the
/// rest of the line after the `}`.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = &s[1..];
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without =")?;
        let key = &rest[..eq];
        if !is_name(key) {
            return Err(format!("bad label name {key:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("bad escape {other:?}")),
                },
                Some((_, '\n')) => return Err("raw newline in label value".into()),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(key.to_string(), value).is_some() {
            return Err(format!("label {key} twice"));
        }
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by ,".into());
        }
    }
}

/// A strict reader of the OpenMetrics text format, as far as this page
/// uses it: every family declared by `# TYPE` (with HELP/UNIT) before
/// its samples and once, every sample named for its family's type
/// (`_total` for counters, the bare name for gauges), a unit a suffix of
/// its family's name, and `# EOF` the last line.
pub fn parse(text: &str) -> Result<BTreeMap<String, MetricFamily>, String> {
    let body = text.strip_suffix("# EOF\n").ok_or("no # EOF at the end")?;
    let mut families: BTreeMap<String, MetricFamily> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in body.lines() {
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (Some(keyword), Some(name), Some(arg)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("short metadata line {line:?}"));
            };
            if !is_name(name) {
                return Err(format!("bad family name {name:?}"));
            }
            if current.as_deref() != Some(name) {
                if families.contains_key(name) {
                    return Err(format!("family {name} declared twice"));
                }
                families.insert(name.to_string(), MetricFamily::default());
                current = Some(name.to_string());
            }
            let family = families.get_mut(name).ok_or("lost family")?;
            match keyword {
                "HELP" => family.help = Some(arg.to_string()),
                "TYPE" => {
                    if !["counter", "gauge"].contains(&arg) {
                        return Err(format!("unexpected type {arg}"));
                    }
                    family.kind = arg.to_string();
                }
                "UNIT" => {
                    if !name.ends_with(&format!("_{arg}")) {
                        return Err(format!("{name} does not end in its unit {arg}"));
                    }
                    family.unit = Some(arg.to_string());
                }
                other => return Err(format!("unknown metadata {other}")),
            }
            continue;
        }
        if line.starts_with('#') {
            return Err(format!("stray comment {line:?}"));
        }
        let name_end = line.find(['{', ' ']).ok_or("sample without value")?;
        let name = &line[..name_end];
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..])?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let value = rest.strip_prefix(' ').ok_or("no space before the value")?;
        let value: f64 = value.parse().map_err(|_| format!("bad value {value:?}"))?;
        let family_name = current.as_ref().ok_or("sample before any TYPE")?;
        let family = families.get_mut(family_name).ok_or("lost family")?;
        let expected = match family.kind.as_str() {
            "counter" => format!("{family_name}_total"),
            "gauge" => family_name.clone(),
            _ => return Err(format!("{family_name} has no TYPE")),
        };
        if name != expected {
            return Err(format!("sample {name} in family {family_name}"));
        }
        if family.kind == "counter" && value < 0.0 {
            return Err(format!("negative counter {name}"));
        }
        if family.samples.iter().any(|s| s.labels == labels) {
            return Err(format!("{name}: two samples with one label set"));
        }
        family.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    for (name, f) in &families {
        if f.kind.is_empty() || f.help.is_none() {
            return Err(format!("{name} lacks TYPE or HELP"));
        }
    }
    Ok(families)
}
