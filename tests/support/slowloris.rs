//! A slowloris attacker for the listener tests: many TCP connections from a
//! chosen loopback source address, each sending a prefix and then one byte
//! per tick, reconnecting (once per tick) when the server closes it.
//! Bounded in connections, ticks and time; only ever dials loopback.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

pub struct Attack {
    /// Source address of every attacking connection (127.0.0.x).
    pub from: IpAddr,
    pub to: SocketAddr,
    pub conns: usize,
    /// Sent right after connecting (a length prefix, a request head...).
    pub prefix: Vec<u8>,
    /// One byte of this is sent per connection per tick.
    pub drip: u8,
    pub tick: Duration,
    /// The attack ends after this long whatever happens.
    pub duration: Duration,
    /// Reopen connections the server closed (once per tick each).
    pub reconnect: bool,
}

#[derive(Default)]
pub struct Counts {
    /// Connections opened (connect succeeded).
    pub opened: AtomicUsize,
    /// Connections found closed by the server (a write failed).
    pub closed: AtomicUsize,
    /// Connections open at the last tick.
    pub open_now: AtomicUsize,
    /// Ticks done.
    pub ticks: AtomicUsize,
}

pub struct Running {
    stop: Arc<AtomicBool>,
    pub counts: Arc<Counts>,
    thread: Option<JoinHandle<()>>,
}

/// A TCP connection to `to` from source address `from`.
pub fn connect_from(from: IpAddr, to: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    assert!(to.ip().is_loopback() && from.is_loopback(), "loopback only");
    let s = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    s.bind(&SocketAddr::new(from, 0).into())?;
    s.connect_timeout(&to.into(), timeout)?;
    s.set_nodelay(true)?;
    // A write to a connection the server closed must fail, not block.
    s.set_write_timeout(Some(Duration::from_millis(200)))?;
    Ok(s.into())
}

impl Attack {
    pub fn start(self) -> Running {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let (s, c) = (stop.clone(), counts.clone());
        let thread = std::thread::spawn(move || self.run(&s, &c));
        Running {
            stop,
            counts,
            thread: Some(thread),
        }
    }

    fn open(&self, counts: &Counts) -> Option<TcpStream> {
        let mut s = connect_from(self.from, self.to, Duration::from_millis(500)).ok()?;
        counts.opened.fetch_add(1, Ordering::SeqCst);
        if s.write_all(&self.prefix).is_err() {
            counts.closed.fetch_add(1, Ordering::SeqCst);
            return None;
        }
        Some(s)
    }

    fn run(&self, stop: &AtomicBool, counts: &Counts) {
        let end = Instant::now() + self.duration;
        let mut conns: Vec<Option<TcpStream>> =
            (0..self.conns).map(|_| self.open(counts)).collect();
        let max_ticks = (self.duration.as_millis() / self.tick.as_millis().max(1)) as usize + 1;
        for _ in 0..max_ticks {
            counts.ticks.fetch_add(1, Ordering::SeqCst);
            counts.open_now.store(
                conns.iter().filter(|c| c.is_some()).count(),
                Ordering::SeqCst,
            );
            // Sleep one tick in small steps so stop() is prompt.
            let next = Instant::now() + self.tick;
            while Instant::now() < next {
                if stop.load(Ordering::SeqCst) || Instant::now() >= end {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            for c in conns.iter_mut() {
                let alive = match c {
                    Some(s) => s.write_all(&[self.drip]).is_ok(),
                    None => false,
                };
                if !alive {
                    if c.take().is_some() {
                        counts.closed.fetch_add(1, Ordering::SeqCst);
                    }
                    if self.reconnect {
                        *c = self.open(counts);
                    }
                }
            }
        }
    }
}

impl Running {
    /// Waits (bounded) until the first round of connections is open.
    pub fn wait_opened(&self, n: usize, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.counts.opened.load(Ordering::SeqCst) >= n)
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Threads of process `pid` (Linux /proc), 0 if unknown.
pub fn threads_of(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Latency summary of `samples` (ms): "min/median/max".
pub fn summary(samples: &mut [u128]) -> String {
    if samples.is_empty() {
        return "-".into();
    }
    samples.sort_unstable();
    format!(
        "{}/{}/{} ms (min/median/max)",
        samples[0],
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    )
}
