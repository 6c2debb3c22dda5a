//! An S3-compatible server of the test's own: s3s-fs (built by `scripts/s3/install`,
//! which `scripts/test` runs) serving a temporary directory on a free loopback port,
//! with one bucket; killed on drop.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "forebay-test";
pub const SECRET_KEY: &str = "forebay-test-secret";

pub struct S3 {
    child: Child,
    pub endpoint: String,
    pub bucket: String,
    /// The bucket's directory: what the server holds, to look at from the test.
    pub bucket_dir: PathBuf,
    _root: tempfile::TempDir,
}

impl S3 {
    pub fn start(bucket: &str) -> Self {
        let bin = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/tools/s3s-fs/bin/s3s-fs");
        assert!(
            bin.exists(),
            "{} is missing: run scripts/s3/install (scripts/test does)",
            bin.display()
        );
        let root = tempfile::tempdir().unwrap();
        let bucket_dir = root.path().join(bucket);
        std::fs::create_dir(&bucket_dir).unwrap();
        // A free port: taken, read and let go (nothing else on loopback races for it).
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let give_up = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < give_up, "s3s-fs did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            bucket: bucket.to_owned(),
            bucket_dir,
            _root: root,
        }
    }

    /// `[storage.archive]` for this server, objects under `prefix`.
    pub fn archive_config(&self, prefix: &str, after: &str) -> String {
        format!(
            "[storage.archive]\nafter = \"{after}\"\nto = \"s3://{}/{prefix}\"\nendpoint = \"{}\"\n\
             region = \"us-east-1\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n",
            self.bucket, self.endpoint
        )
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
