//! Conformance cases of the audit log (in the store [`Store::audit_log`] returns).

use crate::storage::store::{Durability, Store, StoreError};
use crate::storage::tables::audit::{AuditFilter, AuditRecord};

fn entry(at: u64, actor: &str, action: &str, resource: &str) -> AuditRecord {
    AuditRecord {
        at,
        actor: actor.into(),
        source: "127.0.0.1".into(),
        action: action.into(),
        resource: resource.into(),
        tag: (action == "push").then(|| "v1".to_string()),
        digest: (action == "push").then(|| format!("sha256:{at:064x}")),
        outcome: "success".into(),
        detail: (actor == "guest").then(|| "denied: \"quoted\"\nüñ".to_string()),
    }
}

/// The audit store of `store`, and the directory its embedded file lives in.
fn audit_store(store: &Store) -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let audit = store.audit_log(&dir.path().join("audit.redb")).unwrap();
    (audit, dir)
}

fn append(store: &Store, records: Vec<AuditRecord>) {
    store
        .write_blocking(Durability::Immediate, |tx| tx.audit().append(&records))
        .unwrap();
}

fn page(
    store: &Store,
    filter: AuditFilter,
    limit: usize,
) -> (Vec<(u64, AuditRecord)>, Option<u64>) {
    store
        .read_blocking(|tx| tx.audit().page(&filter, limit))
        .unwrap()
}

/// Every matching entry, following the cursor page by page.
fn all_pages(store: &Store, filter: AuditFilter, limit: usize) -> Vec<(u64, AuditRecord)> {
    let mut out = Vec::new();
    let mut filter = filter;
    loop {
        let (entries, next) = page(store, filter.clone(), limit);
        assert!(entries.len() <= limit);
        out.extend(entries);
        match next {
            Some(before) => filter.before = Some(before),
            None => return out,
        }
    }
}

pub(super) fn audit_entries_come_back_newest_first_in_pages(store: &Store) {
    let (store, _dir) = audit_store(store);
    // Two batches, some entries in the same millisecond: ids still order them as appended.
    let first: Vec<AuditRecord> = (0..5)
        .map(|i| {
            entry(
                1_764_000_000_000 + i / 2,
                "admin",
                "push",
                &format!("p/app{i}"),
            )
        })
        .collect();
    let second: Vec<AuditRecord> = (5..9)
        .map(|i| {
            entry(
                1_764_000_000_000 + i / 2,
                "dev",
                "pull",
                &format!("p/app{i}"),
            )
        })
        .collect();
    append(&store, first.clone());
    append(&store, second.clone());
    let everything = all_pages(&store, AuditFilter::default(), 2);
    let records: Vec<AuditRecord> = everything.iter().map(|(_, r)| r.clone()).collect();
    let mut expected: Vec<AuditRecord> = first.into_iter().chain(second).collect();
    expected.reverse();
    assert_eq!(records, expected);
    let ids: Vec<u64> = everything.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    // A page exactly as long as what is left has no next page.
    let (entries, next) = page(&store, AuditFilter::default(), 9);
    assert_eq!((entries.len(), next), (9, None));
}

pub(super) fn audit_filters_by_actor_action_resource_prefix_and_time(store: &Store) {
    let (store, _dir) = audit_store(store);
    append(
        &store,
        vec![
            entry(1_000, "admin", "project.create", "team"),
            entry(2_000, "dev", "push", "team/app"),
            entry(3_000, "dev", "pull", "team/app"),
            entry(4_000, "guest", "delete", "team/app"),
            entry(5_000, "dev", "push", "team2/app"),
            entry(6_000, "dev", "push", "tëam/app"),
            entry(7_000, "dev", "push", "team_x/app"),
        ],
    );
    let actions = |filter: AuditFilter| -> Vec<(String, String)> {
        all_pages(&store, filter, 2)
            .into_iter()
            .map(|(_, r)| (r.action, r.resource))
            .collect()
    };
    let owned = |s: &[(&str, &str)]| -> Vec<(String, String)> {
        s.iter()
            .map(|(a, r)| (a.to_string(), r.to_string()))
            .collect()
    };
    assert_eq!(
        actions(AuditFilter {
            actor: Some("dev".into()),
            action: Some("push".into()),
            ..Default::default()
        }),
        owned(&[
            ("push", "team_x/app"),
            ("push", "tëam/app"),
            ("push", "team2/app"),
            ("push", "team/app")
        ])
    );
    assert_eq!(
        actions(AuditFilter {
            resource_prefix: Some("team/".into()),
            ..Default::default()
        }),
        owned(&[
            ("delete", "team/app"),
            ("pull", "team/app"),
            ("push", "team/app")
        ])
    );
    // A prefix is a prefix, not a pattern: `_` matches only itself.
    assert_eq!(
        actions(AuditFilter {
            resource_prefix: Some("team_".into()),
            ..Default::default()
        }),
        owned(&[("push", "team_x/app")])
    );
    assert_eq!(
        actions(AuditFilter {
            resource_prefix: Some("të".into()),
            ..Default::default()
        }),
        owned(&[("push", "tëam/app")])
    );
    assert_eq!(
        actions(AuditFilter {
            since: Some(4_000),
            actor: Some("dev".into()),
            ..Default::default()
        }),
        owned(&[
            ("push", "team_x/app"),
            ("push", "tëam/app"),
            ("push", "team2/app")
        ])
    );
    let guest = page(
        &store,
        AuditFilter {
            actor: Some("guest".into()),
            ..Default::default()
        },
        10,
    );
    assert_eq!(guest.0.len(), 1);
    assert_eq!(guest.0[0].1, entry(4_000, "guest", "delete", "team/app"));
}

pub(super) fn audit_retention_removes_only_older_entries(store: &Store) {
    let (store, _dir) = audit_store(store);
    append(
        &store,
        (1..=6)
            .map(|i| entry(i * 1_000, "dev", "pull", "p/app"))
            .collect(),
    );
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.audit().remove_before(3_000)?,
                tx.audit().remove_before(3_000)?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (2, 0));
    let left: Vec<u64> = all_pages(&store, AuditFilter::default(), 10)
        .into_iter()
        .map(|(_, r)| r.at)
        .collect();
    assert_eq!(left, [6_000, 5_000, 4_000, 3_000]);
    // Appending after a removal still gives higher ids.
    append(&store, vec![entry(2_500, "dev", "pull", "late")]);
    let (newest, _) = page(&store, AuditFilter::default(), 1);
    assert_eq!(newest[0].1.resource, "late");
}
