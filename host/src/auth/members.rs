//! The membership service: each user's role in each project (table `members`).

use super::access::Role;
use super::authenticate::AccessControl;
use super::{AuthResult, AuthStoreError};

impl AccessControl {
    /// The members of `project` with their roles, in name order.
    pub async fn members(&self, project: &str) -> AuthResult<Vec<(String, Role)>> {
        let project = project.to_owned();
        self.store()
            .read(move |tx| Ok(tx.auth().members(&project)?))
            .await
    }

    /// Gives user `user` `role` in `project`, replacing an earlier role; both must exist.
    pub async fn set_member(&self, project: &str, user: &str, role: Role) -> AuthResult<()> {
        let (project, user) = (project.to_owned(), user.to_owned());
        self.store()
            .write(move |tx| -> AuthResult<()> {
                if tx.auth().project(&project)?.is_none() {
                    return Err(AuthStoreError::NotFound(format!("no project {project}")));
                }
                if tx.auth().user(&user)?.is_none() {
                    return Err(AuthStoreError::NotFound(format!(
                        "no user {user}; create it first"
                    )));
                }
                tx.auth().set_role(&project, &user, role)?;
                // Every node's access cache may hold the earlier role.
                tx.auth().bump_revision()?;
                Ok(())
            })
            .await?;
        self.invalidate_cached_logins();
        Ok(())
    }

    /// Removes user `user` from `project`.
    pub async fn remove_member(&self, project: &str, user: &str) -> AuthResult<()> {
        let (p, u) = (project.to_owned(), user.to_owned());
        let found = self
            .store()
            .write(move |tx| -> AuthResult<bool> {
                tx.auth().bump_revision()?;
                Ok(tx.auth().remove_member(&p, &u)?)
            })
            .await?;
        self.invalidate_cached_logins();
        if !found {
            return Err(AuthStoreError::NotFound(format!(
                "{user} is not a member of {project}"
            )));
        }
        Ok(())
    }
}
