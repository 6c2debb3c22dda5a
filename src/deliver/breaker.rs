//! The circuit breaker of a destination (SPEC section 6).
//!
//! After `failures` consecutive failed attempts it opens: the destination's deliveries
//! wait in the store without spending attempts. After the cooldown (30 s by default,
//! doubling on each reopening up to 10 minutes) one probe is let through; a success
//! closes the breaker, a failure opens it again for twice as long.
//!
//! What counts as a failure is an outage sign: a timeout, a connection error, 429 or a
//! 5xx. A 4xx is the handler's verdict on one payload, not on its health, and is not
//! counted (nor does it reset the count).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Sent;

/// The longest cooldown.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct Breaker {
    failures: u32,
    first_cooldown: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failed: u32,
    },
    Open {
        until: Instant,
        cooldown: Duration,
    },
    /// One probe is out; nothing else starts until it reports.
    Probing {
        cooldown: Duration,
    },
}

/// What the worker may do with a destination now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Send as limits allow.
    Open,
    /// Send exactly one delivery: the probe.
    Probe,
    /// Send nothing until this instant (or until the probe reports).
    Wait(Option<Instant>),
}

/// How the breaker looks from outside, for the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Closed,
    Open,
    Probing,
}

impl Breaker {
    pub fn new(failures: u32, cooldown: Duration) -> Self {
        Self {
            failures: failures.max(1),
            first_cooldown: cooldown,
            state: Mutex::new(State::Closed { failed: 0 }),
        }
    }

    /// Whether sends may start at `now`. Turns an expired open breaker into a probe.
    pub fn gate(&self, now: Instant) -> Gate {
        let Ok(mut state) = self.state.lock() else {
            return Gate::Open;
        };
        match *state {
            State::Closed { .. } => Gate::Open,
            State::Open { until, cooldown } if now >= until => {
                *state = State::Probing { cooldown };
                Gate::Probe
            }
            State::Open { until, .. } => Gate::Wait(Some(until)),
            State::Probing { .. } => Gate::Wait(None),
        }
    }

    /// Records an attempt's outcome at `now`.
    pub fn record(&self, sent: &Sent, now: Instant) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let outage = !sent.ok
            && sent
                .status
                .is_none_or(|s| s == 429 || (500..600).contains(&s));
        *state = match (*state, sent.ok, outage) {
            (_, true, _) => State::Closed { failed: 0 },
            (State::Probing { cooldown }, false, true) => {
                let cooldown = (cooldown * 2).min(MAX_COOLDOWN);
                State::Open {
                    until: now + cooldown,
                    cooldown,
                }
            }
            (State::Closed { failed }, false, true) if failed + 1 >= self.failures => State::Open {
                until: now + self.first_cooldown,
                cooldown: self.first_cooldown,
            },
            (State::Closed { failed }, false, true) => State::Closed { failed: failed + 1 },
            // A 4xx probe proves the destination answers: close.
            (State::Probing { .. }, false, false) => State::Closed { failed: 0 },
            (other, false, _) => other,
        };
    }

    /// The probe let through by [`Breaker::gate`] was not used (nothing was due): the
    /// next delivery that falls due may probe instead.
    pub fn probe_unused(&self, now: Instant) {
        if let Ok(mut state) = self.state.lock()
            && let State::Probing { cooldown } = *state
        {
            *state = State::Open {
                until: now,
                cooldown,
            };
        }
    }

    pub fn status(&self) -> Status {
        match self.state.lock().map(|s| *s) {
            Ok(State::Closed { .. }) | Err(_) => Status::Closed,
            Ok(State::Open { .. }) => Status::Open,
            Ok(State::Probing { .. }) => Status::Probing,
        }
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Closed => "closed",
            Status::Open => "open",
            Status::Probing => "probing",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(status: Option<u16>) -> Sent {
        Sent {
            status,
            error: Some("x".into()),
            ..Sent::default()
        }
    }

    fn ok() -> Sent {
        Sent {
            ok: true,
            status: Some(200),
            ..Sent::default()
        }
    }

    #[test]
    fn opens_after_consecutive_failures_probes_and_doubles_its_cooldown() {
        let b = Breaker::new(3, Duration::from_secs(30));
        let t0 = Instant::now();
        for _ in 0..2 {
            b.record(&failed(Some(503)), t0);
            assert_eq!(b.gate(t0), Gate::Open);
        }
        b.record(&failed(None), t0); // a timeout counts too
        assert_eq!(b.gate(t0), Gate::Wait(Some(t0 + Duration::from_secs(30))));
        assert_eq!(b.status(), Status::Open);

        let t1 = t0 + Duration::from_secs(30);
        assert_eq!(b.gate(t1), Gate::Probe);
        assert_eq!(b.gate(t1), Gate::Wait(None), "one probe at a time");
        b.record(&failed(Some(500)), t1);
        assert_eq!(b.gate(t1), Gate::Wait(Some(t1 + Duration::from_secs(60))));

        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(b.gate(t2), Gate::Probe);
        b.probe_unused(t2); // nothing was due: the next round may probe
        assert_eq!(b.gate(t2), Gate::Probe);
        b.record(&ok(), t2);
        assert_eq!(b.gate(t2), Gate::Open);
        assert_eq!(b.status(), Status::Closed);
    }

    #[test]
    fn client_errors_neither_count_nor_reset_and_the_cooldown_is_capped() {
        let b = Breaker::new(2, Duration::from_secs(400));
        let t0 = Instant::now();
        b.record(&failed(Some(503)), t0);
        b.record(&failed(Some(400)), t0);
        b.record(&failed(Some(503)), t0);
        assert_eq!(b.status(), Status::Open, "the 400 did not reset the count");
        let t1 = t0 + Duration::from_secs(400);
        assert_eq!(b.gate(t1), Gate::Probe);
        b.record(&failed(Some(502)), t1);
        assert_eq!(b.gate(t1), Gate::Wait(Some(t1 + MAX_COOLDOWN)));
    }
}
