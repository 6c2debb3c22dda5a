//! forebay against the providers' own SDKs: what the official SDK signs, a real server
//! accepts (and refuses once the body is changed); what forebay's `sign_as` signs, the
//! SDK's verifier accepts (and refuses once the body is changed).
//!
//! The SDKs are pinned in `tests/sdk/` (`package.json` + `package-lock.json` for npm,
//! `requirements.txt` for PyPI) and installed once under `target/sdk/`, again only when
//! a pin changes; a file lock keeps parallel tests from installing at the same time.
//! The scripts that drive them (`tests/sdk/sdk.mjs`, `tests/sdk/slack.py`) read one JSON
//! request and print one JSON answer; they, and the server, use no network. An install
//! that fails fails the tests, saying why.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use http::HeaderMap;
use serde_json::{Value, json};

use forebay::ingest::verify::VerifyConfig;
use forebay::ingest::verify::sign_as::{Message, Signer};

use crate::support::TestServer;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Holds an exclusive `flock` on `dir/.lock` while alive: one process installs, the
/// others wait and then find the stamp written.
struct InstallLock {
    /// Closing the file releases the lock.
    _file: std::fs::File,
}

impl InstallLock {
    fn take(dir: &Path) -> Self {
        use std::os::fd::AsRawFd;
        std::fs::create_dir_all(dir).unwrap();
        let file = std::fs::File::create(dir.join(".lock")).unwrap();
        // SAFETY: flock on a file descriptor this struct owns; released on close.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "cannot lock {}", dir.display());
        Self { _file: file }
    }
}

/// Runs an install step; a failure names the command and shows its output.
fn run_install(what: &str, cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({cmd:?}); these tests need the package registry once, then reuse target/sdk/:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `contents` to `path` unless it holds them already, by renaming a new file
/// into place so that a reader never sees half a file.
fn write_if_changed(path: &Path, contents: &[u8]) {
    if std::fs::read(path).ok().as_deref() == Some(contents) {
        return;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The npm SDKs, installed with `npm ci` from the committed lock file, and the script
/// beside them (ES modules resolve packages next to the importing file).
fn node_sdks() -> PathBuf {
    let dir = root().join("target/sdk/node");
    let _lock = InstallLock::take(&dir);
    let src = root().join("tests/sdk");
    let lock = std::fs::read(src.join("package-lock.json")).unwrap();
    let manifest = std::fs::read(src.join("package.json")).unwrap();
    let stamp = dir.join("installed-package-lock.json");
    if std::fs::read(&stamp).ok().as_deref() != Some(lock.as_slice()) {
        write_if_changed(&dir.join("package.json"), &manifest);
        write_if_changed(&dir.join("package-lock.json"), &lock);
        run_install(
            "npm ci of tests/sdk/package-lock.json",
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"])
                .args(["--loglevel", "error"])
                .current_dir(&dir),
        );
        std::fs::write(&stamp, &lock).unwrap();
    }
    write_if_changed(
        &dir.join("sdk.mjs"),
        &std::fs::read(src.join("sdk.mjs")).unwrap(),
    );
    dir
}

/// A Python environment with the pinned PyPI SDKs.
fn python_sdks() -> PathBuf {
    let dir = root().join("target/sdk/python");
    let _lock = InstallLock::take(&dir);
    let requirements = root().join("tests/sdk/requirements.txt");
    let wanted = std::fs::read(&requirements).unwrap();
    let stamp = dir.join("installed-requirements.txt");
    let venv = dir.join("venv");
    if std::fs::read(&stamp).ok().as_deref() != Some(wanted.as_slice()) {
        run_install(
            "python3 -m venv",
            Command::new("python3")
                .args(["-m", "venv", "--clear"])
                .arg(&venv),
        );
        run_install(
            "pip install -r tests/sdk/requirements.txt",
            Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
                .arg(&requirements),
        );
        std::fs::write(&stamp, wanted).unwrap();
    }
    venv.join("bin/python")
}

/// Sends `request` to a script on stdin and reads its JSON answer.
fn run_script(mut cmd: Command, request: &Value) -> Value {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} with {request} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{cmd:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Asks the npm SDK script, off the runtime's threads.
async fn node(request: Value) -> Value {
    tokio::task::spawn_blocking(move || {
        let dir = node_sdks();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("sdk.mjs")).current_dir(&dir);
        run_script(cmd, &request)
    })
    .await
    .unwrap()
}

async fn python(script: &str, request: Value) -> Value {
    let script = root().join("tests/sdk").join(script);
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(python_sdks());
        cmd.arg(script);
        run_script(cmd, &request)
    })
    .await
    .unwrap()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// What forebay's `sign_as` sends for `body`, with this `verify` table.
fn forebay_signs(verify: &str, body: &str, id: &str, timestamp: u64) -> HeaderMap {
    #[derive(serde::Deserialize)]
    struct Source {
        verify: VerifyConfig,
    }
    let config: Source = toml::from_str(&format!("verify = {{ {verify} }}")).unwrap();
    Signer::new(&config.verify)
        .unwrap()
        .sign(&Message {
            body: body.as_bytes(),
            timestamp,
            id,
            headers: &HeaderMap::new(),
        })
        .unwrap()
}

fn header(headers: &HeaderMap, name: &str) -> String {
    headers[name].to_str().unwrap().to_owned()
}

/// The SDK accepted what forebay signed, and refused it with the body changed.
fn assert_sdk_accepts(answer: &Value, what: &str) {
    assert_eq!(answer["accepts"], true, "{what}: {answer}");
    assert_eq!(answer["accepts_tampered"], false, "{what}: {answer}");
}

/// A real server accepts what the SDK signed (`answer["sdk"]`) and refuses it once
/// the body is changed.
async fn assert_forebay_accepts(server: &TestServer, source: &str, answer: &Value, body: &str) {
    let headers: Vec<(&str, &str)> = answer["sdk"]
        .as_object()
        .unwrap_or_else(|| panic!("{source}: the SDK signed nothing: {answer}"))
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    let r = server.post(source, &headers, body.to_owned()).await;
    let status = r.status();
    assert_eq!(status, 200, "{source}: {}", r.text().await.unwrap());
    let r = server.post(source, &headers, format!("{body} ")).await;
    assert_eq!(r.status(), 401, "{source}: a changed body was accepted");
}

/// A server with one source, `name`, verified as `verify` (the inside of its table).
async fn server_for(name: &str, verify: &str) -> TestServer {
    TestServer::start(&format!("[sources.{name}]\nverify = {{ {verify} }}\n")).await
}

const BODY: &str = r#"{"id":"evt_sdk_1","type":"test","data":{"note":"caf\u00e9"}}"#;

#[tokio::test]
async fn stripe_sdk() {
    let secret = "whsec_sdk_check";
    let verify = format!("kind = \"stripe\", secret = {secret:?}");
    let server = server_for("stripe", &verify).await;
    let t = now();
    let ours = forebay_signs(&verify, BODY, "x", t);
    let answer = node(json!({
        "op": "stripe", "secret": secret, "payload": BODY, "timestamp": t,
        "header": header(&ours, "stripe-signature"),
    }))
    .await;
    assert_sdk_accepts(&answer, "stripe constructEvent");
    assert_forebay_accepts(&server, "stripe", &answer, BODY).await;
}

#[tokio::test]
async fn twilio_sdk() {
    let token = "12345";
    let public_url = "https://hooks.example.com/in/twilio";
    let verify = format!("kind = \"twilio\", secret = {token:?}, public_url = {public_url:?}");
    let server = server_for("twilio", &verify).await;
    let params = json!({"CallSid": "CA1234567890ABCDE", "Digits": "1234", "From": "+14158675309", "To": "+18005551212"});
    let form: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(
            params
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k, v.as_str().unwrap())),
        )
        .finish();
    let ours = forebay_signs(&verify, &form, "x", now());
    let answer = node(json!({
        "op": "twilio", "secret": token, "url": public_url, "params": params,
        "signature": header(&ours, "x-twilio-signature"),
    }))
    .await;
    assert_sdk_accepts(&answer, "twilio validateRequest");

    // The SDK signs the URL Twilio was given, query string included; forebay takes the
    // query from the request and the rest from `public_url`.
    let answer = node(json!({
        "op": "twilio", "secret": token, "url": format!("{public_url}?tenant=7"), "params": params,
        "signature": "",
    }))
    .await;
    let sig = answer["sdk"]["X-Twilio-Signature"].as_str().unwrap();
    let post = |body: String| {
        reqwest::Client::new()
            .post(server.ingest_url("/in/twilio?tenant=7"))
            .header("X-Twilio-Signature", sig)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = post(form.clone()).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = post(form.replace("1234", "12345")).await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn slack_sdk() {
    let secret = "8f742231b10e8888abcd99yyyzzz85a5";
    let verify = format!("kind = \"slack\", secret = {secret:?}");
    let server = server_for("slack", &verify).await;
    // `SignatureVerifier.is_valid` checks the timestamp against its own clock.
    let t = now();
    let ours = forebay_signs(&verify, BODY, "x", t);
    let answer = python(
        "slack.py",
        json!({
            "secret": secret, "payload": BODY, "timestamp": t,
            "signature": header(&ours, "x-slack-signature"),
        }),
    )
    .await;
    assert_sdk_accepts(&answer, "slack_sdk SignatureVerifier.is_valid");
    assert_forebay_accepts(&server, "slack", &answer, BODY).await;
}

/// Standard Webhooks and Svix share the API; Svix sends `svix-*` headers.
async fn standard_webhooks_family(op: &str, kind: &str) {
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let verify = format!("kind = {kind:?}, secret = {secret:?}");
    let server = server_for("sw", &verify).await;
    let t = now();
    let ours = forebay_signs(&verify, BODY, "msg_sdk_1", t);
    let headers: serde_json::Map<String, Value> = ours
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap())))
        .collect();
    let answer = node(json!({
        "op": op, "secret": secret, "id": "msg_sdk_2", "timestamp": t, "payload": BODY,
        "headers": headers,
    }))
    .await;
    assert_sdk_accepts(&answer, &format!("{op} Webhook.verify"));
    assert_forebay_accepts(&server, "sw", &answer, BODY).await;
}

#[tokio::test]
async fn standard_webhooks_sdk() {
    standard_webhooks_family("standard-webhooks", "standard-webhooks").await;
}

#[tokio::test]
async fn svix_sdk() {
    standard_webhooks_family("svix", "svix").await;
}

#[tokio::test]
async fn github_sdk() {
    let secret = "It's a Secret to Everybody";
    let verify = format!("kind = \"github\", secret = {secret:?}");
    let server = server_for("gh", &verify).await;
    let ours = forebay_signs(&verify, BODY, "d1", 0);
    let answer = node(json!({
        "op": "github", "secret": secret, "payload": BODY,
        "signature": header(&ours, "x-hub-signature-256"),
    }))
    .await;
    assert_sdk_accepts(&answer, "@octokit/webhooks-methods verify");
    assert_forebay_accepts(&server, "gh", &answer, BODY).await;
}

#[tokio::test]
async fn discord_sdk() {
    // A key pair made here: Discord's private key never leaves Discord.
    let seed = [0x24; 32];
    let public = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&seed)
            .verifying_key()
            .as_bytes(),
    );
    let verify = format!(
        "kind = \"discord\", public_key = {public:?}, signing_key = {:?}",
        hex::encode(seed)
    );
    let t = now();
    let ours = forebay_signs(&verify, BODY, "x", t);
    let answer = node(json!({
        "op": "discord", "public_key": public, "payload": BODY, "timestamp": t.to_string(),
        "signature": header(&ours, "x-signature-ed25519"),
    }))
    .await;
    assert_sdk_accepts(&answer, "discord-interactions verifyKey");
}

#[tokio::test]
async fn sendgrid_sdk() {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let key = p256::ecdsa::SigningKey::from_slice(&[0x24; 32]).unwrap();
    let public = b64(key.verifying_key().to_public_key_der().unwrap().as_bytes());
    let private = b64(key.to_pkcs8_der().unwrap().as_bytes());
    let verify = format!("kind = \"sendgrid\", public_key = {public:?}, signing_key = {private:?}");
    let t = now();
    let body = r#"[{"email":"a@example.com","event":"delivered","sg_event_id":"e1"}]"#;
    let ours = forebay_signs(&verify, body, "x", t);
    let answer = node(json!({
        "op": "sendgrid", "public_key": public, "payload": body, "timestamp": t.to_string(),
        "signature": header(&ours, "x-twilio-email-event-webhook-signature"),
    }))
    .await;
    assert_sdk_accepts(&answer, "@sendgrid/eventwebhook verifySignature");
}

/// The generic `jwt` kind against jose, with keys made for the tests: RS256, ES256 and
/// EdDSA tokens jose signs are accepted (and refused over another body); tokens
/// forebay makes, jose verifies.
#[tokio::test]
async fn jose_jwt() {
    let testdata = root().join("src/ingest/verify/testdata");
    let read = |name: &str| std::fs::read_to_string(testdata.join(name)).unwrap();
    for (alg, key) in [("RS256", "rsa"), ("ES256", "p256"), ("EdDSA", "ed25519")] {
        let public = testdata.join(format!("{key}-public.pem"));
        let private = testdata.join(format!("{key}-private.pem"));
        let verify = format!(
            "kind = \"jwt\", algorithm = \"{alg}\", public_key = \"file:{}\", signing_key = \"file:{}\", issuer = \"sender\", body_hash = {{ claim = \"sha256\" }}",
            public.display(),
            private.display()
        );
        let server = server_for("orders", &verify).await;
        let t = now();
        let ours = forebay_signs(&verify, BODY, "msg_1", t);
        let token = header(&ours, "authorization");
        let answer = node(json!({
            "op": "jwt", "alg": alg, "issuer": "sender", "payload": BODY, "timestamp": t,
            "private_key": read(&format!("{key}-private.pem")),
            "public_key": read(&format!("{key}-public.pem")),
            "token": token.trim_start_matches("Bearer "),
        }))
        .await;
        assert_sdk_accepts(&answer, &format!("jose jwtVerify {alg}"));
        assert_forebay_accepts(&server, "orders", &answer, BODY).await;
    }
}

#[tokio::test]
async fn sanity_sdk() {
    let secret = "sanity-sdk-check";
    let verify = format!("kind = \"sanity\", secret = {secret:?}");
    let server = server_for("sanity", &verify).await;
    let t = now();
    let ours = forebay_signs(&verify, BODY, "x", t);
    let answer = node(json!({
        "op": "sanity", "secret": secret, "payload": BODY, "timestamp_ms": t * 1000,
        "signature": header(&ours, "sanity-webhook-signature"),
    }))
    .await;
    assert_sdk_accepts(&answer, "@sanity/webhook isValidSignature");
    assert_forebay_accepts(&server, "sanity", &answer, BODY).await;
}

#[tokio::test]
async fn messagebird_sdk() {
    let secret = "messagebird-sdk-check";
    let url = "https://hooks.example.com/in/messagebird";
    let verify = format!("kind = \"messagebird\", secret = {secret:?}, public_url = {url:?}");
    let ours = forebay_signs(&verify, BODY, "msg_1", now());
    let answer = node(json!({
        "op": "messagebird", "secret": secret, "url": url, "payload": BODY,
        "token": header(&ours, "messagebird-signature-jwt"),
    }))
    .await;
    assert_sdk_accepts(&answer, "messagebird verify");
}

#[tokio::test]
async fn workos_sdk() {
    let secret = "workos-sdk-check";
    let verify = format!("kind = \"workos\", secret = {secret:?}");
    let server = server_for("workos", &verify).await;
    let t = now();
    let ours = forebay_signs(&verify, BODY, "x", t);
    let answer = node(json!({
        "op": "workos", "secret": secret, "payload": BODY, "timestamp_ms": t * 1000,
        "signature": header(&ours, "workos-signature"),
    }))
    .await;
    assert_sdk_accepts(&answer, "@workos-inc/node verifyHeader");
    assert_forebay_accepts(&server, "workos", &answer, BODY).await;
}

#[tokio::test]
async fn telnyx_sdk() {
    // RFC 8032 section 7.1 TEST 1's key pair, as Telnyx writes keys (base64).
    let verify = "kind = \"telnyx\", public_key = \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\", signing_key = \"nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A=\"";
    let ours = forebay_signs(verify, BODY, "x", now());
    let answer = node(json!({
        "op": "telnyx", "public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
        "payload": BODY,
        "headers": {
            "telnyx-signature-ed25519": header(&ours, "telnyx-signature-ed25519"),
            "telnyx-timestamp": header(&ours, "telnyx-timestamp"),
        },
    }))
    .await;
    assert_sdk_accepts(&answer, "telnyx TelnyxWebhook.verify");
}
