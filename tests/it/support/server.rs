//! An in-process forebay on port 0 with its own SQLite file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use forebay::clock::{Clock, SystemClock};
use forebay::config::Role;
use forebay::{Config, Listeners};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub ingest: std::net::SocketAddr,
    pub admin: std::net::SocketAddr,
    pub client: reqwest::Client,
    pub db_path: PathBuf,
    /// The file the configuration was read from (a reload reads it again).
    pub config_path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    // Kept so the directory lives as long as the server (when the test did not supply one).
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server with `extra` TOML (sources, routes, `[server]` keys…) in a fresh directory.
    pub async fn start(extra: &str) -> Self {
        Self::start_as(extra, Role::All).await
    }

    /// A server that only ingests (`--role ingest`): deliveries stay pending.
    pub async fn start_ingest_only(extra: &str) -> Self {
        Self::start_as(extra, Role::Ingest).await
    }

    pub async fn start_as(extra: &str, role: Role) -> Self {
        Self::start_fresh(extra, role, Arc::new(SystemClock)).await
    }

    /// A server whose delivery engine runs on `clock`.
    pub async fn start_with_clock(extra: &str, clock: Arc<dyn Clock>) -> Self {
        Self::start_fresh(extra, Role::All, clock).await
    }

    async fn start_fresh(extra: &str, role: Role, clock: Arc<dyn Clock>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut server = Self::start_in_as(dir.path(), extra, role, clock).await;
        server._dir = Some(dir);
        server
    }

    /// A server whose database lives in `dir` (to restart on the same data).
    pub async fn start_in(dir: &Path, extra: &str) -> Self {
        Self::start_in_as(dir, extra, Role::All, Arc::new(SystemClock)).await
    }

    async fn start_in_as(dir: &Path, extra: &str, role: Role, clock: Arc<dyn Clock>) -> Self {
        // Expressions run in sandbox processes of the real binary, not of this harness.
        forebay::expr::set_sandbox_exe(env!("CARGO_BIN_EXE_forebay").into());
        let db_path = dir.join("forebay.db");
        let text = config_text(&db_path, extra);
        // From a file, as `forebay serve` reads it, so that a reload can read it again.
        let config_path = dir.join("forebay.toml");
        std::fs::write(&config_path, &text).expect("write the configuration");
        let mut config = Config::load(&config_path, std::iter::empty::<(&str, &str)>())
            .unwrap_or_else(|e| panic!("test config is invalid: {e}\n{text}"));
        config.role = role;
        let ingest = TcpListener::bind("127.0.0.1:0").await.expect("bind ingest");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        let (ingest_addr, admin_addr) = (ingest.local_addr().unwrap(), admin.local_addr().unwrap());
        // Opening the store here, before serving, means the server is ready on return.
        let store = forebay::server::open_store(&config.storage)
            .await
            .expect("store opens");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            forebay::server::run_with_clock(
                config,
                store,
                Listeners { ingest, admin },
                stopped,
                clock,
            )
            .await
            .expect("server runs");
        });
        Self {
            ingest: ingest_addr,
            admin: admin_addr,
            client: crate::support::client(),
            db_path,
            config_path,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    /// Writes `extra` as the configuration (as [`TestServer::start`] takes it) for the
    /// next reload to read.
    pub fn rewrite_config(&self, extra: &str) {
        std::fs::write(&self.config_path, config_text(&self.db_path, extra))
            .expect("write the configuration");
    }

    pub fn ingest_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingest)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// POSTs `body` to `/in/{source}` with `headers`.
    pub async fn post(
        &self,
        source: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        let mut req = self.client.post(self.ingest_url(&format!("/in/{source}")));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body).send().await.expect("request sent")
    }

    /// POSTs like [`TestServer::post`], asserts 200, and returns the event id.
    pub async fn post_for_id(
        &self,
        source: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> String {
        event_id(self.post(source, headers, body).await).await
    }

    /// POST (no body) on the admin API.
    pub async fn admin_post(&self, path: &str) -> reqwest::Response {
        self.client
            .post(self.admin_url(path))
            .send()
            .await
            .expect("admin request")
    }

    /// GET on the admin API, as JSON, asserting 200.
    pub async fn admin_json(&self, path: &str) -> Value {
        let r = self
            .client
            .get(self.admin_url(path))
            .send()
            .await
            .expect("admin request");
        let status = r.status();
        let body: Value = r.json().await.expect("admin JSON");
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let r = self
            .client
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(r.status(), 200);
        r.text().await.unwrap()
    }

    /// The stored events of a source (up to 100), newest first.
    pub async fn events_of(&self, source: &str) -> Vec<Value> {
        self.list(&format!("/api/v1/events?source={source}&limit=100"))
            .await
    }

    /// The rejected requests of a source (up to 100), newest first.
    pub async fn rejected_of(&self, source: &str) -> Vec<Value> {
        self.list(&format!("/api/v1/rejected?source={source}&limit=100"))
            .await
    }

    async fn list(&self, path: &str) -> Vec<Value> {
        match self.admin_json(path).await["data"].take() {
            Value::Array(items) => items,
            other => panic!("GET {path}: no data list: {other}"),
        }
    }

    /// Waits until the event's deliveries are all in `state` (the attempt is recorded
    /// just after the receiver answers; there is no signal for it, so this asks, bounded).
    pub async fn wait_for_deliveries(&self, event_id: &str, state: &str) -> Value {
        for _ in 0..500 {
            let event = self.admin_json(&format!("/api/v1/events/{event_id}")).await;
            let deliveries = event["deliveries"].as_array().cloned().unwrap_or_default();
            if !deliveries.is_empty() && deliveries.iter().all(|d| d["state"] == state) {
                return event;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("deliveries of {event_id} never all became {state}");
    }

    /// Stops the server the way SIGTERM does, and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn config_text(db_path: &Path, extra: &str) -> String {
    let storage = if extra.contains("[storage]") {
        // The test writes its own [storage] table; only the URL is ours to add.
        String::new()
    } else {
        format!("[storage]\nurl = \"sqlite://{}\"\n\n", db_path.display())
    };
    let extra = extra.replace("{db}", &db_path.display().to_string());
    format!("{storage}{extra}")
}

/// The event id of a 200 answer from `/in/{source}`.
pub async fn event_id(r: reqwest::Response) -> String {
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .expect("an id in the answer")
        .to_owned()
}
