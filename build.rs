//! Build facts for `forebay version`: the commit the binary was built from and the
//! compiler that built it.
//!
//! The commit comes from `FOREBAY_BUILD_COMMIT` when set (a build from a source tarball
//! or inside a container, where there is no `.git`), else from `git`, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=FOREBAY_BUILD_COMMIT");
    println!("cargo:rerun-if-changed=build.rs");
    // A new commit or checkout moves HEAD or the branch it names. Only files that exist
    // are watched: Cargo runs the script again on every build for one that does not.
    // `git rev-parse --git-path` finds them in a worktree too, where `.git` is a file.
    let mut watched = vec!["HEAD".to_owned()];
    if let Some(branch) = output("git", &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = output("git", &["rev-parse", "--git-path", &name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("FOREBAY_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=FOREBAY_COMMIT={commit}");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let compiler = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=FOREBAY_RUSTC={compiler}");
    for key in ["TARGET", "PROFILE"] {
        let value = std::env::var(key).unwrap_or_default();
        println!("cargo:rustc-env=FOREBAY_{key}={value}");
    }
}

/// The first line a command prints, if it ran and succeeded.
fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.lines().next()?.trim().to_owned()).filter(|l| !l.is_empty())
}
