//! The dashboard over plain HTTP: its pages, its login, its guards (session cookie,
//! CSRF token, same origin, CSP) and its actions, checked in what the server stores and
//! what a recording receiver gets. `browser.rs` drives the same pages in Chromium.

use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::support::TestServer;
use crate::support::receiver::Receiver;

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
const TOKEN: &str = "dashboard-test-token-3f9a";

fn config(receiver: &str, token: bool) -> String {
    let server = if token {
        format!("[server]\nadmin_token = \"{TOKEN}\"\n")
    } else {
        String::new()
    };
    format!(
        r#"{server}
[sources.shop]
[sources.other]

[destinations.orders]
kind = "http"
url = "{receiver}"
max_concurrency = 4
rate_limit = "100/s"
retry = {{ schedule = [] }}

[[routes]]
name = "shop-orders"
source = "shop"
destination = "orders"
"#
    )
}

/// A visitor: the session cookie it was given and the CSRF token of its last page.
struct Visitor<'a> {
    server: &'a TestServer,
    cookie: Option<String>,
    csrf: String,
}

impl<'a> Visitor<'a> {
    fn new(server: &'a TestServer) -> Self {
        Self {
            server,
            cookie: None,
            csrf: String::new(),
        }
    }

    fn keep_cookie(&mut self, r: &reqwest::Response) {
        if let Some(set) = r.headers().get(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
    }

    /// GETs a page (no redirect followed) and returns its status and HTML.
    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        let mut req = no_redirects().get(self.server.admin_url(path));
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        let r = req.send().await.unwrap();
        self.keep_cookie(&r);
        let status = r.status();
        let html = r.text().await.unwrap();
        if let Some(token) = csrf_of(&html) {
            self.csrf = token;
        }
        (status, html)
    }

    /// POSTs a form with the CSRF token; returns status and `Location`.
    async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let csrf = self.csrf.clone();
        let mut form: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post_raw(path, &form, None).await
    }

    async fn post_raw(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> (StatusCode, String) {
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form {
            body.append_pair(k, v);
        }
        let mut req = no_redirects()
            .post(self.server.admin_url(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.finish());
        if let Some(c) = &self.cookie {
            req = req.header(COOKIE, c);
        }
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        let r = req.send().await.unwrap();
        self.keep_cookie(&r);
        let status = r.status();
        let location = r
            .headers()
            .get(LOCATION)
            .map(|l| l.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = r.text().await.unwrap();
        (status, if location.is_empty() { body } else { location })
    }
}

/// Posts `n` events (`{"n": i}`) to `shop`, each dead after the receiver's one 500.
async fn dead_events(server: &TestServer, receiver: &mut Receiver, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = server
            .post_for_id("shop", JSON, format!(r#"{{"n":{i}}}"#))
            .await;
        server.wait_for_deliveries(&id, "dead").await;
        receiver.next().await;
        ids.push(id);
    }
    ids
}

fn no_redirects() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn csrf_of(html: &str) -> Option<String> {
    let at = html.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
    Some(html[at..].split('"').next()?.to_owned())
}

#[tokio::test]
async fn every_page_renders_with_a_strict_policy_and_stored_markup_stays_text() {
    let receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&config(&receiver.url, false)).await;
    let id = server
        .post_for_id(
            "shop",
            &[
                ("x-evil", "<script>alert('header')</script>"),
                ("content-type", "application/json"),
            ],
            r#"{"note":"<script>alert('body')</script>","total":12}"#,
        )
        .await;
    server.wait_for_deliveries(&id, "delivered").await;
    let event = server.admin_json(&format!("/api/v1/events/{id}")).await;
    let delivery = event["deliveries"][0]["id"].as_str().unwrap().to_owned();

    let r = no_redirects()
        .get(server.admin_url("/"))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");

    let mut visitor = Visitor::new(&server);
    for path in [
        "/".to_owned(),
        "/events".to_owned(),
        "/events?source=shop&q=.body.total%20%3E%2010".to_owned(),
        format!("/events/{id}"),
        "/deliveries".to_owned(),
        format!("/deliveries/{delivery}"),
        "/dead-letters".to_owned(),
        "/destinations".to_owned(),
        "/replays".to_owned(),
        "/archive".to_owned(),
        "/rejected".to_owned(),
        "/live".to_owned(),
    ] {
        let (status, html) = visitor.get(&path).await;
        assert_eq!(status, 200, "{path}: {html}");
        assert!(html.contains("<nav>"), "{path}");
        assert!(
            !html.contains("<script>alert"),
            "{path} shows stored markup as markup"
        );
    }
    let (_, page) = visitor.get(&format!("/events/{id}")).await;
    assert!(
        page.contains("&#60;script&#62;alert(&#39;header&#39;)"),
        "{page}"
    );
    assert!(page.contains("alert(&#39;body&#39;)"), "{page}");
    assert!(page.contains("&#34;total&#34;: 12"), "pretty JSON: {page}");
    let (_, search) = visitor
        .get("/events?source=shop&q=.body.total%20%3E%2010")
        .await;
    assert!(search.contains(&id), "the jq search finds the event");
    let (_, none) = visitor.get("/events?q=.body.total%20%3E%20100").await;
    assert!(!none.contains(&id) && none.contains("No events match"));
    let (_, bad) = visitor.get("/events?q=((").await;
    assert!(
        bad.contains("q does not compile"),
        "a bad search is explained: {bad}"
    );
    let (_, overview) = visitor.get("/").await;
    assert!(overview.contains("id=\"events-total\">1<"), "{overview}");
    let (_, replays) = visitor.get("/replays").await;
    assert!(
        replays.contains("forebay replay --from - --to URL"),
        "a replay to any URL is shown as the command that does it: {replays}"
    );
    let (_, flow) = visitor.get("/destinations").await;
    assert!(
        flow.contains("100/s") && flow.contains("shop-orders"),
        "{flow}"
    );
    let (status, missing) = visitor.get("/events/evt_0000").await;
    assert_eq!(status, 404);
    assert!(missing.contains("no event"), "{missing}");
    assert!(
        !no_redirects()
            .get(server.admin_url("/nope"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success()
    );
}

#[tokio::test]
async fn with_a_token_the_dashboard_needs_a_login_and_the_api_still_needs_the_token() {
    let server = TestServer::start(&config("http://127.0.0.1:9/", true)).await;
    let mut visitor = Visitor::new(&server);
    let (status, html) = visitor.get("/events?source=shop").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
    let r = no_redirects()
        .get(server.admin_url("/events?source=shop"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()[LOCATION],
        "/login?next=%2Fevents%3Fsource%3Dshop"
    );
    let (status, _) = visitor.get("/login").await;
    assert_eq!(status, 200);

    let (status, page) = visitor
        .post_raw("/login", &[("token", "wrong"), ("next", "/")], None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("not the admin token"));
    assert!(visitor.cookie.is_none());
    // A login form posted from another site is refused, even with the right token.
    let (status, _) = visitor
        .post_raw("/login", &[("token", TOKEN)], Some("http://evil.example"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // `next` never leads off the dashboard.
    let (status, to) = visitor
        .post_raw(
            "/login",
            &[("token", TOKEN), ("next", "//evil.example/")],
            None,
        )
        .await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/"));
    // Nor does a tab browsers would drop, and a CRLF is refused, not a broken header.
    for next in ["/\t/evil.example", "/x\r\nSet-Cookie: a=b"] {
        let (status, to) = visitor
            .post_raw("/login", &[("token", TOKEN), ("next", next)], None)
            .await;
        assert_eq!(
            (status, to.as_str()),
            (StatusCode::SEE_OTHER, "/"),
            "{next:?}"
        );
    }
    let cookie = visitor.cookie.clone().expect("a session");
    // Another cookie of this host with bytes outside ASCII does not hide the session.
    let r = no_redirects()
        .get(server.admin_url("/events"))
        .header(
            COOKIE,
            reqwest::header::HeaderValue::from_bytes(
                format!("theme=caf\u{e9}; {cookie}").as_bytes(),
            )
            .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Nothing under /api answers without the token, not even "no such endpoint".
    for path in ["/api", "/api/", "/api/v2/nothing"] {
        let r = no_redirects()
            .get(server.admin_url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }

    let (status, html) = visitor.get("/events").await;
    assert_eq!(status, 200);
    assert!(html.contains("Log out"));
    // The session cookie is not the API's token.
    let api = no_redirects()
        .get(server.admin_url("/api/v1/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 401);

    let (status, to) = visitor.post("/logout", &[]).await;
    assert_eq!((status, to.as_str()), (StatusCode::SEE_OTHER, "/login"));
    let after = no_redirects()
        .get(server.admin_url("/events"))
        .header(COOKIE, &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(
        after.status(),
        StatusCode::SEE_OTHER,
        "the old cookie is dead"
    );
}

#[tokio::test]
async fn forms_need_the_sessions_token_and_this_origin() {
    let server = TestServer::start(&config("http://127.0.0.1:9/", false)).await;
    let paused = || async {
        server.admin_json("/api/v1/destinations").await["data"][0]["paused"]
            .as_bool()
            .unwrap()
    };
    let mut visitor = Visitor::new(&server);
    visitor.get("/destinations").await;
    assert!(!visitor.csrf.is_empty());

    let (status, _) = visitor
        .post_raw("/destinations/orders/pause", &[], None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no token");
    let (status, _) = visitor
        .post_raw("/destinations/orders/pause", &[("csrf", "0000")], None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a wrong token");
    let csrf = visitor.csrf.clone();
    let (status, _) = visitor
        .post_raw(
            "/destinations/orders/pause",
            &[("csrf", &csrf)],
            Some("http://evil.example"),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another site");
    // Without the session cookie, no form is accepted either.
    let mut stranger = Visitor::new(&server);
    stranger.csrf = csrf.clone();
    let (status, _) = stranger.post("/destinations/orders/pause", &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(!paused().await, "nothing refused took effect");

    let origin = format!("http://{}", server.admin);
    let (status, to) = visitor
        .post_raw(
            "/destinations/orders/pause",
            &[("csrf", &csrf)],
            Some(&origin),
        )
        .await;
    assert_eq!(
        (status, to.as_str()),
        (StatusCode::SEE_OTHER, "/destinations")
    );
    assert!(paused().await);
    let (_, html) = visitor.get("/destinations").await;
    assert!(html.contains("Resume"));
    visitor.post("/destinations/orders/resume", &[]).await;
    assert!(!paused().await);
    visitor.post("/routes/shop-orders/pause", &[]).await;
    let routes = server.admin_json("/api/v1/routes").await;
    assert_eq!(routes["data"][0]["paused"], true);
    let (status, page) = visitor.post("/routes/nope/pause", &[]).await;
    assert_eq!(status, 404);
    assert!(page.contains("no route named"), "{page}");
}

#[tokio::test]
async fn dead_deliveries_are_retried_one_by_selection_or_all_and_discarded() {
    // Four failures, then the handler is fixed.
    let mut receiver = Receiver::start(&[500, 500, 500, 500]).await;
    let server = TestServer::start(&config(&receiver.url, false)).await;
    let ids = dead_events(&server, &mut receiver, 4).await;
    let delivery_of =
        |event: serde_json::Value| event["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let mut deliveries = Vec::new();
    for id in &ids {
        deliveries.push(delivery_of(
            server.admin_json(&format!("/api/v1/events/{id}")).await,
        ));
    }
    let mut visitor = Visitor::new(&server);
    let (_, dead) = visitor.get("/dead-letters").await;
    for d in &deliveries {
        assert!(dead.contains(d.as_str()), "{d} listed");
    }

    // One, from its page.
    let (_, page) = visitor.get(&format!("/deliveries/{}", deliveries[0])).await;
    assert!(page.contains("HTTP 500") || page.contains("500"), "{page}");
    let (status, to) = visitor
        .post(&format!("/deliveries/{}/retry", deliveries[0]), &[])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.ends_with("?notice=retried"), "{to}");
    assert_eq!(receiver.next().await.body_json()["n"], 0);
    server.wait_for_deliveries(&ids[0], "delivered").await;

    // A selection of two: one retried, one discarded.
    let (status, to) = visitor
        .post(
            "/dead-letters",
            &[("action", "retry"), ("id", &deliveries[1])],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.contains("notice=retried") && to.contains("n=1"), "{to}");
    assert_eq!(receiver.next().await.body_json()["n"], 1);
    let (_, to) = visitor
        .post(
            "/dead-letters",
            &[("action", "discard"), ("id", &deliveries[2])],
        )
        .await;
    let (_, after) = visitor.get(&to).await;
    assert!(after.contains("Discarded 1 delivery."), "{after}");
    server.wait_for_deliveries(&ids[2], "discarded").await;

    // Everything left for the destination.
    let (_, to) = visitor
        .post(
            "/dead-letters",
            &[("action", "retry"), ("all", "1"), ("destination", "orders")],
        )
        .await;
    assert!(to.contains("n=1"), "only the last one was still dead: {to}");
    assert_eq!(receiver.next().await.body_json()["n"], 3);
    server.wait_for_deliveries(&ids[3], "delivered").await;
    let (status, _) = visitor.post("/dead-letters", &[("action", "retry")]).await;
    assert_eq!(status, 400, "nothing ticked");
}

#[tokio::test]
async fn discarding_every_dead_delivery_is_asked_again_and_a_partial_selection_says_so() {
    let mut receiver = Receiver::start(&[500, 500]).await;
    let server = TestServer::start(&config(&receiver.url, false)).await;
    let ids = dead_events(&server, &mut receiver, 2).await;
    let event = server
        .admin_json(&format!("/api/v1/events/{}", ids[0]))
        .await;
    let first = event["deliveries"][0]["id"].as_str().unwrap().to_owned();
    let mut visitor = Visitor::new(&server);
    let (_, dead) = visitor.get("/dead-letters").await;
    assert!(dead.contains("Discard every dead delivery"), "{dead}");
    let (_, filtered) = visitor.get("/dead-letters?destination=orders").await;
    assert!(filtered.contains("Discard all dead deliveries of this filter"));

    // With no filter, "discard all" first asks; nothing is discarded until confirmed.
    let (status, page) = visitor
        .post("/dead-letters", &[("action", "discard"), ("all", "1")])
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("Discard every dead delivery?"), "{page}");
    assert_eq!(
        server.admin_json("/api/v1/dlq").await["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // A ticked delivery that no longer exists: the others are still acted on, and the
    // page says how many were.
    let (status, page) = visitor
        .post(
            "/dead-letters",
            &[("action", "discard"), ("id", &first), ("id", "dlv_nope")],
        )
        .await;
    assert_eq!(status, 404, "{page}");
    assert!(
        page.contains("Discarded 1 of the 2 ticked deliveries; 1 could not be"),
        "{page}"
    );
    server.wait_for_deliveries(&ids[0], "discarded").await;

    let (status, to) = visitor
        .post(
            "/dead-letters",
            &[("action", "discard"), ("all", "1"), ("confirm", "1")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(
        to.contains("notice=discarded") && to.contains("n=1"),
        "{to}"
    );
    server.wait_for_deliveries(&ids[1], "discarded").await;
    // A notice is said once: the next page's address does not carry it.
    let (status, page) = visitor.get(&format!("{to}&n=abc&n=2")).await;
    assert_eq!(status, 200, "a malformed notice is ignored: {page}");
}

#[tokio::test]
async fn activity_counts_events_per_source_and_deliveries_in_the_window() {
    let receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&config(&receiver.url, false)).await;
    for n in 0..3 {
        let id = server
            .post_for_id("shop", JSON, format!(r#"{{"n":{n}}}"#))
            .await;
        server.wait_for_deliveries(&id, "delivered").await;
    }
    server.post_for_id("other", JSON, "{}").await;
    // Counters are kept per 10 s: a minute has at most six bars, whatever is asked.
    let a = server
        .admin_json("/api/v1/activity?window=1m&buckets=120")
        .await;
    assert_eq!(a["bucket_ms"], 10_000, "{a}");
    let events = |source: &str| -> u64 {
        let s = a["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == source)
            .unwrap_or_else(|| panic!("{source} in {a}"));
        assert_eq!(s["events"].as_array().unwrap().len(), 6);
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .sum()
    };
    assert_eq!((events("shop"), events("other")), (3, 1), "{a}");
    assert_eq!(a["deliveries"]["delivered"], 3, "{a}");
    let orders = &a["destinations"][0];
    assert_eq!(
        (
            &orders["destination"],
            &orders["attempts"],
            &orders["failed"]
        ),
        (&"orders".into(), &3.into(), &0.into()),
        "{a}"
    );
}

#[tokio::test]
async fn activity_counts_are_kept_across_a_restart() {
    let receiver = Receiver::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &config(&receiver.url, false)).await;
    for n in 0..2 {
        let id = server
            .post_for_id("shop", JSON, format!(r#"{{"n":{n}}}"#))
            .await;
        server.wait_for_deliveries(&id, "delivered").await;
    }
    // Stopping writes what the process tallied; the next one reads it from the store.
    server.stop().await;
    let server = TestServer::start_in(dir.path(), &config(&receiver.url, false)).await;
    let a = server.admin_json("/api/v1/activity").await;
    assert_eq!(a["bucket_ms"], 300_000, "{a}");
    let shop: u64 = a["sources"][0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(
        (&a["sources"][0]["source"], shop),
        (&"shop".into(), 2),
        "{a}"
    );
    assert_eq!(a["deliveries"]["delivered"], 2, "{a}");
    assert_eq!(a["destinations"][0]["attempts"], 2, "{a}");
}

#[tokio::test]
async fn a_replay_started_from_the_dashboard_is_followed_to_its_end() {
    let mut receiver = Receiver::start(&[]).await;
    let server = TestServer::start(&config(&receiver.url, false)).await;
    for n in 0..3 {
        let id = server
            .post_for_id("shop", JSON, format!(r#"{{"n":{n}}}"#))
            .await;
        server.wait_for_deliveries(&id, "delivered").await;
        receiver.next().await;
    }
    let mut visitor = Visitor::new(&server);
    visitor.get("/replays").await;
    let (status, page) = visitor.post("/replays", &[]).await;
    assert_eq!(status, 400, "no filter and not `all`");
    assert!(
        page.contains("this would replay every stored event"),
        "{page}"
    );

    let (status, to) = visitor
        .post(
            "/replays",
            &[("source", "shop"), ("q", ".body.n >= 1"), ("rate", "")],
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(to.starts_with("/replays/rpl_"), "{to}");
    let mut got: Vec<i64> = Vec::new();
    for _ in 0..2 {
        got.push(receiver.next().await.body_json()["n"].as_i64().unwrap());
    }
    got.sort();
    assert_eq!(got, [1, 2]);
    // The job page shows it done with both delivered (it refreshes itself meanwhile).
    let mut done = String::new();
    for _ in 0..250 {
        let (_, page) = visitor.get(&to).await;
        if page.contains("id=\"replay-state\">done<") && page.contains("delivered <b>2</b>") {
            done = page;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(done.contains("2 of 2 queued"), "{done}");
    assert!(
        !done.contains("http-equiv=\"refresh\""),
        "a finished job stops refreshing"
    );
    let (_, list) = visitor.get("/replays").await;
    assert!(list.contains(&to["/replays/".len()..]));
}

#[tokio::test]
async fn the_live_tail_streams_new_events_under_the_session() {
    let server = TestServer::start(&config("http://127.0.0.1:9/", true)).await;
    let mut visitor = Visitor::new(&server);
    // Without a session the stream is not served.
    let (status, _) = visitor.get("/live/stream").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    visitor.post_raw("/login", &[("token", TOKEN)], None).await;
    let mut stream = no_redirects()
        .get(server.admin_url("/live/stream?source=shop"))
        .header(COOKIE, visitor.cookie.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let id = server.post_for_id("shop", &[], r#"{"live":true}"#).await;
    let mut seen = String::new();
    while !seen.contains(&id) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: event"), "{seen}");
}
