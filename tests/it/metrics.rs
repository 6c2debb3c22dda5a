//! `GET /metrics` on the admin listener: counters, histograms and gauges with the labels
//! an operator's dashboards and alerts select on.
//!
//! The recorder is process-wide, so when tests share a process (`cargo test`) their
//! counts add up: every test here uses source and destination names of its own, and
//! compares against a scrape taken before it acted where a series is shared.

use std::time::Duration;

use crate::support::TestServer;
use crate::support::receiver::Receiver;

/// Label names and values, sorted by name.
type Labels = Vec<(String, String)>;

/// The samples of a scrape: (metric name, labels, value).
struct Scrape(Vec<(String, Labels, f64)>);

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("a sample line");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("a number in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, Vec::new()),
                Some((name, rest)) => (name, labels(rest.strip_suffix('}').expect("}"))),
            };
            samples.push((name.to_owned(), labels, value));
        }
        Scrape(samples)
    }

    /// The value of the series with exactly these labels, if it exists.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        want.sort();
        self.0
            .iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|s| s.2)
    }

    /// Like [`Scrape::get`], with a missing series as 0 (a counter not yet counted).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    fn has_label_value(&self, value: &str) -> bool {
        self.0
            .iter()
            .any(|(_, l, _)| l.iter().any(|(_, v)| v == value))
    }
}

/// `a="x",b="y"` (values without escapes, as every name in these tests).
fn labels(text: &str) -> Labels {
    let mut out: Labels = text
        .split("\",")
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once("=\"").expect("label=\"value\"");
            (k.to_owned(), v.trim_end_matches('"').to_owned())
        })
        .collect();
    out.sort();
    out
}

async fn scrape(server: &TestServer) -> Scrape {
    let r = server
        .client
        .get(server.admin_url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
    );
    Scrape::parse(&r.text().await.unwrap())
}

/// Scrapes until the series has `expected` (counts move just after the store commits what
/// the API shows), bounded so a wrong count fails the test.
async fn wait_for(
    server: &TestServer,
    name: &str,
    labels: &[(&str, &str)],
    expected: f64,
) -> Scrape {
    let mut last = None;
    for _ in 0..250 {
        let scraped = scrape(server).await;
        last = scraped.get(name, labels);
        if last == Some(expected) {
            return scraped;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{name}{labels:?} stayed at {last:?}, expected {expected}");
}

#[tokio::test]
async fn ingest_requests_are_counted_by_source_and_status() {
    let server = TestServer::start(
        r#"
        [sources.m_ingest]
        verify = { kind = "bearer", token = "m-token" }
        "#,
    )
    .await;
    let before = scrape(&server).await;
    let auth = [("authorization", "Bearer m-token")];
    for body in ["one", "two", "three", "one"] {
        assert_eq!(server.post("m_ingest", &auth, body).await.status(), 200);
    }
    let wrong = [("authorization", "Bearer not-it")];
    assert_eq!(server.post("m_ingest", &wrong, "four").await.status(), 401);
    let r = server.post("m_nowhere_src", &auth, "five").await;
    assert_eq!(r.status(), 404);

    let after = scrape(&server).await;
    let source = ("source", "m_ingest");
    let requests = "forebay_ingest_requests_total";
    assert_eq!(after.get(requests, &[source, ("status", "200")]), Some(4.0));
    assert_eq!(after.get(requests, &[source, ("status", "401")]), Some(1.0));
    // Other tests in this process (`cargo test`) may add to this series meanwhile.
    let unknown = [("source", ""), ("status", "404")];
    assert!(
        after.value(requests, &unknown) - before.value(requests, &unknown) >= 1.0,
        "an unknown source counts under source=\"\""
    );
    assert!(
        !after.has_label_value("m_nowhere_src"),
        "a name from a request never becomes a label"
    );
    assert_eq!(after.get("forebay_dedup_hits_total", &[source]), Some(1.0));
    // Every answer, 401 included, is in the latency histogram, in the ms buckets.
    let duration = "forebay_ingest_duration_seconds";
    assert_eq!(
        after.get(&format!("{duration}_count"), &[source]),
        Some(5.0)
    );
    assert_eq!(
        after.get(&format!("{duration}_bucket"), &[source, ("le", "+Inf")]),
        Some(5.0)
    );
    assert!(
        after
            .get(&format!("{duration}_bucket"), &[source, ("le", "0.001")])
            .is_some()
    );
    // Four events and one rejected request were committed, in one group or more.
    let batch = "forebay_commit_batch_size_sum";
    assert!(after.value(batch, &[]) - before.value(batch, &[]) >= 5.0);
    assert_eq!(after.get("forebay_up", &[]), Some(1.0));
    assert_eq!(after.get("forebay_store_up", &[]), Some(1.0));
}

#[tokio::test]
async fn deliveries_are_counted_by_outcome_and_dead_ones_fill_the_dead_letter_gauge() {
    let mut receiver = Receiver::start(&[500]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.m_shop]
        [destinations.m_hook]
        kind = "http"
        url = "{}"
        retry = {{ schedule = ["20ms"] }}
        [destinations.m_broken]
        kind = "exec"
        command = "/bin/sh"
        args = ["-c", "exit 3"]
        retry = {{ schedule = [] }}
        [[routes]]
        source = "m_shop"
        destination = "m_hook"
        [[routes]]
        source = "m_shop"
        destination = "m_broken"
        "#,
        receiver.url
    ))
    .await;
    let id = server.post_for_id("m_shop", &[], "{}").await;
    receiver.next().await; // 500: retrying
    receiver.next().await; // 200: delivered

    let hook = ("destination", "m_hook");
    let broken = ("destination", "m_broken");
    let deliveries = "forebay_deliveries_total";
    wait_for(&server, deliveries, &[hook, ("outcome", "delivered")], 1.0).await;
    let after = wait_for(&server, deliveries, &[broken, ("outcome", "dead")], 1.0).await;
    assert_eq!(
        after.get(deliveries, &[hook, ("outcome", "retrying")]),
        Some(1.0)
    );
    assert_eq!(after.get(deliveries, &[hook, ("outcome", "dead")]), None);
    let attempts = "forebay_attempt_duration_seconds";
    assert_eq!(after.get(&format!("{attempts}_count"), &[hook]), Some(2.0));
    assert_eq!(
        after.get(&format!("{attempts}_count"), &[broken]),
        Some(1.0)
    );
    assert_eq!(
        after.get(&format!("{attempts}_bucket"), &[hook, ("le", "+Inf")]),
        Some(2.0)
    );

    // Both attempts' records are committed (their counts moved after the commits).
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    let mut states: Vec<&str> = event["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["state"].as_str().unwrap())
        .collect();
    states.sort();
    assert_eq!(states, ["dead", "delivered"]);
    assert_eq!(after.get("forebay_dead_letter", &[broken]), Some(1.0));
    assert_eq!(after.get("forebay_dead_letter", &[hook]), Some(0.0));
    assert_eq!(after.get("forebay_backlog", &[hook]), Some(0.0));
    assert_eq!(after.get("forebay_backlog", &[broken]), Some(0.0));
    assert_eq!(after.get("forebay_breaker_open", &[hook]), Some(0.0));
}

#[tokio::test]
async fn backlog_shows_while_a_destination_is_paused() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.m_src]
        [destinations.m_held]
        kind = "http"
        url = "{}"
        [[routes]]
        source = "m_src"
        destination = "m_held"
        "#,
        receiver.url
    ))
    .await;
    let held = ("destination", "m_held");
    assert_eq!(
        scrape(&server).await.get("forebay_backlog", &[held]),
        Some(0.0)
    );
    let r = server.admin_post("/api/v1/destinations/m_held/pause").await;
    assert_eq!(r.status(), 200);
    for n in 0..3 {
        server
            .post_for_id("m_src", &[], format!("{{\"n\":{n}}}"))
            .await;
    }
    let paused = scrape(&server).await;
    assert_eq!(paused.get("forebay_backlog", &[held]), Some(3.0));
    assert_eq!(paused.get("forebay_dead_letter", &[held]), Some(0.0));

    let r = server
        .admin_post("/api/v1/destinations/m_held/resume")
        .await;
    assert_eq!(r.status(), 200);
    for _ in 0..3 {
        receiver.next().await;
    }
    wait_for(&server, "forebay_backlog", &[held], 0.0).await;
}

#[tokio::test]
async fn an_open_breaker_shows_as_1() {
    let mut receiver = Receiver::start(&[503]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.m_src]
        [destinations.m_flaky]
        kind = "http"
        url = "{}"
        breaker = {{ failures = 1, cooldown = "1h" }}
        retry = {{ schedule = ["10ms"] }}
        [[routes]]
        source = "m_src"
        destination = "m_flaky"
        "#,
        receiver.url
    ))
    .await;
    let flaky = ("destination", "m_flaky");
    assert_eq!(
        scrape(&server).await.get("forebay_breaker_open", &[flaky]),
        Some(0.0)
    );
    server.post_for_id("m_src", &[], "{}").await;
    receiver.next().await;
    let open = wait_for(&server, "forebay_breaker_open", &[flaky], 1.0).await;
    // The retry waits behind the breaker, in the backlog.
    assert_eq!(open.get("forebay_backlog", &[flaky]), Some(1.0));
}

#[tokio::test]
async fn metrics_need_the_admin_token_when_one_is_set() {
    let server = TestServer::start("[server]\nadmin_token = \"m-admin\"\n[sources.m_tok]\n").await;
    let url = server.admin_url("/metrics");
    let r = server.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = server
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = server
        .client
        .get(&url)
        .bearer_auth("m-admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("# TYPE forebay_up gauge\nforebay_up 1\n"),
        "{text}"
    );
}
