//! Metadata convergence for a dual-primary pair: users, projects, members, robot accounts
//! and replication settings made on one side exist on the other (Harbor never replicates
//! them, goharbor/harbor#8709, and its users fall back to database replication).
//!
//! Each record has a version: a clock taken when this instance first saw it as it is now
//! (a content hash tells), or a deletion's clock. A sync round sends the whole versioned
//! state to the peer (`POST /api/v1/replication/metadata`), which keeps, record by record,
//! whichever side's version is later, and answers with its own state, which the sender
//! merges the same way: one round trip converges both sides.
//!
//! Left out, because copying them would break the pair: the endpoints the pair uses to
//! reach each other and the policies that use them, and the accounts the two log in to
//! each other with (the sender never sends the account it uses there; the receiver never
//! changes the account the caller logged in with).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use utoipa::ToSchema;

use super::endpoints::EndpointRecord;
use super::policies::PolicyRecord;
use super::{Replication, ReplicationError, ReplicationResult};
use crate::auth::AccessControl;
use crate::auth::Role;
use crate::auth::exchange::AuthRecord;
use crate::storage::clock::Clock;
use crate::storage::store::{Durability, ReadTx, WriteTx};
use crate::storage::tables::replication::MetadataVersion;

/// What kind of record an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum MetadataKind {
    /// A user (its password hash travels, never a password).
    User,
    /// A project.
    Project,
    /// A user's role in a project; the key is `project/user`.
    Member,
    /// A robot account (the digest of its secret).
    Robot,
    /// A replication endpoint (its password, in the clear inside the TLS connection, is
    /// sealed again on arrival).
    Endpoint,
    /// A replication policy.
    Policy,
}

impl MetadataKind {
    fn as_str(self) -> &'static str {
        match self {
            MetadataKind::User => "user",
            MetadataKind::Project => "project",
            MetadataKind::Member => "member",
            MetadataKind::Robot => "robot",
            MetadataKind::Endpoint => "endpoint",
            MetadataKind::Policy => "policy",
        }
    }

    fn parse(s: &str) -> Option<MetadataKind> {
        Some(match s {
            "user" => MetadataKind::User,
            "project" => MetadataKind::Project,
            "member" => MetadataKind::Member,
            "robot" => MetadataKind::Robot,
            "endpoint" => MetadataKind::Endpoint,
            "policy" => MetadataKind::Policy,
            _ => return None,
        })
    }
}

/// One record's version and content (none: deleted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Item {
    /// What it is.
    pub kind: MetadataKind,
    /// Its name (`project/user` for members).
    pub key: String,
    /// Its version.
    #[schema(value_type = String)]
    pub clock: Clock,
    /// The record; absent when it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<Value>,
}

/// A sync round's message, either way.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MetadataState {
    /// Every record and deletion the sender knows, with their versions.
    pub items: Vec<Item>,
    /// Accounts the receiver must not send back or change: the one the sender logs in to
    /// the receiver with is excluded by the receiver already; this names the one the
    /// receiver logs in to the sender with, when the sender knows it.
    #[serde(default)]
    pub protected_accounts: Vec<String>,
    /// The sender's instance name: endpoints here that lead back to it are its pair's
    /// own and are left out.
    #[serde(default)]
    pub from_instance: Option<String>,
}

fn hash(body: &Value) -> String {
    hex::encode(Sha256::digest(body.to_string().as_bytes()))
}

impl Replication {
    /// This instance's metadata as items, without versions: what exists now.
    fn current(
        &self,
        tx: &dyn ReadTx,
        excluded_endpoints: &BTreeSet<String>,
        protected: &BTreeSet<String>,
    ) -> ReplicationResult<BTreeMap<(MetadataKind, String), Value>> {
        let mut out = BTreeMap::new();
        for record in AccessControl::records_in(tx)? {
            match record {
                AuthRecord::User(name, Some(user)) if !protected.contains(&name) => {
                    out.insert((MetadataKind::User, name), json(&user));
                }
                AuthRecord::Project(name, Some(project)) => {
                    out.insert((MetadataKind::Project, name), json(&project));
                }
                AuthRecord::Member {
                    project,
                    user,
                    role: Some(role),
                } => {
                    out.insert(
                        (MetadataKind::Member, format!("{project}/{user}")),
                        serde_json::json!({ "role": role.as_str() }),
                    );
                }
                AuthRecord::Robot(name, Some(robot)) if !protected.contains(&name) => {
                    out.insert((MetadataKind::Robot, name), json(&robot));
                }
                _ => {}
            }
        }
        for endpoint in tx.replication().endpoints()? {
            if excluded_endpoints.contains(&endpoint.name) {
                continue;
            }
            let mut body = json(&endpoint);
            if let Value::Object(map) = &mut body {
                map.remove("sealed_password");
                map.remove("instance");
                if let Some(password) = endpoint.password(&self.sealer)? {
                    map.insert("password".into(), Value::String(password));
                }
            }
            out.insert((MetadataKind::Endpoint, endpoint.name.clone()), body);
        }
        for policy in tx.replication().policies()? {
            if policy
                .endpoints
                .iter()
                .any(|e| excluded_endpoints.contains(e))
            {
                continue;
            }
            out.insert((MetadataKind::Policy, policy.name.clone()), json(&policy));
        }
        Ok(out)
    }

    /// Gives every record that is new or changed since it was last seen a new version,
    /// and every record gone since a deletion version; returns the versioned state.
    fn versioned(
        &self,
        excluded_endpoints: &BTreeSet<String>,
        protected: &BTreeSet<String>,
    ) -> ReplicationResult<Vec<Item>> {
        self.store.write_blocking(Durability::Immediate, |tx| {
            self.versioned_in(tx, excluded_endpoints, protected)
        })
    }

    /// [`Self::versioned`] inside `tx`. What exists is read in the same transaction that
    /// records the versions: read apart, a record a concurrent round applied in between
    /// would look deleted here and be mourned on both sides, and one deleted in between
    /// would be revived with a fresh version.
    fn versioned_in(
        &self,
        tx: &dyn WriteTx,
        excluded_endpoints: &BTreeSet<String>,
        protected: &BTreeSet<String>,
    ) -> ReplicationResult<Vec<Item>> {
        let current = self.current(tx.read(), excluded_endpoints, protected)?;
        let mut stored: BTreeMap<(MetadataKind, String), MetadataVersion> = BTreeMap::new();
        for (kind, key, version) in tx.replication().metadata_versions()? {
            if let Some(kind) = MetadataKind::parse(&kind) {
                stored.insert((kind, key), version);
            }
        }
        let mut items = Vec::new();
        // The stored version while the record is as it was (the same hash; empty for a
        // deletion), else a new one taken now.
        let mut record = |kind: MetadataKind, key: &str, body: Option<&Value>| {
            let h = body.map(hash).unwrap_or_default();
            let version = match stored.get(&(kind, key.to_owned())) {
                Some(v) if v.hash == h => v.clone(),
                _ => {
                    let v = MetadataVersion {
                        clock: self.registry.clock.now(),
                        hash: h,
                    };
                    tx.replication()
                        .put_metadata_version(kind.as_str(), key, &v)?;
                    v
                }
            };
            items.push(Item {
                kind,
                key: key.to_owned(),
                clock: version.clock,
                body: body.cloned(),
            });
            Ok::<_, ReplicationError>(())
        };
        for ((kind, key), body) in &current {
            record(*kind, key, Some(body))?;
        }
        for (kind, key) in stored.keys() {
            if current.contains_key(&(*kind, key.clone())) {
                continue;
            }
            // Records left out of the exchange (the pair's own endpoints, protected
            // accounts) are neither sent nor mourned.
            let excluded = match kind {
                MetadataKind::Endpoint => excluded_endpoints.contains(key),
                MetadataKind::User | MetadataKind::Robot => protected.contains(key),
                _ => false,
            };
            if !excluded {
                record(*kind, key, None)?;
            }
        }
        Ok(items)
    }

    /// Merges a peer's state: each record whose version is later than ours is applied.
    /// `protected` names accounts never changed here (the caller's own). Returns how
    /// many records changed.
    pub fn merge_metadata(
        &self,
        incoming: &[Item],
        excluded_endpoints: &BTreeSet<String>,
        protected: &BTreeSet<String>,
    ) -> ReplicationResult<usize> {
        let applied =
            self.store
                .write_blocking(Durability::Immediate, |tx| -> ReplicationResult<usize> {
                    // Local changes made since the last round get their versions first,
                    // in the same transaction, so that a change made here is never lost
                    // to an older one from the peer.
                    self.versioned_in(tx, excluded_endpoints, protected)?;
                    let mut applied = 0;
                    for item in incoming {
                        self.registry.clock.observe(&item.clock);
                        let skip = match item.kind {
                            MetadataKind::Endpoint => excluded_endpoints.contains(&item.key),
                            MetadataKind::Policy => item
                                .body
                                .as_ref()
                                .and_then(|b| {
                                    serde_json::from_value::<PolicyRecord>(b.clone()).ok()
                                })
                                .is_some_and(|p| {
                                    p.endpoints.iter().any(|e| excluded_endpoints.contains(e))
                                }),
                            MetadataKind::User | MetadataKind::Robot => {
                                protected.contains(&item.key)
                            }
                            _ => false,
                        };
                        if skip {
                            continue;
                        }
                        let ours = tx
                            .replication()
                            .metadata_version(item.kind.as_str(), &item.key)?;
                        if ours.as_ref().is_some_and(|v| v.clock >= item.clock) {
                            continue;
                        }
                        self.apply(tx, item)?;
                        let version = MetadataVersion {
                            clock: item.clock.clone(),
                            hash: item.body.as_ref().map(hash).unwrap_or_default(),
                        };
                        tx.replication().put_metadata_version(
                            item.kind.as_str(),
                            &item.key,
                            &version,
                        )?;
                        applied += 1;
                    }
                    Ok(applied)
                })?;
        if applied > 0 {
            self.registry.auth.invalidate_cached_logins();
            self.wake.notify_one();
        }
        Ok(applied)
    }

    fn apply(&self, whole: &dyn WriteTx, item: &Item) -> ReplicationResult<()> {
        let bad = |e: serde_json::Error| {
            ReplicationError::Invalid(format!("{:?} {}: {e}", item.kind, item.key))
        };
        let key = item.key.as_str();
        let auth_record = match (&item.kind, &item.body) {
            (MetadataKind::User, body) => Some(AuthRecord::User(
                key.to_owned(),
                body.as_ref()
                    .map(|b| serde_json::from_value(b.clone()).map_err(bad))
                    .transpose()?,
            )),
            (MetadataKind::Project, body) => {
                let project: Option<crate::auth::projects::ProjectRecord> = body
                    .as_ref()
                    .map(|b| serde_json::from_value(b.clone()).map_err(bad))
                    .transpose()?;
                if project.as_ref().is_some_and(|p| p.name != key) {
                    return Err(ReplicationError::Invalid(format!(
                        "project {key} carries a record named otherwise"
                    )));
                }
                Some(AuthRecord::Project(key.to_owned(), project))
            }
            (MetadataKind::Member, body) => {
                let Some((project, user)) = key.split_once('/') else {
                    return Err(ReplicationError::Invalid(format!(
                        "member key {key} is not project/user"
                    )));
                };
                Some(AuthRecord::Member {
                    project: project.to_owned(),
                    user: user.to_owned(),
                    role: body
                        .as_ref()
                        .and_then(|b| b["role"].as_str())
                        .and_then(Role::parse),
                })
            }
            (MetadataKind::Robot, body) => Some(AuthRecord::Robot(
                key.to_owned(),
                body.as_ref()
                    .map(|b| serde_json::from_value(b.clone()).map_err(bad))
                    .transpose()?,
            )),
            _ => None,
        };
        if let Some(record) = auth_record {
            AccessControl::apply_in(whole, &record)?;
            return Ok(());
        }
        let tx = whole;
        match (&item.kind, &item.body) {
            (
                MetadataKind::User
                | MetadataKind::Project
                | MetadataKind::Member
                | MetadataKind::Robot,
                _,
            ) => {
                unreachable!("auth's records are applied above")
            }
            (MetadataKind::Endpoint, Some(b)) => {
                let mut body = b.clone();
                let password = body
                    .as_object_mut()
                    .and_then(|m| m.remove("password"))
                    .and_then(|p| p.as_str().map(str::to_owned));
                let mut record: EndpointRecord = serde_json::from_value(body).map_err(bad)?;
                record.set_password(&self.sealer, password.as_deref());
                tx.replication().put_endpoint(&record)?;
                self.remotes.lock().expect("remotes lock").remove(key);
            }
            (MetadataKind::Endpoint, None) => {
                tx.replication().remove_endpoint(key)?;
            }
            (MetadataKind::Policy, Some(b)) => tx
                .replication()
                .put_policy(&serde_json::from_value(b.clone()).map_err(bad)?)?,
            (MetadataKind::Policy, None) => {
                tx.replication().remove_policy(key)?;
            }
        }
        Ok(())
    }

    /// One round with the peer of `policy`: send our state, merge theirs.
    pub(super) async fn sync_metadata(&self, policy: &PolicyRecord) -> ReplicationResult<usize> {
        let excluded: BTreeSet<String> = policy.endpoints.iter().cloned().collect();
        let mut applied = 0;
        for endpoint in &policy.endpoints {
            let record = self.endpoint(endpoint)?;
            // The account this instance logs in to the peer with is the peer's business.
            let protected: BTreeSet<String> = record.username.iter().cloned().collect();
            let items = self.versioned(&excluded, &protected)?;
            let remote = self.remote(endpoint)?;
            let state = MetadataState {
                items,
                protected_accounts: protected.iter().cloned().collect(),
                from_instance: Some(self.config.instance_name.clone()),
            };
            let answer = remote
                .exchange_metadata(&state)
                .await
                .map_err(|e| ReplicationError::Invalid(e.to_string()))?;
            applied += self.merge_metadata(&answer.items, &excluded, &protected)?;
        }
        Ok(applied)
    }

    /// A peer's round: merge its state, answer with ours. `caller` is the account it
    /// logged in with, which the exchange never changes.
    pub fn metadata_round(
        &self,
        incoming: MetadataState,
        caller: &str,
    ) -> ReplicationResult<MetadataState> {
        let (policies, endpoints) = self.store.read_blocking(|tx| -> ReplicationResult<_> {
            Ok((tx.replication().policies()?, tx.replication().endpoints()?))
        })?;
        let pairs: Vec<PolicyRecord> = policies
            .into_iter()
            .filter(|p| p.enabled && p.metadata)
            .collect();
        // Both sides of a pair say so: an instance not (yet) configured as one takes no
        // part, so that it cannot hand its own endpoint for the caller back to the caller.
        if pairs.is_empty() {
            return Err(ReplicationError::Conflict(
                "this instance keeps no metadata converged with a peer; give the pair's policy `metadata` on both sides".into(),
            ));
        }
        let mut excluded: BTreeSet<String> = pairs.into_iter().flat_map(|p| p.endpoints).collect();
        if let Some(from) = &incoming.from_instance {
            excluded.extend(
                endpoints
                    .into_iter()
                    .filter(|e| e.instance.as_ref() == Some(from))
                    .map(|e| e.name),
            );
        }
        let mut protected: BTreeSet<String> = incoming.protected_accounts.iter().cloned().collect();
        protected.insert(caller.to_string());
        self.merge_metadata(&incoming.items, &excluded, &protected)?;
        Ok(MetadataState {
            items: self.versioned(&excluded, &protected)?,
            protected_accounts: Vec::new(),
            from_instance: Some(self.config.instance_name.clone()),
        })
    }
}

fn json<T: Serialize>(record: &T) -> Value {
    serde_json::to_value(record).expect("records serialize")
}
