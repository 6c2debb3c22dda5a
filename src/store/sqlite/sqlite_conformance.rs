//! The conformance suite ([`crate::store::conformance`]) against the SQLite store: each
//! check on a new database file in a temporary directory of its own.

use std::sync::Arc;

use async_trait::async_trait;

use crate::store::Store;
use crate::store::conformance::{Fresh, conformance_tests};

/// Opens a store in a new temporary directory, which lives until the test is over.
struct TempSqlite;

#[async_trait]
impl Fresh for TempSqlite {
    type Guard = tempfile::TempDir;

    async fn fresh(&self) -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = super::tests::open(&dir);
        (store, dir)
    }
}

conformance_tests!(TempSqlite);

/// The whole suite again on a store that seals what it stores: every read must open
/// what every write sealed.
mod sealed_conformance {
    use std::sync::Arc;

    use async_trait::async_trait;

    use crate::store::Store;
    use crate::store::conformance::{Fresh, conformance_tests, sealing};
    use crate::store::sqlite::{SqliteOptions, SqliteStore};

    struct SealedSqlite;

    #[async_trait]
    impl Fresh for SealedSqlite {
        type Guard = tempfile::TempDir;

        async fn fresh(&self) -> (Arc<dyn Store>, tempfile::TempDir) {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let options = SqliteOptions {
                keys: sealing::suite_keys(),
                ..SqliteOptions::default()
            };
            let store = SqliteStore::open(&dir.path().join("t.db"), options).expect("open");
            (store, dir)
        }
    }

    conformance_tests!(SealedSqlite);
}

/// One database file, opened again with other keys.
struct SqliteReopen(std::path::PathBuf);

#[async_trait]
impl crate::store::conformance::sealing::Reopen for SqliteReopen {
    async fn open(
        &self,
        keys: crate::store::seal::Keys,
    ) -> Result<Arc<dyn Store>, crate::store::StoreError> {
        let options = super::SqliteOptions {
            keys,
            ..super::SqliteOptions::default()
        };
        Ok(super::SqliteStore::open(&self.0, options)?)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_and_a_rekey_moves_every_table() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    crate::store::conformance::sealing::keys_rotate_and_a_rekey_moves_every_table(&SqliteReopen(
        dir.path().join("t.db"),
    ))
    .await;
}
