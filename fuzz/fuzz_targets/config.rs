//! Arbitrary text as a forebay configuration, through what `forebay serve --config`
//! does with it: `Config::parse` (TOML, `FOREBAY_*` overrides, secrets, every check),
//! then, for a configuration that loads, building its destinations as the server does
//! at start. Errors are expected; a panic is a bug.
//!
//! Input: the TOML text, optionally followed by a NUL byte and `NAME=VALUE` lines that
//! are passed as the environment (`FOREBAY_SERVER__MAX_HEADERS=7`, ...).

#![no_main]

use std::path::Path;

use libfuzzer_sys::{Corpus, fuzz_target};

fuzz_target!(|data: &[u8]| -> Corpus {
    let Ok(input) = std::str::from_utf8(data) else {
        return Corpus::Reject;
    };
    let (text, env) = input.split_once('\0').unwrap_or((input, ""));
    if !secrets_are_harmless(text, env) {
        return Corpus::Reject;
    }
    let vars: Vec<(&str, &str)> = env
        .lines()
        .filter_map(|line| line.split_once('='))
        .collect();
    let loaded = forebay::Config::parse(text, vars);
    if debug() {
        match &loaded {
            Ok(c) => eprintln!("ok: {} sources, {} routes", c.sources.len(), c.routes.len()),
            Err(e) => eprintln!("errors: {e}"),
        }
    }
    match loaded {
        Ok(config) => {
            // The messages are shown to people; they must render.
            let _ = config.warnings.join("\n");
            let _ = format!("{config:?}");
            let _ = forebay::deliver::destinations(&config);
        }
        Err(errors) => {
            assert!(!errors.to_string().is_empty(), "an error without a message");
        }
    }
    Corpus::Keep
});

/// `FOREBAY_FUZZ_DEBUG=1`: say what each input loaded to (to check seeds).
fn debug() -> bool {
    static DEBUG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DEBUG.get_or_init(|| std::env::var_os("FOREBAY_FUZZ_DEBUG").is_some())
}

/// Secrets may be `file:/path`, and loading reads the whole file: keep the fuzzer away
/// from devices and kernel files (`/dev/zero`, `/proc/self/pagemap`) that never end.
/// That is the operator's own file system, not something a sender controls.
fn secrets_are_harmless(text: &str, env: &str) -> bool {
    // Override values are TOML too; rather than parse them, refuse any that could name
    // a file (`\u` escapes included).
    if env.contains("file") || env.contains('\\') {
        return false;
    }
    match text.parse::<toml::Table>() {
        Ok(table) => table.values().all(harmless),
        // Not TOML: loading stops before any secret is read.
        Err(_) => true,
    }
}

fn harmless(value: &toml::Value) -> bool {
    match value {
        toml::Value::String(s) => match s.strip_prefix("file:") {
            Some(path) => harmless_path(Path::new(path)),
            None => true,
        },
        toml::Value::Array(items) => items.iter().all(harmless),
        toml::Value::Table(table) => table.values().all(harmless),
        _ => true,
    }
}

fn harmless_path(path: &Path) -> bool {
    let Ok(real) = path.canonicalize() else {
        // Missing or unreadable: loading reports it.
        return true;
    };
    if ["/dev", "/proc", "/sys"]
        .iter()
        .any(|p| real.starts_with(p))
    {
        return false;
    }
    match std::fs::metadata(&real) {
        Ok(m) => m.is_dir() || (m.is_file() && m.len() < 1 << 20),
        Err(_) => true,
    }
}
