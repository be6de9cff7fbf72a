//! The OCI Distribution API v1.1 (`/v2/…`): routing, handlers, manifest validation and
//! the error codes, over the storage interfaces.
//!
//! The registry knows repositories, blobs and manifests. Who is asking and what they may
//! do is decided by [`crate::auth::AccessControl`], asked once per request by
//! [`guard::admit`] before any handler runs.

pub mod arrivals;
pub mod content;
pub mod errcode;
pub mod fsck;
pub mod guard;
pub mod handlers;
pub mod linked;
pub mod lookup;
pub mod manifest;
pub mod projects;
pub mod purge;
pub mod routes;
pub mod sessions;
pub mod tags;

use std::sync::Arc;

use crate::auth::AccessControl;
use crate::config::RegistryConfig;
use crate::events::Feed;
use crate::storage::blob::BlobStore;
use crate::storage::clock::Hlc;
use crate::storage::store::Store;
use linked::LinkedBlobs;

/// Everything a registry handler needs.
pub struct Registry {
    /// The metadata store: the registry's tables (repositories, links, manifests, tags, referrers,
    /// sessions) and the other components' it shares transactions with.
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
    /// The event feed pushes, tag moves and deletes are published to; told after each
    /// commit that published, so that its consumers (replication) need not poll.
    pub feed: Feed,
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
        metadata: Store,
        feed: Feed,
        store: Arc<dyn BlobStore>,
        config: RegistryConfig,
        auth: Arc<AccessControl>,
        tls: bool,
        instance: &str,
    ) -> Registry {
        let linked = LinkedBlobs::new(metadata.clone(), store.clone());
        Registry {
            metadata,
            feed,
            store,
            linked,
            sessions: sessions::Sessions::default(),
            config,
            auth,
            tls,
            arrivals: Arc::default(),
            clock: Hlc::new(instance),
            ack_gate: std::sync::OnceLock::new(),
        }
    }
}
