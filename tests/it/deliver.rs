//! The delivery engine end to end: a real forebay, a real recording receiver.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::support::TestServer;
use crate::support::receiver::{HANG, Receiver};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(url: &str, retry: &str) -> String {
    format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{url}"
        timeout = "5s"
        headers = {{ x-team = "billing" }}
        sign = {{ secret = "{SECRET}" }}
        retry = {retry}
        [[routes]]
        source = "shop"
        destination = "hook"
        "#
    )
}

async fn post(server: &TestServer, body: &str) -> String {
    let r = server
        .post(
            "shop",
            &[("content-type", "application/json")],
            body.to_owned(),
        )
        .await;
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn delivers_the_original_body_with_stable_signed_headers() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&config(&receiver.url, r#"{ schedule = ["1s"] }"#)).await;
    let body = r#"{"type":"order.paid","n":1}"#;
    let id = server
        .post_for_id(
            "shop",
            &[
                ("content-type", "application/json"),
                ("x-github-event", "push"),
                ("authorization", "Bearer for-forebay-only"),
                ("x-gitlab-token", "gitlab-secret-for-forebay-only"),
                ("webhook-id", "msg_from_the_sender"),
                ("x-team", "sender's value"),
            ],
            body.to_owned(),
        )
        .await;

    let got = receiver.next().await;
    assert_eq!(got.method, "POST");
    assert_eq!(got.uri.path(), "/hook");
    assert_eq!(&got.body[..], body.as_bytes());
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.header("webhook-id"), id);
    assert_eq!(got.header("idempotency-key"), id);
    assert_eq!(got.header("forebay-source"), "shop");
    assert_eq!(got.header("forebay-attempt"), "1");
    assert_eq!(got.header("x-team"), "billing", "configured headers win");
    // The sender's headers are passed on, but not its credentials for forebay, and
    // forebay's own headers replace the sender's of the same name.
    assert_eq!(got.header("x-github-event"), "push");
    assert!(got.headers.get("authorization").is_none());
    assert!(got.headers.get("x-gitlab-token").is_none());
    assert_eq!(got.headers.get_all("webhook-id").iter().count(), 1);

    assert_signed(&got, SECRET);

    let event = server.wait_for_deliveries(&id, "delivered").await;
    assert_eq!(event["deliveries"][0]["attempts"], 1);
}

/// The signature is Standard Webhooks: HMAC-SHA256 of "{webhook-id}.{timestamp}.{body}".
pub fn assert_signed(got: &crate::support::receiver::Recorded, secret: &str) {
    let key = B64.decode(secret.trim_start_matches("whsec_")).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            got.header("webhook-id"),
            got.header("webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(&got.body);
    let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
    assert_eq!(got.header("webhook-signature"), expected);
}

#[tokio::test]
async fn failures_are_retried_with_the_same_id_until_success() {
    let mut receiver = Receiver::start(&[500, 503]).await;
    let server = TestServer::start(&config(
        &receiver.url,
        r#"{ schedule = ["50ms", "50ms", "50ms"] }"#,
    ))
    .await;
    let id = post(&server, r#"{"n":2}"#).await;
    for attempt in 1..=3 {
        let got = receiver.next().await;
        assert_eq!(got.header("webhook-id"), id, "the id never changes");
        assert_eq!(got.header("forebay-attempt"), attempt.to_string());
    }
    let event = server.wait_for_deliveries(&id, "delivered").await;
    assert_eq!(event["deliveries"][0]["attempts"], 3);
}

#[tokio::test]
async fn give_up_statuses_and_exhausted_schedules_end_dead() {
    let mut receiver = Receiver::start(&[410, 500, 500]).await;
    let server = TestServer::start(&config(
        &receiver.url,
        r#"{ schedule = ["20ms"], give_up_on = [410] }"#,
    ))
    .await;
    let gone = post(&server, r#"{"n":"gone"}"#).await;
    receiver.next().await;
    let event = server.wait_for_deliveries(&gone, "dead").await;
    assert_eq!(event["deliveries"][0]["attempts"], 1, "410 is not retried");

    let failing = post(&server, r#"{"n":"failing"}"#).await;
    receiver.next().await;
    receiver.next().await;
    let event = server.wait_for_deliveries(&failing, "dead").await;
    assert_eq!(
        event["deliveries"][0]["attempts"], 2,
        "one try and one retry"
    );
}

#[tokio::test]
async fn exec_destinations_get_the_payload_on_stdin() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display();
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.save]
        kind = "exec"
        command = "/bin/sh"
        args = ["-c", "cat > {out}/$FOREBAY_EVENT_ID.body && echo $FOREBAY_SOURCE $FOREBAY_ATTEMPT > {out}/$FOREBAY_EVENT_ID.env"]
        [[routes]]
        source = "shop"
        destination = "save"
        "#
    ))
    .await;
    let id = post(&server, r#"{"saved":true}"#).await;
    server.wait_for_deliveries(&id, "delivered").await;
    let saved = std::fs::read_to_string(dir.path().join(format!("{id}.body"))).unwrap();
    assert_eq!(saved, r#"{"saved":true}"#);
    let env = std::fs::read_to_string(dir.path().join(format!("{id}.env"))).unwrap();
    assert_eq!(env.trim(), "shop 1");
}

#[tokio::test]
async fn a_failing_command_is_dead_when_it_has_no_retries() {
    let server = TestServer::start(
        r#"
        [sources.shop]
        [destinations.broken]
        kind = "exec"
        command = "/bin/sh"
        args = ["-c", "echo nope >&2; exit 3"]
        retry = { schedule = [] }
        [[routes]]
        source = "shop"
        destination = "broken"
        "#,
    )
    .await;
    let id = post(&server, "{}").await;
    let event = server.wait_for_deliveries(&id, "dead").await;
    assert_eq!(event["deliveries"][0]["attempts"], 1);
}

#[tokio::test]
async fn a_command_that_overruns_its_timeout_is_killed() {
    let server = TestServer::start(
        r#"
        [sources.shop]
        [destinations.slow]
        kind = "exec"
        command = "/bin/sleep"
        args = ["30"]
        timeout = "300ms"
        retry = { schedule = [] }
        [[routes]]
        source = "shop"
        destination = "slow"
        "#,
    )
    .await;
    let started = std::time::Instant::now();
    let id = post(&server, "{}").await;
    let event = server.wait_for_deliveries(&id, "dead").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    let d = event["deliveries"][0]["id"].as_str().unwrap();
    let shown = server.admin_json(&format!("/api/v1/deliveries/{d}")).await;
    let error = shown["attempt_log"][0]["error"].as_str().unwrap();
    assert!(error.contains("killed after the 0.3s timeout"), "{error}");
}

#[tokio::test]
async fn a_destination_that_hangs_past_its_timeout_is_retried() {
    let mut receiver = Receiver::start(&[HANG]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{}"
        timeout = "300ms"
        retry = {{ schedule = ["50ms"] }}
        [[routes]]
        source = "shop"
        destination = "hook"
        "#,
        receiver.url
    ))
    .await;
    let id = post(&server, "{}").await;
    receiver.next().await;
    receiver.next().await;
    let event = server.wait_for_deliveries(&id, "delivered").await;
    let d = event["deliveries"][0]["id"].as_str().unwrap();
    let shown = server.admin_json(&format!("/api/v1/deliveries/{d}")).await;
    let first = &shown["attempt_log"][0];
    assert_eq!(first["status"], Value::Null);
    assert!(
        first["error"].as_str().unwrap().contains("timed out"),
        "{first}"
    );
    assert_eq!(shown["attempt_log"][1]["status"], 200);
}

#[tokio::test]
async fn a_connection_reset_is_an_attempt_that_failed() {
    let url = crate::support::receiver::reset_listener().await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{url}"
        retry = {{ schedule = ["20ms"] }}
        [[routes]]
        source = "shop"
        destination = "hook"
        "#
    ))
    .await;
    let id = post(&server, "{}").await;
    let event = server.wait_for_deliveries(&id, "dead").await;
    let d = event["deliveries"][0]["id"].as_str().unwrap();
    let shown = server.admin_json(&format!("/api/v1/deliveries/{d}")).await;
    let log = shown["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "one try and one retry");
    for attempt in log {
        assert_eq!(attempt["status"], Value::Null);
        assert!(attempt["error"].as_str().is_some(), "{attempt}");
    }
}

fn limited(url: &str, limits: &str) -> String {
    format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{url}"
        {limits}
        [[routes]]
        source = "shop"
        destination = "hook"
        "#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_never_passes_max_concurrency() {
    // Each answer takes 100 ms, so ten deliveries overlap unless the limit holds them.
    let mut receiver = Receiver::start_slow(&[], std::time::Duration::from_millis(100)).await;
    let server = TestServer::start(&limited(&receiver.url, "max_concurrency = 2")).await;
    for n in 0..10 {
        post(&server, &format!("{{\"n\":{n}}}")).await;
    }
    for _ in 0..10 {
        receiver.next().await;
    }
    assert_eq!(receiver.peak_in_flight(), 2, "two at a time, and no more");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_never_passes_rate_limit() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&limited(&receiver.url, "rate_limit = \"20/s\"")).await;
    for n in 0..11 {
        post(&server, &format!("{{\"n\":{n}}}")).await;
    }
    let mut arrivals = Vec::new();
    for _ in 0..11 {
        arrivals.push(receiver.next().await.at);
    }
    // 20 per second is one start per 50 ms: the 11 arrivals span at least 10 periods
    // (less a little for network jitter between start and arrival).
    let span = arrivals[10] - arrivals[0];
    assert!(
        span >= std::time::Duration::from_millis(450),
        "11 sends in {span:?}"
    );
    for pair in arrivals.windows(2) {
        assert!(pair[1] >= pair[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_destination_does_not_delay_another() {
    // "slow" answers after 2 s and may only have one request in flight; "fast" answers
    // at once. Fast deliveries must not queue behind slow ones.
    let mut slow = Receiver::start_slow(&[], std::time::Duration::from_secs(2)).await;
    let mut fast = Receiver::start(&[]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.slow]
        kind = "http"
        url = "{}"
        max_concurrency = 1
        [destinations.fast]
        kind = "http"
        url = "{}"
        [[routes]]
        source = "shop"
        destination = "slow"
        [[routes]]
        source = "shop"
        destination = "fast"
        "#,
        slow.url, fast.url
    ))
    .await;
    let started = std::time::Instant::now();
    for n in 0..5 {
        post(&server, &format!("{{\"n\":{n}}}")).await;
    }
    for _ in 0..5 {
        fast.next().await;
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "fast deliveries waited {:?}",
        started.elapsed()
    );
    slow.next().await;
}

#[tokio::test]
async fn dead_deliveries_are_listed_shown_with_attempts_and_retried() {
    let mut receiver = Receiver::start(&[410]).await;
    let server = TestServer::start(&config(
        &receiver.url,
        r#"{ schedule = ["20ms"], give_up_on = [410] }"#,
    ))
    .await;
    let event_id = post(&server, r#"{"n":"dlq"}"#).await;
    receiver.next().await;
    let event = server.wait_for_deliveries(&event_id, "dead").await;
    let delivery_id = event["deliveries"][0]["id"].as_str().unwrap().to_owned();

    let dead = server.admin_json("/api/v1/deliveries?state=dead").await;
    let ids: Vec<&str> = dead["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [delivery_id.as_str()]);

    let shown = server
        .admin_json(&format!("/api/v1/deliveries/{delivery_id}"))
        .await;
    assert_eq!(shown["event_id"], event_id);
    assert_eq!(shown["destination"], "hook");
    assert_eq!(shown["last_error"], "HTTP 410 Gone");
    let attempt = &shown["attempt_log"][0];
    assert_eq!(attempt["number"], 1);
    assert_eq!(attempt["status"], 410);
    assert_eq!(attempt["body"], "answered 410 Gone");
    assert!(attempt["response_headers"]["content-type"].is_string());

    // Retry from the dead-letter queue: sent again at once, and delivered this time.
    let r = server
        .admin_post(&format!("/api/v1/deliveries/{delivery_id}/retry"))
        .await;
    assert_eq!(r.status(), 202);
    let again = receiver.next().await;
    assert_eq!(again.header("webhook-id"), event_id);
    assert_eq!(again.header("forebay-attempt"), "2");
    let event = server.wait_for_deliveries(&event_id, "delivered").await;
    assert_eq!(event["deliveries"][0]["attempts"], 2);
    // Nothing to retry once delivered.
    let r = server
        .admin_post(&format!("/api/v1/deliveries/{delivery_id}/retry"))
        .await;
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "delivery_finished"
    );
}

#[tokio::test]
async fn delivery_api_errors_are_json() {
    let server = TestServer::start("[sources.shop]\n").await;
    for (path, status, code) in [
        ("/api/v1/deliveries?state=lost", 400, "invalid_state"),
        ("/api/v1/deliveries?cursor=evt_x", 400, "invalid_cursor"),
        (
            "/api/v1/deliveries/dlv_0192f3c4a1b27000800000000000abcd",
            404,
            "delivery_not_found",
        ),
    ] {
        let r = server
            .client
            .get(server.admin_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            code,
            "{path}"
        );
    }
    let r = server.admin_post("/api/v1/deliveries/dlv_nope/retry").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn paused_destinations_and_routes_wait_until_resumed() {
    let mut held = Receiver::start(&[]).await;
    let mut other = Receiver::start(&[]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.held]
        kind = "http"
        url = "{}"
        [destinations.other]
        kind = "http"
        url = "{}"
        [[routes]]
        source = "shop"
        destination = "held"
        [[routes]]
        source = "shop"
        destination = "other"
        "#,
        held.url, other.url
    ))
    .await;

    for (pause, resume) in [
        (
            "/api/v1/destinations/held/pause",
            "/api/v1/destinations/held/resume",
        ),
        (
            "/api/v1/routes/shop-held/pause",
            "/api/v1/routes/shop-held/resume",
        ),
    ] {
        let r = server.admin_post(pause).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Value>().await.unwrap()["paused"], true);
        let id = post(&server, &format!("{{\"paused\":\"{pause}\"}}")).await;
        // The other route delivering proves the worker has been through this event...
        assert_eq!(other.next().await.header("webhook-id"), id);
        // ...and left the paused one in the store.
        let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
        let held_state = event["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == "held")
            .unwrap()["state"]
            .clone();
        assert_eq!(held_state, "pending", "{pause}");

        let r = server.admin_post(resume).await;
        assert_eq!(r.status(), 200);
        assert_eq!(held.next().await.header("webhook-id"), id, "{resume}");
    }

    let listed = server.admin_json("/api/v1/destinations").await;
    assert!(
        listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["paused"] == false)
    );
    let r = server
        .admin_post("/api/v1/destinations/nowhere/pause")
        .await;
    assert_eq!(r.status(), 404);
    let r = server.admin_post("/api/v1/routes/shop-held/stop").await;
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn an_open_breaker_spends_no_attempts_until_its_probe() {
    // Three failures open the breaker for 400 ms; retries are due every 10 ms, so without
    // the breaker the fourth attempt would come at once.
    let mut receiver = Receiver::start(&[503, 503, 503, 503]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "{}"
        breaker = {{ failures = 3, cooldown = "400ms" }}
        retry = {{ schedule = ["10ms", "10ms", "10ms", "10ms", "10ms", "10ms"] }}
        [[routes]]
        source = "shop"
        destination = "hook"
        "#,
        receiver.url
    ))
    .await;
    let id = post(&server, r#"{"breaker":1}"#).await;
    let mut arrivals = Vec::new();
    for _ in 0..3 {
        arrivals.push(receiver.next().await.at);
    }
    // The third failure is recorded just after the receiver saw it: ask until it shows.
    let mut shown = String::new();
    for _ in 0..100 {
        let destinations = server.admin_json("/api/v1/destinations").await;
        shown = destinations["data"][0]["breaker"]
            .as_str()
            .unwrap()
            .to_owned();
        if shown != "closed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(shown == "open" || shown == "probing", "breaker {shown}");
    // The probe (fourth attempt) waits out the cooldown; it fails, so the breaker opens
    // for twice as long before the fifth, which succeeds and closes it.
    arrivals.push(receiver.next().await.at);
    arrivals.push(receiver.next().await.at);
    let gap = |a: usize| arrivals[a] - arrivals[a - 1];
    assert!(
        gap(3) >= std::time::Duration::from_millis(380),
        "probe after {:?}",
        gap(3)
    );
    assert!(
        gap(4) >= std::time::Duration::from_millis(780),
        "second probe after {:?}",
        gap(4)
    );
    let event = server.wait_for_deliveries(&id, "delivered").await;
    assert_eq!(
        event["deliveries"][0]["attempts"], 5,
        "waiting spent no attempts"
    );
    let destinations = server.admin_json("/api/v1/destinations").await;
    assert_eq!(destinations["data"][0]["breaker"], "closed");
}

#[tokio::test]
async fn the_dead_letter_queue_is_retried_or_discarded_by_filter() {
    let mut a = Receiver::start(&[410, 410]).await;
    let mut b = Receiver::start(&[410]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.a]
        kind = "http"
        url = "{}"
        retry = {{ give_up_on = [410] }}
        [destinations.b]
        kind = "http"
        url = "{}"
        retry = {{ give_up_on = [410] }}
        [[routes]]
        source = "shop"
        destination = "a"
        [[routes]]
        source = "shop"
        destination = "b"
        "#,
        a.url, b.url
    ))
    .await;
    let first = post(&server, r#"{"dlq":1}"#).await;
    let second = server
        .post_for_id("shop", &[], r#"{"dlq":2}"#.to_owned())
        .await;
    for _ in 0..2 {
        a.next().await;
    }
    b.next().await;
    // Both of a's deliveries and the first of b's are dead (b answers 200 after that).
    b.next().await;
    server.wait_for_deliveries(&first, "dead").await;
    // The second event's dead delivery to a is recorded just after a answered it.
    let mut dead = 0;
    for _ in 0..500 {
        dead = server.admin_json("/api/v1/dlq").await["data"]
            .as_array()
            .unwrap()
            .len();
        if dead == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(dead, 3);

    // Retry only destination a: both its deliveries are sent again and succeed.
    let r = server.admin_post("/api/v1/dlq/retry?destination=a").await;
    assert_eq!(r.json::<Value>().await.unwrap()["retried"], 2);
    a.next().await;
    a.next().await;
    let event = server.admin_json(&format!("/api/v1/events/{second}")).await;
    let b_state = |e: &Value| {
        e["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["destination"] == "b")
            .unwrap()["state"]
            .clone()
    };
    assert_ne!(b_state(&event), "dead", "b's second delivery went through");

    // Discard what is left (b's first delivery), one by id.
    let left = server.admin_json("/api/v1/dlq?destination=b").await;
    let id = left["data"][0]["id"].as_str().unwrap().to_owned();
    let r = server
        .admin_post(&format!("/api/v1/deliveries/{id}/discard"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "discarded");
    let r = server
        .admin_post(&format!("/api/v1/deliveries/{id}/discard"))
        .await;
    assert_eq!(r.status(), 409, "only dead deliveries are discarded");
    let r = server.admin_post("/api/v1/dlq/discard").await;
    assert_eq!(r.json::<Value>().await.unwrap()["discarded"], 0);
    let dead = server.admin_json("/api/v1/dlq").await;
    assert_eq!(dead["data"].as_array().unwrap().len(), 0);
}

/// `deny_private = true`: a name that resolves to a private address (here `localhost`,
/// from /etc/hosts) is refused at each send, with an error that names the setting; the
/// receiver hears nothing.
#[tokio::test]
async fn deny_private_refuses_a_name_that_resolves_to_a_private_address() {
    let receiver = Receiver::start(&[]).await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/');
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [destinations.inside]
        kind = "http"
        url = "http://localhost:{port}/"
        deny_private = true
        retry = {{ schedule = [] }}
        [[routes]]
        source = "shop"
        destination = "inside"
        "#
    ))
    .await;
    let id = post(&server, "{}").await;
    let event = server.wait_for_deliveries(&id, "dead").await;
    let d = event["deliveries"][0]["id"].as_str().unwrap();
    let shown = server.admin_json(&format!("/api/v1/deliveries/{d}")).await;
    let error = shown["attempt_log"][0]["error"].as_str().unwrap();
    assert!(error.contains("deny_private = true"), "{error}");
    assert!(error.contains("localhost resolves to"), "{error}");
    assert_eq!(receiver.peak_in_flight(), 0, "the receiver heard nothing");
}
