//! Cost accounting's tables in redb: sheet versions keyed by `(cluster, effective_from)`,
//! rates by `(machine, effective_from)`, cursors by machine, the ledger's entries by
//! `(start, number)` — a report reads a month of them as one range — and their daily
//! totals by `(day, project, cluster, currency)` (the empty string for none).
//!
//! Entries are the one table that grows with time (about one per machine and day), so
//! they are stored in postcard, a compact binary form, rather than JSON like the rest:
//! about a third of the bytes, and faster to read back.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{RedbTx, backend};
use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{MetaResult, Reader, decode, encode};
use crate::storage::store::StoreResult;
use crate::storage::tables::cost::{
    Budget, BudgetAlert, CostEntry, CostRead, CostWrite, DailyTotal, EntryFilter, ExchangeRate,
    MachineRate, SheetVersion, TotalsFilter,
};

const SHEETS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("price_sheets");
const RATES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("machine_rates");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("accrual_cursors");
/// Version 1's entries by number, and its index by `(from, seq)`.
const ENTRIES_V1: TableDefinition<u64, &[u8]> = TableDefinition::new("cost_entries");
const ENTRIES_BY_TIME_V1: TableDefinition<(u64, u64), ()> =
    TableDefinition::new("cost_entries_by_time");
/// `(from, seq)` → [`StoredEntry`] in postcard.
const LEDGER: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("cost_ledger");
/// `(project, currency)` → [`Budget`].
const BUDGETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("budgets");
/// `(project, month, currency, threshold)` → [`BudgetAlert`].
const ALERTS: TableDefinition<(&str, &str, &str, u32), &[u8]> =
    TableDefinition::new("budget_alerts");
/// `(from, to, effective_from)` → [`ExchangeRate`].
const EXCHANGE: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("exchange_rates");
/// The last number given to an entry, under the key `entries`.
const NUMBERS: TableDefinition<&str, u64> = TableDefinition::new("cost_numbers");
/// `(day, project, cluster, currency or "")` → [`DailyTotal`].
const DAILY: TableDefinition<(u64, &str, &str, &str), &[u8]> = TableDefinition::new("cost_daily");

/// Cost accounting's tables, versioned on their own.
pub(super) const SCHEMA: Component = Component {
    name: "cost",
    current: 4,
    migrations: &[
        Migration {
            from: 0,
            apply: create_v1,
        },
        Migration {
            from: 1,
            apply: daily_totals_v2,
        },
        Migration {
            from: 2,
            apply: budgets_v3,
        },
        Migration {
            from: 3,
            apply: exchange_v4,
        },
    ],
};

fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(SHEETS)?;
    tx.open_table(RATES)?;
    tx.open_table(CURSORS)?;
    tx.open_table(ENTRIES_V1)?;
    tx.open_table(ENTRIES_BY_TIME_V1)?;
    Ok(())
}

/// Version 2 keys entries by start time, stores them in postcard, and keeps their daily
/// totals: the entries of version 1 are moved over and summed.
fn daily_totals_v2(tx: &WriteTransaction) -> MetaResult<()> {
    {
        let old = tx.open_table(ENTRIES_V1)?;
        let mut ledger = tx.open_table(LEDGER)?;
        let mut daily = tx.open_table(DAILY)?;
        let mut numbers = tx.open_table(NUMBERS)?;
        let mut last = 0;
        for row in old.iter()? {
            let (_, bytes) = row?;
            let entry: CostEntry = decode("cost_entries", bytes.value())?;
            ledger.insert(
                (entry.from, entry.seq),
                StoredEntry::from(&entry).bytes().as_slice(),
            )?;
            add_to_daily(&mut daily, &entry)?;
            last = last.max(entry.seq);
        }
        numbers.insert(ENTRY_NUMBERS, last)?;
    }
    tx.delete_table(ENTRIES_V1)?;
    tx.delete_table(ENTRIES_BY_TIME_V1)?;
    Ok(())
}

/// Version 3 keeps budgets and their alerts.
fn budgets_v3(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(BUDGETS)?;
    tx.open_table(ALERTS)?;
    Ok(())
}

/// Version 4 keeps exchange rates.
fn exchange_v4(tx: &WriteTransaction) -> MetaResult<()> {
    tx.open_table(EXCHANGE)?;
    Ok(())
}

const ENTRY_NUMBERS: &str = "entries";

/// An entry as stored: every field present (postcard has no optional fields), the
/// number and start in the key.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredEntry {
    machine: String,
    project: String,
    cluster: String,
    to: u64,
    phase: crate::storage::tables::cost::BilledPhase,
    currency: Option<String>,
    amount: rust_decimal::Decimal,
    rate_from: Option<u64>,
    note: Option<String>,
}

impl StoredEntry {
    fn from(e: &CostEntry) -> StoredEntry {
        StoredEntry {
            machine: e.machine.clone(),
            project: e.project.clone(),
            cluster: e.cluster.clone(),
            to: e.to,
            phase: e.phase,
            currency: e.currency.clone(),
            amount: e.amount,
            rate_from: e.rate_from,
            note: e.note.clone(),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("an entry serialises")
    }

    fn decode((from, seq): (u64, u64), bytes: &[u8]) -> StoreResult<CostEntry> {
        let e: StoredEntry = postcard::from_bytes(bytes).map_err(|e| {
            crate::storage::store::StoreError::Backend(format!(
                "cost_ledger entry {seq} does not decode: {e}"
            ))
        })?;
        Ok(CostEntry {
            seq,
            machine: e.machine,
            project: e.project,
            cluster: e.cluster,
            from,
            to: e.to,
            phase: e.phase,
            currency: e.currency,
            amount: e.amount,
            rate_from: e.rate_from,
            note: e.note,
        })
    }
}

/// Adds `entry` to its daily total in `daily`.
fn add_to_daily(
    daily: &mut redb::Table<(u64, &str, &str, &str), &[u8]>,
    entry: &CostEntry,
) -> MetaResult<()> {
    let mut total = DailyTotal::of(entry);
    let key = (
        total.day,
        entry.project.as_str(),
        entry.cluster.as_str(),
        entry.currency.as_deref().unwrap_or(""),
    );
    if let Some(stored) = daily.get(key)? {
        total = decode("cost_daily", stored.value())?;
    }
    total.add(entry);
    daily.insert(key, encode(&total).as_slice())?;
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

    fn accrual_cursors(&self) -> StoreResult<std::collections::BTreeMap<String, u64>> {
        let table = self.0.open(CURSORS)?;
        let mut out = std::collections::BTreeMap::new();
        for row in table.iter().map_err(backend)? {
            let (machine, at) = row.map_err(backend)?;
            out.insert(machine.value().to_string(), at.value());
        }
        Ok(out)
    }

    fn entries(&self, filter: &EntryFilter) -> StoreResult<Vec<CostEntry>> {
        let mut out = Vec::new();
        if filter.to <= filter.from {
            return Ok(out);
        }
        let ledger = self.0.open(LEDGER)?;
        for row in ledger
            .range((filter.from, 0)..(filter.to, 0))
            .map_err(backend)?
        {
            let (key, bytes) = row.map_err(backend)?;
            let entry = StoredEntry::decode(key.value(), bytes.value())?;
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

    fn daily_totals(&self, filter: &TotalsFilter) -> StoreResult<Vec<DailyTotal>> {
        let mut out = Vec::new();
        if filter.to <= filter.from {
            return Ok(out);
        }
        let daily = self.0.open(DAILY)?;
        for row in daily
            .range((filter.from, "", "", "")..(filter.to, "", "", ""))
            .map_err(backend)?
        {
            let (key, value) = row.map_err(backend)?;
            let (_, project, cluster, _) = key.value();
            let wanted =
                |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
            if wanted(&filter.project, project) && wanted(&filter.cluster, cluster) {
                out.push(decode("cost_daily", value.value())?);
            }
        }
        Ok(out)
    }

    fn budgets(&self, project: Option<&str>) -> StoreResult<Vec<Budget>> {
        let table = self.0.open(BUDGETS)?;
        let rows = match project {
            Some(p) => table.range((p, "")..=(p, "\u{10FFFF}")),
            None => table.range::<(&str, &str)>(..),
        }
        .map_err(backend)?;
        let mut out = Vec::new();
        for row in rows {
            let (_, value) = row.map_err(backend)?;
            out.push(decode("budgets", value.value())?);
        }
        Ok(out)
    }

    fn exchange_rates(&self) -> StoreResult<Vec<ExchangeRate>> {
        let table = self.0.open(EXCHANGE)?;
        let mut out = Vec::new();
        for row in table.range::<(&str, &str, u64)>(..).map_err(backend)? {
            let (_, value) = row.map_err(backend)?;
            out.push(decode("exchange_rates", value.value())?);
        }
        Ok(out)
    }

    fn budget_alerts(&self, project: &str, month: &str) -> StoreResult<Vec<BudgetAlert>> {
        let table = self.0.open(ALERTS)?;
        let mut out = Vec::new();
        for row in table
            .range((project, month, "", 0)..=(project, month, "\u{10FFFF}", u32::MAX))
            .map_err(backend)?
        {
            let (_, value) = row.map_err(backend)?;
            out.push(decode("budget_alerts", value.value())?);
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
        let mut ledger = self.0.open_table(LEDGER).map_err(backend)?;
        let mut daily = self.0.open_table(DAILY).map_err(backend)?;
        let mut counter = self.0.open_table(NUMBERS).map_err(backend)?;
        // redb has one writer: no other transaction can take a number meanwhile.
        let last = counter
            .get(ENTRY_NUMBERS)
            .map_err(backend)?
            .map_or(0, |v| v.value());
        let mut numbers = Vec::with_capacity(new.len());
        for (seq, entry) in (last + 1..).zip(new) {
            ledger
                .insert(
                    (entry.from, seq),
                    StoredEntry::from(entry).bytes().as_slice(),
                )
                .map_err(backend)?;
            add_to_daily(&mut daily, entry)?;
            numbers.push(seq);
        }
        if let Some(&seq) = numbers.last() {
            counter.insert(ENTRY_NUMBERS, seq).map_err(backend)?;
        }
        Ok(numbers)
    }

    fn set_accrued_to(&self, machine: &str, at: u64) -> StoreResult<()> {
        let mut table = self.0.open_table(CURSORS).map_err(backend)?;
        table.insert(machine, at).map_err(backend)?;
        Ok(())
    }

    fn put_budget(&self, budget: &Budget) -> StoreResult<()> {
        let mut table = self.0.open_table(BUDGETS).map_err(backend)?;
        table
            .insert(
                (budget.project.as_str(), budget.currency.as_str()),
                encode(budget).as_slice(),
            )
            .map_err(backend)?;
        Ok(())
    }

    fn delete_budget(&self, project: &str, currency: &str) -> StoreResult<bool> {
        let mut table = self.0.open_table(BUDGETS).map_err(backend)?;
        Ok(table
            .remove((project, currency))
            .map_err(backend)?
            .is_some())
    }

    fn put_exchange_rate(&self, rate: &ExchangeRate) -> StoreResult<()> {
        let mut table = self.0.open_table(EXCHANGE).map_err(backend)?;
        table
            .insert(
                (rate.from.as_str(), rate.to.as_str(), rate.effective_from),
                encode(rate).as_slice(),
            )
            .map_err(backend)?;
        Ok(())
    }

    fn add_budget_alert(&self, alert: &BudgetAlert) -> StoreResult<bool> {
        let mut table = self.0.open_table(ALERTS).map_err(backend)?;
        let key = (
            alert.project.as_str(),
            alert.month.as_str(),
            alert.currency.as_str(),
            alert.threshold,
        );
        if table.get(key).map_err(backend)?.is_some() {
            return Ok(false);
        }
        table
            .insert(key, encode(alert).as_slice())
            .map_err(backend)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tables::cost::BilledPhase;
    use redb::ReadableTableMetadata;

    fn entry(seq: u64, from: u64, currency: Option<&str>, amount: &str) -> CostEntry {
        CostEntry {
            seq,
            machine: "m-1".into(),
            project: "web".into(),
            cluster: "aws".into(),
            from,
            to: from + 3_600_000,
            phase: BilledPhase::Running,
            currency: currency.map(str::to_string),
            amount: amount.parse().unwrap(),
            rate_from: currency.map(|_| 0),
            note: None,
        }
    }

    /// Version 1's JSON entries, numbered and indexed apart, move to version 2's ledger
    /// with their numbers, are summed per day, and numbering goes on after the last.
    #[test]
    fn version_one_entries_move_over_and_are_summed() {
        let dir = tempfile::tempdir().unwrap();
        let db = redb::Database::create(dir.path().join("m.redb")).unwrap();
        let old = [
            entry(1, 86_400_000, Some("USD"), "1.5"),
            entry(2, 86_400_000 + 3_600_000, Some("USD"), "2.25"),
            entry(5, 2 * 86_400_000, None, "0"),
        ];
        let tx = db.begin_write().unwrap();
        create_v1(&tx).unwrap();
        {
            let mut entries = tx.open_table(ENTRIES_V1).unwrap();
            let mut by_time = tx.open_table(ENTRIES_BY_TIME_V1).unwrap();
            for e in &old {
                entries.insert(e.seq, encode(e).as_slice()).unwrap();
                by_time.insert((e.from, e.seq), ()).unwrap();
            }
        }
        tx.commit().unwrap();
        let tx = db.begin_write().unwrap();
        daily_totals_v2(&tx).unwrap();
        tx.commit().unwrap();

        let tx = RedbTx(db.begin_write().unwrap());
        let all = EntryFilter {
            from: 0,
            to: u64::MAX / 2,
            ..Default::default()
        };
        assert_eq!(tx.entries(&all).unwrap(), old);
        let daily = tx
            .daily_totals(&TotalsFilter {
                from: 0,
                to: 3 * 86_400_000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(daily.len(), 2);
        assert_eq!(daily[0].amount, "3.75".parse().unwrap());
        assert_eq!((daily[0].entries, daily[1].unpriced_ms), (2, 3_600_000));
        let appended = tx
            .append_entries(&[entry(0, 86_400_000, Some("USD"), "0.25")])
            .unwrap();
        assert_eq!(appended, [6]);
        // Version 1's tables are gone (redb makes an empty one when asked again).
        assert_eq!(tx.0.open_table(ENTRIES_V1).unwrap().len().unwrap(), 0);
    }
}
