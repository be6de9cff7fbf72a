//! The audit log in redb, in a database file of its own (`audit.redb`: every pull writes
//! an entry, and that stream of commits must not contend with registry reads). Ids are
//! the entry's time in ms shifted left by 16 bits, made unique by counting on from the
//! last one: ordered by time, and a `since` filter is a key range.

use std::ops::Bound;

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{RedbTx, backend};
use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{MetaResult, Reader, decode, encode};
use crate::storage::store::StoreResult;
use crate::storage::tables::audit::{AuditFilter, AuditPage, AuditRead, AuditRecord, AuditWrite};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

/// Low bits of an entry id that order entries within one millisecond.
const SEQ_BITS: u32 = 16;

/// The audit log's table, versioned on its own in its own file.
pub(super) const SCHEMA: Component = Component {
    name: "audit",
    current: 1,
    migrations: &[Migration {
        from: 0,
        apply: create_v1,
    }],
};

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(TABLE)?;
    Ok(())
}

impl<T: Reader> AuditRead for RedbTx<T> {
    fn page(&self, filter: &AuditFilter, limit: usize) -> StoreResult<AuditPage> {
        let table = self.0.open(TABLE)?;
        let upper = filter
            .before
            .map(Bound::Excluded)
            .unwrap_or(Bound::Unbounded);
        let lower = filter
            .since
            .map(|s| Bound::Included(s << SEQ_BITS))
            .unwrap_or(Bound::Unbounded);
        let mut out: Vec<(u64, AuditRecord)> = Vec::new();
        for entry in table.range::<u64>((lower, upper)).map_err(backend)?.rev() {
            let (k, v) = entry.map_err(backend)?;
            let record: AuditRecord = decode("audit", v.value())?;
            let keep = filter.actor.as_ref().is_none_or(|a| &record.actor == a)
                && filter.action.as_ref().is_none_or(|a| &record.action == a)
                && filter
                    .resource_prefix
                    .as_ref()
                    .is_none_or(|r| record.resource.starts_with(r.as_str()));
            if keep {
                if out.len() == limit {
                    let next = out.last().map(|(id, _)| *id);
                    return Ok((out, next));
                }
                out.push((k.value(), record));
            }
        }
        Ok((out, None))
    }
}

impl AuditWrite for RedbTx<WriteTransaction> {
    fn append(&self, records: &[AuditRecord]) -> StoreResult<()> {
        let mut table = self.0.open_table(TABLE).map_err(backend)?;
        let mut last = match table.last().map_err(backend)? {
            Some((k, _)) => k.value(),
            None => 0,
        };
        for record in records {
            let id = (record.at << SEQ_BITS).max(last + 1);
            table
                .insert(id, encode(record).as_slice())
                .map_err(backend)?;
            last = id;
        }
        Ok(())
    }

    fn remove_before(&self, at: u64) -> StoreResult<u64> {
        let mut table = self.0.open_table(TABLE).map_err(backend)?;
        let before = at << SEQ_BITS;
        Ok(table
            .extract_if(|id, _| id < before)
            .map_err(backend)?
            .count() as u64)
    }
}
