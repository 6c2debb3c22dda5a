//! Repeated failures logged once per window with a count, not once per request.
//!
//! While the store is failing (a full disk, a database restarting) every request fails
//! the same way; a line for each would flood the log, and on a full disk fill the very
//! disk that is full. A [`Throttle`] at a log site lets the first failure through, counts
//! the ones that follow, and lets one through again once its window has passed, saying
//! how many it held back (`repeats_not_logged=7200`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The window of the log sites of the request path.
pub const WINDOW: Duration = Duration::from_secs(10);

/// One log site's throttle: a `static`, shared by every task that logs there.
pub struct Throttle {
    window_ms: u64,
    /// When a line last went out, in ms since [`origin`], plus one (0: never).
    last: AtomicU64,
    /// Lines held back since then.
    held: AtomicU64,
}

impl Throttle {
    pub const fn new(window: Duration) -> Self {
        Self {
            window_ms: window.as_millis() as u64,
            last: AtomicU64::new(0),
            held: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may go out now, `n` being how many were held back since the
    /// last one; `None` when this one is to be held back.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(origin().elapsed())
    }

    /// [`Self::allow`] at `now` (time since an origin common to every call).
    pub fn allow_at(&self, now: Duration) -> Option<u64> {
        let now = now.as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= self.window_ms {
            // One caller wins the window; the others count as held back.
            if self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                return Some(self.held.swap(0, Ordering::Relaxed));
            }
        }
        self.held.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// `tracing::$level!(…)` at most once per [`WINDOW`] at this call site; a line after
/// others were held back carries `repeats_not_logged = N`.
#[macro_export]
macro_rules! throttled {
    ($level:ident, $($arg:tt)+) => {{
        static SITE: $crate::log_throttle::Throttle =
            $crate::log_throttle::Throttle::new($crate::log_throttle::WINDOW);
        match SITE.allow() {
            None => {}
            Some(0) => tracing::$level!($($arg)+),
            Some(held) => tracing::$level!(repeats_not_logged = held, $($arg)+),
        }
    }};
}

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_goes_out_then_one_per_window_with_the_count() {
        let t = Throttle::new(Duration::from_secs(10));
        let at = Duration::from_secs;
        assert_eq!(t.allow_at(at(100)), Some(0));
        for s in 101..110 {
            assert_eq!(t.allow_at(at(s)), None, "held at {s}");
        }
        assert_eq!(
            t.allow_at(at(110)),
            Some(9),
            "a window later, with the count"
        );
        assert_eq!(t.allow_at(at(111)), None);
        // A quiet spell: the next one goes out at once, counting what was held.
        assert_eq!(t.allow_at(at(500)), Some(1));
        assert_eq!(t.allow_at(at(600)), Some(0));
    }

    #[test]
    fn threads_at_one_site_let_one_line_through_per_window() {
        static SITE: Throttle = Throttle::new(Duration::from_secs(10));
        let lines: Vec<u64> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        (0..1_000)
                            .filter_map(|_| SITE.allow_at(Duration::from_secs(5)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(lines.len(), 1, "one line through: {lines:?}");
        // A call held back while the winner was taking its count may be counted in the
        // winner's line rather than the next one: none is lost.
        let next = SITE
            .allow_at(Duration::from_secs(15))
            .expect("the next window");
        assert_eq!(lines[0] + next, 3_999);
    }
}
