//! Storage: where bytes and records live, behind interfaces the registry uses.
//!
//! Blobs go to a [`blob::BlobStore`] (the filesystem by default); everything else to the
//! [`meta::Metadata`] database. `fsck` checks that the two agree.

pub mod blob;
pub mod fsck;
pub mod meta;
pub mod paths;
pub mod sealing;
