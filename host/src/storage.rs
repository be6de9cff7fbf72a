//! Storage: where bytes and records live, behind interfaces the registry uses.
//!
//! Blobs go to a [`blob::BlobStore`] (the filesystem by default); records to the metadata
//! [`store::Store`], whose tables are declared in [`tables`] and kept by one of the
//! [`backends`] (redb, embedded; PostgreSQL, shared by several nodes). Components not yet
//! moved onto the interface still use [`meta::Metadata`], the redb database, directly.
//! `fsck` checks that blobs and records agree.

pub mod backends;
pub mod blob;
pub mod clock;
pub mod keys;
pub mod meta;
pub mod paths;
pub mod sealing;
pub mod store;
pub mod tables;

#[cfg(test)]
mod conformance;
#[cfg(test)]
pub(crate) mod testing;
