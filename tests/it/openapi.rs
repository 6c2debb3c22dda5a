//! The OpenAPI document (`docs/openapi.yaml`) and the admin API agree: the same
//! endpoints, and every response the API gives (success and error) fits the schema the
//! document promises. Schemathesis then throws generated requests at a live server.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::TestServer;
use crate::support::receiver::Receiver;

fn document() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).expect("docs/openapi.yaml");
    serde_yaml_ng::from_str(&text).expect("the document is YAML")
}

/// `(METHOD, path)` of every route the admin router serves, read from its source.
fn served() -> BTreeSet<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/admin/mod.rs");
    let source = std::fs::read_to_string(path).unwrap();
    let mut out = BTreeSet::new();
    for (start, _) in source.match_indices(".route(") {
        // The call's text, up to its closing parenthesis.
        let text = &source[start + ".route(".len()..];
        let mut depth = 1;
        let end = text
            .char_indices()
            .find(|(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .unwrap();
        let call = &text[..end];
        let path = call.split('"').nth(1).unwrap().to_owned();
        for method in ["get", "post", "put", "patch", "delete"] {
            let used = call.match_indices(&format!("{method}(")).any(|(i, _)| {
                i == 0 || !call[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_')
            });
            if used {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.insert((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[test]
fn the_router_and_the_document_list_the_same_endpoints() {
    let served = served();
    let documented = documented(&document());
    assert!(served.len() > 20, "the router parse found only {served:?}");
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "served but not documented: {missing:?}\ndocumented but not served: {extra:?}"
    );
}

/// Checks `body` against the schema the document gives for this operation and status.
fn check(doc: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let operation = &doc["paths"][path][method.to_lowercase()];
    assert!(operation.is_object(), "{method} {path} is not documented");
    let response = &operation["responses"][status.to_string()];
    assert!(
        response.is_object(),
        "{method} {path} answered {status}, which the document does not list: {body}"
    );
    let response = match response.get("$ref").and_then(Value::as_str) {
        Some(r) => &doc["components"]["responses"][r.rsplit('/').next().unwrap()],
        None => response,
    };
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status} has no JSON schema"
    );
    // The whole document is the schema's root, so `#/components/…` references resolve;
    // its other keys are not schema keywords and are ignored.
    let mut root = doc.clone();
    root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
    for (k, v) in schema.as_object().unwrap() {
        root[k] = v.clone();
    }
    let validator = jsonschema::validator_for(&root).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status} does not fit the document:\n{}\n{body:#}",
        errors.join("\n")
    );
}

struct Api<'a> {
    server: &'a TestServer,
    doc: Value,
}

impl Api<'_> {
    /// Calls the API and checks the answer against the document; returns the body.
    async fn call(
        &self,
        method: &str,
        url: &str,
        template: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .server
            .client
            .request(method.parse().unwrap(), self.server.admin_url(url));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let value: Value = response.json().await.unwrap();
        check(&self.doc, method, template, status, &value);
        (status, value)
    }
}

#[tokio::test]
async fn every_answer_fits_the_document() {
    let mut receiver = Receiver::start(&[200, 410]).await;
    let server = TestServer::start(&format!(
        r#"
        [sources.shop]
        [sources.guarded]
        verify = {{ kind = "bearer", token = "t0k3n" }}
        [destinations.hook]
        kind = "http"
        url = "{}"
        retry = {{ schedule = [], give_up_on = [410] }}
        [[routes]]
        name = "orders"
        source = "shop"
        destination = "hook"
        transform = '.body.items[]'
        ordering_key = '.body.customer'
        "#,
        receiver.url
    ))
    .await;
    let api = Api {
        server: &server,
        doc: document(),
    };
    let event = server
        .post_for_id(
            "shop",
            &[("content-type", "application/json")],
            json!({"customer": "c1", "items": [1, 2]}).to_string(),
        )
        .await;
    receiver.next().await;
    receiver.next().await;
    let rejected = server.post("guarded", &[], "no token").await;
    assert_eq!(rejected.status(), 401);
    server
        .post(
            "shop",
            &[("content-type", "application/octet-stream")],
            vec![0xffu8, 0],
        )
        .await;
    // One part delivered, one dead (410): wait until both are recorded.
    let mut deliveries = Value::Null;
    for _ in 0..500 {
        let (_, page) = api
            .call(
                "GET",
                &format!("/api/v1/events/{event}"),
                "/api/v1/events/{id}",
                None,
            )
            .await;
        if page["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["state"] != "pending" && d["state"] != "in_flight")
        {
            deliveries = page["deliveries"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let dead = deliveries
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["state"] == "dead")
        .expect("one dead part")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, rejected_page) = api
        .call("GET", "/api/v1/rejected", "/api/v1/rejected", None)
        .await;
    let rejected_id = rejected_page["data"][0]["id"].as_str().unwrap().to_owned();

    let gets = [
        ("/api/v1/events", "/api/v1/events"),
        (
            "/api/v1/events?include_body=true&order=asc&limit=1",
            "/api/v1/events",
        ),
        (
            "/api/v1/events?q=.body.customer%20%3D%3D%20%22c1%22",
            "/api/v1/events",
        ),
        ("/api/v1/events?status=dead&source=shop", "/api/v1/events"),
        (
            &format!("/api/v1/rejected/{rejected_id}"),
            "/api/v1/rejected/{id}",
        ),
        ("/api/v1/deliveries", "/api/v1/deliveries"),
        (
            &format!("/api/v1/deliveries/{dead}"),
            "/api/v1/deliveries/{id}",
        ),
        ("/api/v1/dlq", "/api/v1/dlq"),
        ("/api/v1/sources", "/api/v1/sources"),
        ("/api/v1/activity", "/api/v1/activity"),
        ("/api/v1/activity?window=6h&buckets=36", "/api/v1/activity"),
        ("/api/v1/activity?window=forever", "/api/v1/activity"),
        ("/api/v1/routes", "/api/v1/routes"),
        ("/api/v1/destinations", "/api/v1/destinations"),
        ("/api/v1/replays", "/api/v1/replays"),
        // Errors.
        ("/api/v1/events?limit=0", "/api/v1/events"),
        ("/api/v1/events?since=soon", "/api/v1/events"),
        ("/api/v1/events/evt_nope", "/api/v1/events/{id}"),
        ("/api/v1/deliveries?state=lost", "/api/v1/deliveries"),
        ("/api/v1/deliveries/dlv_nope", "/api/v1/deliveries/{id}"),
        ("/api/v1/rejected/rej_nope", "/api/v1/rejected/{id}"),
        ("/api/v1/replays/rpl_nope", "/api/v1/replays/{id}"),
    ];
    for (url, template) in gets {
        api.call("GET", url, template, None).await;
    }
    let posts = [
        (
            format!("/api/v1/deliveries/{dead}/discard"),
            "/api/v1/deliveries/{id}/discard",
            200,
        ),
        (
            format!("/api/v1/deliveries/{dead}/retry"),
            "/api/v1/deliveries/{id}/retry",
            409,
        ),
        (
            "/api/v1/dlq/retry?route=orders".to_owned(),
            "/api/v1/dlq/retry",
            200,
        ),
        ("/api/v1/dlq/discard".to_owned(), "/api/v1/dlq/discard", 200),
        (
            "/api/v1/routes/orders/pause".to_owned(),
            "/api/v1/routes/{name}/{action}",
            200,
        ),
        (
            "/api/v1/routes/orders/resume".to_owned(),
            "/api/v1/routes/{name}/{action}",
            200,
        ),
        (
            "/api/v1/routes/nope/pause".to_owned(),
            "/api/v1/routes/{name}/{action}",
            404,
        ),
        (
            "/api/v1/destinations/hook/pause".to_owned(),
            "/api/v1/destinations/{name}/{action}",
            200,
        ),
        (
            "/api/v1/destinations/hook/stop".to_owned(),
            "/api/v1/destinations/{name}/{action}",
            404,
        ),
        (
            "/api/v1/replays/rpl_nope/cancel".to_owned(),
            "/api/v1/replays/{id}/cancel",
            404,
        ),
    ];
    for (url, template, status) in posts {
        let (got, body) = api.call("POST", &url, template, None).await;
        assert_eq!(got, status, "POST {url}: {body}");
    }
    let (status, job) = api
        .call(
            "POST",
            "/api/v1/replays",
            "/api/v1/replays",
            Some(json!({"event_ids": [event], "rate": "10/s"})),
        )
        .await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap();
    api.call(
        "GET",
        &format!("/api/v1/replays/{id}"),
        "/api/v1/replays/{id}",
        None,
    )
    .await;
    api.call(
        "POST",
        &format!("/api/v1/replays/{id}/cancel"),
        "/api/v1/replays/{id}/cancel",
        None,
    )
    .await;
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/replays",
            "/api/v1/replays",
            Some(json!({"bogus": 1})),
        )
        .await;
    assert_eq!(status, 400);

    let (status, body) = api
        .call("POST", "/api/v1/reload", "/api/v1/reload", None)
        .await;
    assert_eq!(status, 200, "{body}");
    std::fs::write(&server.config_path, "[sources.shop]\nmax_body = \"lots\"\n").unwrap();
    let (status, body) = api
        .call("POST", "/api/v1/reload", "/api/v1/reload", None)
        .await;
    assert_eq!(status, 422, "{body}");

    let (status, body) = api
        .call("GET", "/api/v1/rekey", "/api/v1/rekey", None)
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = api
        .call("POST", "/api/v1/rekey", "/api/v1/rekey", None)
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = api
        .call("GET", "/api/v1/rekey", "/api/v1/rekey", None)
        .await;
    assert_eq!(status, 200, "{body}");
}

/// A Python environment with the pinned schemathesis, made once under `target/`.
fn schemathesis() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let requirements = root.join("tests/schemathesis/requirements.txt");
    let venv = root.join("target/schemathesis-venv");
    let bin = venv.join("bin/schemathesis");
    let stamp = venv.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().expect("python3 runs");
            assert!(
                out.status.success(),
                "{cmd:?} failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(std::process::Command::new("python3")
            .args(["-m", "venv", "--clear"])
            .arg(&venv));
        run(std::process::Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements));
        std::fs::write(&stamp, wanted).unwrap();
    }
    bin
}

#[tokio::test]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_document() {
    let bin = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::binary::write_config(
        dir.path(),
        r#"
        [sources.shop]
        [destinations.hook]
        kind = "http"
        url = "http://127.0.0.1:9/hook"
        retry = { schedule = [] }
        [[routes]]
        name = "orders"
        source = "shop"
        destination = "hook"
        "#,
    );
    let server = crate::support::binary::spawn_serve(&config);
    let client = crate::support::client();
    for n in 0..5 {
        let r = client
            .post(format!("http://{}/in/shop", server.ingest))
            .header("content-type", "application/json")
            .body(json!({"n": n}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml");
    let url = format!("http://{}", server.admin);
    let workdir = dir.path().to_owned();
    // Enough to reach every operation and its shapes in CI's time; a deeper search
    // sets FOREBAY_SCHEMATHESIS_EXAMPLES (200 finds nothing more today).
    let examples =
        std::env::var("FOREBAY_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "12".to_owned());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(bin)
            // It keeps a cache in its working directory.
            .current_dir(workdir)
        .arg("run")
        .arg(&spec)
        .args(["--url", &url])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        // The stream never ends by itself; it is covered by its own tests.
        .args(["--exclude-path", "/api/v1/stream"])
        .args(["--max-examples", &examples, "--seed", "1", "--no-color"])
        .output()
        .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{report}");
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}"
    );
}

/// With `server.admin_token` set, every endpoint the router serves (the live stream and
/// `/metrics` too) answers 401 without the token or with a wrong one; only `/healthz`
/// stays open, for load balancers.
#[tokio::test]
async fn every_admin_endpoint_needs_the_token() {
    let server = TestServer::start("[server]\nadmin_token = \"s3cret\"\n[sources.s]\n").await;
    let served = served();
    assert!(served.len() > 20);
    for (method, path) in served.iter().filter(|(_, p)| p != "/healthz") {
        // Path parameters get harmless values: the token is checked before anything else.
        let concrete = path
            .replace("{id}", "evt_0")
            .replace("{name}", "x")
            .replace("{action}", "pause");
        let url = server.admin_url(&concrete);
        let method = http::Method::from_bytes(method.as_bytes()).unwrap();
        for token in [None, Some("wrong"), Some("")] {
            let mut request = server.client.request(method.clone(), &url);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 401, "{method} {concrete} with {token:?}");
        }
    }
    let healthz = server
        .client
        .get(server.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
}
