//! Conformance cases of the registry's tables.

use crate::storage::clock::Clock;
use crate::storage::store::{Durability, Store, StoreError, StoreResult};
use crate::storage::tables::registry::{
    HISTORY_PER_TAG, HistoryEntry, HistoryEvent, ManifestRecord, ReferrerDescriptor, TagRecord,
    Tombstone, UploadRecord,
};

fn write(store: &Store, f: impl FnMut(&dyn crate::storage::store::WriteTx) -> StoreResult<()>) {
    store.write_blocking(Durability::Immediate, f).unwrap();
}

fn digest(n: u64) -> String {
    format!("sha256:{n:064x}")
}

fn clock(ms: u64, counter: u32, node: &str) -> Clock {
    format!("{ms}.{counter}.{node}").parse().unwrap()
}

fn manifest(n: u64) -> ManifestRecord {
    let mut annotations = serde_json::Map::new();
    annotations.insert(
        "org.opencontainers.image.title".into(),
        "ü \"quoted\"".into(),
    );
    annotations.insert("n".into(), serde_json::json!(n));
    ManifestRecord {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 1000 + n,
        artifact_type: n
            .is_multiple_of(2)
            .then(|| "application/vnd.example.sbom".to_string()),
        subject: n.is_multiple_of(2).then(|| digest(1)),
        blobs: vec![digest(100 + n), digest(200 + n)],
        children: if n == 3 {
            vec![digest(1), digest(2)]
        } else {
            vec![]
        },
        annotations: (n != 5).then_some(annotations),
        created_at: 1_764_000_000_000 + n,
    }
}

pub(super) fn manifests_round_trip_every_field_and_their_exact_bytes(store: &Store) {
    let bytes: Vec<u8> = (0..=255u8)
        .chain(b"{\"schemaVersion\":2}".iter().copied())
        .collect();
    write(store, |tx| {
        let t = tx.registry();
        for n in 1..=5 {
            t.put_manifest("team/app", &digest(n), &manifest(n), &bytes)?;
        }
        t.put_manifest("team/other", &digest(9), &manifest(5), b"{}")?;
        Ok(())
    });
    store
        .read_blocking(|tx| -> StoreResult<()> {
            let t = tx.registry();
            for n in 1..=5 {
                assert_eq!(t.manifest("team/app", &digest(n))?, Some(manifest(n)));
            }
            assert_eq!(
                t.manifest_bytes("team/app", &digest(2))?,
                Some(bytes.clone())
            );
            assert_eq!(t.manifest("team/app", &digest(9))?, None, "per repository");
            assert_eq!(t.manifest_bytes("team/app", &digest(9))?, None);
            assert_eq!(t.manifest_count("team/app")?, 5);
            assert_eq!(t.manifest_count("team/ap")?, 0);
            let all = t.all_manifests()?;
            assert_eq!(all.len(), 6);
            assert_eq!(all[5], ("team/other".into(), digest(9), manifest(5)));
            Ok(())
        })
        .unwrap();
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            tx.registry().remove_manifest("team/app", &digest(3))
        })
        .unwrap();
    assert_eq!(removed, Some(manifest(3)));
    store
        .read_blocking(|tx| -> StoreResult<()> {
            assert_eq!(tx.registry().manifest("team/app", &digest(3))?, None);
            assert_eq!(tx.registry().manifest_bytes("team/app", &digest(3))?, None);
            assert_eq!(tx.registry().manifest_count("team/app")?, 4);
            Ok(())
        })
        .unwrap();
    let again = store
        .write_blocking(Durability::Immediate, |tx| {
            tx.registry().remove_manifest("team/app", &digest(3))
        })
        .unwrap();
    assert_eq!(again, None);
}

pub(super) fn repositories_and_tags_come_in_byte_order_in_pages(store: &Store) {
    let names = ["team/a", "team/a-b", "team/a/b", "team/\u{e4}", "alpha/x"];
    write(store, |tx| {
        for (i, name) in names.iter().enumerate() {
            tx.registry().ensure_repository(name, 1000 + i as u64)?;
        }
        // Ensuring again keeps the first creation time.
        tx.registry().ensure_repository("team/a", 9999)?;
        for (i, tag) in ["v1", "v10", "v2", "latest", "V1"].iter().enumerate() {
            let record = TagRecord {
                digest: digest(if i % 2 == 0 { 1 } else { 2 }),
                updated_at: 2000 + i as u64,
                clock: (i != 4).then(|| clock(2000 + i as u64, i as u32, "dc1")),
            };
            tx.registry().put_tag("team/a", tag, &record)?;
        }
        tx.registry().put_tag(
            "team/a-b",
            "v1",
            &TagRecord {
                digest: digest(1),
                updated_at: 1,
                clock: None,
            },
        )?;
        Ok(())
    });
    store
        .read_blocking(|tx| -> StoreResult<()> {
            let t = tx.registry();
            assert_eq!(
                t.repositories(None, 10)?,
                ["alpha/x", "team/a", "team/a-b", "team/a/b", "team/\u{e4}"]
            );
            assert_eq!(t.repositories(Some("team/a"), 2)?, ["team/a-b", "team/a/b"]);
            assert_eq!(
                t.repositories(Some("team/\u{e4}"), 2)?,
                Vec::<String>::new()
            );
            assert_eq!(t.repository("team/a")?.unwrap().created_at, 1000);
            assert_eq!(t.repository("team")?, None);
            assert_eq!(
                t.tags("team/a", None, 10)?,
                ["V1", "latest", "v1", "v10", "v2"]
            );
            assert_eq!(t.tags("team/a", Some("latest"), 2)?, ["v1", "v10"]);
            assert_eq!(t.tags("team/a", None, usize::MAX)?.len(), 5);
            assert_eq!(t.tags("team/a-b", None, 10)?, ["v1"]);
            assert_eq!(
                t.tags_pointing_at("team/a", &digest(1))?,
                ["V1", "v1", "v2"]
            );
            assert_eq!(
                t.tags_pointing_at("team/a", &digest(3))?,
                Vec::<String>::new()
            );
            let v10 = t.tag("team/a", "v10")?.unwrap();
            assert_eq!(v10.clock, Some(clock(2001, 1, "dc1")));
            assert_eq!(t.tag("team/a", "V1")?.unwrap().clock, None);
            assert_eq!(t.all_tags()?.len(), 6);
            Ok(())
        })
        .unwrap();
    let removed = store
        .write_blocking(Durability::Immediate, |tx| {
            Ok::<_, StoreError>((
                tx.registry().remove_tag("team/a", "v1")?,
                tx.registry().remove_tag("team/a", "v1")?,
            ))
        })
        .unwrap();
    assert_eq!(removed, (true, false));
}

fn entry(n: u64) -> HistoryEntry {
    HistoryEntry {
        digest: digest(n),
        clock: (!n.is_multiple_of(3)).then(|| clock(n, 0, "dc2")),
        origin: n.is_multiple_of(2).then(|| "dc2".to_string()),
        event: match n % 3 {
            0 => HistoryEvent::Replaced,
            1 => HistoryEvent::Lost,
            _ => HistoryEvent::Deleted,
        },
        at: 3000 + n,
    }
}

pub(super) fn tag_history_keeps_the_newest_entries_and_tombstones_the_latest(store: &Store) {
    let total = HISTORY_PER_TAG as u64 + 7;
    for n in 1..=total {
        write(store, |tx| {
            tx.registry().add_tag_history("team/app", "v1", &entry(n))
        });
    }
    write(store, |tx| {
        tx.registry().add_tag_history("team/app", "v2", &entry(1))
    });
    let tombstone = Tombstone {
        digest: digest(4),
        clock: clock(5000, 2, "dc1"),
        at: 5000,
    };
    write(store, |tx| {
        tx.registry().put_tombstone("team/app", "gone", &tombstone)
    });
    store
        .read_blocking(|tx| -> StoreResult<()> {
            let t = tx.registry();
            let history = t.tag_history("team/app", "v1")?;
            assert_eq!(history.len(), HISTORY_PER_TAG);
            assert_eq!(history[0], entry(total), "newest first");
            assert_eq!(
                history[HISTORY_PER_TAG - 1],
                entry(total - HISTORY_PER_TAG as u64 + 1)
            );
            assert_eq!(t.tag_history("team/app", "v2")?, [entry(1)]);
            assert_eq!(t.tag_history("team/app", "v3")?, []);
            assert_eq!(t.tombstone("team/app", "gone")?, Some(tombstone.clone()));
            assert_eq!(t.tombstone("team/app", "v1")?, None);
            Ok(())
        })
        .unwrap();
    write(store, |tx| {
        tx.registry().remove_tombstone("team/app", "gone")
    });
    assert_eq!(
        store
            .read_blocking(|tx| tx.registry().tombstone("team/app", "gone"))
            .unwrap(),
        None
    );
}

fn referrer(n: u64) -> ReferrerDescriptor {
    ReferrerDescriptor {
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        digest: digest(n),
        size: 500 + n,
        artifact_type: (n != 2).then(|| format!("application/vnd.example.{n}")),
        annotations: manifest(n).annotations,
    }
}

pub(super) fn referrers_are_kept_per_subject_in_digest_order(store: &Store) {
    write(store, |tx| {
        for n in [7, 2, 5] {
            tx.registry()
                .add_referrer("team/app", &digest(1), &referrer(n))?;
        }
        tx.registry()
            .add_referrer("team/app", &digest(9), &referrer(3))?;
        tx.registry()
            .add_referrer("team/other", &digest(1), &referrer(4))?;
        Ok(())
    });
    write(store, |tx| {
        tx.registry()
            .remove_referrer("team/app", &digest(1), &digest(5))
    });
    store
        .read_blocking(|tx| -> StoreResult<()> {
            let t = tx.registry();
            assert_eq!(
                t.referrers("team/app", &digest(1))?,
                [referrer(2), referrer(7)]
            );
            assert_eq!(t.referrers("team/app", &digest(9))?, [referrer(3)]);
            assert_eq!(t.referrers("team/app", &digest(2))?, []);
            Ok(())
        })
        .unwrap();
}

pub(super) fn blob_links_and_upload_sessions_round_trip(store: &Store) {
    let upload = |n: u64| UploadRecord {
        repo: "team/app".into(),
        acknowledged: n * (1 << 33),
        started_at: 1_764_000_000_000,
        updated_at: 1_764_000_000_000 + n,
        claimed_by: (n == 3).then(|| "claim-token".to_string()),
        claimed_until: if n == 3 { 1_764_000_060_000 } else { 0 },
    };
    write(store, |tx| {
        let t = tx.registry();
        t.link_blob("team/app", &digest(1), 1 << 40)?;
        t.link_blob("team/app", &digest(2), 0)?;
        t.link_blob("team/other", &digest(1), 1 << 40)?;
        t.put_upload("b-session", &upload(1))?;
        t.put_upload("a-session", &upload(2))?;
        t.put_upload("b-session", &upload(3))?;
        Ok(())
    });
    let (unlinked, again, removed, missing) = store
        .write_blocking(Durability::Immediate, |tx| {
            let t = tx.registry();
            Ok::<_, StoreError>((
                t.unlink_blob("team/other", &digest(1))?,
                t.unlink_blob("team/other", &digest(1))?,
                t.remove_upload("a-session")?,
                t.remove_upload("no-such")?,
            ))
        })
        .unwrap();
    assert_eq!(
        (unlinked, again, removed, missing),
        (true, false, true, false)
    );
    store
        .read_blocking(|tx| -> StoreResult<()> {
            let t = tx.registry();
            assert_eq!(t.blob_link("team/app", &digest(1))?, Some(1 << 40));
            assert_eq!(t.blob_link("team/app", &digest(2))?, Some(0));
            assert_eq!(t.blob_link("team/other", &digest(1))?, None);
            assert_eq!(t.blob_link_count("team/app")?, 2);
            assert_eq!(t.all_blob_links()?.len(), 2);
            assert_eq!(t.upload("b-session")?, Some(upload(3)));
            assert_eq!(t.upload("a-session")?, None);
            assert_eq!(t.uploads()?, [("b-session".to_string(), upload(3))]);
            Ok(())
        })
        .unwrap();
}

pub(super) fn removing_a_repository_removes_what_it_holds_and_nothing_else(store: &Store) {
    for repo in ["team/app", "team/app-2"] {
        write(store, |tx| {
            let t = tx.registry();
            t.ensure_repository(repo, 1)?;
            t.link_blob(repo, &digest(1), 10)?;
            t.put_manifest(repo, &digest(2), &manifest(2), b"{}")?;
            t.put_tag(
                repo,
                "v1",
                &TagRecord {
                    digest: digest(2),
                    updated_at: 1,
                    clock: Some(clock(1, 0, "dc1")),
                },
            )?;
            t.add_tag_history(repo, "v1", &entry(1))?;
            t.put_tombstone(
                repo,
                "old",
                &Tombstone {
                    digest: digest(3),
                    clock: clock(1, 0, "dc1"),
                    at: 1,
                },
            )?;
            t.add_referrer(repo, &digest(1), &referrer(2))?;
            Ok(())
        });
    }
    write(store, |tx| tx.registry().remove_repository("team/app"));
    store
        .read_blocking(|tx| -> StoreResult<()> {
            let t = tx.registry();
            assert_eq!(t.repository("team/app")?, None);
            assert_eq!(t.blob_link("team/app", &digest(1))?, None);
            assert_eq!(t.manifest("team/app", &digest(2))?, None);
            assert_eq!(t.tag("team/app", "v1")?, None);
            assert_eq!(t.tag_history("team/app", "v1")?, []);
            assert_eq!(t.tombstone("team/app", "old")?, None);
            assert_eq!(t.referrers("team/app", &digest(1))?, []);
            let kept = "team/app-2";
            assert!(t.repository(kept)?.is_some());
            assert_eq!(t.blob_link(kept, &digest(1))?, Some(10));
            assert!(t.manifest(kept, &digest(2))?.is_some());
            assert!(t.tag(kept, "v1")?.is_some());
            assert_eq!(t.tag_history(kept, "v1")?.len(), 1);
            assert!(t.tombstone(kept, "old")?.is_some());
            assert_eq!(t.referrers(kept, &digest(1))?.len(), 1);
            Ok(())
        })
        .unwrap();
}

pub(super) fn a_manifest_is_found_by_tag_or_digest_in_one_call(store: &Store) {
    let bytes = b"{\"schemaVersion\":2,\"x\":\"\\u00fc\"}".to_vec();
    let tag = TagRecord {
        digest: digest(2),
        updated_at: 77,
        clock: Some(clock(77, 3, "dc1")),
    };
    write(store, |tx| {
        let t = tx.registry();
        t.put_manifest("team/app", &digest(2), &manifest(2), &bytes)?;
        t.put_manifest("team/other", &digest(3), &manifest(3), b"{}")?;
        t.put_tag("team/app", "v1", &tag)?;
        // A tag whose manifest is gone (fsck's business) finds nothing.
        t.put_tag(
            "team/app",
            "dangling",
            &TagRecord {
                digest: digest(9),
                updated_at: 1,
                clock: None,
            },
        )?;
        Ok(())
    });
    store
        .read_blocking(|tx| -> StoreResult<()> {
            let t = tx.registry();
            let by_tag = t.find_manifest("team/app", "v1", true)?.unwrap();
            assert_eq!(by_tag.digest, digest(2));
            assert_eq!(by_tag.tag, Some(tag.clone()));
            assert_eq!(by_tag.record, manifest(2));
            assert_eq!(by_tag.bytes, Some(bytes.clone()));
            let without_bytes = t.find_manifest("team/app", "v1", false)?.unwrap();
            assert_eq!(without_bytes.bytes, None);
            let by_digest = t.find_manifest("team/app", &digest(2), true)?.unwrap();
            assert_eq!(by_digest.tag, None);
            assert_eq!(by_digest.bytes, Some(bytes.clone()));
            assert_eq!(t.find_manifest("team/app", "v2", true)?, None);
            assert_eq!(t.find_manifest("team/app", "dangling", true)?, None);
            assert_eq!(
                t.find_manifest("team/app", &digest(3), true)?,
                None,
                "another repository's"
            );
            assert_eq!(
                t.find_manifest("team/other", &digest(3), false)?
                    .unwrap()
                    .digest,
                digest(3)
            );
            Ok(())
        })
        .unwrap();
}
