//! The OCI Distribution API v1.1 (`/v2/…`): routing, handlers, manifest validation and
//! the error codes, over the storage interfaces.
//!
//! The registry knows repositories, blobs and manifests. Who is asking and what they may
//! do is decided by [`crate::auth::AccessControl`], asked once per request by
//! [`guard::admit`] before any handler runs.

pub mod arrivals;
pub mod content;
pub mod errcode;
pub mod guard;
pub mod handlers;
pub mod manifest;
pub mod projects;
pub mod purge;
pub mod routes;
pub mod sessions;

use std::sync::Arc;

use crate::auth::AccessControl;
use crate::config::RegistryConfig;
use crate::storage::blob::BlobStore;
use crate::storage::blob::linked::LinkedBlobs;
use crate::storage::clock::Hlc;
use crate::storage::meta::Metadata;
use crate::storage::store::Store;

/// Everything a registry handler needs.
pub struct Registry {
    /// Metadata (repositories, links, manifests, tags, referrers, sessions), in redb.
    pub meta: Arc<Metadata>,
    /// The metadata interface over the same database, which components move onto one at
    /// a time (see `storage::store`).
    pub metadata: Store,
    /// Blob content.
    pub store: Arc<dyn BlobStore>,
    /// Blobs as repositories see them.
    pub linked: LinkedBlobs,
    /// Upload sessions in progress on this process.
    pub sessions: sessions::Sessions,
    /// Limits and switches.
    pub config: RegistryConfig,
    /// Who may do what.
    pub auth: Arc<AccessControl>,
    /// Whether clients reach this server over TLS (for the token realm's scheme).
    pub tls: bool,
    /// Notified after every commit that appended to the change feed, so its consumer
    /// (replication) need not poll.
    pub changed: Arc<tokio::sync::Notify>,
    /// Content landing here and blobs still arriving, for whoever waits for them (a tree
    /// hop forwarding what it still receives).
    pub arrivals: Arc<arrivals::Arrivals>,
    /// The clock tag moves and deletes are stamped with (see `storage::clock`).
    pub clock: Hlc,
    /// Asked before a client's manifest push is acknowledged (synchronous replication
    /// installs itself here; the registry knows only this interface).
    pub ack_gate: std::sync::OnceLock<Arc<dyn AckGate>>,
}

/// Something that must happen before a client hears that its manifest push succeeded.
#[async_trait::async_trait]
pub trait AckGate: Send + Sync {
    /// Returns when `repository:reference` (already stored here) may be acknowledged.
    async fn before_ack(&self, repository: &str, reference: &str);
}

impl Registry {
    /// A registry over the given stores; `instance` names it in tag clocks.
    pub fn new(
        meta: Arc<Metadata>,
        metadata: Store,
        store: Arc<dyn BlobStore>,
        config: RegistryConfig,
        auth: Arc<AccessControl>,
        tls: bool,
        instance: &str,
    ) -> Registry {
        let linked = LinkedBlobs::new(meta.clone(), store.clone());
        Registry {
            meta,
            metadata,
            store,
            linked,
            sessions: sessions::Sessions::default(),
            config,
            auth,
            tls,
            changed: Arc::new(tokio::sync::Notify::new()),
            arrivals: Arc::default(),
            clock: Hlc::new(instance),
            ack_gate: std::sync::OnceLock::new(),
        }
    }
}
