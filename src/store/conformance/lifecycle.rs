//! A store's life: ready once open, and once closed, no more writes (ingest answers
//! 503) and not ready.

use std::sync::Arc;

use super::fixtures::{HOUR_MS, event};
use crate::store::{Store, StoreError};

pub async fn a_ready_store_refuses_writes_once_closed(store: Arc<dyn Store>) {
    store.ready().await.unwrap();
    store
        .insert_event(event("s", "k", 1, HOUR_MS))
        .await
        .unwrap();
    store.close().await;
    let r = store.insert_event(event("s", "k2", 2, HOUR_MS)).await;
    assert!(matches!(r, Err(StoreError::Closed)), "{r:?}");
    assert!(store.ready().await.is_err());
    // Closing again (the suite closes every store after its check) is harmless.
    store.close().await;
}
