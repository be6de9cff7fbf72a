//! The permission matrix: which role may do which action in a project. One table, here,
//! and the same table in the README.

use super::principal::Principal;
use crate::storage::tables::auth::ProjectRecord;

pub use crate::storage::tables::auth::{Action, Role};

impl Action {
    /// Every action, in matrix order.
    pub const ALL: [Action; 9] = [
        Action::Pull,
        Action::Push,
        Action::Delete,
        Action::ManageMembers,
        Action::ManageRobots,
        Action::ManageProject,
        Action::ReadMachines,
        Action::OperateMachines,
        Action::ManageMachines,
    ];

    /// Whether a robot account may be granted it: the registry's actions (pull, push,
    /// delete) and the machine actions; managing members, robots and the project stays
    /// with people.
    pub fn robot_grantable(self) -> bool {
        self.scope_name().is_some()
            || matches!(
                self,
                Action::ReadMachines | Action::OperateMachines | Action::ManageMachines
            )
    }

    /// The Docker token spec's name, for the actions a registry scope can carry.
    pub fn scope_name(self) -> Option<&'static str> {
        match self {
            Action::Pull => Some("pull"),
            Action::Push => Some("push"),
            Action::Delete => Some("delete"),
            _ => None,
        }
    }
}

/// The matrix. A row per role; system admins may do everything, anonymous callers may
/// pull from public projects, robots may do what their grant lists.
pub const MATRIX: &[(Role, &[Action])] = &[
    (
        Role::Admin,
        &[
            Action::Pull,
            Action::Push,
            Action::Delete,
            Action::ManageMembers,
            Action::ManageRobots,
            Action::ManageProject,
            Action::ReadMachines,
            Action::OperateMachines,
            Action::ManageMachines,
        ],
    ),
    (
        Role::Developer,
        &[
            Action::Pull,
            Action::Push,
            Action::ReadMachines,
            Action::OperateMachines,
        ],
    ),
    (Role::Guest, &[Action::Pull, Action::ReadMachines]),
];

/// Whether `role` allows `action`.
pub fn role_allows(role: Role, action: Action) -> bool {
    MATRIX
        .iter()
        .any(|(r, actions)| *r == role && actions.contains(&action))
}

/// The decision for one principal, one project and one action. `membership` is the
/// principal's role in the project, if it is a user who is a member.
pub fn decide(
    principal: &Principal,
    project: &ProjectRecord,
    membership: Option<Role>,
    action: Action,
) -> bool {
    match principal {
        Principal::User { admin: true, .. } => true,
        Principal::User { .. } => {
            membership.is_some_and(|role| role_allows(role, action))
                || (action == Action::Pull && project.public)
        }
        Principal::Robot { grants, .. } => {
            grants
                .iter()
                .any(|g| g.project == project.name && g.actions.contains(&action))
                || (action == Action::Pull && project.public)
        }
        Principal::Anonymous => action == Action::Pull && project.public,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_reads_as_documented() {
        use Action::*;
        let expect = [
            (Role::Admin, [true, true, true, true, true, true]),
            (Role::Developer, [true, true, false, false, false, false]),
            (Role::Guest, [true, false, false, false, false, false]),
        ];
        for (role, row) in expect {
            for (action, allowed) in [
                Pull,
                Push,
                Delete,
                ManageMembers,
                ManageRobots,
                ManageProject,
            ]
            .into_iter()
            .zip(row)
            {
                assert_eq!(role_allows(role, action), allowed, "{role:?} {action:?}");
            }
        }
    }
}
