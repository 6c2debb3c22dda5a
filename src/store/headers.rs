//! Request headers as stored: the HTTP/1 wire form, `name: value\r\n` per header, values
//! byte for byte (not necessarily UTF-8), repeats kept in their order. Names appear in
//! the order first received, with the repeats of one name together: the parser's header
//! map keeps no other order, and HTTP gives meaning only to the order of values of the
//! same name (RFC 9110, section 5.3).
//!
//! HTTP forbids CR and LF inside names and values, so the encoding needs no escaping and
//! decodes exactly.

use http::HeaderMap;

/// Encodes `headers` in wire form.
pub fn encode(headers: &HeaderMap) -> Vec<u8> {
    let mut out = Vec::with_capacity(headers.len() * 32);
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Decodes what [`encode`] wrote into (name, raw value) pairs.
pub fn decode(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut headers = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let end = find(rest, b"\r\n").ok_or("a header line does not end in CRLF")?;
        let line = &rest[..end];
        rest = &rest[end + 2..];
        let colon = find(line, b": ").ok_or("a header line has no `: `")?;
        let name = std::str::from_utf8(&line[..colon]).map_err(|_| "a header name is not text")?;
        headers.push((name.to_owned(), line[colon + 2..].to_vec()));
    }
    Ok(headers)
}

/// [`decode`] for a stored column: what does not decode is damaged data.
pub(crate) fn decode_stored(bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, super::StoreError> {
    decode(bytes).map_err(|e| super::StoreError::Corrupt(format!("headers column: {e}")))
}

/// Headers as an object (names are lower case); repeated headers are joined with `, `
/// as HTTP allows. Values that are not UTF-8 (rare, and kept exactly in the store) are
/// shown with replacement characters.
pub fn to_json(headers: &[(String, Vec<u8>)]) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::Value;
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value);
        match map.get_mut(name) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                map.insert(name.clone(), Value::String(value.into_owned()));
            }
        }
    }
    map
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn round_trips_repeats_and_non_utf8_values() {
        let mut h = HeaderMap::new();
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("content-type", HeaderValue::from_static("application/json"));
        h.append("x-a", HeaderValue::from_static("2: with colon"));
        h.append(
            "x-raw",
            HeaderValue::from_bytes(&[0xff, 0x80, b'z']).unwrap(),
        );
        h.append("x-empty", HeaderValue::from_static(""));
        let decoded = decode(&encode(&h)).unwrap();
        let expected: Vec<(String, Vec<u8>)> = [
            ("x-a", &b"1"[..]),
            ("x-a", b"2: with colon"),
            ("content-type", b"application/json"),
            ("x-raw", &[0xff, 0x80, b'z']),
            ("x-empty", b""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect();
        assert_eq!(decoded, expected);
        assert!(decode(b"broken").is_err());
    }
}
