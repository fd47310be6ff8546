//! Who may use the API: the bearer token kept in the state directory
//! (`STATE/api-token`, owner-only) and the `Host` check that keeps a web
//! page from reaching the API through DNS rebinding (a hostile name that
//! first resolves to the attacker, then to 127.0.0.1: Transmission's
//! CVE-2018-5702). No I/O beyond the token file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The token's file name inside the state directory.
pub const TOKEN_FILE: &str = "api-token";

/// Random bytes in a token (hex-encoded: twice as many characters).
const TOKEN_BYTES: usize = 32;

/// The API token in `state_dir`, created on first use: 32 random bytes as
/// lowercase hex, in a file only its owner can read. A file that holds no
/// well-formed token (empty, truncated by a crash) is replaced.
pub fn load_or_create_token(state_dir: &Path) -> io::Result<String> {
    let path = state_dir.join(TOKEN_FILE);
    // Two tries: a daemon starting alongside may create the file between
    // our read and our create_new.
    for _ in 0..2 {
        match fs::read_to_string(&path) {
            Ok(text) => {
                let token = text.trim();
                if well_formed(token) {
                    // A copy made with looser permissions (restored from a
                    // backup, say) is tightened rather than trusted as is.
                    let mode = fs::metadata(&path)?.permissions().mode();
                    if mode & 0o077 != 0 {
                        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
                    }
                    return Ok(token.to_string());
                }
                log::warn!("{}: no valid token in it; making a new one", path.display());
                fs::remove_file(&path)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let token = new_token()?;
        // create_new: never write through a file (or symlink) someone else
        // put there; mode 0600 from the start, so there is no moment the
        // token is readable by others.
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        match opened {
            Ok(mut f) => {
                f.write_all(format!("{token}\n").as_bytes())?;
                f.sync_all()?;
                return Ok(token);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "{}: keeps changing under us",
        path.display()
    )))
}

fn well_formed(token: &str) -> bool {
    token.len() == 2 * TOKEN_BYTES && token.bytes().all(|b| b.is_ascii_hexdigit())
}

fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::getrandom(&mut bytes).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `given` equals `expected`, in time that depends only on their
/// lengths (the token's length is no secret), so a client cannot find the
/// token byte by byte from response times.
pub fn tokens_equal(given: &str, expected: &str) -> bool {
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token from an `Authorization: Bearer TOKEN` header value.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let (scheme, token) = header?.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether a request with this `Host` header may be served: only an IP
/// literal, `localhost` or one of `extra_names` (the `--api-host` names),
/// compared without case and without the port. A browser always sends the
/// name from the page's URL, so a rebinding name (`evil.example` resolving
/// to 127.0.0.1) is refused here; no Host at all is refused too.
pub fn host_allowed(host_header: Option<&str>, extra_names: &[String]) -> bool {
    let Some(host) = host_header.map(str::trim).filter(|h| !h.is_empty()) else {
        return false;
    };
    let Some(name) = strip_port(host) else {
        return false;
    };
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    // `localhost.` is the same name as `localhost`.
    let name = name.strip_suffix('.').unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || extra_names.iter().any(|n| {
            let n = n.strip_suffix('.').unwrap_or(n);
            !n.is_empty() && n.eq_ignore_ascii_case(name)
        })
}

/// The host part of `host[:port]` or `[v6]:port`; None when malformed.
fn strip_port(host: &str) -> Option<&str> {
    let port_ok = |p: &str| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = host.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ok = after.is_empty() || after.strip_prefix(':').is_some_and(port_ok);
        // Only an IPv6 literal goes in brackets.
        return (ok && inner.parse::<std::net::Ipv6Addr>().is_ok()).then_some(inner);
    }
    match host.matches(':').count() {
        0 => Some(host),
        1 => {
            let (name, port) = host.split_once(':')?;
            (port_ok(port) && !name.is_empty()).then_some(name)
        }
        // An unbracketed IPv6 literal (not what HTTP sends, but no name).
        _ => host.parse::<std::net::Ipv6Addr>().is_ok().then_some(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_that_are_ip_literals_localhost_or_named_pass() {
        let extra = vec!["NAS.lan".to_string()];
        let ok = |h: &str| host_allowed(Some(h), &extra);
        for h in [
            "127.0.0.1",
            "127.0.0.1:8900",
            "192.168.1.5:80",
            "localhost",
            "LocalHost:8900",
            "localhost.:8900",
            "[::1]",
            "[::1]:8900",
            "::1",
            "nas.lan",
            "nas.LAN:8900",
        ] {
            assert!(ok(h), "{h} should pass");
        }
        for h in [
            "evil.example",
            "evil.example:8900",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "nas.lan.evil.example",
            "",
            "  ",
            ":8900",
            "localhost:",
            "localhost:x",
            "localhost:8900:1",
            "[evil.example]:80",
            "[::1",
            "[::1]x",
            "[::1]:",
        ] {
            assert!(!ok(h), "{h:?} should be refused");
        }
        assert!(!host_allowed(None, &extra), "no Host header");
        // An empty extra name allows nothing.
        assert!(!host_allowed(Some(":1"), &[String::new()]));
    }

    #[test]
    fn token_file_is_created_owner_only_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_token(dir.path()).unwrap();
        assert!(well_formed(&a), "{a}");
        let path = dir.path().join(TOKEN_FILE);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_token(dir.path()).unwrap(), a);
        // Another directory, another token.
        let other = tempfile::tempdir().unwrap();
        assert_ne!(load_or_create_token(other.path()).unwrap(), a);
    }

    #[test]
    fn an_empty_or_loose_token_file_is_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOKEN_FILE);
        fs::write(&path, "").unwrap();
        let t = load_or_create_token(dir.path()).unwrap();
        assert!(well_formed(&t));
        assert_eq!(fs::read_to_string(&path).unwrap().trim(), t);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create_token(dir.path()).unwrap(), t);
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn token_comparison_and_bearer_parsing() {
        assert!(tokens_equal("abcd", "abcd"));
        assert!(!tokens_equal("abce", "abcd"));
        assert!(!tokens_equal("abc", "abcd"));
        assert!(!tokens_equal("", "abcd"));
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(Some("Basic abc")), None);
        assert_eq!(bearer(Some("Bearer ")), None);
        assert_eq!(bearer(Some("Bearerabc")), None);
        assert_eq!(bearer(None), None);
    }
}
