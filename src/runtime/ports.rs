//! Binding a listening port the user may or may not have chosen: a default
//! port that is taken (a second node on the same host) falls back to any
//! free port with a warning; a port the user chose stays an error. Callers
//! then announce the port actually bound, never the configured one.
//!
//! Owns no sockets beyond the one it returns; knows nothing of subsystems.

use std::io;

/// Calls `bind(port)`; if that port is in use and was not `chosen` by the
/// user, warns and calls `bind(0)` (any free port) instead.
pub fn bind_or_fallback<T>(
    port: u16,
    chosen: bool,
    mut bind: impl FnMut(u16) -> io::Result<T>,
) -> io::Result<T> {
    match bind(port) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && !chosen && port != 0 => bind(0),
        other => other,
    }
}

/// Logs the fallback (call with the address actually bound).
pub fn warn_if_moved(what: &str, wanted: u16, bound: std::net::SocketAddr) {
    if wanted != 0 && bound.port() != wanted {
        log::warn!(
            "{what}: default port {wanted} is in use; listening on {bound} instead \
             (choose one with a flag to make this an error)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn taken() -> (TcpListener, u16) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        (l, port)
    }

    #[test]
    fn a_taken_default_port_falls_back_to_a_free_one() {
        let (_held, port) = taken();
        let l = bind_or_fallback(port, false, |p| TcpListener::bind(("127.0.0.1", p))).unwrap();
        assert_ne!(l.local_addr().unwrap().port(), port);
    }

    #[test]
    fn a_taken_chosen_port_is_an_error() {
        let (_held, port) = taken();
        let e = bind_or_fallback(port, true, |p| TcpListener::bind(("127.0.0.1", p))).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn other_errors_do_not_fall_back() {
        let mut asked = Vec::new();
        let r: io::Result<()> = bind_or_fallback(7, false, |p| {
            asked.push(p);
            Err(io::ErrorKind::PermissionDenied.into())
        });
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(asked, vec![7]);
    }
}
