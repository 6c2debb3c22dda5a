//! Configuration as users meet it: `forebay check`, `forebay init`, overrides, secrets.

use forebay::Config;

use crate::support::binary::run_forebay as forebay;

/// Runs `forebay check` on `toml`, expects exit code 1, and returns what it printed.
fn check_fails(toml: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forebay.toml");
    std::fs::write(&path, toml).unwrap();
    let out = forebay(&["check", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    text(&out.stderr)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_every_error_with_its_key_path() {
    let err = check_fails(
        r#"
        colour = "blue"
        [server]
        admin_listen = "0.0.0.0:8081"
        [sources.stripe]
        verify = { kind = "stripe" }
        [sources.shop]
        max_bdy = "1MiB"
        max_body = -1
        [sources.slow]
        dedup_window = "a while"
        [sources.odd]
        verify = { kind = "carrier-pigeon" }
        [destinations.d]
        kind = "http"
        url = "ftp://example"
        [[routes]]
        source = "stripe"
        destination = "nowhere"
        "#,
    );
    for expected in [
        "colour: unknown key",
        "server.admin_token: admin_listen 0.0.0.0:8081 is not a loopback address",
        "sources.stripe.verify",
        "sources.shop.max_bdy: unknown key; expected one of `verify`,",
        // A second bad key in the same table is reported too.
        "sources.shop.max_body: invalid size -1; write it like \"512KiB\" or \"5MiB\"",
        "sources.slow.dedup_window: invalid duration",
        "sources.odd.verify",
        "carrier-pigeon",
        "destinations.d.url",
        "routes[0].destination: no destination named \"nowhere\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("configuration has 9 errors"), "{err}");
}

#[test]
fn check_reports_every_bad_key_of_the_server_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.toml");
    std::fs::write(
        &path,
        "[server]\nadmin_lissen = \"127.0.0.1:9000\"\nmax_headers = \"many\"\nread_timeout = 10\n",
    )
    .unwrap();
    let out = forebay(&["check", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for expected in [
        "configuration has 3 errors",
        "server.admin_lissen: unknown key; expected one of `ingest_listen`, `admin_listen`,",
        "server.max_headers: invalid type: string \"many\", expected usize",
        "server.read_timeout: invalid type: integer `10`, expected a string",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn check_refuses_values_that_would_fail_at_run_time() {
    let err = check_fails(
        r#"
        [server]
        ingest_listen = "0.0.0.0:8080"
        admin_listen = "127.0.0.1:8080"
        read_timeout = "0s"
        shutdown_timeout = "0s"
        [storage]
        commit_timeout = "0s"
        [sources.big]
        max_body = "2GiB"
        dedup_window = "0s"
        response = { content_type = "text/plain\nX-Injected: yes" }
        "#,
    );
    for expected in [
        "configuration has 6 errors",
        "server.admin_listen: 127.0.0.1:8080 takes the same port as ingest_listen 0.0.0.0:8080",
        "server.read_timeout: must be more than 0s",
        "server.shutdown_timeout: must be more than 0s",
        "storage.commit_timeout: must be more than 0s",
        "sources.big.response.content_type: \"text/plain\\nX-Injected: yes\" cannot be sent as a Content-Type header",
        "sources.big.max_body: 2147483648 bytes is more than SQLite can store",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    // dedup_window = "0s" means "no dedup" and is not among them.
    assert!(!err.contains("dedup_window"), "{err}");
}

#[test]
fn rate_limit_settings_are_checked_with_their_key_paths() {
    let err = check_fails(
        r#"
        [sources.a]
        burst = 10
        [sources.b]
        rate_limit = "100/s"
        burst = 0
        [sources.c]
        rate_limit = "fast"
        [sources.d]
        rate_limit_per_address = "0/s"
        "#,
    );
    for expected in [
        "sources.a.burst: burst is the size of rate_limit's bucket; set rate_limit too",
        "sources.b.burst: must be at least 1",
        "sources.c.rate_limit:",
        "sources.d.rate_limit_per_address:",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn override_mistakes_are_errors_that_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        r#"
        [sources.stripe]
        verify = { kind = "github", secret = "s" }
        [destinations.d]
        kind = "http"
        url = "http://localhost:3000/"
        [[routes]]
        source = "stripe"
        destination = "d"
        "#,
    )
    .unwrap();
    let p = path.to_str().unwrap();
    let out = forebay(
        &["check", "-c", p],
        &[
            ("FOREBAY_SOURCES__STRIPPE__MAX_BODY", "1MiB"),
            ("FOREBAY_ROUTES__0__NAME", "renamed"),
            ("FOREBAY_DESTINATIONS__D__URL__HOST", "example.com"),
            ("FOREBAY_SERVER__READ_TIMEOUT", "0s"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for expected in [
        "configuration has 4 errors",
        "FOREBAY_SOURCES__STRIPPE__MAX_BODY names source `strippe`, which the file does not define; define [sources.strippe] in the file",
        "FOREBAY_ROUTES__0__NAME: routes cannot be overridden from the environment",
        "FOREBAY_DESTINATIONS__D__URL__HOST reaches below destinations.d.url, which is text, not a table",
        "server.read_timeout: must be more than 0s: 0s would time out every request before its headers arrive; use e.g. \"10s\" (set by FOREBAY_SERVER__READ_TIMEOUT)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }

    // Digits given for a key that takes text are that text, not a number.
    let out = forebay(
        &["check", "-c", p],
        &[
            ("FOREBAY_SERVER__ADMIN_LISTEN", "0.0.0.0:9999"),
            ("FOREBAY_SERVER__ADMIN_TOKEN", "12345"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn init_writes_a_starter_that_check_accepts_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forebay.toml");
    let p = path.to_str().unwrap();
    let out = forebay(&["init", p], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = forebay(&["check", "-c", p], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ok (1 sources"),
        "{}",
        text(&out.stdout)
    );
    assert!(text(&out.stdout).contains("warning: source \"demo\" does not verify"));

    let out = forebay(&["init", p], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--force"));
    assert!(forebay(&["init", p, "--force"], &[]).status.success());
}

#[test]
fn environment_overrides_and_env_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.toml");
    std::fs::write(
        &path,
        "[sources.gh]\nverify = { kind = \"github\", secret = \"env:TEST_GH_SECRET\" }\n",
    )
    .unwrap();
    let p = path.to_str().unwrap();

    let out = forebay(&["check", "-c", p], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("TEST_GH_SECRET is not set"),
        "{}",
        text(&out.stderr)
    );

    let ok = forebay(&["check", "-c", p], &[("TEST_GH_SECRET", "s")]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));

    // An override that makes the admin listener public requires a token…
    let out = forebay(
        &["check", "-c", p],
        &[
            ("TEST_GH_SECRET", "s"),
            ("FOREBAY_SERVER__ADMIN_LISTEN", "0.0.0.0:9999"),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("server.admin_token"));
    // …which an override can give, from another variable.
    let out = forebay(
        &["check", "-c", p],
        &[
            ("TEST_GH_SECRET", "s"),
            ("FOREBAY_SERVER__ADMIN_LISTEN", "0.0.0.0:9999"),
            ("FOREBAY_SERVER__ADMIN_TOKEN", "env:TEST_ADMIN_TOKEN"),
            ("TEST_ADMIN_TOKEN", "t"),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn parse_applies_overrides_and_file_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("token");
    std::fs::write(&secret, "from-a-file\n").unwrap();
    let text = format!(
        "[server]\nadmin_token = \"file:{}\"\n[sources.a]\nmax_body = \"1KiB\"\n",
        secret.display()
    );
    let config = Config::parse(&text, [("FOREBAY_SOURCES__A__MAX_BODY", "\"2KiB\"")]).unwrap();
    assert_eq!(config.sources["a"].max_body, 2048);
    assert_eq!(
        config.server.admin_token.as_ref().unwrap().expose(),
        b"from-a-file"
    );
}

#[test]
fn missing_file_says_how_to_make_one() {
    let out = forebay(&["check", "-c", "/nonexistent/forebay.toml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("forebay init"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_repository_demo_config_is_valid() {
    let config =
        Config::parse(forebay::config::STARTER, std::iter::empty::<(&str, &str)>()).unwrap();
    assert!(config.sources.contains_key("demo"));
}
