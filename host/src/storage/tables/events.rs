//! Tables of the event feed (`host/src/events.rs`): `events`, numbered in commit order,
//! and `event_cursors`, how far each consumer has read. Producers append in the same
//! transaction as the change they report; a consumer moves its cursor in the same
//! transaction as what it did about the events; the feed is trimmed below the lowest
//! cursor.
//!
//! Sequence numbers come from the backend and follow commit order, so a consumer that
//! reads past its cursor never skips an event whose transaction committed late: redb has
//! one writer at a time; on PostgreSQL an event is appended without a number and numbered
//! once committed ([`EventsWrite::sequence_events`]).

use serde::{Deserialize, Serialize};

use crate::storage::clock::Clock;
use crate::storage::store::{StoreResult, now_millis};
use crate::storage::tables::scheduling::MachineState;

/// One event, by producer. New producers (machine transitions, …) add variants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stream", content = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A change of the registry's content.
    Registry(Change),
    /// A machine moved from one lifecycle state to another.
    Machine(MachineTransition),
    /// A project's month of cost crossed a threshold of its budget.
    Budget(crate::storage::tables::cost::BudgetAlert),
}

/// A machine's move between two lifecycle states, as the feed carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineTransition {
    /// The machine.
    pub machine: String,
    /// Its cluster.
    pub cluster: String,
    /// Its project.
    pub project: String,
    /// The state it left; none when it was first recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<MachineState>,
    /// The state it entered.
    pub to: MachineState,
    /// Who moved it.
    pub actor: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When (ms since the epoch).
    pub at: u64,
}

/// What changed in one repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ChangeKind {
    /// A manifest was pushed (new to the repository, or re-tagged): `tag` names the tag
    /// that now points at it, if the push was by tag.
    Manifest {
        /// The manifest's digest.
        digest: String,
        /// Its media type.
        media_type: String,
        /// The tag it was pushed under, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tag: Option<String>,
    },
    /// A tag was removed (the manifest stays).
    TagDeleted {
        /// The tag.
        tag: String,
        /// Where it pointed.
        digest: String,
        /// The delete's clock, which travels with it so that the peer orders it against
        /// its own moves of the tag.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clock: Option<Clock>,
    },
    /// A manifest was deleted, with every tag that pointed at it.
    ManifestDeleted {
        /// The manifest's digest.
        digest: String,
        /// The tags that went with it.
        #[serde(default)]
        tags: Vec<String>,
    },
}

/// A change of the registry's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The repository.
    pub repository: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: ChangeKind,
    /// Where the content came from when it arrived by replication (an endpoint or
    /// instance name), so that it is not sent back there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// When (ms since the epoch).
    pub at: u64,
}

impl Change {
    /// A change made now.
    pub fn new(repository: &str, kind: ChangeKind, origin: Option<&str>) -> Change {
        Change {
            repository: repository.to_owned(),
            kind,
            origin: origin.map(str::to_owned),
            at: now_millis(),
        }
    }
}

/// Reads of the event feed.
pub trait EventsRead {
    /// Up to `limit` numbered events after `after`, oldest first.
    fn events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<(u64, Event)>>;

    /// The number of the newest numbered event (0 before the first). Numbers never
    /// restart, trimmed or not.
    fn last_event_seq(&self) -> StoreResult<u64>;

    /// Whether committed events wait for their numbers (never on redb).
    fn unsequenced_events(&self) -> StoreResult<bool>;

    /// The cursor of `consumer`: the number of the last event it handled.
    fn event_cursor(&self, consumer: &str) -> StoreResult<Option<u64>>;

    /// Every consumer's cursor, in consumer order.
    fn event_cursors(&self) -> StoreResult<Vec<(String, u64)>>;
}

/// Writes of the event feed.
pub trait EventsWrite: EventsRead {
    /// Appends `event`; it gets its number when this transaction commits (redb) or when
    /// [`EventsWrite::sequence_events`] next runs after it (PostgreSQL). Wakes the feed's
    /// listeners on other nodes once committed.
    fn append_event(&self, event: &Event) -> StoreResult<()>;

    /// Numbers the committed events that have none, in the order they are found; returns
    /// how many. Does nothing on redb.
    fn sequence_events(&self) -> StoreResult<u64>;

    /// Sets the cursor of `consumer`.
    fn set_event_cursor(&self, consumer: &str, seq: u64) -> StoreResult<()>;

    /// Forgets `consumer` (its cursor no longer holds trimming back).
    fn remove_event_cursor(&self, consumer: &str) -> StoreResult<bool>;

    /// Removes the events numbered up to `seq`; returns how many.
    fn trim_events_through(&self, seq: u64) -> StoreResult<u64>;
}
