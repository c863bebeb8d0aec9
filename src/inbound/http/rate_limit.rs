//! Per-token rate limiting: a token bucket per token subject.
//!
//! Keyed by the subject rather than the token string, so issuing a caller more tokens does not
//! raise its limit. Buckets of callers that went quiet are dropped when the map grows large.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Buckets kept before idle ones are swept.
const SWEEP_AT: usize = 10_000;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets: `per_second` refill, `burst` capacity. `per_second == 0` turns it off.
pub struct RateLimiter {
    per_second: u32,
    burst: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self {
            per_second,
            burst: burst.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn per_second(&self) -> u32 {
        self.per_second
    }

    /// Takes one token for `subject` at `now`; `Err(seconds)` to wait when none is left.
    pub fn check(&self, subject: &str, now: Instant) -> Result<(), u32> {
        if self.per_second == 0 {
            return Ok(());
        }
        let mut buckets = match self.buckets.lock() {
            Ok(buckets) => buckets,
            Err(poisoned) => {
                // A panic while the map was held. Fail closed: this request is refused (it
                // used to pass, and so did every later one). The counters inside are plain
                // numbers, still usable, so the poison is cleared and later requests are
                // limited by them rather than all refused.
                drop(poisoned);
                self.buckets.clear_poison();
                tracing::error!("rate limiter state was poisoned by a panic; request refused");
                return Err(1);
            }
        };
        let rate = f64::from(self.per_second);
        let capacity = f64::from(self.burst);
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * rate < capacity
            });
        }
        let bucket = buckets.entry(subject.to_owned()).or_insert(Bucket {
            tokens: capacity,
            last: now,
        });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / rate;
            Err(wait.ceil().max(1.0) as u32)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let limiter = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check("ehr", t0), Ok(()));
        }
        assert_eq!(limiter.check("ehr", t0), Err(1));
        // Another subject has its own bucket.
        assert_eq!(limiter.check("lab", t0), Ok(()));
        // Half a second refills one token at 2/s.
        assert_eq!(
            limiter.check("ehr", t0 + Duration::from_millis(500)),
            Ok(())
        );
        assert!(
            limiter
                .check("ehr", t0 + Duration::from_millis(500))
                .is_err()
        );
    }

    /// Issue #15 part 5, defect 11: a poisoned lock let every request through.
    #[test]
    fn a_poisoned_lock_fails_closed_then_limits_again() {
        let limiter = std::sync::Arc::new(RateLimiter::new(2, 1));
        let t0 = Instant::now();
        let poisoner = std::sync::Arc::clone(&limiter);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.buckets.lock().unwrap();
            panic!("poison the rate limiter's lock");
        })
        .join();
        assert!(limiter.buckets.is_poisoned());
        assert_eq!(limiter.check("ehr", t0), Err(1), "refused, not let through");
        assert_eq!(limiter.check("ehr", t0), Ok(()), "limiting again");
        assert_eq!(limiter.check("ehr", t0), Err(1), "the burst of 1 is spent");
    }

    #[test]
    fn zero_turns_it_off() {
        let limiter = RateLimiter::new(0, 0);
        for _ in 0..1_000 {
            assert_eq!(limiter.check("ehr", Instant::now()), Ok(()));
        }
    }
}
