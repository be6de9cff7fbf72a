//! Conformance cases of the auth tables.

use crate::storage::store::{Durability, Store, StoreError};
use crate::storage::tables::auth::{
    Action, ProjectRecord, RobotGrant, RobotRecord, Role, UserRecord,
};

fn user(n: u64) -> UserRecord {
    UserRecord {
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1${n:022}$hash"),
        admin: n.is_multiple_of(2),
        disabled: n.is_multiple_of(3),
        created_at: 1_764_000_000_001 + n,
        password_changed_at: 1_764_000_000_999 + n,
    }
}

fn project(name: &str, public: bool) -> ProjectRecord {
    ProjectRecord {
        name: name.to_owned(),
        public,
        created_by: "admin".into(),
        created_at: 1_764_000_000_555,
    }
}

fn write(
    store: &Store,
    f: impl FnMut(&dyn crate::storage::store::WriteTx) -> Result<(), StoreError>,
) {
    store.write_blocking(Durability::Immediate, f).unwrap();
}

pub(super) fn users_round_trip_and_count(store: &Store) {
    assert_eq!(store.read_blocking(|tx| tx.auth().user_count()).unwrap(), 0);
    write(store, |tx| {
        tx.auth().put_user("zoë", &user(1))?;
        tx.auth().put_user("Alice", &user(2))?;
        tx.auth().put_user("alice", &user(3))
    });
    assert_eq!(
        store.read_blocking(|tx| tx.auth().user("zoë")).unwrap(),
        Some(user(1))
    );
    assert_eq!(
        store.read_blocking(|tx| tx.auth().user("ALICE")).unwrap(),
        None
    );
    let names: Vec<String> = store
        .read_blocking(|tx| tx.auth().users())
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    // Byte order: upper case before lower case, multi-byte characters last.
    assert_eq!(names, ["Alice", "alice", "zoë"]);
    assert_eq!(store.read_blocking(|tx| tx.auth().user_count()).unwrap(), 3);
    let mut changed = user(2);
    changed.disabled = true;
    changed.password_hash = "replaced".into();
    write(store, |tx| tx.auth().put_user("Alice", &changed));
    assert_eq!(
        store.read_blocking(|tx| tx.auth().user("Alice")).unwrap(),
        Some(changed.clone())
    );
    assert_eq!(store.read_blocking(|tx| tx.auth().user_count()).unwrap(), 3);
}

pub(super) fn projects_list_in_byte_order_and_replace(store: &Store) {
    write(store, |tx| {
        for (name, public) in [("team-b", true), ("team.a", false), ("team-a", false)] {
            tx.auth().put_project(&project(name, public))?;
        }
        Ok(())
    });
    let names: Vec<String> = store
        .read_blocking(|tx| tx.auth().projects())
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["team-a", "team-b", "team.a"]);
    write(store, |tx| tx.auth().put_project(&project("team-a", true)));
    assert_eq!(
        store
            .read_blocking(|tx| tx.auth().project("team-a"))
            .unwrap(),
        Some(project("team-a", true))
    );
    assert_eq!(
        store.read_blocking(|tx| tx.auth().project("team")).unwrap(),
        None
    );
}

pub(super) fn members_by_project_with_roles(store: &Store) {
    write(store, |tx| {
        tx.auth().set_role("p", "carol", Role::Guest)?;
        tx.auth().set_role("p", "bob", Role::Developer)?;
        tx.auth().set_role("p", "alice", Role::Admin)?;
        // A project whose name extends another's is a different project.
        tx.auth().set_role("p2", "alice", Role::Guest)?;
        tx.auth().set_role("p", "carol", Role::Developer)
    });
    assert_eq!(
        store.read_blocking(|tx| tx.auth().members("p")).unwrap(),
        vec![
            ("alice".to_string(), Role::Admin),
            ("bob".to_string(), Role::Developer),
            ("carol".to_string(), Role::Developer),
        ]
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.auth().role("p2", "alice"))
            .unwrap(),
        Some(Role::Guest)
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.auth().role("p2", "bob"))
            .unwrap(),
        None
    );
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.auth().remove_member("p", "bob")?,
                tx.auth().remove_member("p", "bob")?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (true, false));
    assert_eq!(
        store
            .read_blocking(|tx| tx.auth().members("p"))
            .unwrap()
            .len(),
        2
    );
}

pub(super) fn removing_a_user_or_project_removes_its_memberships_only(store: &Store) {
    write(store, |tx| {
        tx.auth().put_user("alice", &user(1))?;
        tx.auth().put_user("bob", &user(2))?;
        tx.auth().put_project(&project("p", false))?;
        tx.auth().put_project(&project("q", false))?;
        for (p, u) in [("p", "alice"), ("p", "bob"), ("q", "alice"), ("q", "bob")] {
            tx.auth().set_role(p, u, Role::Developer)?;
        }
        Ok(())
    });
    let outcome = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.auth().remove_user("alice")?,
                tx.auth().remove_project("q")?,
                tx.auth().remove_user("alice")?,
            ))
        })
        .unwrap();
    assert_eq!(outcome, (true, true, false));
    store
        .read_blocking(|tx| {
            assert_eq!(
                tx.auth().members("p")?,
                vec![("bob".to_string(), Role::Developer)]
            );
            assert_eq!(tx.auth().members("q")?, vec![]);
            assert_eq!(tx.auth().user("bob")?, Some(user(2)));
            assert_eq!(tx.auth().project("p")?, Some(project("p", false)));
            Ok::<_, StoreError>(())
        })
        .unwrap();
    // A membership of a user that does not exist is kept (a pair's convergence may apply
    // it before the user), and goes with its project.
    write(store, |tx| tx.auth().set_role("p", "ghost", Role::Guest));
    assert_eq!(
        store
            .read_blocking(|tx| tx.auth().role("p", "ghost"))
            .unwrap(),
        Some(Role::Guest)
    );
    write(store, |tx| tx.auth().remove_project("p").map(|_| ()));
    assert_eq!(
        store.read_blocking(|tx| tx.auth().members("p")).unwrap(),
        vec![]
    );
}

pub(super) fn robots_round_trip_grants_and_expiry(store: &Store) {
    let robot = RobotRecord {
        secret_digest: "0123abcd".repeat(8),
        description: "CI for \"team\" ü\n".into(),
        grants: vec![
            RobotGrant {
                project: "p".into(),
                actions: vec![Action::Pull, Action::Push],
            },
            RobotGrant {
                project: "q".into(),
                actions: vec![Action::Delete],
            },
        ],
        expires_at: Some(1_800_000_000_123),
        disabled: false,
        created_by: "admin".into(),
        created_at: 1_764_000_000_777,
    };
    let mut forever = robot.clone();
    forever.expires_at = None;
    forever.grants.clear();
    forever.disabled = true;
    write(store, |tx| {
        tx.auth().put_robot("robot$ci", &robot)?;
        tx.auth().put_robot("robot$bot", &forever)
    });
    assert_eq!(
        store
            .read_blocking(|tx| tx.auth().robot("robot$ci"))
            .unwrap(),
        Some(robot.clone())
    );
    assert_eq!(
        store.read_blocking(|tx| tx.auth().robots()).unwrap(),
        vec![
            ("robot$bot".to_string(), forever.clone()),
            ("robot$ci".to_string(), robot.clone())
        ]
    );
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.auth().remove_robot("robot$ci")?,
                tx.auth().remove_robot("robot$ci")?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (true, false));
}
