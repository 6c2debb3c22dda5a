//! Prefixed, time-sortable ids: `evt_…`, `dlv_…`, `att_…` (UUIDv7, lower-case hex).
//!
//! UUIDv7 starts with the millisecond timestamp, so ids sort by creation time and
//! "newest first" is "id descending".

use uuid::Uuid;

pub const EVENT: &str = "evt";
pub const DELIVERY: &str = "dlv";
pub const ATTEMPT: &str = "att";
pub const DUPLICATE: &str = "dup";
pub const REJECTED: &str = "rej";
pub const REPLAY: &str = "rpl";

/// A new id with the given prefix.
pub fn new(prefix: &str) -> String {
    format!("{prefix}_{}", Uuid::now_v7().simple())
}

/// The id with `prefix` and the same UUID as `id` (a duplicate's id from the id its
/// request was given: what was sealed for that request opens under either).
pub fn retag(id: &str, prefix: &str) -> String {
    let uuid = id.split_once('_').map_or(id, |(_, uuid)| uuid);
    format!("{prefix}_{uuid}")
}

/// A new id with the given prefix and the millisecond it names: data stamped with that
/// time finds its id exactly where a time range over ids looks for it.
pub fn new_stamped(prefix: &str) -> (String, i64) {
    let uuid = Uuid::now_v7();
    // UUIDv7 begins with 48 bits of milliseconds since the Unix epoch.
    let ms = (uuid.as_u128() >> 80) as i64;
    (format!("{prefix}_{}", uuid.simple()), ms)
}

/// A new id of `prefix` whose time is `ms` (ms since the Unix epoch) rather than now,
/// for data stamped with a time of its own (tests build a past that way).
pub fn new_at(prefix: &str, ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    let uuid = uuid::Builder::from_unix_timestamp_millis(ms, &rand::random()).into_uuid();
    format!("{prefix}_{}", uuid.simple())
}

/// The smallest id of `prefix` made at `ms` (ms since the Unix epoch): every id made at
/// or after that instant sorts at or after it.
pub fn at_time(prefix: &str, ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0) & 0xffff_ffff_ffff;
    format!("{prefix}_{ms:012x}{:020}", 0)
}

/// True when `id` looks like an id of the given prefix (checked before touching the store).
pub fn is_valid(prefix: &str, id: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_sort_by_time() {
        let a = new(EVENT);
        let b = new(EVENT);
        assert!(a.starts_with("evt_") && is_valid(EVENT, &a));
        assert!(a < b, "{a} then {b}");
        assert!(!is_valid(EVENT, "evt_nothex"));
        assert!(!is_valid(DELIVERY, &a));
        let dup = retag(&a, DUPLICATE);
        assert!(is_valid(DUPLICATE, &dup) && dup[4..] == a[4..]);
        let now = crate::clock::now_ms();
        assert!(at_time(EVENT, now - 1) <= a && a < at_time(EVENT, now + 1000));
        assert!(is_valid(EVENT, &at_time(EVENT, now)));
        let (stamped, ms) = new_stamped(EVENT);
        assert!(at_time(EVENT, ms) <= stamped && stamped < at_time(EVENT, ms + 1));
        assert!((now - 1..now + 1000).contains(&ms), "{ms} near {now}");
        let past = new_at(EVENT, now - 86_400_000);
        assert!(is_valid(EVENT, &past));
        assert!(
            at_time(EVENT, now - 86_400_000) <= past && past < at_time(EVENT, now - 86_399_999)
        );
    }
}
