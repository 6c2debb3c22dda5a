//! The cold archive (`[storage.archive]`): events older than `after`, none of whose
//! deliveries waits, leave the store for an S3-compatible bucket or a directory, as
//! zstd-compressed NDJSON objects of the export's lines (sealed when encryption is on),
//! from which `forebay export --from` and `forebay replay --from` read them back.
//!
//! [`location`] opens where objects go, [`object`] makes and reads one, [`job`] is the
//! background round that moves events, crash-safe through the store's manifest
//! ([`crate::store::archive`]).

pub mod job;
pub mod location;
pub mod object;

pub use job::Archiver;
pub use location::Location;
