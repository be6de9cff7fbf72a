//! Auth's records as a dual-primary pair exchanges them (`replication::metadata`): every
//! user, project, membership and robot account read out, and one changed or deleted
//! record applied, inside the caller's transaction so the exchange's own bookkeeping
//! commits with it.

use super::AuthResult;
use super::access::Role;
use super::authenticate::AccessControl;
use super::projects::ProjectRecord;
use super::robots::RobotRecord;
use super::users::UserRecord;
use crate::storage::store::{ReadTx, WriteTx};

/// One auth record, or its deletion (`None`).
#[derive(Debug, Clone, PartialEq)]
pub enum AuthRecord {
    /// A user, by name.
    User(String, Option<UserRecord>),
    /// A project, by name.
    Project(String, Option<ProjectRecord>),
    /// A user's role in a project.
    Member {
        /// The project.
        project: String,
        /// The user.
        user: String,
        /// The role; none: not a member.
        role: Option<Role>,
    },
    /// A robot account, by full name.
    Robot(String, Option<RobotRecord>),
}

impl AccessControl {
    /// Every user, project, membership and robot account, in that order.
    pub fn records_in(tx: &dyn ReadTx) -> AuthResult<Vec<AuthRecord>> {
        let auth = tx.auth();
        let mut out = Vec::new();
        for (name, user) in auth.users()? {
            out.push(AuthRecord::User(name, Some(user)));
        }
        for project in auth.projects()? {
            for (user, role) in auth.members(&project.name)? {
                out.push(AuthRecord::Member {
                    project: project.name.clone(),
                    user,
                    role: Some(role),
                });
            }
            out.push(AuthRecord::Project(project.name.clone(), Some(project)));
        }
        for (name, robot) in auth.robots()? {
            out.push(AuthRecord::Robot(name, Some(robot)));
        }
        Ok(out)
    }

    /// Stores or deletes one record. Deleting a user or a project deletes its
    /// memberships too. Forget cached logins once the transaction commits.
    pub fn apply_in(tx: &dyn WriteTx, record: &AuthRecord) -> AuthResult<()> {
        let auth = tx.auth();
        // A changed or deleted account, project or membership may have lost access:
        // every node forgets its cached logins and access.
        auth.bump_revision()?;
        match record {
            AuthRecord::User(name, Some(user)) => auth.put_user(name, user)?,
            AuthRecord::User(name, None) => {
                auth.remove_user(name)?;
            }
            AuthRecord::Project(_, Some(project)) => auth.put_project(project)?,
            AuthRecord::Project(name, None) => {
                auth.remove_project(name)?;
            }
            AuthRecord::Member {
                project,
                user,
                role: Some(role),
            } => auth.set_role(project, user, *role)?,
            AuthRecord::Member {
                project,
                user,
                role: None,
            } => {
                auth.remove_member(project, user)?;
            }
            AuthRecord::Robot(name, Some(robot)) => auth.put_robot(name, robot)?,
            AuthRecord::Robot(name, None) => {
                auth.remove_robot(name)?;
            }
        }
        Ok(())
    }
}
