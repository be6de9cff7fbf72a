//! The storage interface's conformance suite: every case runs against both backends, so
//! a service written against [`super::store`] behaves the same on either.

mod audit;
mod auth;
mod cost;
mod events;
mod jobs;
mod plugins;
mod registry;
mod replication;
mod scheduling;
mod transactions;

/// Each case (`module::case`) as a test per backend.
macro_rules! conformance {
    ($($module:ident :: $case:ident),* $(,)?) => {
        mod redb {
            $(#[test] fn $case() { let (store, _dir) = crate::storage::testing::redb_store(); super::$module::$case(&store) })*
        }
        mod postgres {
            $(#[test] fn $case() { super::$module::$case(&crate::storage::testing::postgres_store()) })*
        }
    };
}

conformance!(
    events::events_are_numbered_in_commit_order_and_read_past_a_cursor,
    events::cursors_hold_their_place_and_trimming_never_restarts_numbers,
    events::concurrent_appends_get_distinct_numbers_without_gaps,
    events::an_event_that_commits_late_is_not_skipped,
    jobs::jobs_get_increasing_ids_and_round_trip_every_field,
    jobs::jobs_are_listed_newest_first_by_kind_subject_and_state,
    jobs::tasks_come_in_index_order_and_go_with_their_job,
    jobs::producer_state_counts_and_forgets,
    plugins::plugins_round_trip_every_field,
    plugins::plugins_list_in_byte_order,
    plugins::plugins_put_replaces_and_remove_says_whether_it_removed,
    plugins::plugin_secrets_round_trip_bytes,
    audit::audit_entries_come_back_newest_first_in_pages,
    audit::audit_filters_by_actor_action_resource_prefix_and_time,
    audit::audit_retention_removes_only_older_entries,
    auth::users_round_trip_and_count,
    auth::projects_list_in_byte_order_and_replace,
    auth::members_by_project_with_roles,
    auth::removing_a_user_or_project_removes_its_memberships_only,
    auth::robots_round_trip_grants_and_expiry,
    registry::manifests_round_trip_every_field_and_their_exact_bytes,
    registry::a_manifest_is_found_by_tag_or_digest_in_one_call,
    registry::repositories_and_tags_come_in_byte_order_in_pages,
    registry::tag_history_keeps_the_newest_entries_and_tombstones_the_latest,
    registry::referrers_are_kept_per_subject_in_digest_order,
    registry::blob_links_and_upload_sessions_round_trip,
    registry::removing_a_repository_removes_what_it_holds_and_nothing_else,
    replication::endpoints_round_trip_every_field,
    replication::policies_round_trip_every_field,
    replication::metadata_versions_keep_their_clock_and_hash,
    replication::degraded_links_round_trip_and_clear_one_at_a_time,
    scheduling::clusters_round_trip_every_field_in_byte_order,
    scheduling::machines_round_trip_are_found_by_token_and_filtered,
    scheduling::transitions_come_back_in_order_per_machine,
    scheduling::quotas_are_set_replaced_and_removed,
    scheduling::pool_hosts_are_kept_per_pool_in_name_order,
    cost::sheet_versions_and_rates_round_trip_in_time_order,
    cost::entries_are_numbered_exact_and_filtered,
    cost::a_cursor_moves_with_its_entries_or_not_at_all,
    transactions::a_failed_write_leaves_nothing,
    transactions::a_lazy_write_is_visible_to_later_reads,
    transactions::a_read_sees_one_snapshot_and_a_write_sees_its_own_writes,
    transactions::concurrent_read_modify_writes_lose_no_update,
);
