//! The real `forebay` binary as a child process, for tests where a process must die.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Process {
    pub child: Child,
    pub ingest: SocketAddr,
    pub admin: SocketAddr,
}

/// Starts `forebay serve -c CONFIG` and waits for its "listening" line on stdout.
pub fn spawn_serve(config: &Path) -> Process {
    spawn_serve_with(config, &[])
}

/// [`spawn_serve`] with more arguments (`--role ingest`, say).
pub fn spawn_serve_with(config: &Path, args: &[&str]) -> Process {
    spawn(config, args, &[], Stdio::inherit())
}

/// [`spawn_serve`] with more environment variables.
pub fn spawn_serve_with_env(config: &Path, envs: &[(&str, &str)]) -> Process {
    spawn(config, &[], envs, Stdio::inherit())
}

/// [`spawn_serve`] with its log (stderr) written to the file `log`.
pub fn spawn_serve_logging_to(config: &Path, log: &Path) -> Process {
    let file = std::fs::File::create(log).expect("create the log file");
    spawn(config, &[], &[], Stdio::from(file))
}

fn spawn(config: &Path, args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_forebay"))
        .args(["serve", "--config"])
        .arg(config)
        .args(args)
        .env("FOREBAY_LOG", "warn")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn forebay");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = |key: &str| -> SocketAddr {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|a| a.strip_prefix("http://"))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .parse()
            .expect("address")
    };
    Process {
        ingest: addr("ingest="),
        admin: addr("admin="),
        child,
    }
}

/// Writes a config for a binary with both listeners on port 0 and the database in `dir`.
pub fn write_config(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("forebay.toml");
    let text = format!(
        "[server]\ningest_listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\n\
         [storage]\nurl = \"sqlite://{}\"\n\n{extra}",
        dir.join("forebay.db").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

impl Process {
    /// GET `path` on the admin listener, as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        crate::support::client()
            .get(format!("http://{}{path}", self.admin))
            .send()
            .await
            .expect("admin request")
            .json()
            .await
            .expect("admin JSON")
    }

    /// Posts `{"n":0}` … `{"n":count-1}` to `/in/{source}`, one after the other, each
    /// answered 200; returns their event ids.
    pub async fn post_numbered(
        &self,
        source: &str,
        count: usize,
    ) -> std::collections::BTreeSet<String> {
        let client = crate::support::client();
        let mut ids = std::collections::BTreeSet::new();
        for n in 0..count {
            let r = client
                .post(format!("http://{}/in/{source}", self.ingest))
                .body(format!("{{\"n\":{n}}}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let answer: serde_json::Value = r.json().await.unwrap();
            ids.insert(answer["id"].as_str().unwrap().to_owned());
        }
        ids
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with our own child's pid has no memory effects.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with only `PATH` and `envs`: a developer's own `FOREBAY_*` variables
/// (or `FOREBAY_CONFIG`) must not leak in and change what is checked.
pub fn run_forebay(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forebay"));
    cmd.args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("run forebay")
}
