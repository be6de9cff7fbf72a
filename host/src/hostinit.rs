//! Host initialisation: what makes a new machine like every other before it takes work —
//! its clock synced, its kernel parameters set, a container engine pointed at berth —
//! applied over SSH by host-init plugins' plans, with dry runs, drift and resume.
//!
//! Built so far: the SSH client (`ssh.rs`): pinned host keys, commands with exit codes
//! and separate output under time limits; facts (`facts.rs`), gathered in one round trip
//! as the steps ask; actions (`actions.rs`) applied, or shown in check mode as a diff
//! (`apply.rs`). Plugins' plans and the pipeline that runs them come next.

pub mod actions;
pub mod apply;
pub mod facts;
pub mod ssh;
