//! Configuration as users meet it: `forebay check`, `forebay init`, overrides, secrets.

use std::process::{Command, Output};

use forebay::Config;

fn forebay(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forebay"));
    cmd.args(args).env_remove("FOREBAY_CONFIG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run forebay")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_prints_every_error_with_its_key_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
        colour = "blue"
        [server]
        admin_listen = "0.0.0.0:8081"
        [sources.stripe]
        verify = { kind = "stripe" }
        [sources.shop]
        max_bdy = "1MiB"
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
    )
    .unwrap();
    let out = forebay(&["check", "-c", path.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for expected in [
        "colour: unknown key",
        "server.admin_token: admin_listen 0.0.0.0:8081 is not a loopback address",
        "sources.stripe.verify",
        "sources.shop.max_bdy",
        "sources.slow.dedup_window: invalid duration",
        "sources.odd.verify",
        "carrier-pigeon",
        "destinations.d.url",
        "routes[0].destination: no destination named \"nowhere\"",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
    assert!(err.contains("configuration has 8 errors"), "{err}");
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
