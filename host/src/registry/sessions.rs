//! Upload sessions in progress: the per-session lock and the running digest state.
//!
//! The durable truth is the `uploads` table plus the staging file, which every node
//! sharing the blob directory sees; this map only saves re-reading the staging file to
//! rebuild the digest state on every chunk, and serialises concurrent requests on one
//! session within this process. Where several nodes share the store, a session's chunks
//! may arrive at different nodes, so the record is read again under the lock
//! ([`Sessions::lock`]): if another node moved it on, the cached digest state is dropped
//! and rebuilt from the staging file.
//!
//! Where several nodes share the store, a request that writes a session first claims it
//! in the database ([`claim`]): the staging file is one file on shared storage, and a
//! client sending one session's chunks to two nodes at once must not have both write it.
//! The claim lapses unless renewed, so a node that dies mid-chunk blocks the session for
//! one [`CLAIM_TERM`] at most.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::time::Duration;

use super::Registry;
use super::errcode::{ErrorCode, RegistryError, RegistryResult};
use crate::digest::Hasher;
use crate::storage::store::{Durability, StoreError, now_millis};
use crate::storage::tables::registry::UploadRecord;

/// How long a claim on a session lasts unless renewed (every third of it while a request
/// streams a chunk).
pub const CLAIM_TERM: Duration = Duration::from_secs(30);

/// One session's state, behind its own async lock.
#[derive(Debug)]
pub struct SessionState {
    /// The durable record.
    pub record: UploadRecord,
    /// Digest state over exactly `record.acknowledged` bytes, when known.
    pub hasher: Option<Hasher>,
    /// Set once the session was closed or cancelled, for requests that waited on the lock.
    pub finished: bool,
}

/// A session handle.
pub type Session = Arc<tokio::sync::Mutex<SessionState>>;

/// The sessions this process has touched.
#[derive(Debug, Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Registers a session just created.
    pub fn insert(&self, id: &str, record: UploadRecord, hasher: Hasher) -> Session {
        let session = Arc::new(tokio::sync::Mutex::new(SessionState {
            record,
            hasher: Some(hasher),
            finished: false,
        }));
        self.open
            .lock()
            .expect("sessions lock")
            .insert(id.to_owned(), session.clone());
        session
    }

    fn cached(&self, id: &str) -> Option<Session> {
        self.open.lock().expect("sessions lock").get(id).cloned()
    }

    /// Session `id`, locked, with its record as stored now; `None` when no node has it
    /// open. With `wait` false, a session another request holds here is skipped (`None`).
    pub async fn lock(
        &self,
        registry: &Registry,
        id: &str,
        wait: bool,
    ) -> Result<Option<(Session, tokio::sync::OwnedMutexGuard<SessionState>)>, StoreError> {
        let session = match self.cached(id) {
            Some(session) => session,
            None => {
                let Some(record) = registry.upload(id).await? else {
                    return Ok(None);
                };
                let mut open = self.open.lock().expect("sessions lock");
                open.entry(id.to_owned())
                    .or_insert_with(|| {
                        Arc::new(tokio::sync::Mutex::new(SessionState {
                            record,
                            hasher: None,
                            finished: false,
                        }))
                    })
                    .clone()
            }
        };
        let mut guard = if wait {
            session.clone().lock_owned().await
        } else {
            match session.clone().try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => return Ok(None),
            }
        };
        if guard.finished {
            return Ok(None);
        }
        // One process (redb) writes its sessions only through this map: the cached record
        // is the stored one. Where nodes share the store, another may have moved it on.
        if !registry.metadata.is_shared() {
            return Ok(Some((session, guard)));
        }
        match registry.upload(id).await? {
            None => {
                // Finished or cancelled through another node.
                guard.finished = true;
                self.remove(id);
                Ok(None)
            }
            Some(stored) => {
                // Moved on elsewhere: the cached digest state no longer matches the file.
                if stored.acknowledged != guard.record.acknowledged {
                    guard.hasher = None;
                }
                guard.record = stored;
                Ok(Some((session, guard)))
            }
        }
    }

    /// Forgets session `id`.
    pub fn remove(&self, id: &str) {
        self.open.lock().expect("sessions lock").remove(id);
    }
}

/// What a claim attempt found.
enum Claimed {
    Got(UploadRecord),
    Busy(u64),
    Gone,
}

/// Claims locked session `id` for the request holding `state`'s lock, where the store is
/// shared (on redb, one process, the lock is enough): refused with `429` and
/// `Retry-After` while another node's request holds an unexpired claim. The claim ends
/// with the commit that moves the session on, or with [`release`].
pub async fn claim(registry: &Registry, id: &str, state: &mut SessionState) -> RegistryResult<()> {
    if !registry.metadata.is_shared() {
        return Ok(());
    }
    let token = uuid::Uuid::new_v4().to_string();
    let (store, id2, token2) = (registry.metadata.clone(), id.to_owned(), token.clone());
    let claimed = tokio::task::spawn_blocking(move || {
        // Lazy: a claim lost in a crash of the database loses nothing acknowledged.
        store.write_blocking(Durability::Lazy, |tx| -> Result<Claimed, StoreError> {
            let now = now_millis();
            let Some(mut record) = tx.registry().upload(&id2)? else {
                return Ok(Claimed::Gone);
            };
            if record.claimed_by.is_some() && record.claimed_until > now {
                return Ok(Claimed::Busy(record.claimed_until - now));
            }
            record.claimed_by = Some(token2.clone());
            record.claimed_until = now + CLAIM_TERM.as_millis() as u64;
            tx.registry().put_upload(&id2, &record)?;
            Ok(Claimed::Got(record))
        })
    })
    .await??;
    match claimed {
        Claimed::Got(record) => {
            if record.acknowledged != state.record.acknowledged {
                state.hasher = None;
            }
            state.record = record;
            Ok(())
        }
        Claimed::Busy(left_ms) => Err(RegistryError::new(ErrorCode::TooManyRequests)
            .message("another request is writing this upload through another node; retry when it is done")
            .header(
                axum::http::header::RETRY_AFTER,
                &left_ms.div_ceil(1000).max(1).to_string(),
            )),
        Claimed::Gone => {
            state.finished = true;
            Err(RegistryError::new(ErrorCode::BlobUploadUnknown))
        }
    }
}

/// Extends the claim `state` holds by another term; says whether it still held it.
pub async fn renew(registry: &Registry, id: &str, token: &str) -> bool {
    let (store, id, token) = (registry.metadata.clone(), id.to_owned(), token.to_owned());
    let renewed = tokio::task::spawn_blocking(move || {
        store.write_blocking(Durability::Lazy, |tx| -> Result<bool, StoreError> {
            match tx.registry().upload(&id)? {
                Some(mut record) if record.claimed_by.as_deref() == Some(token.as_str()) => {
                    record.claimed_until = now_millis() + CLAIM_TERM.as_millis() as u64;
                    tx.registry().put_upload(&id, &record)?;
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
    })
    .await;
    matches!(renewed, Ok(Ok(true)))
}

/// Gives up the claim `state` holds, if it holds one (a request that failed before its
/// commit), so that the client's retry through another node need not wait for it to lapse.
pub async fn release(registry: &Registry, id: &str, state: &mut SessionState) {
    let Some(token) = state.record.claimed_by.take() else {
        return;
    };
    state.record.claimed_until = 0;
    let (store, id2) = (registry.metadata.clone(), id.to_owned());
    let released = tokio::task::spawn_blocking(move || {
        store.write_blocking(Durability::Lazy, |tx| -> Result<(), StoreError> {
            if let Some(mut record) = tx.registry().upload(&id2)?
                && record.claimed_by.as_deref() == Some(token.as_str())
            {
                record.claimed_by = None;
                record.claimed_until = 0;
                tx.registry().put_upload(&id2, &record)?;
            }
            Ok(())
        })
    })
    .await;
    if !matches!(released, Ok(Ok(()))) {
        tracing::warn!(
            upload = id,
            "could not release an upload's claim; it lapses by itself"
        );
    }
}
