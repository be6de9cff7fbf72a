//! Who is asking.

pub use crate::storage::tables::auth::RobotGrant;

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// A local user.
    User {
        /// Login name.
        name: String,
        /// System administrator.
        admin: bool,
    },
    /// A robot account (CI).
    Robot {
        /// Full robot name, `robot$<name>`.
        name: String,
        /// What it may do, project by project.
        grants: Vec<RobotGrant>,
    },
}

impl Principal {
    /// The name recorded in tokens and the audit log (`anonymous` for no one).
    pub fn name(&self) -> &str {
        match self {
            Principal::Anonymous => "anonymous",
            Principal::User { name, .. } | Principal::Robot { name, .. } => name,
        }
    }

    /// Whether this is a system administrator.
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::User { admin: true, .. })
    }
}
