//! Upload sessions in progress: the per-session lock and the running digest state.
//!
//! The durable truth is the `uploads` table plus the staging file; this map only saves
//! re-reading the staging file to rebuild the digest state on every chunk, and serialises
//! concurrent requests on one session. After a restart an entry is rebuilt on first use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::digest::Hasher;
use crate::storage::meta::{self, MetaResult, Metadata, uploads::UploadRecord};

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

    /// The session `id`, loading its record if this process has not seen it yet.
    pub fn get(&self, meta: &Metadata, id: &str) -> MetaResult<Option<Session>> {
        if let Some(s) = self.open.lock().expect("sessions lock").get(id) {
            return Ok(Some(s.clone()));
        }
        let Some(record) = meta::uploads::get(&meta.read()?, id)? else {
            return Ok(None);
        };
        let mut open = self.open.lock().expect("sessions lock");
        let session = open.entry(id.to_owned()).or_insert_with(|| {
            Arc::new(tokio::sync::Mutex::new(SessionState {
                record,
                hasher: None,
                finished: false,
            }))
        });
        Ok(Some(session.clone()))
    }

    /// Forgets session `id`.
    pub fn remove(&self, id: &str) {
        self.open.lock().expect("sessions lock").remove(id);
    }
}
