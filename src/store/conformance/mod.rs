//! The conformance suite: what every [`Store`] backend must do, checked the same way for
//! each (SPEC 9: one suite runs against SQLite and PostgreSQL).
//!
//! Each check is `pub async fn name(store: Arc<dyn Store>)` on a fresh, empty store,
//! and passes time in explicitly (receive times, claim times, attempt times), so no
//! check sleeps or reads the wall clock, except where a backend may rely on ids being
//! made at receive time (time-range search). Checks live in small files by topic, and
//! [`conformance_tests!`] lists them all: a new check is a `pub async fn` in one of
//! them plus a line there (its name must be unique across files, since every backend
//! gets one test function per check in one module). [`fixtures`] builds their data.
//!
//! A backend runs the suite by implementing [`Fresh`] and instantiating the macro in a
//! test module of its own, which gets one `#[tokio::test]` per check:
//!
//! ```ignore
//! #[cfg(test)]
//! mod postgres_conformance {
//!     struct PostgresFresh;
//!
//!     #[async_trait::async_trait]
//!     impl crate::store::conformance::Fresh for PostgresFresh {
//!         type Guard = SchemaGuard; // dropped when the test ends
//!         async fn fresh(&self) -> (Arc<dyn Store>, SchemaGuard) { … }
//!     }
//!
//!     crate::store::conformance::conformance_tests!(PostgresFresh);
//! }
//! ```

pub mod archive;
pub mod attempts;
pub mod capacity;
pub mod claims;
pub mod counts;
pub mod dead_letters;
pub mod deliveries;
pub mod events;
pub mod fixtures;
pub mod lifecycle;
pub mod ordering;
pub mod positions;
pub mod prepare;
pub mod rejected;
pub mod replays;
pub mod retention;
pub mod sealing;
pub mod search;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use super::Store;

/// Makes a fresh, empty store for one check: its own SQLite file, its own PostgreSQL
/// schema. Checks assume they are alone in the store (they count rows and claim
/// everything due).
#[async_trait]
pub trait Fresh: Send + Sync {
    /// Whatever must outlive the store for the length of the test (a temporary
    /// directory, a schema to drop); dropped after the store has been closed.
    type Guard: Send;

    /// A new store with the schema migrated and nothing in it.
    async fn fresh(&self) -> (Arc<dyn Store>, Self::Guard);
}

/// Expands to one `#[tokio::test]` per conformance check, each [`run`] on a store from
/// `$factory` (an expression whose type implements [`Fresh`], evaluated once per test).
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::store::conformance::conformance_tests!(@each $factory;
            events::dedup_holds_within_the_window_and_ends_after_it,
            events::concurrent_writers_are_all_answered_and_all_stored,
            events::concurrent_repeats_of_one_request_make_one_event,
            events::an_event_is_stored_as_received_with_one_pending_delivery_per_route,
            rejected::rejected_requests_are_kept_with_their_reason_and_cut_body,
            search::listing_filters_by_source_time_status_and_dedup_key,
            search::listing_pages_by_cursor_in_either_order_with_or_without_bodies,
            positions::positions_rise_with_each_commit_and_a_follower_reads_after_one,
            positions::commit_order_not_id_order_decides_positions,
            claims::claims_carry_the_event_and_hold_until_the_lease_ends,
            claims::claims_respect_the_limit_and_due_order,
            claims::claims_and_due_times_are_per_destination,
            claims::paused_routes_are_skipped_and_pauses_are_kept,
            claims::a_delay_sets_the_first_due_time_and_priority_overtakes_by_minutes,
            claims::a_batch_sees_its_due_deliveries_and_expired_leases_and_claims_its_route_only,
            attempts::attempts_move_deliveries_to_retrying_delivered_or_dead,
            attempts::a_late_attempt_does_not_undo_a_newer_claim,
            attempts::attempts_are_kept_with_their_responses_in_order,
            attempts::the_next_due_time_is_the_earliest_due_or_lease_end_strictly_after,
            attempts::attempts_reported_together_are_each_recorded_and_move_their_delivery,
            attempts::a_late_report_racing_the_newer_claims_report_is_kept_but_does_not_decide,
            attempts::an_attempt_recorded_twice_counts_once,
            deliveries::deliveries_are_listed_newest_first_by_state_route_and_destination,
            dead_letters::retry_now_makes_waiting_or_dead_deliveries_due_and_leaves_others,
            dead_letters::dead_letters_are_retried_or_discarded_by_route_destination_or_id,
            prepare::waiting_deliveries_are_not_claimed_until_prepared_and_a_split_makes_parts,
            prepare::one_body_replaces_the_payload_raw_sends_the_event_none_filters,
            prepare::a_delivery_set_aside_while_waiting_is_left_alone_by_prepare,
            prepare::a_later_delivery_with_the_debounce_key_supersedes_the_waiting_ones,
            ordering::one_delivery_per_ordering_key_is_out_at_a_time_in_receive_order,
            ordering::the_parts_of_an_ordered_split_go_one_at_a_time_in_part_order,
            ordering::ordering_keys_hold_per_route,
            replays::a_replay_queues_marked_deliveries_and_records_its_progress,
            replays::cancelling_a_replay_discards_what_waits_and_stops_it,
            replays::replays_are_listed_newest_first_and_running_only_to_resume,
            counts::delivery_counts_are_per_route_destination_and_state,
            counts::activity_counts_the_window_only,
            archive::archiving_takes_old_finished_events_and_removes_them_only_when_done,
            capacity::eviction_takes_the_oldest_finished_events_and_keeps_waiting_ones,
            retention::retention_purges_old_finished_data_per_source_and_keeps_waiting_work,
            retention::a_replay_step_skips_events_retention_removed_meanwhile,
            retention::attempt_retention_walks_on_from_the_last_removed_attempt,
            retention::finished_replay_jobs_are_purged_after_the_retention,
            lifecycle::a_ready_store_refuses_writes_once_closed,
        );
    };
    (@each $factory:expr; $($module:ident :: $check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::store::conformance::run(
                    &$factory,
                    $crate::store::conformance::$module::$check,
                )
                .await;
            }
        )*
    };
}

pub(crate) use conformance_tests;

/// Runs one check on a fresh store, then closes the store (so every check also shows
/// that `close` returns after whatever it did) and drops the guard after it.
pub async fn run<F, C, Fut>(factory: &F, check: C)
where
    F: Fresh,
    C: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let (store, guard) = factory.fresh().await;
    check(store.clone()).await;
    store.close().await;
    drop(store);
    drop(guard);
}
