//! A token-bucket rate limit shared by every connection thread (one for
//! uploads, taken by writers; one for downloads, taken by readers).
//! Closing it (at shutdown) wakes every thread waiting in `acquire`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Longest single sleep inside `acquire`: how soon a waiter notices `close`.
const MAX_NAP: Duration = Duration::from_millis(50);

pub struct RateLimiter {
    bytes_per_sec: f64,
    state: Mutex<(f64, Instant)>,
    closed: AtomicBool,
}

impl RateLimiter {
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_sec: bytes_per_sec.max(1) as f64,
            state: Mutex::new((0.0, Instant::now())),
            closed: AtomicBool::new(false),
        }
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
                let mut s = self.state.lock();
                let now = Instant::now();
                let refill = now.duration_since(s.1).as_secs_f64() * self.bytes_per_sec;
                s.0 = (s.0 + refill).min(self.bytes_per_sec / 4.0 + n as f64);
                s.1 = now;
                if s.0 >= n as f64 {
                    s.0 -= n as f64;
                    return true;
                }
                (n as f64 - s.0) / self.bytes_per_sec
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
}
