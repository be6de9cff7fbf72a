//! The instances of a job's topology as transfer ends: this instance's storage, or a
//! remote registry.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::replication::local::Local;
use crate::replication::remote::Remote;
use crate::replication::side::{SideError, Sink, Source};

/// The instances of a job's topology, as transfer ends.
pub(super) struct Sides {
    pub(super) local_id: String,
    pub(super) local: Arc<Local>,
    pub(super) remotes: BTreeMap<String, Arc<Remote>>,
}

impl Sides {
    /// The remote registry an instance is reached at, unless it is this instance.
    pub(super) fn remote(&self, instance: &str) -> Option<Arc<Remote>> {
        self.remotes.get(instance).cloned()
    }

    pub(super) fn source(&self, instance: &str) -> Result<Arc<dyn Source>, SideError> {
        if instance == self.local_id {
            return Ok(self.local.clone());
        }
        self.remotes
            .get(instance)
            .map(|r| r.clone() as Arc<dyn Source>)
            .ok_or_else(|| SideError::Refused(format!("no instance {instance} in the topology")))
    }

    pub(super) fn sink(&self, instance: &str) -> Result<Arc<dyn Sink>, SideError> {
        if instance == self.local_id {
            return Ok(self.local.clone());
        }
        self.remotes
            .get(instance)
            .map(|r| r.clone() as Arc<dyn Sink>)
            .ok_or_else(|| SideError::Refused(format!("no instance {instance} in the topology")))
    }
}
