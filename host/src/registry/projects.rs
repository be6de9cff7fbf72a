//! What the registry holds per project: the repositories under its name, and deleting a
//! project together with them in one transaction (the project record is auth's, removed
//! through [`AccessControl::remove_project_in`]).

use super::Registry;
use super::lookup::RepositorySummary;
use crate::auth::{AccessControl, AuthResult, AuthStoreError};
use crate::storage::store::{ReadTx, StoreResult};

/// Every repository named under `project/`, in name order.
fn repositories_of(tx: &dyn ReadTx, project: &str) -> StoreResult<Vec<String>> {
    let prefix = format!("{project}/");
    let mut out = Vec::new();
    let mut cursor = Some(prefix.clone());
    // Names sort after their prefix; stop at the first that does not start with it.
    'outer: loop {
        let batch = tx.registry().repositories(cursor.as_deref(), 1000)?;
        if batch.is_empty() {
            break;
        }
        for name in &batch {
            if !name.starts_with(&prefix) {
                break 'outer;
            }
            out.push(name.clone());
        }
        cursor = batch.last().cloned();
    }
    Ok(out)
}

/// Repositories of `project` that still hold manifests or blobs, with their counts.
fn non_empty(tx: &dyn ReadTx, project: &str) -> StoreResult<Vec<RepositorySummary>> {
    let tables = tx.registry();
    let mut out = Vec::new();
    for name in repositories_of(tx, project)? {
        let manifests = tables.manifest_count(&name)?;
        if manifests > 0 || tables.blob_link_count(&name)? > 0 {
            out.push(RepositorySummary {
                tags: tables.tags(&name, None, usize::MAX)?.len() as u64,
                manifests,
                name,
            });
        }
    }
    Ok(out)
}

impl Registry {
    /// The repositories of `project` that still hold manifests or blobs, in name order,
    /// with their tag and manifest counts.
    pub async fn non_empty_repositories(
        &self,
        project: &str,
    ) -> AuthResult<Vec<RepositorySummary>> {
        let project = project.to_owned();
        Ok(self
            .metadata
            .read(move |tx| non_empty(tx, &project))
            .await?)
    }

    /// Deletes project `name` with its memberships; refused while it holds repositories
    /// unless `force`, which deletes them (their manifests, tags and blob links) in the
    /// same transaction.
    pub async fn delete_project(&self, name: &str, force: bool) -> AuthResult<()> {
        let owned = name.to_owned();
        let found = self
            .metadata
            .write(move |tx| -> AuthResult<bool> {
                let holding = non_empty(tx.read(), &owned)?;
                if !holding.is_empty() && !force {
                    return Err(AuthStoreError::Conflict(format!(
                        "project {owned} still holds {} repositories ({}); delete them first or pass force=true",
                        holding.len(),
                        holding
                            .iter()
                            .take(5)
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
                for repo in repositories_of(tx.read(), &owned)? {
                    tx.registry().remove_repository(&repo)?;
                }
                AccessControl::remove_project_in(tx, &owned)
            })
            .await?;
        if !found {
            return Err(AuthStoreError::NotFound(format!("no project {name}")));
        }
        self.auth.invalidate_cached_logins();
        Ok(())
    }
}
