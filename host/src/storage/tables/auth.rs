//! Tables of the auth component (`host/src/auth/`): `users` (local accounts with argon2id
//! password hashes), `projects`, `members` (each user's role in each project) and
//! `robots` (robot accounts with the digest of their secret and their grants).
//!
//! The vocabulary the records are written in (roles, actions, grants) is declared here so
//! that every backend can store it; the meaning of it (the permission matrix) stays in
//! `auth::access`.

use serde::{Deserialize, Serialize};

use crate::storage::store::StoreResult;

/// A stored user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserRecord {
    /// argon2id PHC string.
    pub password_hash: String,
    /// System administrator.
    pub admin: bool,
    /// Disabled users cannot log in; their tokens stop working.
    pub disabled: bool,
    /// When created (ms since the epoch).
    pub created_at: u64,
    /// When the password last changed: refresh tokens issued before are void.
    pub password_changed_at: u64,
}

/// A project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProjectRecord {
    /// Its name (the key, repeated so a record stands alone).
    pub name: String,
    /// Anyone, even anonymous, may pull.
    pub public: bool,
    /// Who created it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
}

/// A stored robot account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RobotRecord {
    /// sha256 of the secret (see `auth::passwords::secret_digest`).
    pub secret_digest: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
    /// What it may do, per project.
    pub grants: Vec<RobotGrant>,
    /// When it stops working (ms since the epoch), if ever.
    pub expires_at: Option<u64>,
    /// Revoked robots cannot authenticate.
    pub disabled: bool,
    /// Who created it.
    pub created_by: String,
    /// When (ms since the epoch).
    pub created_at: u64,
}

/// What a robot account may do in one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RobotGrant {
    /// The project.
    pub project: String,
    /// The actions allowed there.
    pub actions: Vec<Action>,
}

/// Something a principal may do within a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs and manifests, move tags.
    Push,
    /// Delete manifests, tags and blob links.
    Delete,
    /// Add, change and remove members.
    ManageMembers,
    /// Create and revoke robot accounts for the project.
    ManageRobots,
    /// Change the project's settings (public/private) or delete it.
    ManageProject,
    /// See the project's machines, their history and its quota.
    ReadMachines,
    /// Take the project's machines online and offline.
    OperateMachines,
    /// Create and retire the project's machines.
    ManageMachines,
}

/// A member's role in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything within the project.
    Admin,
    /// Pull and push.
    Developer,
    /// Pull only.
    Guest,
}

impl Role {
    /// Parses `admin`, `developer` or `guest`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" | "project_admin" | "project-admin" => Some(Role::Admin),
            "developer" => Some(Role::Developer),
            "guest" => Some(Role::Guest),
            _ => None,
        }
    }

    /// The name used in the API and in storage.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Developer => "developer",
            Role::Guest => "guest",
        }
    }
}

/// Failed logins of one key (an account, a source address) in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureWindow {
    /// When the window began (ms since the epoch).
    pub started: u64,
    /// Failures in it.
    pub failures: u32,
}

/// Reads of the auth tables.
pub trait AuthRead {
    /// The user named `name`.
    fn user(&self, name: &str) -> StoreResult<Option<UserRecord>>;
    /// Every user with its name, in name order.
    fn users(&self) -> StoreResult<Vec<(String, UserRecord)>>;
    /// How many users there are.
    fn user_count(&self) -> StoreResult<u64>;
    /// The project named `name`.
    fn project(&self, name: &str) -> StoreResult<Option<ProjectRecord>>;
    /// Every project, in name order.
    fn projects(&self) -> StoreResult<Vec<ProjectRecord>>;
    /// `user`'s role in `project`, if a member.
    fn role(&self, project: &str, user: &str) -> StoreResult<Option<Role>>;
    /// The members of `project` with their roles, in name order.
    fn members(&self, project: &str) -> StoreResult<Vec<(String, Role)>>;
    /// The robot account named `name` (the full `robot$…` name).
    fn robot(&self, name: &str) -> StoreResult<Option<RobotRecord>>;
    /// Every robot account with its name, in name order.
    fn robots(&self) -> StoreResult<Vec<(String, RobotRecord)>>;
    /// The revocation counter: it grows with every change that can take access away, so
    /// that every node forgets the logins it cached (0 when nothing was ever revoked).
    fn revision(&self) -> StoreResult<u64>;
    /// The failed-login window of `key`.
    fn login_failures(&self, key: &str) -> StoreResult<Option<FailureWindow>>;
}

/// Writes of the auth tables. Removing a user or a project removes its memberships in the
/// same transaction; a membership may name a user or project that does not exist (a pair's
/// convergence applies records in any order), and is then inert.
pub trait AuthWrite: AuthRead {
    /// Stores `record` as user `name`, replacing what was there.
    fn put_user(&self, name: &str, record: &UserRecord) -> StoreResult<()>;
    /// Removes user `name` and its memberships; false if there was no such user.
    fn remove_user(&self, name: &str) -> StoreResult<bool>;
    /// Stores `record` under its name, replacing what was there.
    fn put_project(&self, record: &ProjectRecord) -> StoreResult<()>;
    /// Removes project `name` and its memberships; false if there was no such project.
    fn remove_project(&self, name: &str) -> StoreResult<bool>;
    /// Gives `user` `role` in `project`, replacing an earlier role.
    fn set_role(&self, project: &str, user: &str, role: Role) -> StoreResult<()>;
    /// Removes `user` from `project`; false if it was not a member.
    fn remove_member(&self, project: &str, user: &str) -> StoreResult<bool>;
    /// Stores `record` as robot `name`, replacing what was there.
    fn put_robot(&self, name: &str, record: &RobotRecord) -> StoreResult<()>;
    /// Removes robot `name`; false if there was none.
    fn remove_robot(&self, name: &str) -> StoreResult<bool>;
    /// Counts one more revocation; returns the new revision.
    fn bump_revision(&self) -> StoreResult<u64>;
    /// Stores the failed-login window of `key`.
    fn put_login_failures(&self, key: &str, window: &FailureWindow) -> StoreResult<()>;
    /// Forgets `key`'s failed logins; false if there were none.
    fn remove_login_failures(&self, key: &str) -> StoreResult<bool>;
    /// Forgets every window that began before `started` (ms since the epoch); returns how
    /// many.
    fn remove_login_failures_before(&self, started: u64) -> StoreResult<u64>;
}
