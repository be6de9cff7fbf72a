//! The shared jobs runner: durable jobs and their tasks for every component that has
//! long work to do (replication first; machine operations, host initialisation and
//! preheat next), on the storage interface so several berth nodes share one queue.
//!
//! A component (a job's *kind*) queues jobs and writes their tasks inside its own
//! transactions ([`queue`]); a node works on a job only while it holds the job's lease
//! ([`lease`]): it renews it while it works, an operator's cancellation reaches it at the
//! next renewal, and a job whose node died is taken over by another once the lease lapses.
//! Retries back off with jitter ([`backoff`]); finished jobs are retired after their
//! retention ([`queue::retire`]).

pub mod backoff;
pub mod lease;
pub mod queue;

pub use crate::storage::tables::jobs::{JobFilter, JobRow, Lease, RunState, TaskRow};
