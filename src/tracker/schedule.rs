//! When to announce, and to which tracker: a plain policy struct, no I/O.
//!
//! A tracker's reply must not steer the node: `interval 0` may not make it
//! hammer the tracker, `interval 2^63` may not stop it announcing, a
//! tracker that keeps failing (or redirects in a loop) is backed off
//! exponentially, and a failure is logged when it changes, not on every
//! attempt. Trackers are tried in order (BEP 12 tiers flattened); the one
//! that answers moves to the front, so later rounds ask it first.
//!
//! The announcer thread (`node::announcer`) owns one [`TrackerSet`] and
//! does the I/O; everything here is decided from `Instant`s it passes in.

use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Bounds on a tracker's `interval`: below, we would hammer it; above, a
/// tracker could make us silent for days.
pub const MIN_TRACKER_INTERVAL: Duration = Duration::from_secs(60);
pub const MAX_TRACKER_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// Used when the reply gave no usable interval (missing, negative, 0).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30 * 60);
/// Floor under any interval, including the user's `--announce-interval`.
pub const FLOOR_INTERVAL: Duration = Duration::from_secs(5);
/// First retry after a failure; doubles per consecutive failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(15);
/// Longest wait before retrying a failing tracker.
pub const MAX_RETRY: Duration = Duration::from_secs(30 * 60);
/// A tracker that redirects in a loop is left alone at least this long.
pub const REDIRECT_LOOP_RETRY: Duration = Duration::from_secs(10 * 60);
/// Trackers kept from a torrent (the rest are ignored, once, with a warning).
pub const MAX_TRACKERS: usize = 32;
/// Trackers asked in one announce round before giving up until the next.
pub const MAX_TRIES_PER_ROUND: usize = 4;
/// Longest URL shown in a log line.
const SHOWN_URL_CHARS: usize = 96;

/// What one announce to one tracker came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The tracker answered; `interval` as it said (0: none usable).
    Answered {
        interval: Duration,
        min_interval: Option<Duration>,
    },
    /// It refused, failed or could not be reached; `reason` is shown in the
    /// log when it differs from the previous one.
    Failed { reason: String, kind: FailureKind },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Worth retrying with the usual backoff.
    Retry,
    /// Redirected in a loop or too often: leave it alone for a while.
    RedirectLoop,
    /// This tracker can never work (unsupported scheme): never again.
    Never,
}

/// What the caller should log after an outcome: `Some` once per change.
pub type LogLine = Option<String>;

#[derive(Debug)]
struct Tracker {
    url: String,
    failures: u32,
    /// Not asked before this time (backoff after failures).
    not_before: Instant,
    /// The last failure reason logged, so a repeat is not logged again.
    last_reason: Option<String>,
    disabled: bool,
}

/// The torrent's trackers and when each may be asked next.
#[derive(Debug)]
pub struct TrackerSet {
    trackers: Vec<Tracker>,
    /// The user's `--announce-interval`, which overrides the tracker's.
    user_interval: Option<Duration>,
    /// The tracker's last `min interval`: even a forced announce waits for it.
    min_interval: Duration,
    last_answer: Option<Instant>,
    /// The regular interval decided at the last answer.
    last_interval: Duration,
}

impl TrackerSet {
    /// Keeps the first [`MAX_TRACKERS`] distinct URLs, in order.
    pub fn new(urls: &[String], user_interval: Option<Duration>, now: Instant) -> TrackerSet {
        let mut seen = HashSet::new();
        let trackers = urls
            .iter()
            .filter(|u| seen.insert(u.as_str()))
            .take(MAX_TRACKERS)
            .map(|url| Tracker {
                url: url.clone(),
                failures: 0,
                not_before: now,
                last_reason: None,
                disabled: false,
            })
            .collect();
        TrackerSet {
            trackers,
            user_interval,
            min_interval: Duration::ZERO,
            last_answer: None,
            last_interval: DEFAULT_INTERVAL,
        }
    }

    pub fn len(&self) -> usize {
        self.trackers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.trackers.is_empty()
    }

    /// The trackers to try this round, in order: not backed off, at most
    /// [`MAX_TRIES_PER_ROUND`]. The caller stops at the first that answers.
    pub fn round(&self, now: Instant) -> Vec<String> {
        self.trackers
            .iter()
            .filter(|t| !t.disabled && t.not_before <= now)
            .take(MAX_TRIES_PER_ROUND)
            .map(|t| t.url.clone())
            .collect()
    }

    /// The same round with no tracker skipped for backoff: for the final
    /// `stopped`, which is sent once to whoever may be listening.
    pub fn stopping_round(&self) -> Vec<String> {
        self.trackers
            .iter()
            .filter(|t| !t.disabled && t.failures == 0)
            .take(MAX_TRIES_PER_ROUND)
            .map(|t| t.url.clone())
            .collect()
    }

    /// Records what `url` answered; returns the line to log, if any.
    pub fn record(&mut self, url: &str, outcome: Outcome, now: Instant) -> LogLine {
        let i = self.trackers.iter().position(|t| t.url == url)?;
        match outcome {
            Outcome::Answered {
                interval,
                min_interval,
            } => {
                let t = &mut self.trackers[i];
                let recovered = t.last_reason.take().is_some();
                t.failures = 0;
                t.not_before = now;
                self.min_interval = min_interval
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_TRACKER_INTERVAL);
                self.last_answer = Some(now);
                let interval = self.next_interval(interval);
                // BEP 12: the tracker that answered is asked first next time.
                let t = self.trackers.remove(i);
                self.trackers.insert(0, t);
                self.last_interval = interval;
                recovered.then(|| format!("tracker {}: answering again", shown(url)))
            }
            Outcome::Failed { reason, kind } => {
                let t = &mut self.trackers[i];
                t.failures = t.failures.saturating_add(1);
                let wait = match kind {
                    FailureKind::Retry => backoff(t.failures),
                    FailureKind::RedirectLoop => backoff(t.failures).max(REDIRECT_LOOP_RETRY),
                    FailureKind::Never => {
                        t.disabled = true;
                        MAX_RETRY
                    }
                };
                t.not_before = now + wait;
                if t.last_reason.as_deref() == Some(reason.as_str()) {
                    return None;
                }
                let line = format!(
                    "tracker {}: {}{}",
                    shown(url),
                    shown(&reason),
                    if t.disabled {
                        " (not asked again)".to_string()
                    } else {
                        format!(" (retrying in {} s at the earliest)", wait.as_secs())
                    }
                );
                t.last_reason = Some(reason);
                Some(line)
            }
        }
    }

    /// The regular interval after an answer that said `told`.
    fn next_interval(&self, told: Duration) -> Duration {
        let tracker = if told.is_zero() {
            DEFAULT_INTERVAL
        } else {
            told.clamp(MIN_TRACKER_INTERVAL, MAX_TRACKER_INTERVAL)
        };
        self.user_interval
            .unwrap_or(tracker)
            .max(self.min_interval)
            .max(FLOOR_INTERVAL)
    }

    /// How long to wait after a round: the interval after an answer, or
    /// until the first failing tracker may be retried.
    pub fn wait_after_round(&self, answered: bool, now: Instant) -> Duration {
        if answered {
            return self.last_interval;
        }
        self.trackers
            .iter()
            .filter(|t| !t.disabled)
            .map(|t| t.not_before.saturating_duration_since(now))
            .min()
            .unwrap_or(MAX_RETRY)
            .max(FLOOR_INTERVAL)
    }

    /// How long a forced announce ("too few peers") must still wait to
    /// respect the tracker's `min interval`.
    pub fn forced_wait(&self, now: Instant) -> Duration {
        match self.last_answer {
            Some(at) => (at + self.min_interval.max(FLOOR_INTERVAL)).saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }
}

/// 15 s, 30 s, 60 s, ... up to [`MAX_RETRY`].
fn backoff(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    FIRST_RETRY.saturating_mul(1 << shift).min(MAX_RETRY)
}

/// A URL or reason cut for a log line: a hostile torrent's 10 MB URL must
/// not be written whole on every failure.
pub fn shown(s: &str) -> String {
    if s.chars().count() <= SHOWN_URL_CHARS {
        return s.to_string();
    }
    let cut: String = s.chars().take(SHOWN_URL_CHARS).collect();
    format!("{cut}… ({} bytes)", s.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://t{i}/announce")).collect()
    }

    fn answered(secs: u64, min: Option<u64>) -> Outcome {
        Outcome::Answered {
            interval: Duration::from_secs(secs),
            min_interval: min.map(Duration::from_secs),
        }
    }

    fn failed(reason: &str) -> Outcome {
        Outcome::Failed {
            reason: reason.into(),
            kind: FailureKind::Retry,
        }
    }

    #[test]
    fn intervals_from_the_tracker_are_clamped() {
        let t = Instant::now();
        let mut s = TrackerSet::new(&urls(1), None, t);
        let u = "http://t0/announce";
        for (told, want) in [
            (0, DEFAULT_INTERVAL),
            (1, MIN_TRACKER_INTERVAL),
            (900, Duration::from_secs(900)),
            (u64::MAX / 2, MAX_TRACKER_INTERVAL),
        ] {
            s.record(u, answered(told, None), t);
            assert_eq!(s.wait_after_round(true, t), want, "interval {told}");
        }
        // A huge min interval is clamped too; a sane one is honoured.
        s.record(u, answered(60, Some(u64::MAX / 2)), t);
        assert_eq!(s.wait_after_round(true, t), MAX_TRACKER_INTERVAL);
        s.record(u, answered(60, Some(120)), t);
        assert_eq!(s.wait_after_round(true, t), Duration::from_secs(120));
    }

    #[test]
    fn the_user_interval_wins_above_the_floor_and_min_interval() {
        let t = Instant::now();
        let u = "http://t0/announce";
        let mut s = TrackerSet::new(&urls(1), Some(Duration::from_secs(1)), t);
        s.record(u, answered(1800, None), t);
        assert_eq!(s.wait_after_round(true, t), FLOOR_INTERVAL);
        s.record(u, answered(1800, Some(30)), t);
        assert_eq!(s.wait_after_round(true, t), Duration::from_secs(30));
        assert_eq!(
            s.forced_wait(t + Duration::from_secs(10)),
            Duration::from_secs(20)
        );
    }

    #[test]
    fn failures_back_off_exponentially_and_log_once() {
        let t = Instant::now();
        let u = "http://t0/announce";
        let mut s = TrackerSet::new(&urls(1), None, t);
        let mut at = t;
        let mut waits = vec![];
        let mut logged = 0;
        for _ in 0..12 {
            assert_eq!(s.round(at), vec![u.to_string()]);
            logged += usize::from(s.record(u, failed("connection refused"), at).is_some());
            let w = s.wait_after_round(false, at);
            assert!(s.round(at + w - Duration::from_millis(1)).is_empty());
            waits.push(w.as_secs());
            at += w;
        }
        assert_eq!(&waits[..5], &[15, 30, 60, 120, 240]);
        assert_eq!(*waits.last().unwrap(), MAX_RETRY.as_secs());
        assert_eq!(logged, 1, "the same failure is logged once");
        assert!(
            s.record(u, failed("HTTP 502"), at).is_some(),
            "a new reason is logged"
        );
        assert!(
            s.record(u, answered(60, None), at).is_some(),
            "recovery is logged"
        );
        assert!(
            s.record(u, failed("HTTP 502"), at).is_some(),
            "failing again is news"
        );
    }

    #[test]
    fn a_redirect_loop_is_left_alone_for_a_while_and_bad_schemes_for_good() {
        let t = Instant::now();
        let mut s = TrackerSet::new(&urls(2), None, t);
        let loop_ = Outcome::Failed {
            reason: "too many redirections".into(),
            kind: FailureKind::RedirectLoop,
        };
        s.record("http://t0/announce", loop_, t);
        let never = Outcome::Failed {
            reason: "unsupported scheme".into(),
            kind: FailureKind::Never,
        };
        s.record("http://t1/announce", never, t);
        assert!(s
            .round(t + REDIRECT_LOOP_RETRY - Duration::from_secs(1))
            .is_empty());
        assert_eq!(s.round(t + REDIRECT_LOOP_RETRY), vec!["http://t0/announce"]);
        assert_eq!(s.wait_after_round(false, t), REDIRECT_LOOP_RETRY);
    }

    #[test]
    fn rounds_are_bounded_and_the_answering_tracker_goes_first() {
        let t = Instant::now();
        let list = urls(10_000);
        let mut s = TrackerSet::new(&list, None, t);
        assert_eq!(s.len(), MAX_TRACKERS);
        let round = s.round(t);
        assert_eq!(round.len(), MAX_TRIES_PER_ROUND);
        for u in &round[..3] {
            s.record(u, failed("timed out"), t);
        }
        s.record(&round[3], answered(60, None), t);
        assert_eq!(s.round(t)[0], round[3]);
        // Duplicates are kept once.
        let dup = vec!["http://a/announce".to_string(); 5];
        assert_eq!(TrackerSet::new(&dup, None, t).len(), 1);
    }

    #[test]
    fn long_urls_are_cut_in_logs() {
        let long = format!("http://t/{}", "a".repeat(10 << 20));
        let shown = shown(&long);
        assert!(shown.len() < 200, "{}", shown.len());
        assert!(shown.ends_with(&format!("({} bytes)", long.len())));
        assert_eq!(super::shown("http://t/announce"), "http://t/announce");
    }
}
