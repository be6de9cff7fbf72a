//! Authorisation, decided in one place: a project, a principal's membership or grants and
//! the permission matrix meet here and nowhere else; the registry, the admin API and
//! listings ask these methods, and tokens are granted from them.

use std::sync::atomic::Ordering;

use crate::auth::access::{self, Action, Role};
use crate::auth::principal::Principal;
use crate::auth::projects::ProjectRecord;
use crate::auth::scope::Scope;
use crate::storage::store::{ReadTx, StoreError};

use super::{AccessControl, Caller};

/// What a principal may do to one repository.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryAccess {
    /// Whether the repository's project exists.
    pub project_exists: bool,
    /// The allowed registry actions (pull, push, delete).
    pub actions: Vec<Action>,
}

/// A project and what one principal may do in it.
#[derive(Debug, Clone)]
pub struct ProjectAccess {
    /// The project.
    pub project: ProjectRecord,
    /// The actions of the matrix allowed there, in matrix order; none if it may not even
    /// see the project.
    pub actions: Vec<Action>,
}

fn decide_all(
    tx: &dyn ReadTx,
    principal: &Principal,
    project: ProjectRecord,
) -> Result<ProjectAccess, StoreError> {
    let membership = match member_name(principal) {
        Some(user) => tx.auth().role(&project.name, user)?,
        None => None,
    };
    Ok(decide_with(principal, project, membership))
}

/// The user whose membership decides, if the principal is one.
fn member_name(principal: &Principal) -> Option<&str> {
    match principal {
        Principal::User { name, .. } => Some(name),
        _ => None,
    }
}

fn decide_with(
    principal: &Principal,
    project: ProjectRecord,
    membership: Option<Role>,
) -> ProjectAccess {
    let actions = Action::ALL
        .into_iter()
        .filter(|a| access::decide(principal, &project, membership, *a))
        .collect();
    ProjectAccess { project, actions }
}

impl AccessControl {
    /// What `principal` may do to `repository` now (project, membership, grants).
    pub fn repository_access(
        &self,
        principal: &Principal,
        repository: &str,
    ) -> Result<RepositoryAccess, StoreError> {
        let project_name = repository.split('/').next().unwrap_or_default();
        Ok(match self.project_access(principal, project_name)? {
            None => RepositoryAccess {
                project_exists: false,
                actions: Vec::new(),
            },
            Some(access) => RepositoryAccess {
                project_exists: true,
                actions: access
                    .actions
                    .into_iter()
                    .filter(|a| a.scope_name().is_some())
                    .collect(),
            },
        })
    }

    /// Project `name` and every action of the matrix `principal` may do in it now, or
    /// `None` if there is no such project. The one place where a project, a membership
    /// and the matrix meet: the registry, the admin API and listings all ask here.
    pub fn project_access(
        &self,
        principal: &Principal,
        name: &str,
    ) -> Result<Option<ProjectAccess>, StoreError> {
        let generation = self.generation.load(Ordering::Acquire);
        let user = member_name(principal);
        let cached_role =
            |project: &str| user.and_then(|u| self.access_cache.role(generation, project, u));
        if let Some(project) = self.access_cache.project(generation, name) {
            let role = match (user, cached_role(name)) {
                (Some(user), None) => {
                    let role = self.store.read_blocking(|tx| tx.auth().role(name, user))?;
                    if let Some(role) = role {
                        self.access_cache
                            .keep(generation, &project, Some((user, role)));
                    }
                    role
                }
                (_, cached) => cached,
            };
            return Ok(Some(decide_with(principal, project, role)));
        }
        let found = self.store.read_blocking(|tx| -> Result<_, StoreError> {
            let Some(project) = tx.auth().project(name)? else {
                return Ok(None);
            };
            let role = match user {
                Some(user) => tx.auth().role(name, user)?,
                None => None,
            };
            Ok(Some((project, role)))
        })?;
        Ok(found.map(|(project, role)| {
            self.access_cache.keep(generation, &project, user.zip(role));
            decide_with(principal, project, role)
        }))
    }

    /// Every project `principal` may see (pull from), with what it may do in each, in
    /// name order.
    pub fn visible_projects(
        &self,
        principal: &Principal,
    ) -> Result<Vec<ProjectAccess>, StoreError> {
        self.store.read_blocking(|tx| {
            let mut visible = Vec::new();
            for project in tx.auth().projects()? {
                let access = decide_all(tx, principal, project)?;
                if access.actions.contains(&Action::Pull) {
                    visible.push(access);
                }
            }
            Ok(visible)
        })
    }

    /// Whether `caller` may do `action` to `repository`, by its token's scopes if it
    /// presented one, else by its current rights.
    pub fn allows(
        &self,
        caller: &Caller,
        repository: &str,
        action: Action,
    ) -> Result<bool, StoreError> {
        let name = action.scope_name().unwrap_or("");
        match &caller.token_scopes {
            Some(scopes) => Ok(scopes
                .iter()
                .any(|s| s.covers("repository", repository, name))),
            None => Ok(self
                .repository_access(&caller.principal, repository)?
                .actions
                .contains(&action)),
        }
    }

    /// Whether `principal` may do `action` to `repository` by its current rights (not by a
    /// token's scopes): for listings filtered per repository.
    pub fn allows_current(
        &self,
        principal: &Principal,
        repository: &str,
        action: Action,
    ) -> Result<bool, StoreError> {
        Ok(self
            .repository_access(principal, repository)?
            .actions
            .contains(&action))
    }

    /// The scopes a token for `principal` gets: each requested one cut down to what the
    /// principal may do (possibly to nothing, which is still listed, as the spec shows).
    pub fn grant(
        &self,
        principal: &Principal,
        requested: &[Scope],
    ) -> Result<Vec<Scope>, StoreError> {
        let mut granted = Vec::new();
        for scope in requested {
            match scope.kind.as_str() {
                "repository" => {
                    let allowed = self.repository_access(principal, &scope.name)?.actions;
                    let actions: Vec<String> = scope
                        .actions
                        .iter()
                        .filter(|a| {
                            let want: &[Action] = match a.as_str() {
                                "pull" => &[Action::Pull],
                                "push" => &[Action::Push],
                                "delete" => &[Action::Delete],
                                "*" => &[Action::Pull, Action::Push, Action::Delete],
                                _ => &[],
                            };
                            !want.is_empty() && want.iter().all(|w| allowed.contains(w))
                        })
                        .cloned()
                        .collect();
                    granted.push(Scope {
                        kind: scope.kind.clone(),
                        name: scope.name.clone(),
                        actions,
                    });
                }
                // Anyone may list the catalog; the registry filters it to what they can pull.
                "registry" if scope.name == "catalog" => granted.push(Scope {
                    kind: scope.kind.clone(),
                    name: scope.name.clone(),
                    actions: vec!["*".into()],
                }),
                _ => {}
            }
        }
        Ok(granted)
    }
}
