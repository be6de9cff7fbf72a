//! The event feed in redb: `events` keyed by sequence number, which redb's single writer
//! hands out in commit order at append time; `event_cursors` by consumer. Version 1 takes
//! over the registry's change feed (`changes`) and replication's cursor into it.

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use super::{RedbTx, backend};
use crate::storage::meta::schema::{Component, Migration};
use crate::storage::meta::{MetaResult, Reader, decode, encode};
use crate::storage::store::StoreResult;
use crate::storage::tables::events::{Change, Event, EventsRead, EventsWrite};

const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const CURSORS: TableDefinition<&str, u64> = TableDefinition::new("event_cursors");

/// The registry's change feed before the event feed, and replication's cursor into it.
const OLD_CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
const OLD_CURSOR_KEY: &str = "change_cursor";

/// The consumer the old cursor belonged to.
const REPLICATION_CONSUMER: &str = "replication";

pub(super) const SCHEMA: Component = Component {
    name: "events",
    current: 1,
    migrations: &[Migration {
        from: 0,
        apply: create_v1,
    }],
};

/// Creates the feed, converting the registry's change feed when the database has one:
/// each change keeps its number, and replication's cursor moves from the jobs runner's
/// state to its own cursor. Runs after the jobs runner's tables are prepared.
fn create_v1(tx: &WriteTransaction) -> MetaResult<()> {
    let mut events = tx.open_table(EVENTS)?;
    let mut cursors = tx.open_table(CURSORS)?;
    let had_changes = tx.list_tables()?.any(|t| t.name() == OLD_CHANGES.name());
    if had_changes {
        {
            let changes = tx.open_table(OLD_CHANGES)?;
            for entry in changes.iter()? {
                let (seq, value) = entry?;
                let change: Change = decode("changes", value.value())?;
                events.insert(seq.value(), encode(&Event::Registry(change)).as_slice())?;
            }
        }
        tx.delete_table(OLD_CHANGES)?;
    }
    let mut state = tx.open_table(super::jobs::STATE)?;
    let cursor = state.remove(OLD_CURSOR_KEY)?.map(|v| v.value());
    if let Some(cursor) = cursor {
        cursors.insert(REPLICATION_CONSUMER, cursor)?;
    }
    Ok(())
}

impl<T: Reader> EventsRead for RedbTx<T> {
    fn events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<(u64, Event)>> {
        let table = self.0.open(EVENTS)?;
        let mut out = Vec::new();
        for entry in table
            .range(after.saturating_add(1)..)
            .map_err(backend)?
            .take(limit)
        {
            let (k, v) = entry.map_err(backend)?;
            out.push((k.value(), decode("events", v.value())?));
        }
        Ok(out)
    }

    fn last_event_seq(&self) -> StoreResult<u64> {
        Ok(self
            .0
            .open(EVENTS)?
            .last()
            .map_err(backend)?
            .map(|(k, _)| k.value())
            .unwrap_or(0))
    }

    fn unsequenced_events(&self) -> StoreResult<bool> {
        Ok(false)
    }

    fn event_cursor(&self, consumer: &str) -> StoreResult<Option<u64>> {
        Ok(self
            .0
            .open(CURSORS)?
            .get(consumer)
            .map_err(backend)?
            .map(|v| v.value()))
    }

    fn event_cursors(&self) -> StoreResult<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for entry in self.0.open(CURSORS)?.iter().map_err(backend)? {
            let (k, v) = entry.map_err(backend)?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }
}

impl EventsWrite for RedbTx<WriteTransaction> {
    fn append_event(&self, event: &Event) -> StoreResult<()> {
        let mut table = self.0.open_table(EVENTS).map_err(backend)?;
        let seq = table
            .last()
            .map_err(backend)?
            .map(|(k, _)| k.value())
            .unwrap_or(0)
            + 1;
        table
            .insert(seq, encode(event).as_slice())
            .map_err(backend)?;
        Ok(())
    }

    fn sequence_events(&self) -> StoreResult<u64> {
        Ok(0)
    }

    fn set_event_cursor(&self, consumer: &str, seq: u64) -> StoreResult<()> {
        self.0
            .open_table(CURSORS)
            .map_err(backend)?
            .insert(consumer, seq)
            .map_err(backend)?;
        Ok(())
    }

    fn remove_event_cursor(&self, consumer: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .open_table(CURSORS)
            .map_err(backend)?
            .remove(consumer)
            .map_err(backend)?
            .is_some())
    }

    /// The newest event is always kept: redb numbers the next one from it.
    fn trim_events_through(&self, seq: u64) -> StoreResult<u64> {
        use redb::ReadableTableMetadata as _;
        let mut table = self.0.open_table(EVENTS).map_err(backend)?;
        let newest = table
            .last()
            .map_err(backend)?
            .map(|(k, _)| k.value())
            .unwrap_or(0);
        let upto = seq.min(newest.saturating_sub(1));
        let before = table.len().map_err(backend)?;
        table.retain_in(..=upto, |_, _| false).map_err(backend)?;
        Ok(before - table.len().map_err(backend)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::meta::Metadata;
    use crate::storage::store::{Durability, Store};
    use crate::storage::tables::events::ChangeKind;

    fn old_change(n: u64) -> Change {
        Change {
            repository: "team/app".into(),
            kind: ChangeKind::Manifest {
                digest: format!("sha256:{n:064x}"),
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                tag: Some(format!("v{n}")),
            },
            origin: (n == 3).then(|| "dc2".to_string()),
            at: 1_764_000_000_000 + n,
        }
    }

    /// A data directory whose registry kept a change feed, partly trimmed and partly read
    /// by replication, opens with the same changes under the same numbers as registry
    /// events, replication's cursor where it was, and numbering going on from there.
    #[test]
    fn the_registry_change_feed_and_replications_cursor_are_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.redb");
        {
            let meta = Metadata::open(&path).unwrap();
            meta.write(|tx| -> MetaResult<()> {
                let mut changes = tx.open_table(OLD_CHANGES)?;
                for n in 2..=4 {
                    changes.insert(n, encode(&old_change(n)).as_slice())?;
                }
                // Replication's own queue, which the jobs runner takes over first.
                tx.open_table(TableDefinition::<u64, &[u8]>::new("replication_jobs"))?;
                tx.open_table(TableDefinition::<(u64, u32), &[u8]>::new(
                    "replication_tasks",
                ))?;
                let mut state =
                    tx.open_table(TableDefinition::<&str, u64>::new("replication_state"))?;
                state.insert(OLD_CURSOR_KEY, 3)?;
                // The registry's schema as shipped: version 3, with the change feed.
                tx.open_table(TableDefinition::<&str, u64>::new("schema"))?
                    .insert("registry", 3)?;
                Ok(())
            })
            .unwrap();
        }
        let store = Store::redb(Arc::new(Metadata::open(&path).unwrap())).unwrap();
        store
            .read_blocking(|tx| -> StoreResult<()> {
                let events = tx.events().events_after(0, 10)?;
                let numbers: Vec<u64> = events.iter().map(|(n, _)| *n).collect();
                assert_eq!(numbers, [2, 3, 4]);
                assert_eq!(events[1].1, Event::Registry(old_change(3)));
                assert_eq!(tx.events().event_cursor(REPLICATION_CONSUMER)?, Some(3));
                assert_eq!(tx.events().last_event_seq()?, 4);
                Ok(())
            })
            .unwrap();
        store
            .write_blocking(Durability::Immediate, |tx| {
                tx.events().append_event(&Event::Registry(old_change(5)))
            })
            .unwrap();
        assert_eq!(
            store
                .read_blocking(|tx| tx.events().last_event_seq())
                .unwrap(),
            5
        );
    }
}
