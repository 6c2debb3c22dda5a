//! Retry schedules walked on a controlled clock: the delivery engine runs on a
//! [`ManualClock`] that only the test moves, so two days of retries take milliseconds
//! and each attempt's time is exact.

use std::sync::Arc;

use serde_json::Value;

use crate::support::TestServer;
use crate::support::receiver::Receiver;
use forebay::clock::ManualClock;

fn ms(rfc3339: &Value) -> i64 {
    let time = humantime::parse_rfc3339(rfc3339.as_str().expect("a timestamp")).unwrap();
    time.duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn config(url: &str, retry: &str) -> String {
    format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{url}"
        breaker = {{ failures = 1000 }}
        {retry}
        [[routes]]
        source = "shop"
        destination = "hook"
        "#
    )
}

/// Posts an event, and brings the engine's clock up to the wall clock ingest stamped
/// it with, so it is due.
async fn post(server: &TestServer, clock: &ManualClock) -> String {
    let id = server
        .post_for_id("shop", &[("content-type", "application/json")], "{}")
        .await;
    clock.advance_to(forebay::clock::now_ms());
    id
}

/// Waits until the delivery has recorded `attempts` attempts, and returns it with its
/// attempt log.
async fn after_attempt(server: &TestServer, event_id: &str, attempts: i64) -> Value {
    for _ in 0..500 {
        let event = server
            .admin_json(&format!("/api/v1/events/{event_id}"))
            .await;
        let d = &event["deliveries"][0];
        if d["attempts"] == attempts && d["state"] != "in_flight" {
            let id = d["id"].as_str().unwrap();
            return server.admin_json(&format!("/api/v1/deliveries/{id}")).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("attempt {attempts} of {event_id} was never recorded");
}

#[tokio::test]
async fn the_default_schedule_runs_eleven_attempts_over_two_days_with_jitter() {
    let clock = Arc::new(ManualClock::new(forebay::clock::now_ms()));
    let mut receiver = Receiver::start(&[500; 11]).await;
    let server = TestServer::start_with_clock(&config(&receiver.url, ""), clock.clone()).await;
    let id = post(&server, &clock).await;

    let schedule_secs = [5, 30, 120, 600, 1800, 3600, 10800, 21600, 43200, 86400];
    for attempt in 1..=11i64 {
        let got = receiver.next().await;
        assert_eq!(got.header("forebay-attempt"), attempt.to_string());
        assert_eq!(got.header("webhook-id"), id, "the same id on every retry");
        let d = after_attempt(&server, &id, attempt).await;
        let log = d["attempt_log"].as_array().unwrap();
        let started = ms(&log[attempt as usize - 1]["started_at"]);
        if attempt > 1 {
            // Sent exactly when it fell due: the clock stood there and nowhere earlier.
            assert_eq!(started, clock_now(&clock));
        }
        if attempt == 11 {
            assert_eq!(
                d["state"], "dead",
                "11 attempts, then the dead-letter queue"
            );
            break;
        }
        assert_eq!(d["state"], "retrying");
        let wait = ms(&d["next_attempt_at"]) - started;
        let planned = schedule_secs[attempt as usize - 1] * 1000;
        assert!(
            (planned * 8 / 10..=planned * 12 / 10).contains(&wait),
            "attempt {attempt}: waited {wait} ms, planned {planned} ms ± 20 %"
        );
        // One millisecond short of due, nothing goes out; at due time, it does.
        clock.advance_to(ms(&d["next_attempt_at"]) - 1);
        tokio::task::yield_now().await;
        clock.advance_to(ms(&d["next_attempt_at"]));
    }
}

fn clock_now(clock: &ManualClock) -> i64 {
    use forebay::clock::Clock;
    clock.now_ms()
}

#[tokio::test]
async fn retry_after_replaces_the_wait_and_is_capped_at_an_hour() {
    let clock = Arc::new(ManualClock::new(forebay::clock::now_ms()));
    let mut receiver = Receiver::start_with_retry_after(&[503, 429], "86400").await;
    let server = TestServer::start_with_clock(
        &config(&receiver.url, r#"retry = { schedule = ["5s", "5s"] }"#),
        clock.clone(),
    )
    .await;
    let id = post(&server, &clock).await;
    receiver.next().await;
    let d = after_attempt(&server, &id, 1).await;
    let started = ms(&d["attempt_log"][0]["started_at"]);
    assert_eq!(
        ms(&d["next_attempt_at"]) - started,
        3_600_000,
        "a day asked, an hour granted"
    );
    clock.advance_to(ms(&d["next_attempt_at"]));
    receiver.next().await;
    let d = after_attempt(&server, &id, 2).await;
    assert_eq!(
        ms(&d["next_attempt_at"]) - ms(&d["attempt_log"][1]["started_at"]),
        3_600_000
    );
    clock.advance_to(ms(&d["next_attempt_at"]));
    receiver.next().await;
    server.wait_for_deliveries(&id, "delivered").await;
}

#[tokio::test]
async fn an_exponential_policy_doubles_up_to_its_cap_then_gives_up() {
    let clock = Arc::new(ManualClock::new(forebay::clock::now_ms()));
    let mut receiver = Receiver::start(&[500; 10]).await;
    let server = TestServer::start_with_clock(
        &config(
            &receiver.url,
            r#"retry = { exponential = { base = "10s", factor = 2.0, cap = "1m", max_attempts = 5 } }"#,
        ),
        clock.clone(),
    )
    .await;
    let id = post(&server, &clock).await;
    for (attempt, planned) in [(1, 10_000), (2, 20_000), (3, 40_000), (4, 60_000)] {
        receiver.next().await;
        let d = after_attempt(&server, &id, attempt).await;
        let wait =
            ms(&d["next_attempt_at"]) - ms(&d["attempt_log"][attempt as usize - 1]["started_at"]);
        assert!(
            (planned * 8 / 10..=planned * 12 / 10).contains(&wait),
            "attempt {attempt}: waited {wait} ms, planned {planned} ms ± 20 %"
        );
        clock.advance_to(ms(&d["next_attempt_at"]));
    }
    receiver.next().await;
    let d = after_attempt(&server, &id, 5).await;
    assert_eq!(d["state"], "dead", "max_attempts = 5");
}
