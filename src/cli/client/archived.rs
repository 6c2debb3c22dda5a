//! Reading the cold archive straight from where it is (`file:///DIR` or
//! `s3://BUCKET/PREFIX`), no server needed: `forebay export --from URL` and
//! `forebay replay --from URL`. Objects are read one at a time in name order (receive
//! order), opened with the configuration's keys when sealed, and their lines passed on.
//!
//! The configuration (`--config`, else `forebay.toml` when there is one) gives the keys,
//! and, when its `[storage.archive] to` is the URL asked for, the S3 endpoint, region and
//! credentials; otherwise they come from the `AWS_*` environment variables.

use std::io::Write;
use std::path::Path;

use crate::archive::location::Location;
use crate::archive::object;
use crate::config::{ArchiveLocation, Config};
use crate::store::seal::Sealer;

use super::error::CliError;

/// True for what `--from` takes as an archive rather than a file.
pub fn is_archive_url(from: &str) -> bool {
    from.starts_with("s3://") || from.starts_with("file://")
}

/// An archive opened for reading.
pub struct Archived {
    location: Location,
    sealer: Sealer,
}

impl Archived {
    /// `config`: the file given with `--config`, which must exist; without one,
    /// `forebay.toml` here when there is one.
    pub fn open(url: &str, config: Option<&Path>) -> Result<Self, CliError> {
        let path = match config {
            Some(path) if !path.exists() => {
                return Err(CliError::Usage(format!(
                    "--config {}: no such file",
                    path.display()
                )));
            }
            Some(path) => Some(path),
            None => Some(Path::new("forebay.toml")).filter(|p| p.exists()),
        };
        let config = match path {
            Some(path) => Some(
                Config::load(path, std::env::vars())
                    .map_err(|errors| CliError::Usage(format!("{}: {errors}", path.display())))?,
            ),
            None => None,
        };
        let configured = config
            .as_ref()
            .and_then(|c| c.storage.archive.as_ref())
            .filter(|a| a.url.trim_end_matches('/') == url.trim_end_matches('/'));
        let location = match configured {
            Some(archive) => archive.location.clone(),
            None => from_url(url)?,
        };
        if let ArchiveLocation::Directory(dir) = &location
            && !dir.is_dir()
        {
            return Err(CliError::Usage(format!(
                "{url}: there is no directory {}; give the archive's `to` as configured",
                dir.display()
            )));
        }
        let location =
            Location::open(url, &location).map_err(|e| CliError::Usage(e.to_string()))?;
        let keys = config.map(|c| c.storage.encryption).unwrap_or_default();
        Ok(Self {
            location,
            sealer: Sealer::new(&keys),
        })
    }

    /// Writes every object's lines to `sink`, in order; returns how many objects and
    /// lines.
    pub async fn copy(
        &self,
        sink: &mut dyn Write,
        write_error: &dyn Fn(std::io::Error) -> CliError,
    ) -> Result<(usize, u64), CliError> {
        let listed = self
            .location
            .list()
            .await
            .map_err(|e| self.failed("list", &e))?;
        let mut lines = 0;
        for object in &listed {
            let ndjson = self.read(&object.name).await?;
            lines += ndjson.iter().filter(|&&b| b == b'\n').count() as u64;
            sink.write_all(&ndjson).map_err(write_error)?;
        }
        sink.flush().map_err(write_error)?;
        Ok((listed.len(), lines))
    }

    /// The lines of every object, one object at a time, through a pipe (for a reader
    /// such as `replay --from`), and the task writing them: an object that does not
    /// read ends the stream early, and the task's result says why.
    pub fn reader(
        self,
    ) -> (
        tokio::io::DuplexStream,
        tokio::task::JoinHandle<Result<(), CliError>>,
    ) {
        let (mut write, read) = tokio::io::duplex(1 << 20);
        let task = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let listed = self
                .location
                .list()
                .await
                .map_err(|e| self.failed("list", &e))?;
            for object in listed {
                let ndjson = self.read(&object.name).await?;
                if write.write_all(&ndjson).await.is_err() {
                    break; // the reader stopped
                }
            }
            Ok(())
        });
        (read, task)
    }

    async fn read(&self, name: &str) -> Result<Vec<u8>, CliError> {
        let bytes = self
            .location
            .get(name)
            .await
            .map_err(|e| self.failed("read", &e))?;
        object::decode(bytes.to_vec(), &self.sealer, name).map_err(|e| {
            CliError::Usage(format!(
                "{} does not read back: {e}{}",
                self.location.describe(name),
                if matches!(e, object::DecodeError::Sealed(_)) {
                    "; pass --config with the [storage.encryption] keys it was sealed with"
                } else {
                    ""
                }
            ))
        })
    }

    fn failed(&self, what: &str, e: &object_store::Error) -> CliError {
        CliError::Usage(format!(
            "cannot {what} the archive at {}: {e}",
            self.location.url
        ))
    }
}

/// A location from its URL alone (S3 settings from the `AWS_*` variables).
fn from_url(url: &str) -> Result<ArchiveLocation, CliError> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(ArchiveLocation::Directory(path.into()));
    }
    let rest = url.strip_prefix("s3://").unwrap_or(url);
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(CliError::Usage(format!(
            "{url:?} names no bucket; write s3://BUCKET/PREFIX or file:///DIR"
        )));
    }
    Ok(ArchiveLocation::S3 {
        bucket: bucket.to_owned(),
        prefix: prefix.trim_matches('/').to_owned(),
        endpoint: std::env::var("AWS_ENDPOINT_URL").ok(),
        region: None,
        credentials: None,
    })
}
