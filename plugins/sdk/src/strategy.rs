//! The `replication-strategy` world: a pure planner.

pub use crate::bindings::exports::berth::plugin::strategy::{
    Artifact, Datacenter, Instance, Link, LinkLimit, Placement, PlanError, PlanRequest,
    ReplicationPlan, Topology, Transfer, Wave,
};

/// A positive whole number from the plugin's configuration under `key`, or `default`
/// when the admin set none; a value that is not one is refused, naming the key.
pub fn positive_setting(key: &str, default: u32) -> Result<u32, PlanError> {
    match crate::host::config(key) {
        None => Ok(default),
        Some(v) => v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
            PlanError::Invalid(format!("{key} must be a positive integer, not {v:?}"))
        }),
    }
}

/// The per-link caps of a plan that uses `links` (source, target): the topology's own
/// `max-parallel` for a link where it has one, never more than `cap`.
pub fn link_limits(
    topology: &Topology,
    links: impl IntoIterator<Item = (String, String)>,
    cap: u32,
) -> Vec<LinkLimit> {
    links
        .into_iter()
        .map(|(source, target)| {
            let link_cap = topology
                .links
                .iter()
                .find(|l| l.source == source && l.target == target)
                .and_then(|l| l.max_parallel)
                .unwrap_or(cap);
            LinkLimit {
                source,
                target,
                max_parallel: link_cap.min(cap),
            }
        })
        .collect()
}

/// Implement this, and [`crate::Plugin`], then `export_strategy!(YourType)`.
pub trait Strategy: crate::Plugin {
    /// Plans the transfers that bring every artifact to every target.
    fn plan(request: PlanRequest) -> Result<ReplicationPlan, PlanError>;
}

/// Exports a type implementing [`crate::Plugin`] and [`Strategy`] as the component's
/// `replication-strategy` world.
#[macro_export]
macro_rules! export_strategy {
    ($ty:ident) => {
        const _: () = {
            impl $crate::bindings::exports::berth::plugin::meta::Guest for $ty {
                fn info() -> $crate::PluginInfo {
                    <$ty as $crate::Plugin>::info()
                }
            }
            impl $crate::bindings::exports::berth::plugin::strategy::Guest for $ty {
                fn plan(
                    request: $crate::strategy::PlanRequest,
                ) -> ::core::result::Result<
                    $crate::strategy::ReplicationPlan,
                    $crate::strategy::PlanError,
                > {
                    <$ty as $crate::strategy::Strategy>::plan(request)
                }
            }
    $crate::bindings::__export_world!($ty with_types_in $crate::bindings);
        };
    };
}
