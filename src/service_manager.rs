//! Talking to systemd when forebay runs as a `Type=notify` service: `READY=1` once every
//! start-up step has succeeded (listeners bound, store open, destinations and their
//! secrets built, paused flows and replays read) and it begins serving, `RELOADING=1`
//! when a configuration reload begins and `READY=1` again when it has ended (applied or
//! refused), `STOPPING=1` when a graceful stop begins, and `WATCHDOG=1` every half of
//! `WatchdogSec` from a task on the async runtime.
//!
//! Everything here is a no-op without `NOTIFY_SOCKET` (not under systemd). The watchdog
//! only shows that the runtime still runs tasks (a process whose runtime threads are all
//! stuck is restarted), not that every part is healthy: a store outage is answered with
//! 503 and recovered from by itself, and a restart would not help it.

use std::time::Duration;

use sd_notify::NotifyState;

/// The variables systemd gives the service. A child process (an `exec` destination's
/// command, an expression sandbox) must not inherit them: it would speak for forebay.
pub const ENVIRONMENT: [&str; 3] = ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"];

/// The service is up: `status` is shown by `systemctl status`.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A configuration reload began; [`ready`] follows when it has ended. systemd wants the
/// moment on its monotonic clock with it (`Type=notify-reload`).
pub fn reloading() {
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading the configuration"),
    ];
    if let Ok(now) = NotifyState::monotonic_usec_now() {
        states.push(now);
    }
    send(&states);
}

/// A graceful stop began: requests already read are finished, then the store closes.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing requests already read"),
    ]);
}

/// Sends `WATCHDOG=1` every half of the watchdog interval systemd asked for, from a
/// task on the runtime, for as long as the runtime runs. Does nothing without one.
pub fn spawn_watchdog() {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = (interval / 2).max(Duration::from_millis(1));
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(period);
        loop {
            ticks.tick().await;
            send(&[NotifyState::Watchdog]);
        }
    });
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        crate::throttled!(warn, error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
