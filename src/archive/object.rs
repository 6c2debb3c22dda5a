//! One archive object: the export's NDJSON lines, compressed with zstd, then sealed with
//! the active key when encryption is on (bound to the object's name, so an object
//! renamed or swapped for another does not open in its place).

use crate::store::seal::{Field, Place, Sealer};

/// zstd's level: a good ratio for JSON at little CPU (archiving runs in the background).
const LEVEL: i32 = 6;

/// The first bytes of a zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Where an object's lines are bound when sealed: its name.
fn place(name: &str) -> Place<'_> {
    Place::new(Field::Archive, name)
}

/// The object for `ndjson` (whole lines, each ending in `\n`), named `name`.
pub fn encode(ndjson: &[u8], sealer: &Sealer, name: &str) -> std::io::Result<Vec<u8>> {
    let compressed = zstd::encode_all(ndjson, LEVEL)?;
    Ok(sealer.seal(place(name), &compressed))
}

/// Why an object does not read back.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Sealed(#[from] crate::store::seal::OpenError),
    #[error("it is not a forebay archive object (neither zstd nor sealed)")]
    Unknown,
    #[error("it does not decompress: {0}")]
    Zstd(#[from] std::io::Error),
}

/// The NDJSON lines of object `name`.
pub fn decode(object: Vec<u8>, sealer: &Sealer, name: &str) -> Result<Vec<u8>, DecodeError> {
    let compressed = if object.starts_with(&ZSTD_MAGIC) {
        object
    } else if Sealer::is_sealed(&object) {
        sealer.open(place(name), object)?
    } else {
        return Err(DecodeError::Unknown);
    };
    Ok(zstd::decode_all(&compressed[..])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::seal::{KeyBytes, Keys};

    fn sealer(active: Option<&str>) -> Sealer {
        let mut keys = Keys::default();
        keys.keys.insert("k1".into(), KeyBytes([7; 32]));
        keys.active = active.map(str::to_owned);
        Sealer::new(&keys)
    }

    #[test]
    fn lines_come_back_plain_or_sealed_and_only_under_their_name() {
        let lines = b"{\"id\":\"evt_1\"}\n{\"id\":\"evt_2\"}\n".repeat(100);
        for active in [None, Some("k1")] {
            let s = sealer(active);
            let object = encode(&lines, &s, "events/a-b.ndjson.zst").unwrap();
            assert!(object.len() < lines.len() / 4, "compressed");
            assert_eq!(Sealer::is_sealed(&object), active.is_some());
            let back = decode(object.clone(), &s, "events/a-b.ndjson.zst").unwrap();
            assert_eq!(back, lines);
            if active.is_some() {
                let moved = decode(object, &s, "events/c-d.ndjson.zst");
                assert!(matches!(moved, Err(DecodeError::Sealed(_))), "{moved:?}");
            }
        }
        let garbage = decode(b"{}".to_vec(), &sealer(None), "x");
        assert!(matches!(garbage, Err(DecodeError::Unknown)), "{garbage:?}");
    }
}
