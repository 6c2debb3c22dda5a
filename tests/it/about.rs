//! What the binary tells about itself: `version`, `completions` that the shells really
//! load, and man pages that groff formats without a warning.

use std::process::{Command, Output, Stdio};

use crate::support::binary::run_forebay;

fn succeeded(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn version_names_the_build() {
    let out = succeeded(&run_forebay(&["version"], &[]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("forebay {}", env!("CARGO_PKG_VERSION")));
    for key in [
        "commit: ",
        "compiler: rustc ",
        "target: ",
        "profile: ",
        "features: ",
    ] {
        let line = lines.iter().find(|l| l.starts_with(key));
        let value = line.unwrap_or_else(|| panic!("no {key:?} line in {out}"))[key.len()..].trim();
        assert!(!value.is_empty(), "{key}{value}");
        // Built from a checkout, the commit is known (from a source archive it may not be).
        let checkout = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".git");
        if key != "commit: " || checkout.exists() {
            assert_ne!(value, "unknown", "{key}");
        }
    }
    assert!(out.contains("SQLite 3."), "{out}");
    // The short form clap answers keeps working.
    let short = succeeded(&run_forebay(&["--version"], &[]));
    assert_eq!(short.trim(), lines[0]);
}

#[test]
fn bash_loads_the_completions_and_completes_subcommands() {
    let script = succeeded(&run_forebay(&["completions", "bash"], &[]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forebay.bash");
    std::fs::write(&path, script).unwrap();
    // Load the script, then ask it for the completions of `forebay se`.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && COMP_WORDS=(forebay se) COMP_CWORD=1 && _forebay forebay se forebay \
             && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path.display()
        ))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let words = succeeded(&out);
    let words: Vec<&str> = words.lines().collect();
    assert!(
        words.contains(&"serve") && words.contains(&"send"),
        "{words:?}"
    );
}

#[test]
fn completions_for_each_shell_and_a_clear_error_for_an_unknown_one() {
    let zsh = succeeded(&run_forebay(&["completions", "zsh"], &[]));
    assert!(zsh.starts_with("#compdef forebay"), "{zsh}");
    let fish = succeeded(&run_forebay(&["completions", "fish"], &[]));
    assert!(fish.contains("complete -c forebay"), "{fish}");
    let wrong = run_forebay(&["completions", "tcsh"], &[]);
    assert_eq!(wrong.status.code(), Some(2));
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        said.contains("invalid value 'tcsh'") && said.contains("bash"),
        "{said}"
    );
}

/// groff's warnings about a page, formatting it as `man` would.
fn groff_warnings(page: &[u8]) -> String {
    let mut groff = Command::new("groff")
        // -k: through preconv, as man does, so UTF-8 help text (…) is read as such.
        .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("groff (Debian's groff-base, which man needs)");
    use std::io::Write;
    groff.stdin.take().unwrap().write_all(page).unwrap();
    let out = groff.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn man_prints_the_page_and_writes_one_per_command() {
    let page = run_forebay(&["man"], &[]);
    let text = succeeded(&page);
    assert!(text.contains(".TH forebay 1"), "{text}");
    for command in ["serve", "check", "replay", "completions"] {
        assert!(text.contains(command), "no {command} in forebay(1)");
    }
    assert_eq!(groff_warnings(&page.stdout), "");

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    let said = succeeded(&run_forebay(&["man", "--dir", out.to_str().unwrap()], &[]));
    assert!(said.contains("man pages written to"), "{said}");
    for name in ["forebay.1", "forebay-serve.1", "forebay-dlq-retry.1"] {
        assert!(out.join(name).is_file(), "no {name}");
    }
    for entry in std::fs::read_dir(&out).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let page = std::fs::read(out.join(&name)).unwrap();
        assert_eq!(groff_warnings(&page), "", "{name}");
    }
}
