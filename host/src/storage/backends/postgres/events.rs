//! The event feed in PostgreSQL. Several nodes append at once, and a number handed out at
//! insert time would let an event whose transaction commits late land behind a consumer's
//! cursor. So an event is inserted without a number, and numbered once it is visible
//! (committed): `sequence_events` numbers whatever it finds unnumbered, from one counter
//! row that serialises the numbering transactions, so numbers follow the order in which
//! events became visible and a snapshot that sees a number sees every smaller one.
//! Appending notifies channel `berth_events` (delivered at commit) so that other nodes'
//! consumers wake.

use postgres::types::Json;

use super::schema::Component;
use super::{PgTx, decode_error};
use crate::storage::store::StoreResult;
use crate::storage::tables::events::{Event, EventsRead, EventsWrite};

/// The channel appends notify.
pub(crate) const CHANNEL: &str = "berth_events";

pub(super) const SCHEMA: Component = Component {
    name: "events",
    steps: &[r#"
        CREATE TABLE events (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            seq bigint UNIQUE,
            body jsonb NOT NULL
        );
        CREATE INDEX events_unsequenced ON events (id) WHERE seq IS NULL;
        CREATE TABLE event_sequence (
            last bigint NOT NULL
        );
        INSERT INTO event_sequence (last) VALUES (0);
        CREATE TABLE event_cursors (
            consumer text COLLATE "C" PRIMARY KEY,
            seq bigint NOT NULL
        );
    "#],
};

impl EventsRead for PgTx<'_> {
    fn events_after(&self, after: u64, limit: usize) -> StoreResult<Vec<(u64, Event)>> {
        self.query(
            "SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2",
            &[
                &i64::try_from(after).unwrap_or(i64::MAX),
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )?
        .iter()
        .map(|row| {
            let Json(event) = row
                .try_get::<_, Json<Event>>("body")
                .map_err(|e| decode_error("events", e))?;
            Ok((row.get::<_, i64>("seq") as u64, event))
        })
        .collect()
    }

    fn last_event_seq(&self) -> StoreResult<u64> {
        Ok(self.query("SELECT last FROM event_sequence", &[])?[0].get::<_, i64>(0) as u64)
    }

    fn unsequenced_events(&self) -> StoreResult<bool> {
        Ok(self.query(
            "SELECT EXISTS (SELECT 1 FROM events WHERE seq IS NULL)",
            &[],
        )?[0]
            .get(0))
    }

    fn event_cursor(&self, consumer: &str) -> StoreResult<Option<u64>> {
        Ok(self
            .query_opt(
                "SELECT seq FROM event_cursors WHERE consumer = $1",
                &[&consumer],
            )?
            .map(|row| row.get::<_, i64>(0) as u64))
    }

    fn event_cursors(&self) -> StoreResult<Vec<(String, u64)>> {
        Ok(self
            .query(
                "SELECT consumer, seq FROM event_cursors ORDER BY consumer",
                &[],
            )?
            .iter()
            .map(|row| (row.get(0), row.get::<_, i64>(1) as u64))
            .collect())
    }
}

impl EventsWrite for PgTx<'_> {
    fn append_event(&self, event: &Event) -> StoreResult<()> {
        self.execute("INSERT INTO events (body) VALUES ($1)", &[&Json(event)])?;
        // Delivered when (and only if) this transaction commits; identical notifications
        // of one transaction are folded into one.
        self.query("SELECT pg_notify($1, '')", &[&CHANNEL])?;
        Ok(())
    }

    fn sequence_events(&self) -> StoreResult<u64> {
        if !self.unsequenced_events()? {
            return Ok(0);
        }
        // The counter row is the point of order: a concurrent numbering transaction
        // waits for it, then fails to serialise and runs again, seeing these numbers.
        let last: i64 = self.query("SELECT last FROM event_sequence FOR UPDATE", &[])?[0].get(0);
        let numbered = self.execute(
            "UPDATE events e SET seq = $1 + p.k
             FROM (SELECT id, row_number() OVER (ORDER BY id) AS k FROM events WHERE seq IS NULL) p
             WHERE e.id = p.id",
            &[&last],
        )?;
        self.execute(
            "UPDATE event_sequence SET last = $1",
            &[&(last + numbered as i64)],
        )?;
        Ok(numbered)
    }

    fn set_event_cursor(&self, consumer: &str, seq: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO event_cursors (consumer, seq) VALUES ($1, $2)
             ON CONFLICT (consumer) DO UPDATE SET seq = EXCLUDED.seq",
            &[&consumer, &(seq as i64)],
        )?;
        Ok(())
    }

    fn remove_event_cursor(&self, consumer: &str) -> StoreResult<bool> {
        Ok(self.execute(
            "DELETE FROM event_cursors WHERE consumer = $1",
            &[&consumer],
        )? > 0)
    }

    fn trim_events_through(&self, seq: u64) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM events WHERE seq <= $1",
            &[&i64::try_from(seq).unwrap_or(i64::MAX)],
        )
    }
}
