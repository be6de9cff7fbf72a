//! Compiled components on disk, keyed by the component's digest and the engine's
//! compatibility hash, so a restart loads native code instead of compiling again.
//!
//! Loading native code from a file is trusted by nature; the file sits in the data
//! directory (which the host keeps 0700), and a sha256 sidecar written after it catches a
//! truncated or corrupt artifact, which is then recompiled instead of run.

use std::fs;
use std::hash::{Hash as _, Hasher as _};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled artifacts.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    engine_tag: String,
}

impl ArtifactCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(ArtifactCache {
            dir: dir.to_path_buf(),
            engine_tag: format!("{:016x}", hasher.finish()),
        })
    }

    fn paths(&self, digest_hex: &str) -> (PathBuf, PathBuf) {
        let base = format!("{digest_hex}-{}", self.engine_tag);
        (
            self.dir.join(format!("{base}.cwasm")),
            self.dir.join(format!("{base}.sha256")),
        )
    }

    /// The cached component for `digest_hex`, if a sound one is there.
    pub(crate) fn load(&self, engine: &Engine, digest_hex: &str) -> Option<Component> {
        let (artifact, sidecar) = self.paths(digest_hex);
        let bytes = fs::read(&artifact).ok()?;
        let expected = fs::read_to_string(&sidecar).ok()?;
        if hex::encode(Sha256::digest(&bytes)) != expected.trim() {
            tracing::warn!(path = %artifact.display(), "compiled plugin artifact does not match its checksum; recompiling");
            return None;
        }
        deserialize(engine, &bytes)
    }

    /// Stores `component` for `digest_hex`. Failure only costs a recompile next time.
    pub(crate) fn store(&self, digest_hex: &str, component: &Component) {
        let (artifact, sidecar) = self.paths(digest_hex);
        let result = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                write_atomically(&artifact, &bytes)?;
                write_atomically(&sidecar, hex::encode(Sha256::digest(&bytes)).as_bytes())
            });
        if let Err(e) = result {
            tracing::warn!(path = %artifact.display(), error = %e, "could not cache a compiled plugin");
        }
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> Option<Component> {
    // SAFETY: the bytes were produced by `Component::serialize` on an engine with the same
    // compatibility hash (it is in the file name, and wasmtime checks its own header
    // again), and their checksum matches the one written after them.
    match unsafe { Component::deserialize(engine, bytes) } {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(error = %e, "cached plugin artifact refused by the engine; recompiling");
            None
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
}
