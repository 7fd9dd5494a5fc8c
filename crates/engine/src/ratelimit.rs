//! Upload and download rate limits, shared by every transfer of one connection (DESIGN.md:
//! "per-connection upload and download rate limits shared by all transfers").
//!
//! A request of `n` bytes books `n / rate` seconds on a virtual clock and waits until its slot
//! comes; up to one second of unused rate is kept as a burst. Limits apply per request (an
//! upload body before it is sent, a download after it arrived), which evens out over seconds:
//! requests are at most a few MiB.

use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// How far ahead of the virtual clock a quiet connection may get: a one-second burst.
const BURST: Duration = Duration::from_secs(1);

/// One direction's limit.
#[derive(Debug)]
pub struct RateLimit {
    /// Bytes per second.
    rate: u64,
    /// When the bytes booked so far have been "sent" at `rate`.
    free_at: Mutex<Option<Instant>>,
}

impl RateLimit {
    /// `None` for unlimited (or 0).
    pub fn new(bytes_per_sec: Option<u64>) -> Option<Self> {
        bytes_per_sec.filter(|r| *r > 0).map(|rate| RateLimit {
            rate,
            free_at: Mutex::new(None),
        })
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Books `bytes` and waits for their turn; returns how long it waited (zero: the limit
    /// did not hold these bytes back).
    pub async fn take(&self, bytes: u64) -> Duration {
        let wait = {
            let mut free_at = self.free_at.lock().await;
            let (wait, next) = schedule(*free_at, Instant::now(), bytes, self.rate);
            *free_at = Some(next);
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        wait
    }
}

/// The wait for `bytes` booked at `now` on a clock that was free at `free_at`, and when the
/// clock is free again.
fn schedule(free_at: Option<Instant>, now: Instant, bytes: u64, rate: u64) -> (Duration, Instant) {
    let earliest = now.checked_sub(BURST).unwrap_or(now);
    let start = free_at.map_or(earliest, |f| f.max(earliest));
    let cost = Duration::from_secs_f64(bytes as f64 / rate.max(1) as f64);
    let next = start + cost;
    (next.saturating_duration_since(now), next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_connection_gets_a_one_second_burst_then_the_rate() {
        let now = Instant::now() + Duration::from_secs(10);
        // 1 MiB/s: the first MiB goes at once (burst), the second waits a second.
        let (w1, f1) = schedule(None, now, 1 << 20, 1 << 20);
        assert_eq!(w1, Duration::ZERO);
        let (w2, f2) = schedule(Some(f1), now, 1 << 20, 1 << 20);
        assert_eq!(w2, Duration::from_secs(1));
        // Ten more MiB at once: ten more seconds.
        let (w3, _) = schedule(Some(f2), now, 10 << 20, 1 << 20);
        assert_eq!(w3, Duration::from_secs(11));
    }

    #[test]
    fn idle_time_is_not_saved_beyond_the_burst() {
        let start = Instant::now() + Duration::from_secs(10);
        let (_, f) = schedule(None, start, 1000, 1000);
        let later = start + Duration::from_secs(3600);
        let (w, _) = schedule(Some(f), later, 2000, 1000);
        assert_eq!(w, Duration::from_secs(1), "only one second of burst");
    }

    #[test]
    fn zero_means_unlimited() {
        assert!(RateLimit::new(Some(0)).is_none());
        assert!(RateLimit::new(None).is_none());
        assert_eq!(RateLimit::new(Some(5)).map(|r| r.rate()), Some(5));
    }
}
