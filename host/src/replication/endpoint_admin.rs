//! The service's endpoints: create, change, delete, check them, and the clients to them.

use std::sync::Arc;
use std::time::Duration;

use super::endpoints::EndpointRecord;
use super::remote::Remote;
use crate::storage::store::{Durability, now_millis};

use super::*;

impl Replication {
    /// Every endpoint.
    pub fn endpoints(&self) -> ReplicationResult<Vec<EndpointRecord>> {
        self.store
            .read_blocking(|tx| Ok(tx.replication().endpoints()?))
    }

    /// One endpoint.
    pub fn endpoint(&self, name: &str) -> ReplicationResult<EndpointRecord> {
        self.store
            .read_blocking(|tx| -> ReplicationResult<_> { Ok(tx.replication().endpoint(name)?) })?
            .ok_or_else(|| ReplicationError::NotFound(format!("no endpoint named {name}")))
    }

    /// Stores a new endpoint.
    pub fn create_endpoint(&self, record: EndpointRecord) -> ReplicationResult<EndpointRecord> {
        check_name("endpoint", &record.name)?;
        endpoints::check_url(&record.url)?;
        self.store
            .write_blocking(Durability::Immediate, |tx| -> ReplicationResult<()> {
                if tx.replication().endpoint(&record.name)?.is_some() {
                    return Err(ReplicationError::Conflict(format!(
                        "endpoint {} exists already",
                        record.name
                    )));
                }
                tx.replication().put_endpoint(&record)?;
                Ok(())
            })?;
        Ok(record)
    }

    /// Replaces an endpoint's settings (`change` edits the stored record).
    pub fn update_endpoint(
        &self,
        name: &str,
        mut change: impl FnMut(&mut EndpointRecord) -> ReplicationResult<()>,
    ) -> ReplicationResult<EndpointRecord> {
        let record = self.store.write_blocking(
            Durability::Immediate,
            |tx| -> ReplicationResult<EndpointRecord> {
                let mut record = tx.replication().endpoint(name)?.ok_or_else(|| {
                    ReplicationError::NotFound(format!("no endpoint named {name}"))
                })?;
                change(&mut record)?;
                record.url = endpoints::check_url(&record.url)?;
                record.updated_at = now_millis().max(record.updated_at + 1);
                tx.replication().put_endpoint(&record)?;
                Ok(record)
            },
        )?;
        self.remotes.lock().expect("remotes lock").remove(name);
        Ok(record)
    }

    /// Deletes an endpoint no policy uses.
    pub fn delete_endpoint(&self, name: &str) -> ReplicationResult<()> {
        self.store
            .write_blocking(Durability::Immediate, |tx| -> ReplicationResult<()> {
                let users: Vec<String> = tx
                    .replication()
                    .policies()?
                    .into_iter()
                    .filter(|p| p.endpoints.iter().any(|e| e == name))
                    .map(|p| p.name)
                    .collect();
                if !users.is_empty() {
                    return Err(ReplicationError::Conflict(format!(
                        "endpoint {name} is used by policies {}; change or delete them first",
                        users.join(", ")
                    )));
                }
                if !tx.replication().remove_endpoint(name)? {
                    return Err(ReplicationError::NotFound(format!(
                        "no endpoint named {name}"
                    )));
                }
                Ok(())
            })?;
        self.remotes.lock().expect("remotes lock").remove(name);
        Ok(())
    }

    /// Checks that an endpoint answers as a registry and accepts its credentials.
    pub async fn check_endpoint(&self, name: &str) -> ReplicationResult<EndpointHealth> {
        let remote = self.remote(name)?;
        let started = std::time::Instant::now();
        let result = remote.check().await;
        let latency_ms = started.elapsed().as_millis() as u64;
        if let Ok(Some(instance)) = &result {
            self.remember_instance(name, instance)?;
        }
        Ok(EndpointHealth {
            name: name.to_string(),
            healthy: result.is_ok(),
            latency_ms,
            error: result.err().map(|e| e.to_string()),
        })
    }

    /// Learns the instance name a berth endpoint reports, if it answers now.
    pub async fn learn_instance(&self, name: &str) {
        let Ok(record) = self.endpoint(name) else {
            return;
        };
        if record.kind != endpoints::EndpointKind::Berth {
            return;
        }
        if let Ok(remote) = self.remote(name)
            && let Ok(Some(instance)) = remote.check().await
            && let Err(e) = self.remember_instance(name, &instance)
        {
            tracing::warn!(endpoint = name, error = %e, "cannot record the endpoint's instance name");
        }
    }

    pub(super) fn remember_instance(&self, name: &str, instance: &str) -> ReplicationResult<()> {
        self.store
            .write_blocking(Durability::Immediate, |tx| -> ReplicationResult<()> {
                if let Some(mut record) = tx.replication().endpoint(name)?
                    && record.instance.as_deref() != Some(instance)
                {
                    record.instance = Some(instance.to_string());
                    tx.replication().put_endpoint(&record)?;
                }
                Ok(())
            })
    }

    /// The client for an endpoint, built once per version of its record.
    pub(super) fn remote(&self, name: &str) -> ReplicationResult<Arc<Remote>> {
        let record = self.endpoint(name)?;
        if let Some((version, remote)) = self.remotes.lock().expect("remotes lock").get(name)
            && *version == record.updated_at
        {
            return Ok(remote.clone());
        }
        let password = record.password(&self.sealer)?;
        let remote = Arc::new(
            Remote::new(
                &record,
                password,
                &self.config.instance_name,
                Duration::from_secs(self.config.request_timeout_secs.max(1)),
            )
            .map_err(|e| ReplicationError::Invalid(e.to_string()))?,
        );
        self.remotes
            .lock()
            .expect("remotes lock")
            .insert(name.to_string(), (record.updated_at, remote.clone()));
        Ok(remote)
    }
}
