//! Cost accounting's tables in redb: sheet versions keyed by `(cluster, effective_from)`,
//! rates by `(machine, effective_from)`, cursors by machine, and the ledger's entries by
//! number with an index by `(start, number)`, which reports read a month of.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{RedbTx, backend};
use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{MetaResult, Reader, decode, encode};
use crate::storage::store::StoreResult;
use crate::storage::tables::cost::{
    CostEntry, CostRead, CostWrite, EntryFilter, MachineRate, SheetVersion,
};

const SHEETS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("price_sheets");
const RATES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("machine_rates");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("accrual_cursors");
const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("cost_entries");
/// `(from, seq)` of every entry.
const ENTRIES_BY_TIME: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("cost_entries_by_time");

/// Cost accounting's tables, versioned on their own.
pub(super) const SCHEMA: Component = Component {
    name: "cost",
    current: 1,
    migrations: &[Migration {
        from: 0,
        apply: create_v1,
    }],
};

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(SHEETS)?;
    tx.open_table(RATES)?;
    tx.open_table(CURSORS)?;
    tx.open_table(ENTRIES)?;
    tx.open_table(ENTRIES_BY_TIME)?;
    Ok(())
}

/// The records of `table` whose key starts with `name`, in key order.
fn by_name<T: serde::de::DeserializeOwned>(
    tx: &impl Reader,
    table: TableDefinition<(&str, u64), &[u8]>,
    label: &'static str,
    name: &str,
) -> StoreResult<Vec<T>> {
    let table = tx.open(table)?;
    let mut out = Vec::new();
    for entry in table.range((name, 0)..=(name, u64::MAX)).map_err(backend)? {
        let (_, v) = entry.map_err(backend)?;
        out.push(decode(label, v.value())?);
    }
    Ok(out)
}

impl<T: Reader> CostRead for RedbTx<T> {
    fn sheet_versions(&self, cluster: &str) -> StoreResult<Vec<SheetVersion>> {
        by_name(&self.0, SHEETS, "price_sheets", cluster)
    }

    fn machine_rates(&self, machine: &str) -> StoreResult<Vec<MachineRate>> {
        by_name(&self.0, RATES, "machine_rates", machine)
    }

    fn accrued_to(&self, machine: &str) -> StoreResult<Option<u64>> {
        let table = self.0.open(CURSORS)?;
        Ok(table.get(machine).map_err(backend)?.map(|v| v.value()))
    }

    fn entries(&self, filter: &EntryFilter) -> StoreResult<Vec<CostEntry>> {
        let mut out = Vec::new();
        if filter.to <= filter.from {
            return Ok(out);
        }
        let by_time = self.0.open(ENTRIES_BY_TIME)?;
        let entries = self.0.open(ENTRIES)?;
        for key in by_time
            .range((filter.from, 0)..(filter.to, 0))
            .map_err(backend)?
        {
            let (key, _) = key.map_err(backend)?;
            let (_, seq) = key.value();
            let Some(bytes) = entries.get(seq).map_err(backend)? else {
                continue;
            };
            let entry: CostEntry = decode("cost_entries", bytes.value())?;
            let wanted =
                |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
            if wanted(&filter.project, &entry.project)
                && wanted(&filter.cluster, &entry.cluster)
                && wanted(&filter.machine, &entry.machine)
            {
                out.push(entry);
            }
        }
        Ok(out)
    }
}

impl CostWrite for RedbTx<WriteTransaction> {
    fn put_sheet_version(&self, version: &SheetVersion) -> StoreResult<()> {
        let mut table = self.0.open_table(SHEETS).map_err(backend)?;
        table
            .insert(
                (version.cluster.as_str(), version.effective_from),
                encode(version).as_slice(),
            )
            .map_err(backend)?;
        Ok(())
    }

    fn put_machine_rate(&self, rate: &MachineRate) -> StoreResult<()> {
        let mut table = self.0.open_table(RATES).map_err(backend)?;
        table
            .insert(
                (rate.machine.as_str(), rate.effective_from),
                encode(rate).as_slice(),
            )
            .map_err(backend)?;
        Ok(())
    }

    fn append_entries(&self, new: &[CostEntry]) -> StoreResult<Vec<u64>> {
        let mut entries = self.0.open_table(ENTRIES).map_err(backend)?;
        let mut by_time = self.0.open_table(ENTRIES_BY_TIME).map_err(backend)?;
        // redb has one writer: the next number is one past the last, and no other
        // transaction can take it meanwhile.
        let first = match entries.last().map_err(backend)? {
            Some((seq, _)) => seq.value() + 1,
            None => 1,
        };
        let mut numbers = Vec::with_capacity(new.len());
        for (seq, entry) in (first..).zip(new) {
            let entry = CostEntry {
                seq,
                ..entry.clone()
            };
            entries
                .insert(seq, encode(&entry).as_slice())
                .map_err(backend)?;
            by_time.insert((entry.from, seq), ()).map_err(backend)?;
            numbers.push(seq);
        }
        Ok(numbers)
    }

    fn set_accrued_to(&self, machine: &str, at: u64) -> StoreResult<()> {
        let mut table = self.0.open_table(CURSORS).map_err(backend)?;
        table.insert(machine, at).map_err(backend)?;
        Ok(())
    }
}
