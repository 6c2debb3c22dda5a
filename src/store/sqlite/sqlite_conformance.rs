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
