//! Retention end to end: the server purges what its sources no longer keep, on a
//! [`ManualClock`] the test moves a month ahead, and keeps what still waits.

use std::sync::Arc;

use crate::support::TestServer;
use crate::support::receiver::Receiver;
use forebay::clock::ManualClock;

const DAY_MS: i64 = 86_400_000;

/// The ids listed by an admin API list endpoint.
async fn listed(server: &TestServer, path: &str) -> Vec<String> {
    let list = server.admin_json(path).await;
    list["data"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| item["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_month_later_old_events_and_rejected_requests_are_gone_and_waiting_work_is_not() {
    let clock = Arc::new(ManualClock::new(forebay::clock::now_ms()));
    // The first delivery succeeds, the second fails and waits 100 days for its retry.
    let mut receiver = Receiver::start(&[200, 500]).await;
    let server = TestServer::start_with_clock(
        &format!(
            r#"
            [sources.shop]
            [sources.archive]
            retention = {{ events = "forever" }}
            [sources.locked]
            verify = {{ kind = "bearer", token = "right" }}
            [destinations.hook]
            kind = "http"
            url = "{}"
            retry = {{ schedule = ["100d"] }}
            [[routes]]
            source = "shop"
            destination = "hook"
            "#,
            receiver.url
        ),
        clock.clone(),
    )
    .await;
    let json = [("content-type", "application/json")];
    let delivered = server.post_for_id("shop", &json, r#"{"n":1}"#).await;
    clock.advance_to(forebay::clock::now_ms());
    receiver.next().await;
    server.wait_for_deliveries(&delivered, "delivered").await;
    let retrying = server.post_for_id("shop", &json, r#"{"n":2}"#).await;
    clock.advance_to(forebay::clock::now_ms());
    receiver.next().await;
    server.wait_for_deliveries(&retrying, "retrying").await;
    let archived = server.post_for_id("archive", &json, "{}").await;
    let refused = server
        .post("locked", &[("authorization", "Bearer wrong")], "{}")
        .await;
    assert_eq!(refused.status(), 401);
    assert_eq!(listed(&server, "/api/v1/rejected").await.len(), 1);

    // A month on, the next round of retention runs.
    clock.advance_to(forebay::clock::now_ms() + 31 * DAY_MS);
    let mut shop = Vec::new();
    for _ in 0..500 {
        shop = listed(&server, "/api/v1/events?source=shop").await;
        if shop.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        shop,
        std::slice::from_ref(&retrying),
        "the delivered event went, the retrying one stays"
    );
    assert_eq!(
        listed(&server, "/api/v1/events?source=archive").await,
        [archived]
    );
    assert!(listed(&server, "/api/v1/rejected").await.is_empty());
    let gone = crate::support::client()
        .get(server.admin_url(&format!("/api/v1/events/{delivered}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    let metrics = server.metrics_text().await;
    for line in [
        r#"forebay_purged_total{kind="events"} 1"#,
        r#"forebay_purged_total{kind="rejected"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}
