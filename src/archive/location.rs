//! Where archive objects go: a directory or an S3-compatible bucket (the `object_store`
//! crate), under the configured prefix. Object names are relative to it:
//! `events/{first event's UUID}-{last event's UUID}-{when it was made}.ndjson.zst`, so
//! that names sort in receive order, and an event archived twice (replayed while its
//! first object was written) never makes two objects of one name.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio_stream::StreamExt;

use crate::config::ArchiveLocation;

/// The folder objects are written to, under the location's prefix.
const EVENTS: &str = "events";

/// An object's name and size, as the location lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub bytes: u64,
}

/// An open location.
#[derive(Clone)]
pub struct Location {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// As configured, for messages.
    pub url: String,
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Location").field("url", &self.url).finish()
    }
}

/// A location that cannot be used, with what to fix.
#[derive(Debug, thiserror::Error)]
#[error("archive {url}: {message}")]
pub struct LocationError {
    pub url: String,
    pub message: String,
}

impl Location {
    /// Opens `location` (`url` is how it was written). Nothing is contacted yet.
    pub fn open(url: &str, location: &ArchiveLocation) -> Result<Self, LocationError> {
        let fail = |message: String| LocationError {
            url: url.to_owned(),
            message,
        };
        let (store, prefix): (Arc<dyn ObjectStore>, String) = match location {
            ArchiveLocation::Directory(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    fail(format!(
                        "cannot create the directory {}: {e}; create it, or give forebay write access to it",
                        dir.display()
                    ))
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| fail(e.to_string()))?;
                (Arc::new(store), String::new())
            }
            ArchiveLocation::S3 {
                bucket,
                prefix,
                endpoint,
                region,
                credentials,
            } => {
                // The HTTP client needs a crypto provider even for plain HTTP.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut builder =
                    object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
                if let Some(region) = region {
                    builder = builder.with_region(region);
                }
                if let Some(endpoint) = endpoint {
                    // S3-compatible servers are addressed by path, and may be plain HTTP.
                    builder = builder
                        .with_endpoint(endpoint)
                        .with_virtual_hosted_style_request(false)
                        .with_allow_http(endpoint.starts_with("http://"));
                }
                if let Some((id, secret)) = credentials {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(String::from_utf8_lossy(secret.expose()));
                }
                let store = builder.build().map_err(|e| fail(e.to_string()))?;
                (Arc::new(store), prefix.clone())
            }
        };
        Ok(Self {
            store,
            prefix,
            url: url.to_owned(),
        })
    }

    /// The name of the object holding the events from `first_id` to `last_id`, made
    /// at `at_ms`.
    pub fn object_name(first_id: &str, last_id: &str, at_ms: i64) -> String {
        let uuid = |id: &str| id.split_once('_').map_or(id, |(_, u)| u).to_owned();
        format!(
            "{EVENTS}/{}-{}-{at_ms:012x}.ndjson.zst",
            uuid(first_id),
            uuid(last_id)
        )
    }

    fn path(&self, name: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(name)
        } else {
            Path::from(format!("{}/{name}", self.prefix))
        }
    }

    /// Where object `name` is, in words (for messages and the API).
    pub fn describe(&self, name: &str) -> String {
        format!("{}/{name}", self.url.trim_end_matches('/'))
    }

    pub async fn put(&self, name: &str, object: Vec<u8>) -> object_store::Result<()> {
        self.store
            .put(&self.path(name), PutPayload::from(object))
            .await
            .map(|_| ())
    }

    pub async fn get(&self, name: &str) -> object_store::Result<Bytes> {
        self.store.get(&self.path(name)).await?.bytes().await
    }

    /// Deletes `name`; one that is not there is not an error.
    pub async fn delete(&self, name: &str) -> object_store::Result<()> {
        match self.store.delete(&self.path(name)).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            other => other,
        }
    }

    /// Every object of events, in name order (receive order).
    pub async fn list(&self) -> object_store::Result<Vec<Listed>> {
        let folder = self.path(EVENTS);
        let mut stream = self.store.list(Some(&folder));
        let strip = format!("{}/", self.prefix);
        let mut listed = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta?;
            let full = meta.location.as_ref();
            let name = if self.prefix.is_empty() {
                full.to_owned()
            } else {
                full.strip_prefix(&strip).unwrap_or(full).to_owned()
            };
            if name.ends_with(".ndjson.zst") {
                listed.push(Listed {
                    name,
                    bytes: meta.size,
                });
            }
        }
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listed)
    }
}
