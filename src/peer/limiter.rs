//! A token-bucket rate limit shared by every connection thread (one for
//! uploads, taken by writers; one for downloads, taken by readers).

use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub struct RateLimiter {
    bytes_per_sec: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_sec: bytes_per_sec.max(1) as f64,
            state: Mutex::new((0.0, Instant::now())),
        }
    }

    /// Blocks until `n` bytes may be sent. The bucket holds at most a
    /// quarter second of tokens, so bursts stay small.
    pub fn acquire(&self, n: u32) {
        loop {
            let wait = {
                let mut s = self.state.lock();
                let now = Instant::now();
                let refill = now.duration_since(s.1).as_secs_f64() * self.bytes_per_sec;
                s.0 = (s.0 + refill).min(self.bytes_per_sec / 4.0 + n as f64);
                s.1 = now;
                if s.0 >= n as f64 {
                    s.0 -= n as f64;
                    return;
                }
                (n as f64 - s.0) / self.bytes_per_sec
            };
            // Rate limiting is the one place a sleep is the mechanism itself.
            std::thread::sleep(Duration::from_secs_f64(wait.min(0.05)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_bursts_pass_and_large_amounts_take_time() {
        let l = RateLimiter::new(1_000_000);
        let t = Instant::now();
        for _ in 0..10 {
            l.acquire(10_000);
        }
        l.acquire(400_000);
        // 500 kB at 1 MB/s with a 250 kB bucket: at least ~0.25 s.
        assert!(t.elapsed() >= Duration::from_millis(200));
    }
}
