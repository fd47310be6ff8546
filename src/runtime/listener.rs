//! One bounded accept-loop service for every TCP listener (peer, overlay,
//! tracker HTTP, DNS HTTP).
//!
//! - [`Slots`]: the admission policy, a plain struct: at most `total`
//!   connections at once and at most `per_ip` from one source (an IPv4
//!   address, or an IPv6 /64: [`source_key`]), well below `total`, so one
//!   source never fills the listener. With `displace`, a newcomer from a
//!   source at its cap displaces that source's oldest connection, so a slow
//!   client cannot hold its own source's place either (right for
//!   one-request listeners, wrong for long-lived peers, which are refused
//!   instead); a displaced connection counts against its source until its
//!   thread ends, and a source with `2 * per_ip` live is refused, so busy
//!   handlers that do not notice being displaced still bound it. Past
//!   `total` newcomers are refused (closed at once).
//! - [`Deadline`] / [`Timed`]: one deadline for a whole connection; every
//!   read and write gets the time that is left as its socket timeout, so a
//!   peer that sends one byte a second cannot extend it.
//! - [`Service`]: the accept thread plus one thread per admitted connection
//!   (or, for [`Service::start_handoff`], a handler that takes the slot with
//!   it). [`Service::stop`] sets a flag, wakes the blocked `accept` by
//!   connecting to itself, closes every open connection and waits a bounded
//!   time for their threads.
//!
//! Depends on std only; knows nothing of the protocols spoken over it.
//! Lock: `Shared::state`, taken alone and never across I/O (closing a
//! displaced socket is done after it is released).

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Connection caps of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections (and so connection threads) at once.
    pub total: usize,
    /// Connections from one source address at once.
    pub per_ip: usize,
    /// At the per-address cap, close that address's oldest connection for
    /// the newcomer (instead of refusing the newcomer).
    pub displace: bool,
}

impl Limits {
    /// `total` connections, a quarter of them (at least one) per address,
    /// displacing: for listeners that serve one short request per
    /// connection.
    pub fn new(total: usize) -> Limits {
        Limits {
            total,
            per_ip: (total / 4).max(1),
            displace: true,
        }
    }
}

/// What [`Slots::admit`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    Admit,
    /// Admitted; the address was at its cap, so its oldest connection
    /// (this id) is to be closed.
    AdmitDisplacing(u64),
    /// Every slot (or, not displacing, every slot of its address) is
    /// taken: close the newcomer.
    Refuse,
}

/// The key a source is counted under: an IPv4 address (IPv4-mapped IPv6
/// included) as itself, any other IPv6 address by its /64 prefix, since a
/// single host is commonly given a whole /64 and could otherwise take a
/// fresh address for every connection.
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

/// Admission accounting: who holds a slot, per source (see
/// [`source_key`]), in arrival order. Pure policy; the service does the
/// closing.
#[derive(Debug)]
pub struct Slots {
    limits: Limits,
    /// Live connections, displaced ones included until they release.
    live: HashMap<u64, IpAddr>,
    /// Per source, its connections that have not been displaced, oldest
    /// first.
    by_ip: HashMap<IpAddr, VecDeque<u64>>,
    /// Per source, its live connections, displaced ones included.
    live_by_ip: HashMap<IpAddr, usize>,
}

impl Slots {
    pub fn new(limits: Limits) -> Slots {
        Slots {
            limits: Limits {
                total: limits.total.max(1),
                per_ip: limits.per_ip.clamp(1, limits.total.max(1)),
                displace: limits.displace,
            },
            live: HashMap::new(),
            by_ip: HashMap::new(),
            live_by_ip: HashMap::new(),
        }
    }

    /// Decides on connection `id` from `ip` (ids are unique, increasing).
    pub fn admit(&mut self, id: u64, ip: IpAddr) -> Admission {
        let ip = source_key(ip);
        // A displaced connection keeps its thread until it notices, so it
        // still counts here: the thread bound is hard.
        if self.live.len() >= self.limits.total {
            return Admission::Refuse;
        }
        // And it counts against its source: a handler busy elsewhere (not
        // reading its socket) does not notice being displaced, so without
        // this one source could fill `total` by displacing its own.
        let live_here = self.live_by_ip.get(&ip).copied().unwrap_or(0);
        if live_here >= self.limits.per_ip.saturating_mul(2) {
            return Admission::Refuse;
        }
        let queue = self.by_ip.entry(ip).or_default();
        let displaced = if queue.len() < self.limits.per_ip {
            None
        } else if self.limits.displace {
            queue.pop_front()
        } else {
            return Admission::Refuse;
        };
        queue.push_back(id);
        self.live.insert(id, ip);
        *self.live_by_ip.entry(ip).or_default() += 1;
        match displaced {
            Some(old) => Admission::AdmitDisplacing(old),
            None => Admission::Admit,
        }
    }

    /// Connection `id` has ended (unknown ids are ignored).
    pub fn release(&mut self, id: u64) {
        let Some(ip) = self.live.remove(&id) else {
            return;
        };
        if let Some(queue) = self.by_ip.get_mut(&ip) {
            queue.retain(|&x| x != id);
            if queue.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
        if let Some(n) = self.live_by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.live_by_ip.remove(&ip);
            }
        }
    }

    /// Connections alive (displaced ones included).
    pub fn live(&self) -> usize {
        self.live.len()
    }

    /// Connections from `ip`'s source (its /64 for IPv6) that hold their
    /// place.
    pub fn from_ip(&self, ip: IpAddr) -> usize {
        self.by_ip.get(&source_key(ip)).map_or(0, VecDeque::len)
    }
}

/// A point in time past which a connection's I/O fails.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Instant);

impl Deadline {
    pub fn after(d: Duration) -> Deadline {
        Deadline(Instant::now() + d)
    }

    /// The time left, or `TimedOut` once it has passed.
    pub fn remaining(&self) -> io::Result<Duration> {
        let left = self.0.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(left)
        }
    }
}

/// A stream whose every read and write is bounded by one [`Deadline`].
pub struct Timed<'a> {
    stream: &'a TcpStream,
    deadline: Deadline,
}

impl<'a> Timed<'a> {
    pub fn new(stream: &'a TcpStream, deadline: Deadline) -> Timed<'a> {
        Timed { stream, deadline }
    }
}

/// A socket timeout is reported as WouldBlock on Unix: call it what it is.
fn timed_out(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            io::Error::new(io::ErrorKind::TimedOut, "deadline passed")
        }
        _ => e,
    }
}

impl Read for Timed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream
            .set_read_timeout(Some(self.deadline.remaining()?))?;
        let mut s = self.stream;
        s.read(buf).map_err(timed_out)
    }
}

impl Write for Timed<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream
            .set_write_timeout(Some(self.deadline.remaining()?))?;
        let mut s = self.stream;
        s.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How a listener is run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Thread name prefix (`NAME-listen`, `NAME-conn`).
    pub name: String,
    pub limits: Limits,
    /// How long [`Service::stop`] waits for connection threads.
    pub stop_grace: Duration,
}

struct State {
    slots: Slots,
    /// A handle on each live connection's socket, to close it at stop or
    /// when it is displaced.
    sockets: HashMap<u64, TcpStream>,
    next_id: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Signalled whenever a slot is released.
    released: Condvar,
    stop: AtomicBool,
    name: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler never holds this lock; recover regardless.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's place in the listener; released when dropped (also if
/// the thread holding it panics).
pub struct Slot {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let socket = {
            let mut st = self.shared.lock();
            st.slots.release(self.id);
            st.sockets.remove(&self.id)
        };
        drop(socket);
        self.shared.released.notify_all();
    }
}

/// A running listener; [`Service::stop`] (or drop) stops it.
pub struct Service {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    stop_grace: Duration,
}

type Handoff = Box<dyn FnMut(TcpStream, SocketAddr, Slot) + Send>;

impl Service {
    /// Serves each admitted connection on its own thread with `handler`.
    pub fn start<F>(listener: TcpListener, opts: Options, handler: F) -> io::Result<Service>
    where
        F: Fn(TcpStream, SocketAddr) + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        let name = format!("{}-conn", opts.name);
        Service::start_handoff(listener, opts, move |stream, peer, slot| {
            let h = handler.clone();
            let spawned = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || {
                    let _slot = slot;
                    h(stream, peer);
                });
            if let Err(e) = spawned {
                // The closure (and with it the slot and socket) is dropped.
                log::warn!("{name}: cannot start a connection thread: {e}");
            }
        })
    }

    /// Hands each admitted connection and its [`Slot`] to `handler` on the
    /// accept thread; the connection holds its place until the slot is
    /// dropped, so the handler must return quickly and keep the slot with
    /// whatever thread then owns the connection.
    pub fn start_handoff<F>(listener: TcpListener, opts: Options, handler: F) -> io::Result<Service>
    where
        F: FnMut(TcpStream, SocketAddr, Slot) + Send + 'static,
    {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                slots: Slots::new(opts.limits),
                sockets: HashMap::new(),
                next_id: 0,
            }),
            released: Condvar::new(),
            stop: AtomicBool::new(false),
            name: opts.name.clone(),
        });
        let s = shared.clone();
        let handler: Handoff = Box::new(handler);
        let accept = std::thread::Builder::new()
            .name(format!("{}-listen", opts.name))
            .spawn(move || accept_loop(listener, s, handler))?;
        Ok(Service {
            addr,
            shared,
            accept: Some(accept),
            stop_grace: opts.stop_grace,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        self.shared.lock().slots.live()
    }

    /// Stops accepting, closes every open connection and waits up to the
    /// stop grace for their slots; true if all were released in time.
    pub fn stop(mut self) -> bool {
        self.stop_now()
    }

    fn stop_now(&mut self) -> bool {
        let Some(accept) = self.accept.take() else {
            return true;
        };
        self.shared.stop.store(true, Ordering::SeqCst);
        super::wake::wake_tcp(self.addr);
        let _ = accept.join();
        let sockets: Vec<TcpStream> = {
            let st = self.shared.lock();
            st.sockets
                .values()
                .filter_map(|s| s.try_clone().ok())
                .collect()
        };
        for s in &sockets {
            let _ = s.shutdown(Shutdown::Both);
        }
        let end = Instant::now() + self.stop_grace;
        let mut st = self.shared.lock();
        while st.slots.live() > 0 {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "{}: {} connections still open at stop",
                    self.shared.name,
                    st.slots.live()
                );
                return false;
            }
            st = self
                .shared
                .released
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut handler: Handoff) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                log::warn!("{}: accept failed: {e}", shared.name);
                // Out of descriptors and the like: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let (Ok(peer), Ok(handle)) = (stream.peer_addr(), stream.try_clone()) else {
            continue;
        };
        let (admission, id, displaced) = {
            let mut st = shared.lock();
            let id = st.next_id;
            st.next_id += 1;
            let admission = st.slots.admit(id, peer.ip());
            let displaced = match admission {
                Admission::AdmitDisplacing(old) => st.sockets.remove(&old),
                _ => None,
            };
            if admission != Admission::Refuse {
                st.sockets.insert(id, handle);
            }
            (admission, id, displaced)
        };
        if let Some(old) = displaced {
            // Its thread sees the closed socket and releases its slot.
            let _ = old.shutdown(Shutdown::Both);
        }
        if admission == Admission::Refuse {
            log::debug!("{}: refusing {peer}: every slot is taken", shared.name);
            let _ = stream.shutdown(Shutdown::Both);
            continue;
        }
        let slot = Slot {
            shared: shared.clone(),
            id,
        };
        handler(stream, peer, slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn per_address_cap_displaces_that_address_oldest_only() {
        let mut s = Slots::new(Limits {
            total: 10,
            per_ip: 3,
            displace: true,
        });
        for id in 0..3 {
            assert_eq!(s.admit(id, ip(1)), Admission::Admit);
        }
        assert_eq!(s.admit(3, ip(1)), Admission::AdmitDisplacing(0));
        assert_eq!(s.admit(4, ip(1)), Admission::AdmitDisplacing(1));
        // Another address is untouched by the first one's churn.
        assert_eq!(s.admit(5, ip(2)), Admission::Admit);
        assert_eq!(s.from_ip(ip(1)), 3);
        assert_eq!(s.from_ip(ip(2)), 1);
        // Displaced connections hold a thread until they release.
        assert_eq!(s.live(), 6);
        s.release(0);
        s.release(1);
        assert_eq!(s.live(), 4);
        assert_eq!(s.from_ip(ip(1)), 3);
    }

    #[test]
    fn total_cap_refuses_and_release_makes_room() {
        let mut s = Slots::new(Limits {
            total: 4,
            per_ip: 2,
            displace: true,
        });
        let mut id = 0;
        for a in 1..=2 {
            for _ in 0..2 {
                assert_eq!(s.admit(id, ip(a)), Admission::Admit);
                id += 1;
            }
        }
        assert_eq!(s.admit(id, ip(3)), Admission::Refuse);
        assert_eq!(s.live(), 4, "a refusal takes nothing");
        s.release(2);
        assert_eq!(s.admit(id + 1, ip(3)), Admission::Admit);
        // Releasing twice, or an unknown id, changes nothing.
        s.release(2);
        s.release(999);
        assert_eq!(s.live(), 4);
    }

    #[test]
    fn one_address_never_holds_more_than_its_cap_whatever_it_sends() {
        let limits = Limits::new(128);
        let mut s = Slots::new(limits);
        for id in 0..10_000 {
            assert_ne!(s.admit(id, ip(1)), Admission::Refuse, "id {id}");
            // Displaced connections go away as their threads notice.
            if id >= limits.per_ip as u64 {
                s.release(id - limits.per_ip as u64);
            }
            assert!(s.from_ip(ip(1)) <= limits.per_ip);
        }
        // Room is left for everyone else.
        assert!(s.live() <= limits.per_ip + 1);
        assert_eq!(s.admit(20_000, ip(2)), Admission::Admit);
    }

    #[test]
    fn without_displacing_an_address_at_its_cap_is_refused() {
        let mut s = Slots::new(Limits {
            total: 10,
            per_ip: 2,
            displace: false,
        });
        assert_eq!(s.admit(0, ip(1)), Admission::Admit);
        assert_eq!(s.admit(1, ip(1)), Admission::Admit);
        assert_eq!(s.admit(2, ip(1)), Admission::Refuse);
        assert_eq!(s.admit(3, ip(2)), Admission::Admit);
        s.release(0);
        assert_eq!(s.admit(4, ip(1)), Admission::Admit);
        assert_eq!(s.live(), 3);
    }

    #[test]
    fn ipv4_mapped_addresses_count_as_their_ipv4_address() {
        let mut s = Slots::new(Limits {
            total: 10,
            per_ip: 1,
            displace: true,
        });
        let v4 = IpAddr::from([127, 0, 0, 1]);
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert_eq!(s.admit(0, v4), Admission::Admit);
        assert_eq!(s.admit(1, mapped), Admission::AdmitDisplacing(0));
    }

    #[test]
    fn busy_displaced_connections_still_bound_their_address() {
        // Handlers that never touch their socket (a forwarded lookup
        // waiting on other members) do not notice being displaced, so
        // nothing is released here: one address must still not fill the
        // listener.
        let limits = Limits::new(128);
        let mut s = Slots::new(limits);
        let mut refused = 0;
        for id in 0..1_000 {
            if s.admit(id, ip(1)) == Admission::Refuse {
                refused += 1;
            }
        }
        assert!(refused > 0, "the busy address is refused at some point");
        assert!(
            s.live() <= 2 * limits.per_ip,
            "one address holds {} of {} slots",
            s.live(),
            limits.total
        );
        assert_eq!(s.admit(5_000, ip(2)), Admission::Admit);
        // Once its threads end, the address gets in again.
        for id in 0..1_000 {
            s.release(id);
        }
        assert_eq!(s.admit(5_001, ip(1)), Admission::Admit);
    }

    #[test]
    fn ipv6_sources_are_keyed_by_their_64_prefix() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(other));
        assert_eq!(source_key(a), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        // IPv4 (and IPv4-mapped) addresses stay whole.
        let v4 = IpAddr::from([192, 0, 2, 7]);
        assert_eq!(source_key(v4), v4);
        assert_eq!(
            source_key(IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped())),
            v4
        );
        assert_ne!(source_key(v4), source_key(IpAddr::from([192, 0, 2, 8])));
        // In the policy: a second address of the same /64 displaces the
        // first; another /64 does not.
        let mut s = Slots::new(Limits {
            total: 10,
            per_ip: 1,
            displace: true,
        });
        assert_eq!(s.admit(0, a), Admission::Admit);
        assert_eq!(s.admit(1, b), Admission::AdmitDisplacing(0));
        assert_eq!(s.admit(2, other), Admission::Admit);
        assert_eq!(s.from_ip(a), 1);
    }

    #[test]
    fn a_deadline_that_passed_is_an_error() {
        let d = Deadline::after(Duration::from_millis(30));
        assert!(d.remaining().unwrap() <= Duration::from_millis(30));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(d.remaining().unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        (c, s)
    }

    #[test]
    fn a_byte_at_a_time_cannot_extend_the_deadline() {
        let (mut client, server) = pair();
        // 40 bytes, one every 50 ms: 2 s in all, each byte well inside any
        // per-read timeout.
        let dripper = std::thread::spawn(move || {
            for _ in 0..40 {
                if client.write_all(b"x").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let start = Instant::now();
        let mut buf = [0u8; 40];
        let err = Timed::new(&server, Deadline::after(Duration::from_millis(300)))
            .read_exact(&mut buf)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(start.elapsed() < Duration::from_millis(1500));
        drop(server);
        dripper.join().unwrap();
    }

    fn opts(limits: Limits) -> Options {
        Options {
            name: "test".into(),
            limits,
            stop_grace: Duration::from_secs(5),
        }
    }

    /// Echo one line per connection, with a 10 s deadline (long, so stop
    /// has to close the sockets for the threads to end).
    fn echo_service(limits: Limits) -> Service {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        Service::start(l, opts(limits), |s, _| {
            let mut t = Timed::new(&s, Deadline::after(Duration::from_secs(10)));
            let mut b = [0u8; 1];
            if t.read_exact(&mut b).is_ok() {
                let _ = t.write_all(&b);
            }
        })
        .unwrap()
    }

    fn wait(cond: impl Fn() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn service_caps_serves_and_stops_with_connections_open() {
        let svc = echo_service(Limits {
            total: 8,
            per_ip: 8,
            displace: true,
        });
        let addr = svc.local_addr();
        let mut idle: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
        assert!(wait(|| svc.live() == 8));
        // Past the cap: closed at once.
        let mut extra = TcpStream::connect(addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(extra.read(&mut b), Ok(0) | Err(_)));
        // A served connection works.
        drop(idle.pop());
        assert!(wait(|| svc.live() == 7));
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"k").unwrap();
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"k");
        let start = Instant::now();
        assert!(svc.stop(), "every connection thread ended");
        assert!(start.elapsed() < Duration::from_secs(3));
        assert!(TcpStream::connect(addr).is_err());
        drop(idle);
    }
}
