//! Fresh PostgreSQL schemas for tests: each store gets a schema of its own in the local
//! test database (`FOREBAY_TEST_POSTGRES_URL`, default
//! `postgres://root@127.0.0.1:5432/test`), dropped when its guard is dropped.

use std::sync::Arc;

use super::{PostgresOptions, PostgresStore};

/// The database tests use.
pub fn url() -> String {
    std::env::var("FOREBAY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// A schema name no other test uses.
pub fn schema_name() -> String {
    format!("forebay_t{}", crate::id::new(""))
}

/// Drops its schema (and everything in it) when dropped.
pub struct SchemaGuard(pub String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // Drop may run inside a runtime: connect from a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok((client, conn)) =
                    tokio_postgres::connect(&url(), tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A store on a fresh schema, with `options` (its `schema` is replaced).
pub async fn open_with(options: PostgresOptions) -> (Arc<PostgresStore>, SchemaGuard) {
    let schema = schema_name();
    let guard = SchemaGuard(schema.clone());
    let store = PostgresStore::open(
        &url(),
        PostgresOptions {
            schema: Some(schema),
            ..options
        },
    )
    .await
    .expect("the test database opens (is PostgreSQL running? scripts/test starts it)");
    (store, guard)
}
