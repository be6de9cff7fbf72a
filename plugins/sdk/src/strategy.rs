//! The `replication-strategy` world: a pure planner.

pub use crate::bindings::exports::berth::plugin::strategy::{
    Artifact, Datacenter, Instance, Link, LinkLimit, Placement, PlanError, PlanRequest,
    ReplicationPlan, Topology, Transfer, Wave,
};

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
