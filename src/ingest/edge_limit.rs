//! A source's `rate_limit` (with `burst`) and `rate_limit_per_address`, checked before a
//! request's body is read: past them the sender gets 429 with `Retry-After`, and one
//! refusal a second per source is kept with the rejected requests (the metric counts
//! every one), so a flood cannot fill the disk.
//!
//! The limits live in this process: with several processes on PostgreSQL each admits up
//! to the rate, so a cluster of N admits up to N times it. The per-address limit counts
//! an IPv6 sender by its /64. The address is asked first, so a request the source's limit
//! then refuses has still spent its address's token.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, RateLimiter};

use crate::config::Rate;

/// How often (in checks) the per-address limiter forgets addresses that are back to a
/// full bucket, so its memory follows the senders of the last moments, not all ever seen.
const FORGET_EVERY: u64 = 4096;

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Source,
    Address,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Source => "source",
            Scope::Address => "address",
        }
    }
}

/// A refused request: which limit, what it says, and when to come back.
#[derive(Debug)]
pub struct Refusal {
    pub scope: Scope,
    pub message: String,
    pub retry_after: Duration,
}

#[derive(Debug)]
pub struct EdgeLimit {
    source: Option<(Rate, NonZeroU32, DefaultDirectRateLimiter)>,
    address: Option<(Rate, DefaultKeyedRateLimiter<IpAddr>)>,
    checks: AtomicU64,
    /// The second (Unix time) a refusal was last kept, and how many were refused since
    /// without being kept.
    kept: Mutex<(u64, u64)>,
}

impl EdgeLimit {
    /// The limits of a source, or `None` when it has neither. `burst` is the bucket's
    /// size, by default the rate's count (one period's worth at once after a quiet
    /// period).
    pub fn new(rate: Option<Rate>, burst: Option<u32>, per_address: Option<Rate>) -> Option<Self> {
        if rate.is_none() && per_address.is_none() {
            return None;
        }
        let source = rate.and_then(|rate| {
            let burst = NonZeroU32::new(burst.unwrap_or(rate.count))?;
            let limiter = RateLimiter::direct(rate.quota(burst)?);
            Some((rate, burst, limiter))
        });
        let address = per_address.and_then(|rate| {
            let limiter = RateLimiter::keyed(rate.quota(NonZeroU32::new(rate.count)?)?);
            Some((rate, limiter))
        });
        Some(Self {
            source,
            address,
            checks: AtomicU64::new(0),
            kept: Mutex::new((u64::MAX, 0)),
        })
    }

    /// True when `other` limits exactly as this does, so a reload keeps this one and the
    /// requests it has already counted.
    pub fn same_limits(&self, other: &EdgeLimit) -> bool {
        let source = |l: &EdgeLimit| l.source.as_ref().map(|(rate, burst, _)| (*rate, *burst));
        let address = |l: &EdgeLimit| l.address.as_ref().map(|(rate, _)| *rate);
        source(self) == source(other) && address(self) == address(other)
    }

    /// Admits one request from `address`, or says which limit refused it. The address's
    /// own limit is asked first, so one sender past it spends none of the source's.
    pub fn check(&self, source: &str, address: Option<IpAddr>) -> Result<(), Refusal> {
        let clock = DefaultClock::default();
        if let (Some((rate, limiter)), Some(ip)) = (&self.address, address.map(sender)) {
            if self
                .checks
                .fetch_add(1, Ordering::Relaxed)
                .is_multiple_of(FORGET_EVERY)
            {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
            if let Err(not_until) = limiter.check_key(&ip) {
                return Err(Refusal {
                    scope: Scope::Address,
                    message: format!(
                        "source {source:?} takes at most {rate} from one address (rate_limit_per_address); {ip} is past it"
                    ),
                    retry_after: not_until.wait_time_from(clock.now()),
                });
            }
        }
        if let Some((rate, burst, limiter)) = &self.source
            && let Err(not_until) = limiter.check()
        {
            return Err(Refusal {
                scope: Scope::Source,
                message: format!(
                    "source {source:?} takes at most {rate} (rate_limit, burst {burst}) and is past it"
                ),
                retry_after: not_until.wait_time_from(clock.now()),
            });
        }
        Ok(())
    }

    /// Whether to keep this refusal with the rejected requests: the first of each second
    /// is kept, with how many were refused since the last kept one (`Some(n)`).
    pub fn keep_refusal(&self, now_secs: u64) -> Option<u64> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        if kept.0 == now_secs {
            kept.1 += 1;
            return None;
        }
        let skipped = if kept.0 == u64::MAX { 0 } else { kept.1 };
        *kept = (now_secs, 0);
        Some(skipped)
    }
}

/// Whom an address stands for: itself for IPv4, its /64 for IPv6, since one host is
/// given a whole /64 and could send from a new address each time.
fn sender(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(count: u32, secs: u64) -> Rate {
        Rate {
            count,
            per: Duration::from_secs(secs),
        }
    }

    #[test]
    fn the_burst_passes_then_the_rate_refuses_with_a_retry_time() {
        let limit = EdgeLimit::new(Some(rate(1, 60)), Some(3), None).unwrap();
        for _ in 0..3 {
            assert!(limit.check("shop", None).is_ok());
        }
        let refused = limit.check("shop", None).unwrap_err();
        assert_eq!(refused.scope, Scope::Source);
        assert!(
            refused.message.contains("at most 1/m"),
            "{}",
            refused.message
        );
        assert!(refused.retry_after > Duration::from_secs(50), "{refused:?}");
    }

    #[test]
    fn one_address_past_its_limit_leaves_the_others_and_the_source_alone() {
        let limit = EdgeLimit::new(Some(rate(3, 60)), None, Some(rate(1, 60))).unwrap();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        assert!(limit.check("shop", Some(a)).is_ok());
        for _ in 0..5 {
            let refused = limit.check("shop", Some(a)).unwrap_err();
            assert_eq!(refused.scope, Scope::Address);
        }
        // The address's refusals spent none of the source's three.
        assert!(limit.check("shop", Some(b)).is_ok());
        assert!(limit.check("shop", None).is_ok());
        assert_eq!(limit.check("shop", None).unwrap_err().scope, Scope::Source);
    }

    #[test]
    fn addresses_of_one_ipv6_64_share_a_limit() {
        let limit = EdgeLimit::new(None, None, Some(rate(1, 60))).unwrap();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limit.check("shop", Some(one)).is_ok());
        assert_eq!(
            limit.check("shop", Some(same_64)).unwrap_err().scope,
            Scope::Address
        );
        assert!(limit.check("shop", Some(other_64)).is_ok());
    }

    #[test]
    fn one_refusal_a_second_is_kept_with_the_count_of_the_others() {
        let limit = EdgeLimit::new(Some(rate(1, 1)), None, None).unwrap();
        assert_eq!(limit.keep_refusal(10), Some(0));
        assert_eq!(limit.keep_refusal(10), None);
        assert_eq!(limit.keep_refusal(10), None);
        assert_eq!(limit.keep_refusal(11), Some(2));
        assert_eq!(limit.keep_refusal(13), Some(0));
    }
}
