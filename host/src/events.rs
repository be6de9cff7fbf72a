//! The event feed: what changed, for whoever follows it. A producer publishes in the
//! transaction of the change it reports (the registry: pushes, tag moves, deletes); a
//! consumer reads past its durable cursor and moves the cursor in the transaction of what
//! it did about the events, so an event is handled once, across crashes and nodes, and
//! never one that was rolled back. The feed is trimmed below the lowest cursor.
//!
//! Consumers wake when this process commits events, when another node does (PostgreSQL
//! `LISTEN/NOTIFY`), and on their own polling interval, which stays the fallback.

use std::sync::Arc;

use tokio::sync::watch;

use crate::storage::store::{Durability, ReadTx, Store, StoreResult, Watching, WriteTx};
pub use crate::storage::tables::events::{Change, ChangeKind, Event};

impl From<Change> for Event {
    fn from(change: Change) -> Event {
        Event::Registry(change)
    }
}

/// Appends `event` to the feed in `tx`. After the commit, call [`Feed::published`] so
/// that this process's consumers wake at once.
pub fn publish(tx: &dyn WriteTx, event: impl Into<Event>) -> StoreResult<()> {
    tx.events().append_event(&event.into())
}

/// Where a consumer seen for the first time starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// At the oldest event still kept.
    Oldest,
    /// After the newest event: only what happens from now on.
    Newest,
}

/// Events read past a consumer's cursor.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The cursor they were read from: pass it to [`acknowledge`], which refuses if the
    /// cursor moved meanwhile (another node handled them).
    pub cursor: u64,
    /// The events, oldest first, with their numbers.
    pub events: Vec<(u64, Event)>,
}

impl Batch {
    /// The number of the last event, if there is one.
    pub fn last(&self) -> Option<u64> {
        self.events.last().map(|(seq, _)| *seq)
    }
}

/// Reads up to `limit` events after `consumer`'s cursor (0 for a consumer never
/// registered).
pub fn read(tx: &dyn ReadTx, consumer: &str, limit: usize) -> StoreResult<Batch> {
    let cursor = tx.events().event_cursor(consumer)?.unwrap_or(0);
    Ok(Batch {
        cursor,
        events: tx.events().events_after(cursor, limit)?,
    })
}

/// Gives `consumer` a cursor in `tx` if it has none; returns where it stands.
pub fn register_in(tx: &dyn WriteTx, consumer: &str, start: Start) -> StoreResult<u64> {
    if let Some(cursor) = tx.events().event_cursor(consumer)? {
        return Ok(cursor);
    }
    let cursor = match start {
        Start::Oldest => 0,
        Start::Newest => tx.events().last_event_seq()?,
    };
    tx.events().set_event_cursor(consumer, cursor)?;
    Ok(cursor)
}

/// Numbers the events committed since the last call where the backend numbers them after
/// commit (PostgreSQL), for a consumer that holds a store rather than a [`Feed`]. Blocks.
pub fn sequence(store: &Store) -> StoreResult<()> {
    if store.read_blocking(|tx| tx.events().unsequenced_events())? {
        store.write_blocking(Durability::Immediate, |tx| tx.events().sequence_events())?;
    }
    Ok(())
}

/// Moves `consumer`'s cursor from `from` (where its batch was read) to `through`, and
/// trims what every consumer has handled; returns `false`, changing nothing, when the
/// cursor is no longer at `from` (another node handled the batch first; drop what was
/// done with it, which the caller does by failing its transaction or skipping its writes).
pub fn acknowledge(tx: &dyn WriteTx, consumer: &str, from: u64, through: u64) -> StoreResult<bool> {
    let feed = tx.events();
    if feed.event_cursor(consumer)?.unwrap_or(0) != from {
        return Ok(false);
    }
    feed.set_event_cursor(consumer, through)?;
    let lowest = feed
        .event_cursors()?
        .into_iter()
        .map(|(_, seq)| seq)
        .min()
        .unwrap_or(through);
    feed.trim_events_through(lowest)?;
    Ok(true)
}

/// How many events `consumer` has not handled yet.
pub fn backlog(tx: &dyn ReadTx, consumer: &str) -> StoreResult<u64> {
    let cursor = tx.events().event_cursor(consumer)?.unwrap_or(0);
    Ok(tx.events().last_event_seq()?.saturating_sub(cursor))
}

/// The feed of one process: registration of consumers, numbering, and wake-ups.
#[derive(Clone)]
pub struct Feed {
    store: Store,
    published: Arc<watch::Sender<u64>>,
    _watching: Option<Arc<Watching>>,
}

/// Wakes a consumer when events may have arrived.
pub type Wakeups = watch::Receiver<u64>;

impl std::fmt::Debug for Feed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed").field("store", &self.store).finish()
    }
}

impl Feed {
    /// The feed of `store`, listening for other nodes' events where the backend carries
    /// them (PostgreSQL).
    pub fn new(store: Store) -> Feed {
        let published = Arc::new(watch::channel(0u64).0);
        let wake = published.clone();
        let watching = store
            .watch_events(Box::new(move || {
                wake.send_modify(|n| *n = n.wrapping_add(1))
            }))
            .map(Arc::new);
        Feed {
            store,
            published,
            _watching: watching,
        }
    }

    /// Says that a transaction that published events has committed here.
    pub fn published(&self) {
        self.published.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes whenever events may have arrived.
    pub fn subscribe(&self) -> Wakeups {
        self.published.subscribe()
    }

    /// Gives `consumer` a cursor if it has none; returns where it stands. Blocks.
    pub fn register(&self, consumer: &str, start: Start) -> StoreResult<u64> {
        self.store
            .write_blocking(Durability::Immediate, |tx| register_in(tx, consumer, start))
    }

    /// Numbers the events committed since the last call, where the backend numbers them
    /// after commit (PostgreSQL); consumers call it before reading. Cheap when there is
    /// nothing to number. Blocks.
    pub fn sequence(&self) -> StoreResult<()> {
        sequence(&self.store)
    }
}
