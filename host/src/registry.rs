//! The OCI Distribution API v1.1 (`/v2/…`): routing, handlers, manifest validation and
//! the error codes, over the storage interfaces.
//!
//! The registry knows repositories, blobs and manifests. It does not know who is asking:
//! access control sits in front of [`routes::router`] and speaks to it only through the
//! typed request it parses.

pub mod errcode;
pub mod handlers;
pub mod manifest;
pub mod names;
pub mod purge;
pub mod routes;
pub mod sessions;

use std::sync::Arc;

use crate::config::RegistryConfig;
use crate::storage::blob::BlobStore;
use crate::storage::blob::linked::LinkedBlobs;
use crate::storage::meta::Metadata;

/// Everything a registry handler needs.
pub struct Registry {
    /// Metadata (repositories, links, manifests, tags, referrers, sessions).
    pub meta: Arc<Metadata>,
    /// Blob content.
    pub store: Arc<dyn BlobStore>,
    /// Blobs as repositories see them.
    pub linked: LinkedBlobs,
    /// Upload sessions in progress on this process.
    pub sessions: sessions::Sessions,
    /// Limits and switches.
    pub config: RegistryConfig,
}

impl Registry {
    /// A registry over the given stores.
    pub fn new(meta: Arc<Metadata>, store: Arc<dyn BlobStore>, config: RegistryConfig) -> Registry {
        let linked = LinkedBlobs::new(meta.clone(), store.clone());
        Registry {
            meta,
            store,
            linked,
            sessions: sessions::Sessions::default(),
            config,
        }
    }
}
