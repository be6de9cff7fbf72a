//! What the registry holds per project: the repositories under its name, and deleting a
//! project together with them in one transaction (the project record is auth's, removed
//! through [`AccessControl::remove_project_in`]).

use super::Registry;
use crate::auth::{AccessControl, AuthResult, AuthStoreError};
use crate::storage::meta::{self, MetaResult};
use crate::storage::store::StoreError;

/// Every repository named under `project/`, in name order.
fn repositories_of(tx: &impl meta::Reader, project: &str) -> MetaResult<Vec<String>> {
    let prefix = format!("{project}/");
    let mut out = Vec::new();
    let mut cursor = Some(prefix.clone());
    // Names sort after their prefix; stop at the first that does not start with it.
    'outer: loop {
        let batch = meta::repositories::list(tx, cursor.as_deref(), 1000)?;
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

/// Repositories of `project` that still hold manifests or blobs.
fn non_empty(tx: &impl meta::Reader, project: &str) -> MetaResult<Vec<String>> {
    let mut out = Vec::new();
    for repo in repositories_of(tx, project)? {
        if meta::manifests::count(tx, &repo)? > 0 || meta::blob_links::count(tx, &repo)? > 0 {
            out.push(repo);
        }
    }
    Ok(out)
}

/// The registry's tables are not on the storage interface yet: only redb has them.
fn registry_tables_missing() -> StoreError {
    StoreError::Backend(
        "the registry's tables are kept in the embedded database only, so far".to_string(),
    )
}

impl Registry {
    /// The repositories of `project` that still hold manifests or blobs, in name order.
    pub fn non_empty_repositories(&self, project: &str) -> AuthResult<Vec<String>> {
        Ok(non_empty(&self.meta.read()?, project)?)
    }

    /// Deletes project `name` with its memberships; refused while it holds repositories
    /// unless `force`, which deletes them (their manifests, tags and blob links) in the
    /// same transaction.
    pub async fn delete_project(&self, name: &str, force: bool) -> AuthResult<()> {
        let owned = name.to_owned();
        let found = self
            .metadata
            .write(move |tx| -> AuthResult<bool> {
                let legacy = tx.redb_legacy().ok_or_else(registry_tables_missing)?;
                let holding = non_empty(legacy, &owned)?;
                if !holding.is_empty() && !force {
                    return Err(AuthStoreError::Conflict(format!(
                        "project {owned} still holds {} repositories ({}); delete them first or pass force=true",
                        holding.len(),
                        holding.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                for repo in repositories_of(legacy, &owned)? {
                    meta::repositories::purge(legacy, &repo)?;
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
