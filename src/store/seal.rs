//! Encryption at rest: stored bodies and headers sealed with AES-256-GCM-SIV.
//!
//! A [`Sealer`] holds the keys of `[storage] encryption`, each by its id, and the active
//! one new data is sealed with. A sealed blob carries the id of its key, so data
//! sealed with an older key opens as long as that key is configured, and
//! `forebay rekey` moves it to the active key.
//!
//! A sealed blob is laid out as
//!
//! ```text
//! 0x00 0x01 | id length (1 byte) | key id | nonce (12 bytes) | ciphertext | tag (16 bytes)
//! ```
//!
//! The leading NUL is what tells a sealed blob from a plain one where that cannot be
//! ambiguous: headers in wire form never start with NUL, nor does a transform's JSON
//! output. A body can start with anything, so a row's body is opened when its row's
//! headers are sealed (the two are always sealed, and rekeyed, together).
//!
//! The associated data binds each blob to its place: what it is (request headers,
//! response body, ...) and the UUID of the row it belongs to, so a blob copied into
//! another row or column does not open. Nonces are random. AES-GCM-SIV (RFC 8452)
//! derives a fresh key from each nonce, so random 96-bit nonces stay safe far past plain
//! AES-GCM's 2^32 messages per key, and even a repeated nonce would only show that two
//! identical blobs are identical. It was chosen over XChaCha20-Poly1305 for speed: on
//! webhook-sized blobs (200 B to 4 KiB) it seals in a third of the time on this
//! machine's AES-NI (BENCHMARKS.md).

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm_siv::aead::{AeadInOut, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Key, Nonce, Tag};

use super::StoreError;

const MARKER: [u8; 2] = [0x00, 0x01];
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Longest key id: ids are short names (`k1`, `2027-01`), written into every blob.
pub const MAX_ID_LEN: usize = 32;

/// What a blob is, for its associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// A request's headers (events, their duplicates, rejected requests).
    RequestHeaders,
    /// A request's body (events, rejected requests).
    RequestBody,
    /// A destination's response headers, kept with an attempt.
    ResponseHeaders,
    /// A destination's response body, kept with an attempt.
    ResponseBody,
    /// What a route's transform made of an event's body (one part of a split).
    Payload,
    /// The known plaintext a key's check value seals (see [`Sealer::check_value`]).
    KeyCheck,
    /// An object of the cold archive (its row is the object's name).
    Archive,
}

impl Field {
    fn label(self) -> &'static [u8] {
        match self {
            Field::RequestHeaders => b"request-headers",
            Field::RequestBody => b"request-body",
            Field::ResponseHeaders => b"response-headers",
            Field::ResponseBody => b"response-body",
            Field::Payload => b"payload",
            Field::KeyCheck => b"key-check",
            Field::Archive => b"archive",
        }
    }
}

/// Where a blob lives: its kind and the row it belongs to.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub field: Field,
    /// The row's id (`evt_…`, `att_…`, …); only its UUID is bound, so an event's
    /// duplicates (`dup_` with the event's UUID) open the headers sealed for it.
    pub row: &'a str,
    /// Payloads: the route whose transform made it (empty for other fields).
    pub route: &'a str,
    /// The part of a split transform (0 when there is one body).
    pub part: i64,
}

impl<'a> Place<'a> {
    pub fn new(field: Field, row: &'a str) -> Self {
        Self {
            field,
            row,
            route: "",
            part: 0,
        }
    }

    /// A transform's output: bound to its event, its route and its part, so another
    /// route's payload of the same event does not open in its place.
    pub fn payload(event_id: &'a str, route: &'a str, part: i64) -> Self {
        Self {
            field: Field::Payload,
            row: event_id,
            route,
            part,
        }
    }

    /// Where the blob is, in words: `the request body of evt_…`.
    fn describe(&self) -> String {
        let what = match self.field {
            Field::RequestHeaders => "the request headers",
            Field::RequestBody => "the request body",
            Field::ResponseHeaders => "the response headers",
            Field::ResponseBody => "the response body",
            Field::Payload => "the transformed payload",
            Field::KeyCheck => "the check value",
            Field::Archive => "the archive object",
        };
        match self.field {
            Field::Payload => format!(
                "{what} (route {:?}, part {}) of {}",
                self.route, self.part, self.row
            ),
            Field::KeyCheck => format!("{what} of key {:?}", self.row),
            Field::Archive => format!("{what} {:?}", self.row),
            _ => format!("{what} of {}", self.row),
        }
    }

    fn associated_data(&self) -> Vec<u8> {
        let uuid = match self.field {
            // An object's whole name: it has no row id to take a UUID from.
            Field::Archive => self.row,
            _ => self.row.split_once('_').map_or(self.row, |(_, uuid)| uuid),
        };
        let mut aad = Vec::with_capacity(48);
        aad.extend_from_slice(b"forebay/");
        aad.extend_from_slice(self.field.label());
        aad.push(0);
        aad.extend_from_slice(uuid.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.route.as_bytes());
        aad.push(0);
        aad.extend_from_slice(&self.part.to_be_bytes());
        aad
    }
}

/// A 32-byte key as configured (base64 in the file).
#[derive(Clone)]
pub struct KeyBytes(pub [u8; 32]);

impl fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyBytes(<redacted>)")
    }
}

impl PartialEq for KeyBytes {
    fn eq(&self, other: &Self) -> bool {
        subtle::ConstantTimeEq::ct_eq(&self.0[..], &other.0[..]).into()
    }
}

impl Drop for KeyBytes {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// `[storage] encryption`, resolved: every key by id, and the one new data uses
/// (`None`: new data is stored plain, old sealed data still opens).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Keys {
    pub keys: BTreeMap<String, KeyBytes>,
    pub active: Option<String>,
}

/// Seals and opens stored blobs with the configured keys.
#[derive(Default)]
pub struct Sealer {
    ciphers: BTreeMap<String, Aes256GcmSiv>,
    active: Option<String>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.ciphers.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

/// Why a blob did not open, and where it is (`the request body of evt_…`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error(
        "{0} is sealed with key {1:?}, which storage.encryption.keys does not have; add that key back"
    )]
    UnknownKey(String, String),
    #[error("{0} does not open with key {1:?} (a different key under that id, or damaged data)")]
    Failed(String, String),
    #[error("{0} is cut short: its sealed form is damaged")]
    Truncated(String),
}

impl OpenError {
    /// Whether the key the blob names is simply not configured here (another process
    /// may have it), rather than the blob or key being wrong.
    pub fn is_unknown_key(&self) -> bool {
        matches!(self, OpenError::UnknownKey(..))
    }
}

impl Sealer {
    pub fn new(keys: &Keys) -> Self {
        Self {
            ciphers: keys
                .keys
                .iter()
                .map(|(id, key)| {
                    (
                        id.clone(),
                        Aes256GcmSiv::new(&Key::<Aes256GcmSiv>::from(key.0)),
                    )
                })
                .collect(),
            active: keys.active.clone(),
        }
    }

    /// The key new data is sealed with, if any.
    pub fn active(&self) -> Option<&str> {
        self.active.as_deref()
    }

    /// Seals `plain` for `place` with the active key; without one, the blob stays plain.
    pub fn seal(&self, place: Place<'_>, plain: &[u8]) -> Vec<u8> {
        match self.active.as_deref() {
            Some(id) => self.seal_with(id, place, plain),
            None => plain.to_vec(),
        }
    }

    /// Seals `plain` with key `id` (which must be configured).
    fn seal_with(&self, id: &str, place: Place<'_>, plain: &[u8]) -> Vec<u8> {
        let cipher = &self.ciphers[id];
        let nonce: [u8; NONCE_LEN] = rand::random();
        let head = MARKER.len() + 1 + id.len() + NONCE_LEN;
        let mut out = Vec::with_capacity(head + plain.len() + TAG_LEN);
        out.extend_from_slice(&MARKER);
        // Ids are checked at load to be 1..=32 bytes.
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = cipher
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &place.associated_data(),
                (&mut out[head..]).into(),
            )
            .expect("AES-GCM-SIV seals any blob under 64 GiB");
        out.extend_from_slice(&tag);
        out
    }

    /// True when `blob` is in sealed form. Only for blobs whose plain form never starts
    /// with NUL (headers, payloads); a body goes by its row's headers.
    pub fn is_sealed(blob: &[u8]) -> bool {
        blob.starts_with(&MARKER)
    }

    /// The key id a sealed blob names, or `None` for a plain blob.
    pub fn key_of(blob: &[u8]) -> Option<&str> {
        if !Self::is_sealed(blob) {
            return None;
        }
        let len = *blob.get(MARKER.len())? as usize;
        let id = blob.get(MARKER.len() + 1..MARKER.len() + 1 + len)?;
        std::str::from_utf8(id).ok()
    }

    /// The first bytes of every blob sealed with key `id`.
    pub fn prefix_of(id: &str) -> Vec<u8> {
        let mut prefix = MARKER.to_vec();
        prefix.push(id.len() as u8);
        prefix.extend_from_slice(id.as_bytes());
        prefix
    }

    /// How many bytes sealing with key `id` adds to a blob.
    pub fn overhead(id: &str) -> usize {
        MARKER.len() + 1 + id.len() + NONCE_LEN + TAG_LEN
    }

    /// Opens a sealed `blob` for `place`.
    pub fn open(&self, place: Place<'_>, mut blob: Vec<u8>) -> Result<Vec<u8>, OpenError> {
        let id = Self::key_of(&blob)
            .ok_or_else(|| OpenError::Truncated(place.describe()))?
            .to_owned();
        let head = MARKER.len() + 1 + id.len() + NONCE_LEN;
        if blob.len() < head + TAG_LEN {
            return Err(OpenError::Truncated(place.describe()));
        }
        let cipher = self
            .ciphers
            .get(&id)
            .ok_or_else(|| OpenError::UnknownKey(place.describe(), id.clone()))?;
        let nonce: [u8; NONCE_LEN] = blob[head - NONCE_LEN..head]
            .try_into()
            .expect("sliced to the nonce's length");
        let tag_at = blob.len() - TAG_LEN;
        let tag = Tag::try_from(&blob[tag_at..]).expect("sliced to the tag's length");
        cipher
            .decrypt_inout_detached(
                &Nonce::from(nonce),
                &place.associated_data(),
                (&mut blob[head..tag_at]).into(),
                &tag,
            )
            .map_err(|_| OpenError::Failed(place.describe(), id))?;
        blob.truncate(tag_at);
        blob.drain(..head);
        Ok(blob)
    }

    /// Opens `blob` if it is sealed; a plain blob comes back as it is.
    pub fn open_if_sealed(&self, place: Place<'_>, blob: Vec<u8>) -> Result<Vec<u8>, OpenError> {
        if Self::is_sealed(&blob) {
            self.open(place, blob)
        } else {
            Ok(blob)
        }
    }

    /// A request's stored headers and body, opened when the headers are sealed.
    pub fn open_request(
        &self,
        row: &str,
        headers: Vec<u8>,
        body: Option<Vec<u8>>,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), OpenError> {
        if !Self::is_sealed(&headers) {
            return Ok((headers, body));
        }
        let headers = self.open(Place::new(Field::RequestHeaders, row), headers)?;
        let body = body
            .map(|b| self.open(Place::new(Field::RequestBody, row), b))
            .transpose()?;
        Ok((headers, body))
    }

    /// A stored response's headers and body, opened when the headers are sealed.
    pub fn open_response(
        &self,
        row: &str,
        headers: Vec<u8>,
        body: Vec<u8>,
    ) -> Result<(Vec<u8>, Vec<u8>), OpenError> {
        if !Self::is_sealed(&headers) {
            return Ok((headers, body));
        }
        Ok((
            self.open(Place::new(Field::ResponseHeaders, row), headers)?,
            self.open(Place::new(Field::ResponseBody, row), body)?,
        ))
    }

    /// A value sealed with key `id` that only that key opens: kept in the store when a
    /// key is first used, so a key configured later under the same id but with other
    /// bytes is refused at start, before anything is sealed with it.
    pub fn check_value(&self, id: &str) -> Vec<u8> {
        self.seal_with(id, Place::new(Field::KeyCheck, id), CHECK_PLAINTEXT)
    }

    /// Whether `check` (from [`Sealer::check_value`]) opens with the configured key `id`.
    pub fn verify_check_value(&self, id: &str, check: Vec<u8>) -> bool {
        Self::key_of(&check) == Some(id)
            && self
                .open(Place::new(Field::KeyCheck, id), check)
                .is_ok_and(|plain| plain == CHECK_PLAINTEXT)
    }

    /// Whether data sealed with `key` (`None`: stored plain) is already as the active
    /// key would leave it, so a rekey can pass it by.
    pub fn is_current(&self, key: Option<&str>) -> bool {
        key == self.active.as_deref()
    }
}

/// A key the store has recorded (table `sealing_keys`).
#[derive(Debug, Clone)]
pub struct RegisteredKey {
    pub id: String,
    pub check_value: Vec<u8>,
    /// A finished rekey left no data sealed with it.
    pub retired: bool,
}

/// What the store records after [`check_registry`] found the keys fit.
#[derive(Debug, PartialEq, Eq)]
pub enum Registration {
    Nothing,
    /// The active key is new to the store: record it with its check value.
    Add {
        id: String,
        check_value: Vec<u8>,
    },
    /// The active key was retired: data will be sealed with it again.
    Unretire(String),
}

/// Checks the configured keys against the ones the store has recorded: each recorded
/// key that is configured must be the same key (its check value opens), and each one
/// that data may still be sealed with must be configured. Run at start, before
/// anything is read or written, so a wrong key is a clear error, not garbage later.
pub fn check_registry(
    sealer: &Sealer,
    registered: &[RegisteredKey],
) -> Result<Registration, StoreError> {
    for key in registered {
        if sealer.ciphers.contains_key(&key.id) {
            if key.retired && sealer.active() != Some(key.id.as_str()) {
                // No data needs it: whatever bytes it has now, it opens nothing.
                continue;
            }
            if !sealer.verify_check_value(&key.id, key.check_value.clone()) {
                return Err(StoreError::Keys(if key.retired {
                    format!(
                        "storage.encryption.keys.{id} is active, but {id:?} was retired with other bytes; a retired id cannot come back as a new key: give the new key a new id",
                        id = key.id
                    )
                } else {
                    format!(
                        "storage.encryption.keys.{id} is not the key the store's data under {id:?} was sealed with (the check value kept for {id:?} does not open with it); give {id:?} its earlier value, or give a new key a new id",
                        id = key.id
                    )
                }));
            }
        } else if !key.retired {
            return Err(StoreError::Keys(format!(
                "the store holds data sealed with key {id:?}, which storage.encryption.keys does not have; add {id:?} back (`forebay rekey` then moves the data to the active key, after which {id:?} can go)",
                id = key.id
            )));
        }
    }
    let Some(active) = sealer.active() else {
        return Ok(Registration::Nothing);
    };
    Ok(match registered.iter().find(|k| k.id == active) {
        None => Registration::Add {
            id: active.to_owned(),
            check_value: sealer.check_value(active),
        },
        Some(k) if k.retired => Registration::Unretire(active.to_owned()),
        Some(_) => Registration::Nothing,
    })
}

const CHECK_PLAINTEXT: &[u8] = b"forebay key check";

impl From<OpenError> for StoreError {
    fn from(e: OpenError) -> Self {
        StoreError::Sealed(e)
    }
}

/// A new random key in the form `[storage.encryption] keys` takes: 32 bytes, base64.
pub fn new_key() -> String {
    use base64::Engine as _;
    let key: [u8; 32] = rand::random();
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Reads a configured key: 32 bytes in base64 (standard alphabet, padded or not).
pub fn decode_key(text: &[u8]) -> Result<KeyBytes, String> {
    use base64::Engine as _;
    let text = text.trim_ascii();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
        .map_err(|_| "is not base64".to_owned())?;
    let key: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("is {} bytes, not 32", bytes.len()))?;
    Ok(KeyBytes(key))
}

/// Whether `id` may name a key: 1 to 32 of ASCII letters, digits, `-`, `_` and `.`.
pub fn valid_key_id(id: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ids: &[(&str, u8)], active: Option<&str>) -> Keys {
        Keys {
            keys: ids
                .iter()
                .map(|(id, b)| (id.to_string(), KeyBytes([*b; 32])))
                .collect(),
            active: active.map(str::to_owned),
        }
    }

    const EVT: &str = "evt_0190a1b2c3d4e5f60718293a4b5c6d7e";

    #[test]
    fn a_sealed_blob_names_its_key_and_opens_only_in_its_place() {
        let sealer = Sealer::new(&keys(&[("k1", 1)], Some("k1")));
        let place = Place::new(Field::RequestBody, EVT);
        let sealed = sealer.seal(place, b"{\"id\":1}");
        assert!(Sealer::is_sealed(&sealed));
        assert_eq!(Sealer::key_of(&sealed), Some("k1"));
        assert_eq!(sealed.len(), 8 + Sealer::overhead("k1"));
        assert!(
            !sealed.windows(8).any(|w| w == b"{\"id\":1}"),
            "no plaintext in the sealed form"
        );
        assert_eq!(sealer.open(place, sealed.clone()).unwrap(), b"{\"id\":1}");
        // Another row, another field, or a duplicate's id with the event's UUID.
        let other_row = Place::new(Field::RequestBody, "evt_0190a1b2c3d4e5f60718293a4b5c6d7f");
        assert_eq!(
            sealer.open(other_row, sealed.clone()),
            Err(OpenError::Failed(
                "the request body of evt_0190a1b2c3d4e5f60718293a4b5c6d7f".into(),
                "k1".into()
            ))
        );
        let other_field = Place::new(Field::RequestHeaders, EVT);
        assert!(sealer.open(other_field, sealed.clone()).is_err());
        let duplicate = Place::new(Field::RequestBody, "dup_0190a1b2c3d4e5f60718293a4b5c6d7e");
        assert_eq!(
            sealer.open(duplicate, sealed.clone()).unwrap(),
            b"{\"id\":1}"
        );
        // Parts of a split, and payloads of other routes, do not stand in for each other.
        let part1 = sealer.seal(Place::payload(EVT, "r", 1), b"[1]");
        assert!(
            sealer
                .open(Place::payload(EVT, "r", 2), part1.clone())
                .is_err()
        );
        assert!(
            sealer
                .open(Place::payload(EVT, "other", 1), part1.clone())
                .is_err()
        );
        assert_eq!(
            sealer.open(Place::payload(EVT, "r", 1), part1).unwrap(),
            b"[1]"
        );
    }

    #[test]
    fn the_same_plaintext_seals_differently_each_time() {
        let sealer = Sealer::new(&keys(&[("k1", 1)], Some("k1")));
        let place = Place::new(Field::RequestBody, EVT);
        assert_ne!(sealer.seal(place, b"same"), sealer.seal(place, b"same"));
    }

    #[test]
    fn old_keys_keep_opening_and_unknown_or_wrong_keys_say_which() {
        let old = Sealer::new(&keys(&[("k1", 1)], Some("k1")));
        let place = Place::new(Field::ResponseBody, "att_0190a1b2c3d4e5f60718293a4b5c6d7e");
        let sealed = old.seal(place, b"ok");
        let rotated = Sealer::new(&keys(&[("k1", 1), ("k2", 2)], Some("k2")));
        assert_eq!(rotated.open(place, sealed.clone()).unwrap(), b"ok");
        assert_eq!(Sealer::key_of(&rotated.seal(place, b"ok")), Some("k2"));
        let without = Sealer::new(&keys(&[("k2", 2)], Some("k2")));
        let e = without.open(place, sealed.clone()).unwrap_err();
        assert!(e.is_unknown_key());
        assert_eq!(
            e.to_string(),
            "the response body of att_0190a1b2c3d4e5f60718293a4b5c6d7e is sealed with key \"k1\", which storage.encryption.keys does not have; add that key back"
        );
        let wrong = Sealer::new(&keys(&[("k1", 9)], Some("k1")));
        let e = wrong.open(place, sealed.clone()).unwrap_err();
        assert!(
            matches!(&e, OpenError::Failed(_, key) if key == "k1"),
            "{e}"
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(old.open(place, flipped).is_err());
        assert!(matches!(
            old.open(place, sealed[..10].to_vec()),
            Err(OpenError::Truncated(_))
        ));
    }

    #[test]
    fn without_an_active_key_data_stays_plain_and_sealed_data_still_opens() {
        let plain = Sealer::new(&keys(&[("k1", 1)], None));
        let place = Place::new(Field::RequestHeaders, EVT);
        assert_eq!(plain.seal(place, b"a: b\r\n"), b"a: b\r\n");
        let sealed = Sealer::new(&keys(&[("k1", 1)], Some("k1"))).seal(place, b"a: b\r\n");
        assert_eq!(plain.open_if_sealed(place, sealed).unwrap(), b"a: b\r\n");
        assert_eq!(
            plain.open_if_sealed(place, b"a: b\r\n".to_vec()).unwrap(),
            b"a: b\r\n"
        );
    }

    #[test]
    fn a_request_opens_by_its_headers() {
        let sealer = Sealer::new(&keys(&[("k1", 1)], Some("k1")));
        // A plain body that happens to look sealed stays as it is when its headers are plain.
        let odd_body = vec![0x00, 0x01, 2, b'k', b'1'];
        let (h, b) = sealer
            .open_request(EVT, b"a: b\r\n".to_vec(), Some(odd_body.clone()))
            .unwrap();
        assert_eq!((h, b), (b"a: b\r\n".to_vec(), Some(odd_body)));
        let headers = sealer.seal(Place::new(Field::RequestHeaders, EVT), b"a: b\r\n");
        let body = sealer.seal(Place::new(Field::RequestBody, EVT), b"");
        let (h, b) = sealer.open_request(EVT, headers, Some(body)).unwrap();
        assert_eq!((h, b), (b"a: b\r\n".to_vec(), Some(Vec::new())));
    }

    #[test]
    fn check_values_tell_a_changed_key_from_the_same_one() {
        let sealer = Sealer::new(&keys(&[("k1", 1)], Some("k1")));
        let check = sealer.check_value("k1");
        assert!(sealer.verify_check_value("k1", check.clone()));
        let changed = Sealer::new(&keys(&[("k1", 2)], Some("k1")));
        assert!(!changed.verify_check_value("k1", check.clone()));
        // A check value of another key does not pass for this one.
        let both = Sealer::new(&keys(&[("k1", 1), ("k2", 1)], Some("k1")));
        assert!(!both.verify_check_value("k2", check));
    }

    #[test]
    fn the_registry_refuses_a_changed_key_and_a_missing_one() {
        let k1 = Sealer::new(&keys(&[("k1", 1)], Some("k1")));
        let Registration::Add { id, check_value } = check_registry(&k1, &[]).unwrap() else {
            panic!("the first active key is recorded");
        };
        assert_eq!(id, "k1");
        let recorded = vec![RegisteredKey {
            id,
            check_value,
            retired: false,
        }];
        assert_eq!(
            check_registry(&k1, &recorded).unwrap(),
            Registration::Nothing
        );
        let changed = Sealer::new(&keys(&[("k1", 2)], Some("k1")));
        let e = check_registry(&changed, &recorded).unwrap_err().to_string();
        assert!(
            e.contains("storage.encryption.keys.k1 is not the key"),
            "{e}"
        );
        let dropped = Sealer::new(&keys(&[("k2", 2)], Some("k2")));
        let e = check_registry(&dropped, &recorded).unwrap_err().to_string();
        assert!(e.contains("sealed with key \"k1\""), "{e}");
        assert!(check_registry(&Sealer::default(), &recorded).is_err());
        let mut retired = recorded.clone();
        retired[0].retired = true;
        assert!(matches!(
            check_registry(&dropped, &retired).unwrap(),
            Registration::Add { id, .. } if id == "k2"
        ));
        assert_eq!(
            check_registry(&k1, &retired).unwrap(),
            Registration::Unretire("k1".into())
        );
        assert_eq!(
            check_registry(&Sealer::default(), &retired).unwrap(),
            Registration::Nothing
        );
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        let key = new_key();
        assert_eq!(key.len(), 44);
        assert!(decode_key(key.as_bytes()).is_ok());
        assert!(decode_key(format!("{key}\n").as_bytes()).is_ok());
        assert!(decode_key(key.trim_end_matches('=').as_bytes()).is_ok());
        assert_eq!(
            decode_key(b"c2hvcnQ=").unwrap_err(),
            "is 5 bytes, not 32".to_owned()
        );
        assert_eq!(decode_key(b"not base64!").unwrap_err(), "is not base64");
        assert!(valid_key_id("k1") && valid_key_id("2027-01.a_b"));
        assert!(!valid_key_id("") && !valid_key_id("a b") && !valid_key_id(&"k".repeat(33)));
    }
}
