//! The storage interface's conformance suite: every case runs against both backends, so
//! a service written against [`super::store`] behaves the same on either.

mod audit;
mod auth;
mod jobs;
mod plugins;
mod replication;
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
    replication::endpoints_round_trip_every_field,
    replication::policies_round_trip_every_field,
    replication::metadata_versions_keep_their_clock_and_hash,
    transactions::a_failed_write_leaves_nothing,
    transactions::a_lazy_write_is_visible_to_later_reads,
    transactions::a_read_sees_one_snapshot_and_a_write_sees_its_own_writes,
    transactions::concurrent_read_modify_writes_lose_no_update,
);
