//! Requests that failed verification: kept with their reason and a cut body, listed
//! newest first by source and page.

use std::sync::Arc;

use bytes::Bytes;

use super::fixtures::request;
use crate::id;
use crate::store::{EventQuery, NewRejected, Store};

pub async fn rejected_requests_are_kept_with_their_reason_and_cut_body(store: Arc<dyn Store>) {
    let mut ids = Vec::new();
    for (i, source) in ["stripe", "github", "stripe"].iter().enumerate() {
        let mut req = request(source, "x", 10_000 + i as i64);
        req.body = Bytes::from(vec![b'a' + i as u8; 100]);
        let rejected = NewRejected::new(
            req,
            id::new(id::REJECTED),
            format!("no signature ({i})"),
            16,
        );
        ids.push(rejected.id.clone());
        store.insert_rejected(rejected).await.unwrap();
    }

    // Newest first, without bodies.
    let all = store
        .list_rejected(EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let listed: Vec<&str> = all.iter().map(|r| r.request.id.as_str()).collect();
    assert_eq!(listed, [&ids[2], &ids[1], &ids[0]]);
    assert!(all.iter().all(|r| r.request.body.is_none()));
    assert_eq!(all[0].reason, "no signature (2)");
    assert_eq!(all[0].request.body_size, 100, "the size as received");

    // By source, a page at a time.
    let stripe = |cursor: Option<String>| EventQuery {
        source: Some("stripe".into()),
        limit: 1,
        cursor,
        ..Default::default()
    };
    let page = store.list_rejected(stripe(None)).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].request.id, ids[2]);
    let page = store
        .list_rejected(stripe(Some(ids[2].clone())))
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].request.id, ids[0]);
    let page = store
        .list_rejected(stripe(Some(ids[0].clone())))
        .await
        .unwrap();
    assert!(page.is_empty());

    // One, with its body cut to the limit.
    let one = store.get_rejected(&ids[1]).await.unwrap().unwrap();
    assert_eq!(one.request.source, "github");
    assert_eq!(one.request.received_at_ms, 10_001);
    assert_eq!(one.request.path, "/in/github");
    assert_eq!(one.request.method, "POST");
    assert_eq!(one.request.body.as_deref(), Some(&[b'b'; 16][..]));
    assert_eq!(one.request.body_size, 100);
    assert_eq!(one.reason, "no signature (1)");
    assert!(
        store
            .get_rejected(&id::new(id::REJECTED))
            .await
            .unwrap()
            .is_none()
    );
    // Rejected requests are not events.
    let events = store
        .list_events(EventQuery {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(events.is_empty());
}
