//! The 8-byte hash both stores index dedup keys by: a narrow index entry, so that far
//! more of the index stays in memory and each new key dirties a smaller share of it. A
//! hash only says "maybe": every match is checked against the real source and key.

use sha2::{Digest, Sha256};

/// The hash of `key` within `source`: the first 8 bytes of SHA-256(source, NUL, key),
/// big-endian, as a signed integer. [`dedup_hash_sql`] computes the same in PostgreSQL.
pub fn dedup_hash(source: &str, key: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(source.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// [`dedup_hash`] of the SQL expressions `source` and `key`, in PostgreSQL's SQL.
pub fn dedup_hash_sql(source: &str, key: &str) -> String {
    format!(
        "('x' || left(encode(sha256(convert_to({source}, 'UTF8') || '\\x00'::bytea
                                     || convert_to({key}, 'UTF8')), 'hex'), 16))::bit(64)::bigint"
    )
}
