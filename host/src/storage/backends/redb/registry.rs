//! The registry's tables in redb, with the layout and versions they had before they moved
//! behind the storage interface: records as JSON keyed by name, `(repository, …)` tuple
//! keys so that a repository's rows are one range.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{RedbTx, backend};
use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{KEY_END, MetaResult, Reader, decode, encode};
use crate::storage::store::StoreResult;
use crate::storage::tables::registry::{
    HISTORY_PER_TAG, HistoryEntry, ManifestRecord, ReferrerDescriptor, RegistryRead, RegistryWrite,
    RepositoryRecord, TagRecord, Tombstone, UploadRecord,
};

const REPOSITORIES: TableDefinition<&str, &[u8]> = TableDefinition::new("repositories");
const BLOB_LINKS: TableDefinition<(&str, &str), u64> = TableDefinition::new("blob_links");
const MANIFESTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifests");
const MANIFEST_BYTES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifest_bytes");
const TAGS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tags");
const HISTORY: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("tag_history");
const TOMBSTONES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tag_tombstones");
const REFERRERS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("referrers");
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");

/// The registry's tables, versioned as they always were.
pub(super) const SCHEMA: Component = Component {
    name: "registry",
    current: 3,
    migrations: &[
        Migration {
            from: 0,
            apply: create_v1,
        },
        Migration {
            from: 1,
            apply: change_feed_moved,
        },
        Migration {
            from: 2,
            apply: add_tag_history,
        },
    ],
};

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(REPOSITORIES)?;
    tx.open_table(BLOB_LINKS)?;
    tx.open_table(MANIFESTS)?;
    tx.open_table(MANIFEST_BYTES)?;
    tx.open_table(TAGS)?;
    tx.open_table(REFERRERS)?;
    tx.open_table(UPLOADS)?;
    Ok(())
}

/// Version 2 added the change feed (`changes`), which the event feed has since taken
/// over (`events.rs` converts a database that has one).
fn change_feed_moved(_: &WriteTransaction) -> MetaResult<()> {
    Ok(())
}

/// Version 3: tag history and tombstones, for tags moved on two primaries at once.
fn add_tag_history(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(HISTORY)?;
    tx.open_table(TOMBSTONES)?;
    Ok(())
}

impl<T: Reader> RegistryRead for RedbTx<T> {
    fn repository(&self, name: &str) -> StoreResult<Option<RepositoryRecord>> {
        match self.0.open(REPOSITORIES)?.get(name).map_err(backend)? {
            Some(v) => Ok(Some(decode("repositories", v.value())?)),
            None => Ok(None),
        }
    }

    fn repositories(&self, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        use std::ops::Bound::{Excluded, Unbounded};
        let table = self.0.open(REPOSITORIES)?;
        let range = match after {
            Some(after) => table.range::<&str>((Excluded(after), Unbounded)),
            None => table.range::<&str>(..),
        }
        .map_err(backend)?;
        let mut out = Vec::new();
        for entry in range.take(limit) {
            out.push(entry.map_err(backend)?.0.value().to_owned());
        }
        Ok(out)
    }

    fn blob_link(&self, repo: &str, digest: &str) -> StoreResult<Option<u64>> {
        Ok(self
            .0
            .open(BLOB_LINKS)?
            .get((repo, digest))
            .map_err(backend)?
            .map(|v| v.value()))
    }

    fn blob_link_count(&self, repo: &str) -> StoreResult<u64> {
        Ok(self
            .0
            .open(BLOB_LINKS)?
            .range((repo, "")..(repo, KEY_END))
            .map_err(backend)?
            .count() as u64)
    }

    fn all_blob_links(&self) -> StoreResult<Vec<(String, String, u64)>> {
        let mut out = Vec::new();
        for entry in self.0.open(BLOB_LINKS)?.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let (repo, digest) = k.value();
            out.push((repo.to_owned(), digest.to_owned(), v.value()));
        }
        Ok(out)
    }

    fn manifest(&self, repo: &str, digest: &str) -> StoreResult<Option<ManifestRecord>> {
        match self
            .0
            .open(MANIFESTS)?
            .get((repo, digest))
            .map_err(backend)?
        {
            Some(v) => Ok(Some(decode("manifests", v.value())?)),
            None => Ok(None),
        }
    }

    fn manifest_bytes(&self, repo: &str, digest: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .0
            .open(MANIFEST_BYTES)?
            .get((repo, digest))
            .map_err(backend)?
            .map(|v| v.value().to_vec()))
    }

    fn manifest_count(&self, repo: &str) -> StoreResult<u64> {
        Ok(self
            .0
            .open(MANIFESTS)?
            .range((repo, "")..(repo, KEY_END))
            .map_err(backend)?
            .count() as u64)
    }

    fn all_manifests(&self) -> StoreResult<Vec<(String, String, ManifestRecord)>> {
        let mut out = Vec::new();
        for entry in self.0.open(MANIFESTS)?.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let (repo, digest) = k.value();
            out.push((
                repo.to_owned(),
                digest.to_owned(),
                decode("manifests", v.value())?,
            ));
        }
        Ok(out)
    }

    fn tag(&self, repo: &str, tag: &str) -> StoreResult<Option<TagRecord>> {
        match self.0.open(TAGS)?.get((repo, tag)).map_err(backend)? {
            Some(v) => Ok(Some(decode("tags", v.value())?)),
            None => Ok(None),
        }
    }

    fn tags(&self, repo: &str, after: Option<&str>, limit: usize) -> StoreResult<Vec<String>> {
        let table = self.0.open(TAGS)?;
        let mut out = Vec::new();
        for entry in table
            .range((repo, after.unwrap_or(""))..(repo, KEY_END))
            .map_err(backend)?
        {
            let (k, _) = entry.map_err(backend)?;
            let tag = k.value().1;
            if after.is_some_and(|a| tag <= a) {
                continue;
            }
            if out.len() >= limit {
                break;
            }
            out.push(tag.to_owned());
        }
        Ok(out)
    }

    fn tags_pointing_at(&self, repo: &str, digest: &str) -> StoreResult<Vec<String>> {
        let table = self.0.open(TAGS)?;
        let mut out = Vec::new();
        for entry in table.range((repo, "")..(repo, KEY_END)).map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let record: TagRecord = decode("tags", v.value())?;
            if record.digest == digest {
                out.push(k.value().1.to_owned());
            }
        }
        Ok(out)
    }

    fn all_tags(&self) -> StoreResult<Vec<(String, String, TagRecord)>> {
        let mut out = Vec::new();
        for entry in self.0.open(TAGS)?.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            let (repo, tag) = k.value();
            out.push((repo.to_owned(), tag.to_owned(), decode("tags", v.value())?));
        }
        Ok(out)
    }

    fn tag_history(&self, repo: &str, tag: &str) -> StoreResult<Vec<HistoryEntry>> {
        let table = self.0.open(HISTORY)?;
        let mut out = Vec::new();
        for entry in table
            .range((repo, tag, 0)..=(repo, tag, u64::MAX))
            .map_err(backend)?
            .rev()
        {
            let (_, v) = entry.map_err(backend)?;
            out.push(decode("tag_history", v.value())?);
        }
        Ok(out)
    }

    fn tombstone(&self, repo: &str, tag: &str) -> StoreResult<Option<Tombstone>> {
        match self.0.open(TOMBSTONES)?.get((repo, tag)).map_err(backend)? {
            Some(v) => Ok(Some(decode("tag_tombstones", v.value())?)),
            None => Ok(None),
        }
    }

    fn referrers(&self, repo: &str, subject: &str) -> StoreResult<Vec<ReferrerDescriptor>> {
        let table = self.0.open(REFERRERS)?;
        let mut out = Vec::new();
        for entry in table
            .range((repo, subject, "")..(repo, subject, KEY_END))
            .map_err(backend)?
        {
            out.push(decode("referrers", entry.map_err(backend)?.1.value())?);
        }
        Ok(out)
    }

    fn upload(&self, id: &str) -> StoreResult<Option<UploadRecord>> {
        match self.0.open(UPLOADS)?.get(id).map_err(backend)? {
            Some(v) => Ok(Some(decode("uploads", v.value())?)),
            None => Ok(None),
        }
    }

    fn uploads(&self) -> StoreResult<Vec<(String, UploadRecord)>> {
        let mut out = Vec::new();
        for entry in self.0.open(UPLOADS)?.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            out.push((k.value().to_owned(), decode("uploads", v.value())?));
        }
        Ok(out)
    }
}

impl RegistryWrite for RedbTx<WriteTransaction> {
    fn ensure_repository(&self, name: &str, now: u64) -> StoreResult<()> {
        let mut table = self.0.open_table(REPOSITORIES).map_err(backend)?;
        if table.get(name).map_err(backend)?.is_none() {
            let record = RepositoryRecord { created_at: now };
            table
                .insert(name, encode(&record).as_slice())
                .map_err(backend)?;
        }
        Ok(())
    }

    fn remove_repository(&self, name: &str) -> StoreResult<()> {
        let tx = &self.0;
        let pairs = (name, "")..(name, KEY_END);
        tx.open_table(TAGS)
            .map_err(backend)?
            .retain_in(pairs.clone(), |_, _| false)
            .map_err(backend)?;
        tx.open_table(HISTORY)
            .map_err(backend)?
            .retain_in((name, "", 0)..(name, KEY_END, 0), |_, _| false)
            .map_err(backend)?;
        tx.open_table(TOMBSTONES)
            .map_err(backend)?
            .retain_in(pairs.clone(), |_, _| false)
            .map_err(backend)?;
        tx.open_table(REFERRERS)
            .map_err(backend)?
            .retain_in((name, "", "")..(name, KEY_END, ""), |_, _| false)
            .map_err(backend)?;
        tx.open_table(MANIFESTS)
            .map_err(backend)?
            .retain_in(pairs.clone(), |_, _| false)
            .map_err(backend)?;
        tx.open_table(MANIFEST_BYTES)
            .map_err(backend)?
            .retain_in(pairs.clone(), |_, _| false)
            .map_err(backend)?;
        tx.open_table(BLOB_LINKS)
            .map_err(backend)?
            .retain_in(pairs, |_, _| false)
            .map_err(backend)?;
        tx.open_table(REPOSITORIES)
            .map_err(backend)?
            .remove(name)
            .map_err(backend)?;
        Ok(())
    }

    fn link_blob(&self, repo: &str, digest: &str, size: u64) -> StoreResult<()> {
        self.0
            .open_table(BLOB_LINKS)
            .map_err(backend)?
            .insert((repo, digest), size)
            .map_err(backend)?;
        Ok(())
    }

    fn unlink_blob(&self, repo: &str, digest: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(BLOB_LINKS)
            .map_err(backend)?
            .remove((repo, digest))
            .map_err(backend)?
            .is_some())
    }

    fn put_manifest(
        &self,
        repo: &str,
        digest: &str,
        record: &ManifestRecord,
        bytes: &[u8],
    ) -> StoreResult<()> {
        self.0
            .open_table(MANIFESTS)
            .map_err(backend)?
            .insert((repo, digest), encode(record).as_slice())
            .map_err(backend)?;
        self.0
            .open_table(MANIFEST_BYTES)
            .map_err(backend)?
            .insert((repo, digest), bytes)
            .map_err(backend)?;
        Ok(())
    }

    fn remove_manifest(&self, repo: &str, digest: &str) -> StoreResult<Option<ManifestRecord>> {
        let record = match self
            .0
            .open_table(MANIFESTS)
            .map_err(backend)?
            .remove((repo, digest))
            .map_err(backend)?
        {
            Some(v) => Some(decode("manifests", v.value())?),
            None => None,
        };
        self.0
            .open_table(MANIFEST_BYTES)
            .map_err(backend)?
            .remove((repo, digest))
            .map_err(backend)?;
        Ok(record)
    }

    fn put_tag(&self, repo: &str, tag: &str, record: &TagRecord) -> StoreResult<()> {
        self.0
            .open_table(TAGS)
            .map_err(backend)?
            .insert((repo, tag), encode(record).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_tag(&self, repo: &str, tag: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(TAGS)
            .map_err(backend)?
            .remove((repo, tag))
            .map_err(backend)?
            .is_some())
    }

    fn add_tag_history(&self, repo: &str, tag: &str, entry: &HistoryEntry) -> StoreResult<()> {
        let mut table = self.0.open_table(HISTORY).map_err(backend)?;
        let (next, count) = {
            let mut range = table
                .range((repo, tag, 0)..=(repo, tag, u64::MAX))
                .map_err(backend)?;
            let last = range
                .next_back()
                .transpose()
                .map_err(backend)?
                .map(|(k, _)| k.value().2);
            let count = table
                .range((repo, tag, 0)..=(repo, tag, u64::MAX))
                .map_err(backend)?
                .count();
            (last.map_or(1, |l| l + 1), count)
        };
        table
            .insert((repo, tag, next), encode(entry).as_slice())
            .map_err(backend)?;
        if count + 1 > HISTORY_PER_TAG {
            let drop_through = next - HISTORY_PER_TAG as u64;
            table
                .retain_in((repo, tag, 0)..=(repo, tag, drop_through), |_, _| false)
                .map_err(backend)?;
        }
        Ok(())
    }

    fn put_tombstone(&self, repo: &str, tag: &str, tombstone: &Tombstone) -> StoreResult<()> {
        self.0
            .open_table(TOMBSTONES)
            .map_err(backend)?
            .insert((repo, tag), encode(tombstone).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_tombstone(&self, repo: &str, tag: &str) -> StoreResult<()> {
        self.0
            .open_table(TOMBSTONES)
            .map_err(backend)?
            .remove((repo, tag))
            .map_err(backend)?;
        Ok(())
    }

    fn add_referrer(
        &self,
        repo: &str,
        subject: &str,
        descriptor: &ReferrerDescriptor,
    ) -> StoreResult<()> {
        self.0
            .open_table(REFERRERS)
            .map_err(backend)?
            .insert(
                (repo, subject, descriptor.digest.as_str()),
                encode(descriptor).as_slice(),
            )
            .map_err(backend)?;
        Ok(())
    }

    fn remove_referrer(&self, repo: &str, subject: &str, referrer: &str) -> StoreResult<()> {
        self.0
            .open_table(REFERRERS)
            .map_err(backend)?
            .remove((repo, subject, referrer))
            .map_err(backend)?;
        Ok(())
    }

    fn put_upload(&self, id: &str, record: &UploadRecord) -> StoreResult<()> {
        self.0
            .open_table(UPLOADS)
            .map_err(backend)?
            .insert(id, encode(record).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn remove_upload(&self, id: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(UPLOADS)
            .map_err(backend)?
            .remove(id)
            .map_err(backend)?
            .is_some())
    }
}
