//! The audit log in PostgreSQL: ids from an identity column (several nodes append at
//! once), indexed by time for retention and `since`, by actor, action and resource (in
//! byte order, so a prefix filter starts at its place) for the filters an administrator
//! uses.

use postgres::Row;
use postgres::types::ToSql;

use super::schema::Component;
use super::{PgTx, millis, timestamp};
use crate::storage::store::StoreResult;
use crate::storage::tables::audit::{AuditFilter, AuditPage, AuditRead, AuditRecord, AuditWrite};

pub(super) const SCHEMA: Component = Component {
    name: "audit",
    steps: &[r#"
        CREATE TABLE audit (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            at timestamptz NOT NULL,
            actor text NOT NULL,
            source text NOT NULL,
            action text NOT NULL,
            resource text COLLATE "C" NOT NULL,
            tag text,
            digest text,
            outcome text NOT NULL,
            detail text
        );
        CREATE INDEX audit_by_time ON audit (at);
        CREATE INDEX audit_by_actor ON audit (actor, id);
        CREATE INDEX audit_by_action ON audit (action, id);
        CREATE INDEX audit_by_resource ON audit (resource, id);
    "#],
};

fn record(row: &Row) -> (u64, AuditRecord) {
    (
        row.get::<_, i64>("id") as u64,
        AuditRecord {
            at: millis(row.get("at")),
            actor: row.get("actor"),
            source: row.get("source"),
            action: row.get("action"),
            resource: row.get("resource"),
            tag: row.get("tag"),
            digest: row.get("digest"),
            outcome: row.get("outcome"),
            detail: row.get("detail"),
        },
    )
}

impl AuditRead for PgTx<'_> {
    fn page(&self, filter: &AuditFilter, limit: usize) -> StoreResult<AuditPage> {
        // One statement whatever the filters: an absent filter is a NULL that matches all,
        // so the statement is prepared once per connection.
        const SQL: &str =
            "SELECT id, at, actor, source, action, resource, tag, digest, outcome, detail
             FROM audit
             WHERE ($1::bigint IS NULL OR id < $1)
               AND ($2::timestamptz IS NULL OR at >= $2)
               AND ($3::text IS NULL OR actor = $3)
               AND ($4::text IS NULL OR action = $4)
               AND ($5::text IS NULL OR (resource >= $5 AND starts_with(resource, $5)))
             ORDER BY id DESC
             LIMIT $6";
        let before = filter.before.map(|b| b.min(i64::MAX as u64) as i64);
        let since = filter.since.map(timestamp);
        let prefix = filter.resource_prefix.as_deref().filter(|p| !p.is_empty());
        // One more than asked for tells whether there is a next page.
        let take = limit as i64 + 1;
        let params: [&(dyn ToSql + Sync); 6] = [
            &before,
            &since,
            &filter.actor,
            &filter.action,
            &prefix,
            &take,
        ];
        let mut rows: Vec<(u64, AuditRecord)> =
            self.query(SQL, &params)?.iter().map(record).collect();
        let next = if rows.len() > limit {
            rows.truncate(limit);
            rows.last().map(|(id, _)| *id)
        } else {
            None
        };
        Ok((rows, next))
    }
}

impl AuditWrite for PgTx<'_> {
    fn append(&self, records: &[AuditRecord]) -> StoreResult<()> {
        for r in records {
            self.execute(
                "INSERT INTO audit (at, actor, source, action, resource, tag, digest, outcome, detail)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &timestamp(r.at),
                    &r.actor,
                    &r.source,
                    &r.action,
                    &r.resource,
                    &r.tag,
                    &r.digest,
                    &r.outcome,
                    &r.detail,
                ],
            )?;
        }
        Ok(())
    }

    fn remove_before(&self, at: u64) -> StoreResult<u64> {
        self.execute("DELETE FROM audit WHERE at < $1", &[&timestamp(at)])
    }
}
