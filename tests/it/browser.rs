//! The dashboard in a real headless Chromium (Debian's `chromium` driven through
//! `chromedriver`): the clicks a person on call makes, checked in what the server
//! stores and what a recording receiver gets. With `FOREBAY_SCREENSHOTS=DIR` set, each
//! page visited is saved there as a PNG (`scripts/screenshots` fills `docs/dashboard/`).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::support::TestServer;
use crate::support::receiver::Receiver;

/// Longest wait for something a page should show.
const PATIENCE: Duration = Duration::from_secs(15);

/// A ChromeDriver (in a process group of its own, with the browsers it starts) and a
/// session on it.
struct Browser {
    driver: Child,
    client: Option<Client>,
}

impl Browser {
    async fn start() -> Self {
        let mut driver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver on PATH (scripts/test installs chromium-driver)");
        let stdout = driver.stdout.take().expect("piped");
        // ChromeDriver prints the port it took; read it off its first lines.
        let port = tokio::task::spawn_blocking(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.ok()?;
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').parse::<u16>().ok();
                }
            }
            None
        })
        .await
        .unwrap()
        .expect("chromedriver announced its port");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1280,900",
                ]
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Self {
            driver,
            client: Some(client),
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().expect("open")
    }

    async fn goto(&self, url: &str) {
        self.c().goto(url).await.expect("navigate");
    }

    async fn click(&self, css: &str) {
        self.wait_for(css).await.click().await.expect("click");
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.wait_for(css).await;
        field.clear().await.expect("clear");
        field.send_keys(text).await.expect("type");
    }

    async fn select(&self, css: &str, value: &str) {
        self.wait_for(css)
            .await
            .select_by_value(value)
            .await
            .expect("select");
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .c()
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let url = self.c().current_url().await.map(|u| u.to_string());
                panic!(
                    "{css} never showed ({e}) on {url:?}:\n{}",
                    self.page().await
                )
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.expect("text")
    }

    async fn page(&self) -> String {
        self.c().source().await.expect("page source")
    }

    /// Waits until the page (reloaded by itself or by `reload`) holds `text`.
    async fn wait_for_text(&self, text: &str, reload: bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if self.page().await.contains(text) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the page never showed {text:?}: {}",
                self.page().await
            );
            if reload {
                self.c().refresh().await.expect("reload");
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// Waits until the address holds `part` (a form's GET has navigated: until then the
    /// page is still the one the form was on).
    async fn wait_for_address(&self, part: &str) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let url = self.c().current_url().await.expect("address").to_string();
            if url.contains(part) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the address never held {part:?}: {url}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Saves the page as `NAME.png` when screenshots are asked for.
    async fn shot(&self, name: &str) {
        let Ok(dir) = std::env::var("FOREBAY_SCREENSHOTS") else {
            return;
        };
        let png = self.c().screenshot().await.expect("screenshot");
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        std::fs::write(format!("{dir}/{name}.png"), png).expect("screenshot written");
    }

    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            let _ = client.close().await;
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group: ChromeDriver and every browser it started.
        let group = i32::try_from(self.driver.id()).unwrap_or(0);
        if group > 0 {
            unsafe {
                libc::killpg(group, libc::SIGKILL);
            }
        }
        let _ = self.driver.wait();
    }
}

const CONFIG: &str = r#"
[sources.shop]
[sources.signed]
verify = { kind = "bearer", token = "browser-test-secret" }

[destinations.orders]
kind = "http"
url = "RECEIVER"
retry = { schedule = [] }

[[routes]]
name = "shop-orders"
source = "shop"
destination = "orders"
"#;

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];

#[tokio::test]
async fn on_call_in_the_browser_search_retry_discard_pause_replay_and_follow() {
    // The handler fails twice, then is fixed.
    let mut receiver = Receiver::start(&[500, 500]).await;
    let server = TestServer::start(&CONFIG.replace("RECEIVER", &receiver.url)).await;
    let broken = server
        .post_for_id("shop", JSON, r#"{"type":"order.paid","n":1}"#)
        .await;
    server.wait_for_deliveries(&broken, "dead").await;
    let doomed = server
        .post_for_id("shop", JSON, r#"{"type":"order.paid","n":2}"#)
        .await;
    server.wait_for_deliveries(&doomed, "dead").await;
    let found = server
        .post_for_id(
            "shop",
            JSON,
            r#"{"type":"order.refunded","n":3,"note":"<b>findme</b>"}"#,
        )
        .await;
    server.wait_for_deliveries(&found, "delivered").await;
    for _ in 0..3 {
        receiver.next().await;
    }
    let refused = server.post("signed", &[], "no token").await;
    assert_eq!(refused.status(), 401);
    let admin = |path: &str| server.admin_url(path);
    let b = Browser::start().await;

    // The overview, then a search from the Events tab.
    b.goto(&admin("/")).await;
    assert_eq!(b.text("#events-total").await, "3");
    b.shot("overview").await;
    b.click("nav a[href='/events']").await;
    b.fill("#q", r#".body.type == "order.refunded""#).await;
    b.click("#search-button").await;
    // The list before the search holds `found` too: wait for the search's page first.
    b.wait_for_address("q=").await;
    b.wait_for_text(&found, false).await;
    let page = b.page().await;
    assert!(!page.contains(&broken), "the search narrowed the list");
    b.shot("events").await;
    b.click(&format!("a[href='/events/{found}']")).await;
    let body = b.text("#body").await;
    assert!(body.contains("\"note\": \"<b>findme</b>\""), "{body}");
    b.shot("event").await;

    // A dead delivery, retried from its page and delivered.
    b.goto(&admin("/dead-letters")).await;
    b.wait_for_text(&doomed, false).await;
    b.shot("dead-letters").await;
    let event = server.admin_json(&format!("/api/v1/events/{broken}")).await;
    let delivery = event["deliveries"][0]["id"].as_str().unwrap().to_owned();
    b.click(&format!("a[href='/deliveries/{delivery}']")).await;
    b.click("#retry").await;
    assert!(b.text("#notice").await.contains("Retrying 1 delivery"));
    assert_eq!(receiver.next().await.body_json()["n"], 1);
    server.wait_for_deliveries(&broken, "delivered").await;
    b.c().refresh().await.unwrap();
    assert_eq!(b.text("#state").await, "delivered");
    b.shot("delivery").await;

    // The rest of the dead letters, selected all at once and discarded.
    b.goto(&admin("/dead-letters")).await;
    b.click("#select-all").await;
    b.click("#discard-selected").await;
    assert_eq!(b.text("#notice").await, "Discarded 1 delivery.");
    server.wait_for_deliveries(&doomed, "discarded").await;

    // Pause and resume the destination.
    b.goto(&admin("/destinations")).await;
    b.click("#destination-orders button.pause").await;
    b.wait_for("#destination-orders button.resume").await;
    let destinations = server.admin_json("/api/v1/destinations").await;
    assert_eq!(destinations["data"][0]["paused"], true);
    b.shot("destinations").await;
    b.click("#destination-orders button.resume").await;
    b.wait_for("#destination-orders button.pause").await;

    // A replay of one search, followed until it is done.
    b.goto(&admin("/replays")).await;
    b.select("#replay-source", "shop").await;
    b.fill("#replay-q", ".body.n == 3").await;
    b.click("#replay-start").await;
    assert_eq!(receiver.next().await.body_json()["n"], 3);
    // The job's page refreshes itself while the job runs.
    b.wait_for_text("delivered <b>1</b>", false).await;
    assert_eq!(b.text("#replay-state").await, "done");
    b.shot("replay").await;

    // What a source refused, and why.
    b.goto(&admin("/rejected")).await;
    let reason = b.text("#rejected td.reason").await;
    assert!(reason.to_lowercase().contains("authorization"), "{reason}");
    b.shot("rejected").await;

    // The live tail shows an event as it arrives.
    b.goto(&admin("/live?source=shop")).await;
    b.wait_for_text("Following new events.", false).await;
    let live = server
        .post_for_id("shop", JSON, r#"{"type":"order.created","n":4}"#)
        .await;
    b.wait_for(&format!("tr.live-event a[href='/events/{live}']"))
        .await;
    b.shot("live").await;
    b.close().await;
}

#[tokio::test]
async fn with_a_token_the_browser_logs_in_and_out() {
    let server =
        TestServer::start("[server]\nadmin_token = \"browser-login-token\"\n[sources.shop]\n")
            .await;
    let b = Browser::start().await;
    b.goto(&server.admin_url("/events")).await;
    b.wait_for("#token").await;
    assert!(b.c().current_url().await.unwrap().path() == "/login");
    b.shot("login").await;
    b.fill("#token", "not-it").await;
    b.click("#login").await;
    assert!(b.text("#login-error").await.contains("not the admin token"));
    b.fill("#token", "browser-login-token").await;
    b.click("#login").await;
    b.wait_for("#no-events").await;
    assert_eq!(b.c().current_url().await.unwrap().path(), "/events");
    b.click("form.logout button").await;
    b.wait_for("#token").await;
    b.goto(&server.admin_url("/")).await;
    b.wait_for("#token").await;
    b.close().await;
}
