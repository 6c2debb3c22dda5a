//! When to try a failed delivery again (SPEC section 6).
//!
//! The default schedule waits 5s, 30s, 2m, 10m, 30m, 1h, 3h, 6h, 12h and 24h after the
//! first try (11 attempts, about two days), each wait with ±20 % jitter so that a burst of
//! failures does not come back as a burst. A destination may give its own list, or an
//! exponential policy. `Retry-After` (on 429 and 503) replaces the wait, capped at an hour;
//! a status in `give_up_on` goes straight to dead.

use std::time::Duration;

use crate::config::model::RetryConfig;
use crate::store::AfterAttempt;

const DEFAULT_SCHEDULE: [u64; 10] = [
    5,
    30,
    120,
    600,
    1800,
    3600,
    3 * 3600,
    6 * 3600,
    12 * 3600,
    24 * 3600,
];

/// The longest `Retry-After` honoured.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// A destination's retry policy.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    waits: Waits,
    give_up_on: Vec<u16>,
}

#[derive(Debug, Clone)]
enum Waits {
    List(Vec<Duration>),
    Exponential {
        base: Duration,
        factor: f64,
        cap: Duration,
        max_attempts: u32,
    },
}

/// What an attempt came to, as far as the policy cares.
#[derive(Debug, Clone, Copy)]
pub struct Failure {
    /// The response status, if a response came.
    pub status: Option<u16>,
    /// `Retry-After`, when the response carried one.
    pub retry_after: Option<Duration>,
}

impl RetryPolicy {
    pub fn from_config(cfg: &RetryConfig) -> Self {
        let waits = match (&cfg.schedule, &cfg.exponential) {
            (Some(list), _) => Waits::List(list.iter().map(|s| s.0).collect()),
            (None, Some(exp)) => Waits::Exponential {
                base: exp.base.0,
                factor: exp.factor,
                cap: exp.cap.0,
                max_attempts: exp.max_attempts,
            },
            (None, None) => Waits::List(
                DEFAULT_SCHEDULE
                    .iter()
                    .map(|s| Duration::from_secs(*s))
                    .collect(),
            ),
        };
        Self {
            waits,
            give_up_on: cfg.give_up_on.clone(),
        }
    }

    /// Where a delivery goes after failed attempt number `attempt` (1 for the first),
    /// made at `now_ms`. `jitter` is a number in [-1, 1] (random in production, fixed in
    /// tests) scaling the ±20 % spread.
    pub fn after_failure(
        &self,
        attempt: u32,
        failure: Failure,
        now_ms: i64,
        jitter: f64,
    ) -> AfterAttempt {
        if failure.status.is_some_and(|s| self.give_up_on.contains(&s)) {
            return AfterAttempt::Dead;
        }
        let Some(wait) = self.wait_after(attempt) else {
            return AfterAttempt::Dead;
        };
        let wait = match failure.retry_after {
            Some(asked) if matches!(failure.status, Some(429 | 503)) => asked.min(RETRY_AFTER_CAP),
            _ => wait.mul_f64(1.0 + 0.2 * jitter.clamp(-1.0, 1.0)),
        };
        AfterAttempt::RetryAt(
            now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)),
        )
    }

    /// The wait after attempt number `attempt`, or `None` when it was the last.
    fn wait_after(&self, attempt: u32) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        match &self.waits {
            Waits::List(list) => list.get(index).copied(),
            Waits::Exponential {
                base,
                factor,
                cap,
                max_attempts,
            } => (attempt < *max_attempts).then(|| {
                let scaled =
                    base.as_secs_f64() * factor.powi(i32::try_from(index).unwrap_or(i32::MAX));
                Duration::from_secs_f64(scaled.min(cap.as_secs_f64()))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::units::Span;

    fn fail(status: u16) -> Failure {
        Failure {
            status: Some(status),
            retry_after: None,
        }
    }

    #[test]
    fn default_schedule_is_eleven_attempts_over_about_two_days() {
        let p = RetryPolicy::from_config(&RetryConfig::default());
        let mut at = 0;
        let mut attempts = 1;
        while let AfterAttempt::RetryAt(next) = p.after_failure(attempts, fail(500), at, 0.0) {
            at = next;
            attempts += 1;
        }
        assert_eq!(attempts, 11);
        let hours = at as f64 / 3_600_000.0;
        assert!((46.0..48.0).contains(&hours), "{hours}");
    }

    #[test]
    fn jitter_spreads_twenty_percent_either_way() {
        let p = RetryPolicy::from_config(&RetryConfig::default());
        assert_eq!(
            p.after_failure(1, fail(500), 0, -1.0),
            AfterAttempt::RetryAt(4_000)
        );
        assert_eq!(
            p.after_failure(1, fail(500), 0, 1.0),
            AfterAttempt::RetryAt(6_000)
        );
    }

    #[test]
    fn give_up_on_retry_after_and_custom_policies() {
        let cfg = RetryConfig {
            schedule: Some(vec![Span::secs(1), Span::secs(2)]),
            exponential: None,
            give_up_on: vec![410],
        };
        let p = RetryPolicy::from_config(&cfg);
        assert_eq!(p.after_failure(1, fail(410), 0, 0.0), AfterAttempt::Dead);
        assert_eq!(
            p.after_failure(2, fail(500), 0, 0.0),
            AfterAttempt::RetryAt(2_000)
        );
        assert_eq!(p.after_failure(3, fail(500), 0, 0.0), AfterAttempt::Dead);
        let asked = Failure {
            status: Some(503),
            retry_after: Some(Duration::from_secs(7200)),
        };
        assert_eq!(
            p.after_failure(1, asked, 0, 0.5),
            AfterAttempt::RetryAt(3_600_000)
        );

        let exp = RetryConfig {
            schedule: None,
            exponential: Some(crate::config::model::ExponentialRetry {
                base: Span::secs(1),
                factor: 3.0,
                cap: Span::secs(5),
                max_attempts: 4,
            }),
            give_up_on: vec![],
        };
        let p = RetryPolicy::from_config(&exp);
        let waits: Vec<AfterAttempt> = (1..=4)
            .map(|n| p.after_failure(n, fail(500), 0, 0.0))
            .collect();
        assert_eq!(
            waits,
            [
                AfterAttempt::RetryAt(1_000),
                AfterAttempt::RetryAt(3_000),
                AfterAttempt::RetryAt(5_000),
                AfterAttempt::Dead
            ]
        );
    }
}
