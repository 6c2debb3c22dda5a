//! Prometheus metrics: the process's recorder, the hooks the hot paths call, and the
//! `GET /metrics` scrape of the admin listener ([`scrape`]).
//!
//! Counters and histograms are recorded as things happen, through the `metrics` crate's
//! recorder. That recorder is process-global: [`install`] sets it once, however many
//! servers a process runs (tests run several), and they all count into it. Gauges that
//! describe one server's store or destinations (backlog, dead letters, breakers) are
//! not recorded at all: the scrape computes them from the server that is scraped, so
//! they are never stale, and never another server's.
//!
//! Label values come from the configuration (source and destination names) or from fixed
//! sets (status codes, outcomes), never from a request: a request to a source that does
//! not exist counts under `source=""`, so senders cannot create series.

mod scrape;

use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::store::{AfterAttempt, Purged};

pub use scrape::render;

/// `/in/{source}` requests answered, by source and HTTP status.
pub const INGEST_REQUESTS: &str = "forebay_ingest_requests_total";
/// From the request's arrival at the handler to its answer, by source.
pub const INGEST_DURATION: &str = "forebay_ingest_duration_seconds";
/// Requests answered as duplicates of an earlier event, by source.
pub const DEDUP_HITS: &str = "forebay_dedup_hits_total";
/// Requests refused by a source's rate limit, before their body was read.
pub const RATE_LIMITED: &str = "forebay_ingest_rate_limited_total";
/// Writes committed together in one transaction by the SQLite writer.
pub const COMMIT_BATCH: &str = "forebay_commit_batch_size";
/// Attempts recorded, by destination and what the delivery became.
pub const DELIVERIES: &str = "forebay_deliveries_total";
/// How long one attempt took (send and answer, or the command's run), by destination.
pub const ATTEMPT_DURATION: &str = "forebay_attempt_duration_seconds";
/// Rows removed by retention, by kind (events, attempts, rejected).
pub const PURGED: &str = "forebay_purged_total";
/// Events a source's `redact` rule took something out of, by when (stored, delivered).
pub const REDACTED: &str = "forebay_events_redacted_total";
/// Rows removed to keep the store under `storage.max_size`, by kind (events, rejected).
pub const EVICTED: &str = "forebay_evicted_total";
/// Events moved to the cold archive.
pub const ARCHIVED_EVENTS: &str = "forebay_archived_events_total";
/// Objects written to the cold archive, and their bytes.
pub const ARCHIVE_OBJECTS: &str = "forebay_archive_objects_total";
pub const ARCHIVE_BYTES: &str = "forebay_archive_bytes_total";
/// Archive rounds that stopped on an error (the events stay in the store).
pub const ARCHIVE_FAILURES: &str = "forebay_archive_failures_total";
/// Routes forebay paused itself, by route and reason.
pub const ROUTES_PAUSED: &str = "forebay_routes_paused_total";

/// Ingest answers in about 1–15 ms under load (BENCHMARKS.md); the tail reaches the
/// commit timeout and slow bodies the read timeout.
const INGEST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Handlers answer in milliseconds to seconds; a destination times out at 30 s by default.
const ATTEMPT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Powers of two up to `storage.max_batch` (512 by default).
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// How often histogram samples are folded into their buckets between scrapes (until
/// then each sample is held in memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's recorder (the first call does; later calls return the same
/// handle). Metrics recorded before it are lost, so the server calls it at start.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = builder().build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            // Only when forebay is embedded in a program with a recorder of its own.
            tracing::warn!(
                "another metrics recorder is installed in this process; /metrics shows only the gauges computed at scrape time"
            );
        } else {
            describe();
        }
        let upkeep = handle.clone();
        // A thread, not a task: it must outlive any one runtime (tests start many).
        let spawned = std::thread::Builder::new()
            .name("forebay-metrics".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms are folded at each scrape only");
        }
        handle
    })
}

fn builder() -> PrometheusBuilder {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in [
        (INGEST_DURATION, INGEST_BUCKETS),
        (ATTEMPT_DURATION, ATTEMPT_BUCKETS),
        (COMMIT_BATCH, BATCH_BUCKETS),
    ] {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets)
            .expect("bucket lists are non-empty constants");
    }
    builder
}

fn describe() {
    metrics::describe_counter!(
        INGEST_REQUESTS,
        "Requests to /in/{source} answered, by source (\"\" for an unknown one) and HTTP status."
    );
    metrics::describe_histogram!(
        INGEST_DURATION,
        "Seconds from a request's arrival to its answer, by source."
    );
    metrics::describe_counter!(
        DEDUP_HITS,
        "Requests answered as duplicates of an earlier event (not delivered again), by source."
    );
    metrics::describe_counter!(
        RATE_LIMITED,
        "Requests answered 429 by a source's rate_limit (scope \"source\") or rate_limit_per_address (scope \"address\"), by source."
    );
    metrics::describe_histogram!(
        COMMIT_BATCH,
        "Writes committed together in one transaction (group commit)."
    );
    metrics::describe_counter!(
        DELIVERIES,
        "Delivery attempts recorded, by destination and outcome (delivered, retrying, dead)."
    );
    metrics::describe_histogram!(
        ATTEMPT_DURATION,
        "Seconds one delivery attempt took, by destination."
    );
    metrics::describe_counter!(
        PURGED,
        "Rows removed by retention, by kind (events with their deliveries, attempts, rejected requests, finished replay jobs)."
    );
    metrics::describe_counter!(
        ARCHIVED_EVENTS,
        "Events moved from the store to the cold archive ([storage.archive])."
    );
    metrics::describe_counter!(ARCHIVE_OBJECTS, "Objects written to the cold archive.");
    metrics::describe_counter!(
        ARCHIVE_BYTES,
        "Bytes of the objects written to the cold archive (compressed, and sealed when encryption is on)."
    );
    metrics::describe_counter!(
        ARCHIVE_FAILURES,
        "Archive rounds that stopped on an error (the archive or the store unreachable); their events stay in the store."
    );
    metrics::describe_counter!(
        ROUTES_PAUSED,
        "Routes forebay paused itself, by reason: \"expression_timeouts\" when a route's expressions ran past their time limit on pause_after_timeouts deliveries in a row."
    );
    metrics::describe_counter!(
        EVICTED,
        "Rows removed to keep the store under storage.max_size, oldest first, by kind (events already delivered with their deliveries and attempts, rejected requests)."
    );
    metrics::describe_counter!(
        REDACTED,
        "Events a source's redact rule was applied to, by when: \"stored\" (before storing) or \"delivered\" (once every delivery succeeded)."
    );
}

/// A request to `/in/{source}` was answered; `source` is `None` when no source has the
/// name it asked for.
pub fn ingest_answered(source: Option<&str>, status: StatusCode, elapsed: Duration) {
    let source = source.unwrap_or_default().to_owned();
    metrics::counter!(
        INGEST_REQUESTS,
        "source" => source.clone(),
        "status" => status.as_u16().to_string()
    )
    .increment(1);
    metrics::histogram!(INGEST_DURATION, "source" => source).record(elapsed);
}

/// A request to `source` was a repeat of an event within its dedup window.
pub fn dedup_hit(source: &str) {
    metrics::counter!(DEDUP_HITS, "source" => source.to_owned()).increment(1);
}

/// A request to `source` was refused by its rate limit of `scope`.
pub fn rate_limited(source: &str, scope: &'static str) {
    metrics::counter!(RATE_LIMITED, "source" => source.to_owned(), "scope" => scope).increment(1);
}

/// The writer committed `writes` writes in one transaction.
pub fn commit_batch(writes: usize) {
    metrics::histogram!(COMMIT_BATCH).record(writes as f64);
}

/// One attempt to `destination` took `elapsed`.
pub fn attempt_finished(destination: &str, elapsed: Duration) {
    metrics::histogram!(ATTEMPT_DURATION, "destination" => destination.to_owned()).record(elapsed);
}

/// An attempt was recorded and moved its delivery on to `then`.
pub fn delivery_outcome(destination: &str, then: AfterAttempt) {
    metrics::counter!(
        DELIVERIES,
        "destination" => destination.to_owned(),
        "outcome" => then.state()
    )
    .increment(1);
}

/// A source's `redact` rule was applied to `n` events, before storing or after delivery.
pub fn redacted(when: &'static str, n: usize) {
    metrics::counter!(REDACTED, "when" => when).increment(n as u64);
}

/// An archive object of `bytes` was written, and `events` left the store.
pub fn archived(events: usize, bytes: usize) {
    metrics::counter!(ARCHIVED_EVENTS).increment(events as u64);
    metrics::counter!(ARCHIVE_OBJECTS).increment(1);
    metrics::counter!(ARCHIVE_BYTES).increment(bytes as u64);
}

/// forebay paused `route` itself.
pub fn route_paused(route: &str, reason: &'static str) {
    metrics::counter!(ROUTES_PAUSED, "route" => route.to_owned(), "reason" => reason).increment(1);
}

/// An archive round stopped on an error.
pub fn archive_failed() {
    metrics::counter!(ARCHIVE_FAILURES).increment(1);
}

/// A round of the size cap removed these rows.
pub fn evicted(evicted: &crate::store::capacity::Evicted) {
    for (kind, n) in [("events", evicted.events), ("rejected", evicted.rejected)] {
        if n > 0 {
            metrics::counter!(EVICTED, "kind" => kind).increment(n as u64);
        }
    }
}

/// A retention pass removed these rows.
pub fn purged(purged: &Purged) {
    for (kind, n) in [
        ("events", purged.events),
        ("attempts", purged.attempts),
        ("rejected", purged.rejected),
        ("replays", purged.replays),
    ] {
        if n > 0 {
            metrics::counter!(PURGED, "kind" => kind).increment(n as u64);
        }
    }
}
