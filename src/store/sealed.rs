//! What each stored record seals, for both backends: the blobs of the model types put
//! through a [`Sealer`] on the way in and opened on the way out.
//!
//! Ingest's records (events, rejected requests) and attempt records are sealed before
//! they are queued for the writer, on the thread that made them, so the one writer of
//! the embedded store does not spend its time on them; so are the payloads of a
//! preparer batch.

use bytes::Bytes;

use super::seal::{Field, OpenError, Place, Sealer};
use super::{AttemptRecord, NewEvent, NewRejected, Preparation, Prepared, StoredRequest};

impl Sealer {
    /// Seals an event's headers and body, bound to its id (a duplicate's row reuses the
    /// id's UUID: see [`crate::id::retag`]).
    pub fn seal_event(&self, e: &mut NewEvent) {
        if self.active().is_none() {
            return;
        }
        e.headers = self.seal(Place::new(Field::RequestHeaders, &e.id), &e.headers);
        e.body = Bytes::from(self.seal(Place::new(Field::RequestBody, &e.id), &e.body));
        if let Some(headers) = &e.duplicate_headers {
            e.duplicate_headers =
                Some(self.seal(Place::new(Field::RequestHeaders, &e.id), headers));
        }
    }

    /// Seals a rejected request's headers and (cut) body.
    pub fn seal_rejected(&self, r: &mut NewRejected) {
        if self.active().is_none() {
            return;
        }
        r.headers = self.seal(Place::new(Field::RequestHeaders, &r.id), &r.headers);
        r.body = Bytes::from(self.seal(Place::new(Field::RequestBody, &r.id), &r.body));
    }

    /// Seals what due redactions left of their events.
    pub fn seal_redactions(&self, writes: &mut [super::redaction::RedactionWrite]) {
        if self.active().is_none() {
            return;
        }
        for w in writes {
            if let Some((headers, body)) = &mut w.redacted {
                *headers = self.seal(Place::new(Field::RequestHeaders, &w.event_id), headers);
                *body = self.seal(Place::new(Field::RequestBody, &w.event_id), body);
            }
        }
    }

    /// Seals the response an attempt captured.
    pub fn seal_attempt(&self, a: &mut AttemptRecord) {
        if self.active().is_none() {
            return;
        }
        a.response_headers = self.seal(
            Place::new(Field::ResponseHeaders, &a.id),
            &a.response_headers,
        );
        a.response_body = self.seal(Place::new(Field::ResponseBody, &a.id), &a.response_body);
    }

    /// Seals the bodies transforms made, each bound to its event and to the part it
    /// becomes (0 for a single body, 1..n for a split's parts, as stored in `part`).
    pub fn seal_prepared(&self, batch: &mut [Prepared]) {
        if self.active().is_none() {
            return;
        }
        for p in batch {
            if let Preparation::Bodies(bodies) = &mut p.outcome {
                let split = bodies.len() > 1;
                for (i, body) in bodies.iter_mut().enumerate() {
                    let part = if split { i as i64 + 1 } else { 0 };
                    *body = self.seal(Place::payload(&p.event_id, &p.route, part), body);
                }
            }
        }
    }

    /// Opens a stored payload of `route`'s delivery of event `event_id` (plain when it
    /// does not start sealed: a transform's JSON never starts with NUL).
    pub fn open_payload(
        &self,
        event_id: &str,
        route: &str,
        part: Option<i64>,
        payload: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, OpenError> {
        payload
            .map(|p| self.open_if_sealed(Place::payload(event_id, route, part.unwrap_or(0)), p))
            .transpose()
    }

    /// Opens a stored request read with its headers in `headers` (and its body in
    /// `request.body`, when read), and returns the headers to decode. An event's
    /// `body_size` read as the stored length (`length_read`) loses what sealing added.
    pub fn open_stored_request(
        &self,
        request: &mut StoredRequest,
        headers: Vec<u8>,
        length_read: bool,
    ) -> Result<Vec<u8>, OpenError> {
        let key = Sealer::key_of(&headers).map(str::to_owned);
        let (headers, body) = self.open_request(&request.id, headers, request.body.take())?;
        request.body = body;
        if let Some(key) = key
            && length_read
        {
            request.body_size -= Sealer::overhead(&key) as i64;
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::seal::{KeyBytes, Keys};

    #[test]
    fn a_stored_request_opens_with_its_size_as_received() {
        let sealer = Sealer::new(&Keys {
            keys: BTreeMap::from([("key-1".to_owned(), KeyBytes([5; 32]))]),
            active: Some("key-1".into()),
        });
        let id = "evt_0190a1b2c3d4e5f60718293a4b5c6d7e";
        let headers = sealer.seal(Place::new(Field::RequestHeaders, id), b"a: b\r\n");
        let body = sealer.seal(Place::new(Field::RequestBody, id), b"12345");
        let mut listed = StoredRequest {
            id: id.into(),
            source: "s".into(),
            received_at_ms: 0,
            method: "POST".into(),
            path: "/in/s".into(),
            query: None,
            headers: Vec::new(),
            body: None,
            body_size: body.len() as i64,
            remote_addr: None,
        };
        let plain = sealer
            .open_stored_request(&mut listed, headers.clone(), true)
            .unwrap();
        assert_eq!((plain.as_slice(), listed.body_size), (&b"a: b\r\n"[..], 5));
        let mut shown = StoredRequest {
            body: Some(body),
            body_size: 5,
            ..listed.clone()
        };
        sealer
            .open_stored_request(&mut shown, headers, false)
            .unwrap();
        assert_eq!(
            (shown.body.as_deref(), shown.body_size),
            (Some(&b"12345"[..]), 5)
        );
    }
}
