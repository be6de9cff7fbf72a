//! The registry's tables in PostgreSQL: a column per field; a manifest's exact bytes
//! beside its record (read apart, so listing manifests never loads them), its blob and
//! child lists as `text[]`, annotations as `jsonb`; clocks in their text form. Tags are
//! indexed by target (a manifest delete finds its tags), history by tag and number.

use postgres::Row;
use postgres::types::Json;

use super::schema::Component;
use super::{PgTx, decode_error, millis, timestamp};
use crate::storage::clock::Clock;
use crate::storage::store::StoreResult;
use crate::storage::tables::registry::{
    HISTORY_PER_TAG, HistoryEntry, HistoryEvent, ManifestFound, ManifestRecord, ReferrerDescriptor,
    RegistryRead, RegistryWrite, RepositoryRecord, TagRecord, Tombstone, UploadRecord,
};

pub(super) const SCHEMA: Component = Component {
    name: "registry",
    steps: &[
        r#"
        CREATE TABLE repositories (
            name text COLLATE "C" PRIMARY KEY,
            created_at timestamptz NOT NULL
        );
        CREATE TABLE blob_links (
            repository text COLLATE "C" NOT NULL,
            digest text COLLATE "C" NOT NULL,
            size bigint NOT NULL,
            PRIMARY KEY (repository, digest)
        );
        CREATE TABLE manifests (
            repository text COLLATE "C" NOT NULL,
            digest text COLLATE "C" NOT NULL,
            media_type text NOT NULL,
            size bigint NOT NULL,
            artifact_type text,
            subject text,
            blobs text[] NOT NULL,
            children text[] NOT NULL,
            annotations jsonb,
            created_at timestamptz NOT NULL,
            bytes bytea NOT NULL,
            PRIMARY KEY (repository, digest)
        );
        CREATE TABLE tags (
            repository text COLLATE "C" NOT NULL,
            tag text COLLATE "C" NOT NULL,
            digest text COLLATE "C" NOT NULL,
            updated_at timestamptz NOT NULL,
            clock text,
            PRIMARY KEY (repository, tag)
        );
        CREATE INDEX tags_by_target ON tags (repository, digest);
        CREATE TABLE tag_history (
            repository text COLLATE "C" NOT NULL,
            tag text COLLATE "C" NOT NULL,
            n bigint NOT NULL,
            digest text NOT NULL,
            clock text,
            origin text,
            event text NOT NULL CHECK (event IN ('replaced', 'lost', 'deleted')),
            at timestamptz NOT NULL,
            PRIMARY KEY (repository, tag, n)
        );
        CREATE TABLE tag_tombstones (
            repository text COLLATE "C" NOT NULL,
            tag text COLLATE "C" NOT NULL,
            digest text NOT NULL,
            clock text NOT NULL,
            at timestamptz NOT NULL,
            PRIMARY KEY (repository, tag)
        );
        CREATE TABLE referrers (
            repository text COLLATE "C" NOT NULL,
            subject text COLLATE "C" NOT NULL,
            digest text COLLATE "C" NOT NULL,
            media_type text NOT NULL,
            size bigint NOT NULL,
            artifact_type text,
            annotations jsonb,
            PRIMARY KEY (repository, subject, digest)
        );
        CREATE TABLE uploads (
            id text COLLATE "C" PRIMARY KEY,
            repository text NOT NULL,
            acknowledged bigint NOT NULL,
            started_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
    "#,
        // Version 2: the claim of the request writing an upload session now.
        r#"
        ALTER TABLE uploads ADD COLUMN claimed_by text;
        ALTER TABLE uploads ADD COLUMN claimed_until bigint NOT NULL DEFAULT 0;
    "#,
    ],
};

type Annotations = serde_json::Map<String, serde_json::Value>;

fn clock_of(table: &'static str, text: Option<String>) -> StoreResult<Option<Clock>> {
    text.map(|t| t.parse::<Clock>().map_err(|e| decode_error(table, e)))
        .transpose()
}

fn annotations_of(table: &'static str, row: &Row) -> StoreResult<Option<Annotations>> {
    let value: Option<Json<Annotations>> = row
        .try_get("annotations")
        .map_err(|e| decode_error(table, e))?;
    Ok(value.map(|Json(a)| a))
}

fn manifest(row: &Row) -> StoreResult<ManifestRecord> {
    Ok(ManifestRecord {
        media_type: row.get("media_type"),
        size: row.get::<_, i64>("size") as u64,
        artifact_type: row.get("artifact_type"),
        subject: row.get("subject"),
        blobs: row.get("blobs"),
        children: row.get("children"),
        annotations: annotations_of("manifests", row)?,
        created_at: millis(row.get("created_at")),
    })
}

fn tag(row: &Row) -> StoreResult<TagRecord> {
    Ok(TagRecord {
        digest: row.get("digest"),
        updated_at: millis(row.get("updated_at")),
        clock: clock_of("tags", row.get("clock"))?,
    })
}

fn event_name(event: HistoryEvent) -> &'static str {
    match event {
        HistoryEvent::Replaced => "replaced",
        HistoryEvent::Lost => "lost",
        HistoryEvent::Deleted => "deleted",
    }
}

fn history_entry(row: &Row) -> StoreResult<HistoryEntry> {
    let event = match row.get::<_, &str>("event") {
        "replaced" => HistoryEvent::Replaced,
        "lost" => HistoryEvent::Lost,
        "deleted" => HistoryEvent::Deleted,
        other => return Err(decode_error("tag_history", format!("event {other:?}"))),
    };
    Ok(HistoryEntry {
        digest: row.get("digest"),
        clock: clock_of("tag_history", row.get("clock"))?,
        origin: row.get("origin"),
        event,
        at: millis(row.get("at")),
    })
}

fn upload(row: &Row) -> UploadRecord {
    UploadRecord {
        repo: row.get("repository"),
        acknowledged: row.get::<_, i64>("acknowledged") as u64,
        started_at: millis(row.get("started_at")),
        updated_at: millis(row.get("updated_at")),
        claimed_by: row.get("claimed_by"),
        claimed_until: row.get::<_, i64>("claimed_until") as u64,
    }
}

/// A `LIMIT` from a count (`usize::MAX` means none).
fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl RegistryRead for PgTx<'_> {
    /// One query, the tag (if the reference is one) joined to its manifest: a pull is
    /// one round trip to the database, not three.
    fn find_manifest(
        &self,
        repo: &str,
        reference: &str,
        with_bytes: bool,
    ) -> StoreResult<Option<ManifestFound>> {
        const SQL: &str = "WITH target AS (
                SELECT digest, updated_at, clock FROM tags WHERE repository = $1 AND tag = $2
                UNION ALL
                SELECT $2, NULL, NULL WHERE strpos($2, ':') > 0
            )
            SELECT m.digest, t.updated_at AS tag_updated_at, t.clock AS tag_clock,
                   m.media_type, m.size, m.artifact_type, m.subject, m.blobs, m.children,
                   m.annotations, m.created_at, CASE WHEN $3 THEN m.bytes END AS bytes
            FROM target t JOIN manifests m ON m.repository = $1 AND m.digest = t.digest";
        let Some(row) = self.query_opt(SQL, &[&repo, &reference, &with_bytes])? else {
            return Ok(None);
        };
        let digest: String = row.get("digest");
        let tag = match row.get::<_, Option<std::time::SystemTime>>("tag_updated_at") {
            Some(updated_at) => Some(TagRecord {
                digest: digest.clone(),
                updated_at: millis(updated_at),
                clock: clock_of("tags", row.get("tag_clock"))?,
            }),
            None => None,
        };
        Ok(Some(ManifestFound {
            tag,
            record: manifest(&row)?,
            bytes: row.get("bytes"),
            digest,
        }))
    }

    fn repository(&self, name: &str) -> StoreResult<Option<RepositoryRecord>> {
        Ok(self
            .query_opt(
                "SELECT created_at FROM repositories WHERE name = $1",
                &[&name],
            )?
            .map(|row| RepositoryRecord {
                created_at: millis(row.get(0)),
            }))
    }

    fn repositories(&self, after: Option<&str>, n: usize) -> StoreResult<Vec<String>> {
        Ok(self
            .query(
                "SELECT name FROM repositories WHERE $1::text IS NULL OR name > $1 ORDER BY name LIMIT $2",
                &[&after, &limit(n)],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn blob_link(&self, repo: &str, digest: &str) -> StoreResult<Option<u64>> {
        Ok(self
            .query_opt(
                "SELECT size FROM blob_links WHERE repository = $1 AND digest = $2",
                &[&repo, &digest],
            )?
            .map(|row| row.get::<_, i64>(0) as u64))
    }

    fn blob_link_count(&self, repo: &str) -> StoreResult<u64> {
        let row = self.query(
            "SELECT count(*) FROM blob_links WHERE repository = $1",
            &[&repo],
        )?;
        Ok(row[0].get::<_, i64>(0) as u64)
    }

    fn all_blob_links(&self) -> StoreResult<Vec<(String, String, u64)>> {
        Ok(self
            .query(
                "SELECT repository, digest, size FROM blob_links ORDER BY repository, digest",
                &[],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get::<_, i64>(2) as u64))
            .collect())
    }

    fn manifest(&self, repo: &str, digest: &str) -> StoreResult<Option<ManifestRecord>> {
        const SQL: &str = "SELECT media_type, size, artifact_type, subject, blobs, children, annotations, created_at FROM manifests WHERE repository = $1 AND digest = $2";
        self.query_opt(SQL, &[&repo, &digest])?
            .map(|row| manifest(&row))
            .transpose()
    }

    fn manifest_bytes(&self, repo: &str, digest: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .query_opt(
                "SELECT bytes FROM manifests WHERE repository = $1 AND digest = $2",
                &[&repo, &digest],
            )?
            .map(|row| row.get(0)))
    }

    fn manifest_count(&self, repo: &str) -> StoreResult<u64> {
        let row = self.query(
            "SELECT count(*) FROM manifests WHERE repository = $1",
            &[&repo],
        )?;
        Ok(row[0].get::<_, i64>(0) as u64)
    }

    fn all_manifests(&self) -> StoreResult<Vec<(String, String, ManifestRecord)>> {
        self.query(
            "SELECT repository, digest, media_type, size, artifact_type, subject, blobs, children, annotations, created_at FROM manifests ORDER BY repository, digest",
            &[],
        )?
        .iter()
        .map(|row| Ok((row.get("repository"), row.get("digest"), manifest(row)?)))
        .collect()
    }

    fn tag(&self, repo: &str, name: &str) -> StoreResult<Option<TagRecord>> {
        self.query_opt(
            "SELECT digest, updated_at, clock FROM tags WHERE repository = $1 AND tag = $2",
            &[&repo, &name],
        )?
        .map(|row| tag(&row))
        .transpose()
    }

    fn tags(&self, repo: &str, after: Option<&str>, n: usize) -> StoreResult<Vec<String>> {
        Ok(self
            .query(
                "SELECT tag FROM tags WHERE repository = $1 AND ($2::text IS NULL OR tag > $2) ORDER BY tag LIMIT $3",
                &[&repo, &after, &limit(n)],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn tags_pointing_at(&self, repo: &str, digest: &str) -> StoreResult<Vec<String>> {
        Ok(self
            .query(
                "SELECT tag FROM tags WHERE repository = $1 AND digest = $2 ORDER BY tag",
                &[&repo, &digest],
            )?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    fn all_tags(&self) -> StoreResult<Vec<(String, String, TagRecord)>> {
        self.query(
            "SELECT repository, tag, digest, updated_at, clock FROM tags ORDER BY repository, tag",
            &[],
        )?
        .iter()
        .map(|row| Ok((row.get("repository"), row.get("tag"), tag(row)?)))
        .collect()
    }

    fn tag_history(&self, repo: &str, name: &str) -> StoreResult<Vec<HistoryEntry>> {
        self.query(
            "SELECT digest, clock, origin, event, at FROM tag_history WHERE repository = $1 AND tag = $2 ORDER BY n DESC",
            &[&repo, &name],
        )?
        .iter()
        .map(history_entry)
        .collect()
    }

    fn tombstone(&self, repo: &str, name: &str) -> StoreResult<Option<Tombstone>> {
        self.query_opt(
            "SELECT digest, clock, at FROM tag_tombstones WHERE repository = $1 AND tag = $2",
            &[&repo, &name],
        )?
        .map(|row| {
            Ok(Tombstone {
                digest: row.get("digest"),
                clock: clock_of("tag_tombstones", Some(row.get("clock")))?
                    .expect("a tombstone's clock is NOT NULL"),
                at: millis(row.get("at")),
            })
        })
        .transpose()
    }

    fn referrers(&self, repo: &str, subject: &str) -> StoreResult<Vec<ReferrerDescriptor>> {
        self.query(
            "SELECT digest, media_type, size, artifact_type, annotations FROM referrers WHERE repository = $1 AND subject = $2 ORDER BY digest",
            &[&repo, &subject],
        )?
        .iter()
        .map(|row| {
            Ok(ReferrerDescriptor {
                media_type: row.get("media_type"),
                digest: row.get("digest"),
                size: row.get::<_, i64>("size") as u64,
                artifact_type: row.get("artifact_type"),
                annotations: annotations_of("referrers", row)?,
            })
        })
        .collect()
    }

    fn upload(&self, id: &str) -> StoreResult<Option<UploadRecord>> {
        Ok(self
            .query_opt(
                "SELECT repository, acknowledged, started_at, updated_at, claimed_by, claimed_until FROM uploads WHERE id = $1",
                &[&id],
            )?
            .map(|row| upload(&row)))
    }

    fn uploads(&self) -> StoreResult<Vec<(String, UploadRecord)>> {
        Ok(self
            .query(
                "SELECT id, repository, acknowledged, started_at, updated_at, claimed_by, claimed_until FROM uploads ORDER BY id",
                &[],
            )?
            .iter()
            .map(|row| (row.get("id"), upload(row)))
            .collect())
    }
}

impl RegistryWrite for PgTx<'_> {
    fn ensure_repository(&self, name: &str, now: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &timestamp(now)],
        )?;
        Ok(())
    }

    fn remove_repository(&self, name: &str) -> StoreResult<()> {
        for sql in [
            "DELETE FROM tags WHERE repository = $1",
            "DELETE FROM tag_history WHERE repository = $1",
            "DELETE FROM tag_tombstones WHERE repository = $1",
            "DELETE FROM referrers WHERE repository = $1",
            "DELETE FROM manifests WHERE repository = $1",
            "DELETE FROM blob_links WHERE repository = $1",
            "DELETE FROM repositories WHERE name = $1",
        ] {
            self.execute(sql, &[&name])?;
        }
        Ok(())
    }

    fn link_blob(&self, repo: &str, digest: &str, size: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO blob_links (repository, digest, size) VALUES ($1, $2, $3)
             ON CONFLICT (repository, digest) DO UPDATE SET size = EXCLUDED.size",
            &[&repo, &digest, &(size as i64)],
        )?;
        Ok(())
    }

    fn unlink_blob(&self, repo: &str, digest: &str) -> StoreResult<bool> {
        Ok(self.execute(
            "DELETE FROM blob_links WHERE repository = $1 AND digest = $2",
            &[&repo, &digest],
        )? > 0)
    }

    fn put_manifest(
        &self,
        repo: &str,
        digest: &str,
        record: &ManifestRecord,
        bytes: &[u8],
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO manifests (repository, digest, media_type, size, artifact_type, subject, blobs, children, annotations, created_at, bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (repository, digest) DO UPDATE SET
                 media_type = EXCLUDED.media_type, size = EXCLUDED.size,
                 artifact_type = EXCLUDED.artifact_type, subject = EXCLUDED.subject,
                 blobs = EXCLUDED.blobs, children = EXCLUDED.children,
                 annotations = EXCLUDED.annotations, created_at = EXCLUDED.created_at,
                 bytes = EXCLUDED.bytes",
            &[
                &repo,
                &digest,
                &record.media_type,
                &(record.size as i64),
                &record.artifact_type,
                &record.subject,
                &record.blobs,
                &record.children,
                &record.annotations.as_ref().map(Json),
                &timestamp(record.created_at),
                &bytes,
            ],
        )?;
        Ok(())
    }

    fn remove_manifest(&self, repo: &str, digest: &str) -> StoreResult<Option<ManifestRecord>> {
        self.query_opt(
            "DELETE FROM manifests WHERE repository = $1 AND digest = $2
             RETURNING media_type, size, artifact_type, subject, blobs, children, annotations, created_at",
            &[&repo, &digest],
        )?
        .map(|row| manifest(&row))
        .transpose()
    }

    fn put_tag(&self, repo: &str, name: &str, record: &TagRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO tags (repository, tag, digest, updated_at, clock) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (repository, tag) DO UPDATE SET
                 digest = EXCLUDED.digest, updated_at = EXCLUDED.updated_at, clock = EXCLUDED.clock",
            &[
                &repo,
                &name,
                &record.digest,
                &timestamp(record.updated_at),
                &record.clock.as_ref().map(Clock::to_string),
            ],
        )?;
        Ok(())
    }

    fn remove_tag(&self, repo: &str, name: &str) -> StoreResult<bool> {
        Ok(self.execute(
            "DELETE FROM tags WHERE repository = $1 AND tag = $2",
            &[&repo, &name],
        )? > 0)
    }

    fn add_tag_history(&self, repo: &str, name: &str, entry: &HistoryEntry) -> StoreResult<()> {
        let next: i64 = self.query(
            "SELECT coalesce(max(n), 0) + 1 FROM tag_history WHERE repository = $1 AND tag = $2",
            &[&repo, &name],
        )?[0]
            .get(0);
        self.execute(
            "INSERT INTO tag_history (repository, tag, n, digest, clock, origin, event, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &repo,
                &name,
                &next,
                &entry.digest,
                &entry.clock.as_ref().map(Clock::to_string),
                &entry.origin,
                &event_name(entry.event),
                &timestamp(entry.at),
            ],
        )?;
        self.execute(
            "DELETE FROM tag_history WHERE repository = $1 AND tag = $2 AND n <= $3",
            &[&repo, &name, &(next - HISTORY_PER_TAG as i64)],
        )?;
        Ok(())
    }

    fn put_tombstone(&self, repo: &str, name: &str, tombstone: &Tombstone) -> StoreResult<()> {
        self.execute(
            "INSERT INTO tag_tombstones (repository, tag, digest, clock, at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (repository, tag) DO UPDATE SET
                 digest = EXCLUDED.digest, clock = EXCLUDED.clock, at = EXCLUDED.at",
            &[
                &repo,
                &name,
                &tombstone.digest,
                &tombstone.clock.to_string(),
                &timestamp(tombstone.at),
            ],
        )?;
        Ok(())
    }

    fn remove_tombstone(&self, repo: &str, name: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM tag_tombstones WHERE repository = $1 AND tag = $2",
            &[&repo, &name],
        )?;
        Ok(())
    }

    fn add_referrer(
        &self,
        repo: &str,
        subject: &str,
        descriptor: &ReferrerDescriptor,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO referrers (repository, subject, digest, media_type, size, artifact_type, annotations)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (repository, subject, digest) DO UPDATE SET
                 media_type = EXCLUDED.media_type, size = EXCLUDED.size,
                 artifact_type = EXCLUDED.artifact_type, annotations = EXCLUDED.annotations",
            &[
                &repo,
                &subject,
                &descriptor.digest,
                &descriptor.media_type,
                &(descriptor.size as i64),
                &descriptor.artifact_type,
                &descriptor.annotations.as_ref().map(Json),
            ],
        )?;
        Ok(())
    }

    fn remove_referrer(&self, repo: &str, subject: &str, referrer: &str) -> StoreResult<()> {
        self.execute(
            "DELETE FROM referrers WHERE repository = $1 AND subject = $2 AND digest = $3",
            &[&repo, &subject, &referrer],
        )?;
        Ok(())
    }

    fn put_upload(&self, id: &str, record: &UploadRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO uploads (id, repository, acknowledged, started_at, updated_at, claimed_by, claimed_until)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET
                 repository = EXCLUDED.repository, acknowledged = EXCLUDED.acknowledged,
                 started_at = EXCLUDED.started_at, updated_at = EXCLUDED.updated_at,
                 claimed_by = EXCLUDED.claimed_by, claimed_until = EXCLUDED.claimed_until",
            &[
                &id,
                &record.repo,
                &(record.acknowledged as i64),
                &timestamp(record.started_at),
                &timestamp(record.updated_at),
                &record.claimed_by,
                &(record.claimed_until as i64),
            ],
        )?;
        Ok(())
    }

    fn remove_upload(&self, id: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM uploads WHERE id = $1", &[&id])? > 0)
    }
}
