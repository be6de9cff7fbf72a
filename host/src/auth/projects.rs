//! The project service: projects (table `projects`), the first component of every
//! repository name, public or private. Deleting one is the registry's (it removes the
//! project's repositories in the same transaction, through [`AccessControl::remove_project_in`]).

use super::authenticate::AccessControl;
use super::{AuthResult, AuthStoreError};
use crate::storage::store::{WriteTx, now_millis};

pub use crate::storage::tables::auth::ProjectRecord;

/// Checks a project name: one component of the repository-name grammar, at most 63
/// characters.
pub fn check_name(name: &str) -> AuthResult<()> {
    if name.len() <= 63 && crate::names::component_is_valid(name) {
        Ok(())
    } else {
        Err(AuthStoreError::Invalid(format!(
            "invalid project name {:?}: lowercase letters and digits, separated by '.', '_', '__' or '-', at most 63 characters",
            name.chars().take(80).collect::<String>()
        )))
    }
}

impl AccessControl {
    /// Creates project `name`; refused if the name breaks the grammar or it exists.
    pub async fn create_project(
        &self,
        name: &str,
        public: bool,
        created_by: &str,
    ) -> AuthResult<ProjectRecord> {
        check_name(name)?;
        let record = ProjectRecord {
            name: name.to_owned(),
            public,
            created_by: created_by.to_owned(),
            created_at: now_millis(),
        };
        self.store()
            .write(move |tx| -> AuthResult<ProjectRecord> {
                if tx.auth().project(&record.name)?.is_some() {
                    return Err(AuthStoreError::Conflict(format!(
                        "project {} exists already",
                        record.name
                    )));
                }
                tx.auth().put_project(&record)?;
                Ok(record.clone())
            })
            .await
    }

    /// Makes project `name` public or private.
    pub async fn set_project_public(&self, name: &str, public: bool) -> AuthResult<ProjectRecord> {
        let name = name.to_owned();
        self.store()
            .write(move |tx| -> AuthResult<ProjectRecord> {
                let mut record = tx
                    .auth()
                    .project(&name)?
                    .ok_or_else(|| AuthStoreError::NotFound(format!("no project {name}")))?;
                record.public = public;
                tx.auth().put_project(&record)?;
                // Other nodes' access caches hold the project as it was.
                tx.auth().bump_revision()?;
                Ok(record)
            })
            .await
            .inspect(|_| self.invalidate_cached_logins())
    }

    /// Project `name` as the caller's transaction sees it, for components that keep
    /// records about projects (scheduling's grants and quotas).
    pub fn project_in(
        tx: &dyn crate::storage::store::ReadTx,
        name: &str,
    ) -> crate::storage::store::StoreResult<Option<ProjectRecord>> {
        tx.auth().project(name)
    }

    /// Removes project `name` and its memberships inside the caller's transaction; false
    /// if there was no such project. Forget cached logins once it commits.
    pub fn remove_project_in(tx: &dyn WriteTx, name: &str) -> AuthResult<bool> {
        // Every node's access cache may hold the project.
        tx.auth().bump_revision()?;
        Ok(tx.auth().remove_project(name)?)
    }
}
