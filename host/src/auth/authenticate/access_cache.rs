//! Projects and memberships as authorisation last read them, so that a pull does not read
//! its project again on every request (on PostgreSQL, a read transaction is three round
//! trips to the server).
//!
//! Only what exists is kept (a project, a user's role): a project or membership created on
//! another node is seen at once. Whatever would make a kept entry stale — a project made
//! private or deleted, a role changed or removed — bumps the store's auth revision in its
//! transaction and, once committed, this node's generation (`invalidate_cached_logins`);
//! other nodes move theirs when they see the revision move (`watch_revocations`, every
//! `REVOCATION_POLL`). An entry is used only under the generation it was read in.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::access::Role;
use crate::auth::projects::ProjectRecord;

/// Most entries of each kind before the cache starts again empty.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Default)]
struct Entries {
    generation: u64,
    projects: HashMap<String, ProjectRecord>,
    roles: HashMap<(String, String), Role>,
}

/// See the module's documentation.
#[derive(Debug, Default)]
pub(super) struct AccessCache(Mutex<Entries>);

impl AccessCache {
    /// Project `name`, if read under `generation`.
    pub(super) fn project(&self, generation: u64, name: &str) -> Option<ProjectRecord> {
        let entries = self.0.lock().expect("access cache lock");
        (entries.generation == generation)
            .then(|| entries.projects.get(name).cloned())
            .flatten()
    }

    /// `user`'s role in `project`, if read under `generation`.
    pub(super) fn role(&self, generation: u64, project: &str, user: &str) -> Option<Role> {
        let entries = self.0.lock().expect("access cache lock");
        (entries.generation == generation)
            .then(|| {
                entries
                    .roles
                    .get(&(project.to_owned(), user.to_owned()))
                    .copied()
            })
            .flatten()
    }

    /// Keeps what a read under `generation` found; a read that began before the latest
    /// change is dropped, since it may predate that change.
    pub(super) fn keep(
        &self,
        generation: u64,
        project: &ProjectRecord,
        role: Option<(&str, Role)>,
    ) {
        let mut entries = self.0.lock().expect("access cache lock");
        if entries.generation != generation {
            if generation < entries.generation {
                return;
            }
            *entries = Entries {
                generation,
                ..Entries::default()
            };
        }
        if entries.projects.len() >= MAX_ENTRIES || entries.roles.len() >= MAX_ENTRIES {
            entries.projects.clear();
            entries.roles.clear();
        }
        entries
            .projects
            .insert(project.name.clone(), project.clone());
        if let Some((user, role)) = role {
            entries
                .roles
                .insert((project.name.clone(), user.to_owned()), role);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(name: &str, public: bool) -> ProjectRecord {
        ProjectRecord {
            name: name.into(),
            public,
            created_by: "admin".into(),
            created_at: 1,
        }
    }

    #[test]
    fn entries_hold_only_under_the_generation_they_were_read_in() {
        let cache = AccessCache::default();
        cache.keep(3, &project("team", true), Some(("alice", Role::Developer)));
        assert_eq!(cache.project(3, "team"), Some(project("team", true)));
        assert_eq!(cache.role(3, "team", "alice"), Some(Role::Developer));
        assert_eq!(cache.role(3, "team", "bob"), None);
        // A change: nothing read before it is used.
        assert_eq!(cache.project(4, "team"), None);
        assert_eq!(cache.role(4, "team", "alice"), None);
        // A read that began before the change comes back late: dropped.
        cache.keep(4, &project("team", false), None);
        cache.keep(3, &project("team", true), Some(("alice", Role::Admin)));
        assert_eq!(cache.project(4, "team"), Some(project("team", false)));
        assert_eq!(cache.role(4, "team", "alice"), None);
    }
}
