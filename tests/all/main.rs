//! berth's end-to-end tests: one binary, a module per area, real processes and clients.

mod api;
mod architecture;
mod auth;
mod cli;
mod cluster;
mod concurrency;
mod crash;
mod edges;
mod hostinit;
mod nodes;
mod oci_client;
mod plugin_versions;
mod plugins;
mod replication;
mod replication_heals;
mod sandbox;
mod scheduling;
mod skopeo;
mod support;
