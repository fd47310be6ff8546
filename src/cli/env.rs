//! argh has no environment support: the variables that stand for node flags
//! become `--flag value` in front of the command line when the flag is
//! absent. One table, instead of a fallback written for each field.

use super::args::{
    ENV_BOOTSTRAP, ENV_DATA_DIR, ENV_DISCOVERY_MODE, ENV_DNS, ENV_DNS_HTTP, ENV_DNS_REGISTER,
    ENV_OVERLAY_PORT, ENV_PORT, ENV_SWARM_KEY_FILE, ENV_TORRENT,
};

/// A node flag the environment may give, read only when the command line
/// lacks it. A `list` variable is comma separated and repeats the flag.
struct EnvFlag {
    var: &'static str,
    long: &'static str,
    short: Option<&'static str>,
    list: bool,
}

const fn env_flag(var: &'static str, long: &'static str, short: Option<&'static str>) -> EnvFlag {
    EnvFlag {
        var,
        long,
        short,
        list: false,
    }
}

/// Every environment variable that stands for a node flag.
const ENV_FLAGS: &[EnvFlag] = &[
    env_flag(ENV_TORRENT, "--torrent", Some("-t")),
    env_flag(ENV_DATA_DIR, "--dir", Some("-d")),
    env_flag(ENV_PORT, "--port", None),
    EnvFlag {
        list: true,
        ..env_flag(ENV_BOOTSTRAP, "--bootstrap", Some("-b"))
    },
    env_flag(ENV_OVERLAY_PORT, "--overlay-port", None),
    env_flag(ENV_DISCOVERY_MODE, "--discovery-mode", None),
    env_flag(ENV_DNS, "--dns", None),
    env_flag(ENV_DNS_REGISTER, "--dns-register", None),
    env_flag(ENV_DNS_HTTP, "--dns-http", None),
    env_flag(ENV_SWARM_KEY_FILE, "--swarm-key-file", None),
];

/// The flags to put in front of `args` for the variables set (blank counts
/// as unset), and for each flag the `VAR="value"` it came from.
pub(super) fn env_flags(
    args: &[&str],
    env: impl Fn(&str) -> Option<String>,
) -> (Vec<String>, Vec<(&'static str, String)>) {
    let mut injected = Vec::new();
    let mut from_env = Vec::new();
    for f in ENV_FLAGS {
        let given = args.iter().any(|a| *a == f.long || Some(*a) == f.short);
        let Some(value) = env(f.var).filter(|v| !v.trim().is_empty()) else {
            continue;
        };
        if given {
            continue;
        }
        let values: Vec<&str> = if f.list {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect()
        } else {
            vec![value.trim()]
        };
        for v in values {
            injected.push(f.long.to_string());
            injected.push(v.to_string());
        }
        from_env.push((f.long, format!("{}={value:?}", f.var)));
    }
    (injected, from_env)
}
