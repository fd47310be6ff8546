//! A token-bucket rate limit shared by every connection thread (one for
//! uploads, taken by writers; one for downloads, taken by readers).
//! Closing it (at shutdown) wakes every thread waiting in `acquire`. Its
//! rate may change while it runs: a process's global limit is split
//! between its torrents' limiters every second (`node::limits`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Longest single sleep inside `acquire`: how soon a waiter notices `close`.
const MAX_NAP: Duration = Duration::from_millis(50);

pub struct RateLimiter {
    /// Tokens, when they were last refilled, bytes per second.
    state: Mutex<Bucket>,
    /// Bytes granted since the start.
    granted: AtomicU64,
    closed: AtomicBool,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
    bytes_per_sec: f64,
}

impl RateLimiter {
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter {
            state: Mutex::new(Bucket {
                tokens: 0.0,
                refilled: Instant::now(),
                bytes_per_sec: bytes_per_sec.max(1) as f64,
            }),
            granted: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    /// Changes the rate from now on (tokens already earned are kept).
    pub fn set_rate(&self, bytes_per_sec: u64) {
        let mut b = self.state.lock();
        b.refill(Instant::now(), 0);
        b.bytes_per_sec = bytes_per_sec.max(1) as f64;
    }

    pub fn rate(&self) -> u64 {
        self.state.lock().bytes_per_sec as u64
    }

    /// Bytes granted since the limiter was made.
    pub fn granted(&self) -> u64 {
        self.granted.load(Ordering::Relaxed)
    }

    /// Blocks until `n` bytes may be sent; false (at once, or within
    /// [`MAX_NAP`] for a waiter) once the limiter is closed. The bucket
    /// holds at most a quarter second of tokens, so bursts stay small.
    #[must_use]
    pub fn acquire(&self, n: u32) -> bool {
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return false;
            }
            let wait = {
                let mut b = self.state.lock();
                b.refill(Instant::now(), n);
                if b.tokens >= n as f64 {
                    b.tokens -= n as f64;
                    self.granted.fetch_add(n.into(), Ordering::Relaxed);
                    return true;
                }
                (n as f64 - b.tokens) / b.bytes_per_sec
            };
            // Rate limiting is the one place a sleep is the mechanism itself;
            // short naps keep `close` noticed promptly.
            std::thread::sleep(Duration::from_secs_f64(wait).min(MAX_NAP));
        }
    }

    /// Makes every current and future `acquire` return false.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
    }
}

impl Bucket {
    /// Adds the tokens earned since the last refill, keeping at most a
    /// quarter second's worth beyond the `n` being asked for.
    fn refill(&mut self, now: Instant, n: u32) {
        let earned = now.duration_since(self.refilled).as_secs_f64() * self.bytes_per_sec;
        self.tokens = (self.tokens + earned).min(self.bytes_per_sec / 4.0 + f64::from(n));
        self.refilled = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn small_bursts_pass_and_large_amounts_take_time() {
        let l = RateLimiter::new(1_000_000);
        let t = Instant::now();
        for _ in 0..10 {
            assert!(l.acquire(10_000));
        }
        assert!(l.acquire(400_000));
        // 500 kB at 1 MB/s with a 250 kB bucket: at least ~0.25 s.
        assert!(t.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn close_wakes_a_waiter() {
        // 10 bytes/s: a 1 MB acquire would wait a day.
        let l = Arc::new(RateLimiter::new(10));
        let waiter = {
            let l = l.clone();
            std::thread::spawn(move || l.acquire(1_000_000))
        };
        // Whether or not the waiter is already asleep, it must never be
        // granted (that would take a day) and must end soon after close.
        assert!(!waiter.is_finished());
        l.close();
        let t = Instant::now();
        assert!(!waiter.join().unwrap(), "acquire granted after close");
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(!l.acquire(1), "closed limiter granted");
    }

    #[test]
    fn a_new_rate_applies_to_the_next_acquire_and_grants_are_counted() {
        let l = RateLimiter::new(10);
        l.set_rate(10_000_000);
        assert_eq!(l.rate(), 10_000_000);
        let t = Instant::now();
        // 1 MB at 10 B/s would take a day; at the new rate a tenth of a second.
        assert!(l.acquire(1_000_000));
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(l.acquire(500));
        assert_eq!(l.granted(), 1_000_500);
    }
}
