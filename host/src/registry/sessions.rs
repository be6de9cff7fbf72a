//! Upload sessions in progress: the per-session lock and the running digest state.
//!
//! The durable truth is the `uploads` table plus the staging file, which every node
//! sharing the blob directory sees; this map only saves re-reading the staging file to
//! rebuild the digest state on every chunk, and serialises concurrent requests on one
//! session within this process. A session's chunks may arrive at different nodes, so the
//! record is read again under the lock ([`Sessions::lock`]): if another node moved it on,
//! the cached digest state is dropped and rebuilt from the staging file.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Registry;
use crate::digest::Hasher;
use crate::storage::store::StoreError;
use crate::storage::tables::registry::UploadRecord;

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
        match registry.upload(id).await? {
            None => {
                // Finished or cancelled through another node.
                guard.finished = true;
                self.remove(id);
                Ok(None)
            }
            Some(stored) => {
                if stored != guard.record {
                    guard.record = stored;
                    guard.hasher = None;
                }
                Ok(Some((session, guard)))
            }
        }
    }

    /// Forgets session `id`.
    pub fn remove(&self, id: &str) {
        self.open.lock().expect("sessions lock").remove(id);
    }
}
