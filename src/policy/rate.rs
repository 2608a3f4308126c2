//! Per-client rate limit on starting executions (governor's keyed GCRA): a sustained rate
//! per minute plus a burst. A refusal says when the client may try again.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Most distinct clients tracked before idle ones are forgotten.
const MAX_TRACKED_CLIENTS: usize = 10_000;

/// A refused execution.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("rate limited: client {client:?} may start {per_minute} executions per minute (burst {burst}); retry after {} ms", retry_after.as_millis())]
pub struct RateLimited {
    pub client: String,
    pub per_minute: u32,
    pub burst: u32,
    pub retry_after: Duration,
}

/// Executions per client per minute.
#[derive(Debug)]
pub struct ExecutionRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    per_minute: u32,
    burst: u32,
}

impl ExecutionRateLimiter {
    /// `per_minute` sustained, `burst` at once (both at least 1).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst_nz = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::keyed(Quota::per_minute(rate).allow_burst(burst_nz)),
            clock: DefaultClock::default(),
            per_minute: rate.get(),
            burst: burst_nz.get(),
        }
    }

    /// Counts one execution of `client`, or says how long it must wait.
    pub fn check(&self, client: &str) -> Result<(), RateLimited> {
        if self.limiter.len() > MAX_TRACKED_CLIENTS {
            self.limiter.retain_recent();
        }
        let key = client.to_owned();
        self.limiter
            .check_key(&key)
            .map_err(|not_until| RateLimited {
                client: key,
                per_minute: self.per_minute,
                burst: self.burst,
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_passes_then_the_client_waits() {
        let limiter = ExecutionRateLimiter::new(60, 3);
        for _ in 0..3 {
            limiter.check("alice").unwrap();
        }
        let refused = limiter.check("alice").unwrap_err();
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_secs(1), "{refused:?}");
        let text = refused.to_string();
        assert!(
            text.contains("\"alice\"")
                && text.contains("60 executions per minute")
                && text.contains("retry after"),
            "{text}"
        );
    }

    #[test]
    fn clients_are_limited_separately() {
        let limiter = ExecutionRateLimiter::new(1, 1);
        limiter.check("alice").unwrap();
        assert!(limiter.check("alice").is_err());
        limiter.check("bob").unwrap();
        assert!(limiter.check("bob").is_err());
        let wait = limiter.check("bob").unwrap_err().retry_after;
        assert!(wait > Duration::from_secs(50), "one per minute: {wait:?}");
    }

    #[test]
    fn zero_settings_never_panic() {
        let limiter = ExecutionRateLimiter::new(0, 0);
        limiter.check("x").unwrap();
        assert!(limiter.check("x").is_err());
    }
}
