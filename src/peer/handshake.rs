//! The 68-byte handshake over a blocking stream, both directions.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::core::{InfoHash, PeerId};
use crate::wire::peer::{Handshake, HANDSHAKE_LEN};

pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer did not complete the handshake within [`HANDSHAKE_TIMEOUT`].
    #[error("handshake timed out after {0:?}")]
    TimedOut(Duration),
    /// The TCP connect did not complete within [`CONNECT_TIMEOUT`].
    #[error("connect timed out after {0:?}")]
    ConnectTimedOut(Duration),
    #[error("i/o: {0}")]
    Io(io::Error),
    #[error("not a BitTorrent handshake")]
    NotBitTorrent,
    #[error("peer is on another torrent")]
    WrongInfoHash,
    #[error("connected to ourselves")]
    OurOwnId,
}

/// An I/O error under a socket timeout: Linux reports an expired
/// `SO_RCVTIMEO`/`SO_SNDTIMEO` as `WouldBlock` (EAGAIN, "Resource
/// temporarily unavailable"), other systems as `TimedOut`.
pub fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

impl From<io::Error> for HandshakeError {
    /// Every handshake read and write runs under [`HANDSHAKE_TIMEOUT`], so
    /// a socket timeout here means the handshake timed out.
    fn from(e: io::Error) -> HandshakeError {
        if is_timeout(&e) {
            HandshakeError::TimedOut(HANDSHAKE_TIMEOUT)
        } else {
            HandshakeError::Io(e)
        }
    }
}

/// Reads the 68 bytes within one deadline for the whole handshake: a
/// socket read timeout alone restarts with every byte, so a peer trickling
/// a byte every few seconds could hold a connection slot for minutes.
fn read_handshake(stream: &mut TcpStream) -> Result<Handshake, HandshakeError> {
    read_handshake_within(stream, HANDSHAKE_TIMEOUT)
}

fn read_handshake_within(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Handshake, HandshakeError> {
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; HANDSHAKE_LEN];
    let mut filled = 0;
    while filled < HANDSHAKE_LEN {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandshakeError::TimedOut(timeout));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(HandshakeError::TimedOut(timeout)),
            Err(e) => return Err(e.into()),
        }
    }
    Handshake::decode(&buf).map_err(|_| HandshakeError::NotBitTorrent)
}

/// An unconnected socket for dialing `addr`: the caller can keep a clone
/// to shut it down from another thread (which ends a pending connect)
/// before calling [`connect`].
pub fn socket_for(addr: SocketAddr) -> io::Result<socket2::Socket> {
    socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
}

/// Connects `socket` to `addr` within [`CONNECT_TIMEOUT`].
pub fn connect(socket: socket2::Socket, addr: SocketAddr) -> Result<TcpStream, HandshakeError> {
    match socket.connect_timeout(&addr.into(), CONNECT_TIMEOUT) {
        Ok(()) => Ok(socket.into()),
        Err(e) if is_timeout(&e) => Err(HandshakeError::ConnectTimedOut(CONNECT_TIMEOUT)),
        Err(e) => Err(HandshakeError::Io(e)),
    }
}

/// Both sides' handshake is bounded by the same timeouts; peerwire wants
/// no Nagle delay.
fn bound_for_handshake(stream: &TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_nodelay(true)
}

/// Sends our handshake on a freshly connected `stream` and reads theirs.
pub fn dial(
    stream: &mut TcpStream,
    info_hash: InfoHash,
    our_id: PeerId,
) -> Result<Handshake, HandshakeError> {
    bound_for_handshake(stream)?;
    stream.write_all(&Handshake::new(info_hash, our_id).encode())?;
    let theirs = read_handshake(stream)?;
    check(&theirs, info_hash, our_id)?;
    Ok(theirs)
}

/// Reads an incoming peer's handshake, checks it, and answers.
pub fn answer(
    stream: &mut TcpStream,
    info_hash: InfoHash,
    our_id: PeerId,
) -> Result<Handshake, HandshakeError> {
    let theirs = read_incoming(stream)?;
    answer_read(stream, theirs, info_hash, our_id)
}

/// Reads an incoming peer's handshake (within [`HANDSHAKE_TIMEOUT`])
/// without answering: the router reads it to learn which torrent the
/// peer wants, then the torrent's swarm answers with [`answer_read`].
pub fn read_incoming(stream: &mut TcpStream) -> Result<Handshake, HandshakeError> {
    bound_for_handshake(stream)?;
    read_handshake(stream)
}

/// Checks an incoming handshake already read and answers it.
pub fn answer_read(
    stream: &mut TcpStream,
    theirs: Handshake,
    info_hash: InfoHash,
    our_id: PeerId,
) -> Result<Handshake, HandshakeError> {
    bound_for_handshake(stream)?;
    // Refuse a wrong torrent before answering, so it learns nothing. Our own
    // id is answered first: the dialing side (ourselves, through an address
    // a tracker or peer handed us) then sees `OurOwnId`, a permanent refusal,
    // and stops dialing that address instead of retrying it for ever.
    if theirs.info_hash != info_hash {
        return Err(HandshakeError::WrongInfoHash);
    }
    stream.write_all(&Handshake::new(info_hash, our_id).encode())?;
    check(&theirs, info_hash, our_id)?;
    Ok(theirs)
}

fn check(h: &Handshake, info_hash: InfoHash, our_id: PeerId) -> Result<(), HandshakeError> {
    if h.info_hash != info_hash {
        return Err(HandshakeError::WrongInfoHash);
    }
    if h.peer_id == our_id {
        return Err(HandshakeError::OurOwnId);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_silent_peer_times_out_and_says_so() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Connected, never sends a byte.
        let _silent = TcpStream::connect(addr).unwrap();
        let (mut s, _) = listener.accept().unwrap();
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let err = read_handshake_within(&mut s, timeout).unwrap_err();
        assert!(
            matches!(err, HandshakeError::TimedOut(t) if t == timeout),
            "{err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let msg = err.to_string();
        assert!(msg.contains("timed out"), "{msg}");
        assert!(!msg.contains("os error"), "{msg}");
    }

    #[test]
    fn a_socket_timeout_converts_to_timed_out_and_other_errors_stay_io() {
        for kind in [io::ErrorKind::WouldBlock, io::ErrorKind::TimedOut] {
            let e = HandshakeError::from(io::Error::from(kind));
            assert!(matches!(e, HandshakeError::TimedOut(_)), "{kind:?}: {e:?}");
            assert_eq!(e.to_string(), "handshake timed out after 10s");
        }
        // EAGAIN as Linux reports an expired socket timeout.
        #[cfg(target_os = "linux")]
        assert!(is_timeout(&io::Error::from_raw_os_error(11)));
        let reset = HandshakeError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(matches!(reset, HandshakeError::Io(_)), "{reset:?}");
    }

    #[test]
    fn dialing_ourselves_is_a_permanent_refusal_on_the_dialing_side() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (ih, me) = (InfoHash([7; 20]), PeerId([9; 20]));
        let accept = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            answer(&mut s, ih, me).map(|_| ())
        });
        let mut stream = TcpStream::connect(addr).unwrap();
        let dialed = dial(&mut stream, ih, me);
        assert!(
            matches!(dialed, Err(HandshakeError::OurOwnId)),
            "the dialer must learn it reached itself: {dialed:?}"
        );
        assert!(matches!(
            accept.join().unwrap(),
            Err(HandshakeError::OurOwnId)
        ));
    }
}
