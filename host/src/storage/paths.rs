//! The whole on-disk layout of a data directory, in one place.
//!
//! ```text
//! <data-dir>/
//! ├── berth.redb                  metadata: repositories, links, manifests, tags,
//! │                               referrers, upload sessions (see storage::meta); users,
//! │                               projects, members, robots, plugins, replication
//! │                               settings, jobs (see storage::backends::redb)
//! ├── audit.redb                  the audit log, apart so its writes never slow reads
//! ├── node-id                     this node's generated name (unless configured)
//! ├── keys/token-ed25519.key      the token signing key (0600)
//! ├── blobs/
//! │   ├── sha256/<hh>/<hex>       blob content named by its digest; written once,
//! │   └── sha512/<hh>/<hex>       fsync'd, renamed into place, never modified
//! ├── uploads/<id>                staging file of an upload session (append-only; the
//! │                               acknowledged length is recorded in berth.redb)
//! ├── quarantine/<algo>-<hex>     blobs `berth fsck --repair` found not to match their name
//! ├── keys/secrets.key            the key sealing plugin secrets at rest (0600)
//! └── plugins/
//!     ├── components/<hex>.wasm   loaded plugins' components, named by sha256
//!     └── compiled/               native code compiled from them (a cache; safe to delete)
//! ```
//!
//! `<hh>` is the first two hex characters of the digest: 256 fan-out directories keep any
//! one directory small, and are created up front so that a blob commit only has to fsync
//! the one directory its rename touched.

use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest};

/// Typed paths below one data directory.
#[derive(Debug, Clone)]
pub struct DataPaths {
    root: PathBuf,
}

impl DataPaths {
    /// Paths below `root`.
    pub fn new(root: impl Into<PathBuf>) -> DataPaths {
        DataPaths { root: root.into() }
    }

    /// The data directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The redb metadata file.
    pub fn metadata_db(&self) -> PathBuf {
        self.root.join("berth.redb")
    }

    /// This node's generated name (when the configuration gives none).
    pub fn node_id(&self) -> PathBuf {
        self.root.join("node-id")
    }

    /// The audit log database.
    pub fn audit_db(&self) -> PathBuf {
        self.root.join("audit.redb")
    }

    /// The token signing key.
    pub fn token_key(&self) -> PathBuf {
        self.root.join("keys").join("token-ed25519.key")
    }

    /// `blobs/<algorithm>`.
    pub fn blob_algorithm_dir(&self, algorithm: Algorithm) -> PathBuf {
        self.root.join("blobs").join(algorithm.name())
    }

    /// `blobs/<algorithm>/<hh>`: the directory a blob's rename lands in.
    pub fn blob_fanout_dir(&self, digest: &Digest) -> PathBuf {
        self.blob_algorithm_dir(digest.algorithm())
            .join(&digest.hex()[..2])
    }

    /// `blobs/<algorithm>/<hh>/<hex>`: a blob's content.
    pub fn blob(&self, digest: &Digest) -> PathBuf {
        self.blob_fanout_dir(digest).join(digest.hex())
    }

    /// `uploads/`.
    pub fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    /// `uploads/<id>`: an upload session's staging file.
    pub fn upload(&self, id: &str) -> PathBuf {
        self.uploads_dir().join(id)
    }

    /// The key that seals plugin secrets.
    pub fn secrets_key(&self) -> PathBuf {
        self.root.join("keys").join("secrets.key")
    }

    /// `plugins/components/<hex>.wasm`: a loaded plugin's component.
    pub fn plugin_component(&self, hex: &str) -> PathBuf {
        self.root
            .join("plugins")
            .join("components")
            .join(format!("{hex}.wasm"))
    }

    /// `plugins/compiled/`: the compiled-component cache.
    pub fn plugin_compiled_dir(&self) -> PathBuf {
        self.root.join("plugins").join("compiled")
    }

    /// `quarantine/`.
    pub fn quarantine_dir(&self) -> PathBuf {
        self.root.join("quarantine")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_paths_fan_out_by_the_first_two_hex_characters() {
        let paths = DataPaths::new("/d");
        let d = Digest::sha256_of(b"");
        assert_eq!(
            paths.blob(&d),
            PathBuf::from(
                "/d/blobs/sha256/e3/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
        );
    }
}
