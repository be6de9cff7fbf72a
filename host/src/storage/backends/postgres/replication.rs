//! Replication's tables in PostgreSQL: a column per scalar field; a policy's endpoint
//! list as `text[]`, its filters and topology (read whole, never queried into) as `jsonb`.
//! Metadata versions keep their clock in its text form (`<ms>.<counter>.<instance>`).

use postgres::Row;
use postgres::types::Json;

use super::schema::Component;
use super::{PgTx, decode_error, millis, timestamp};
use crate::storage::clock::Clock;
use crate::storage::store::StoreResult;
use crate::storage::tables::replication::{
    DegradedLink, EndpointRecord, MetadataVersion, PolicyRecord, ReplicationRead, ReplicationWrite,
};

pub(super) const SCHEMA: Component = Component {
    name: "replication",
    steps: &[
        r#"
        CREATE TABLE replication_endpoints (
            name text COLLATE "C" PRIMARY KEY,
            kind text NOT NULL,
            url text NOT NULL,
            username text,
            sealed_password bytea,
            insecure boolean NOT NULL,
            ca_cert text,
            instance text,
            description text NOT NULL,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE TABLE replication_policies (
            name text COLLATE "C" PRIMARY KEY,
            description text NOT NULL,
            enabled boolean NOT NULL,
            mode text NOT NULL,
            endpoints text[] NOT NULL,
            filters jsonb NOT NULL,
            destination_namespace text,
            schedule text,
            on_change boolean NOT NULL,
            replicate_deletions boolean NOT NULL,
            override_existing boolean NOT NULL,
            concurrency integer NOT NULL,
            bandwidth_limit_mbps integer,
            metadata boolean NOT NULL,
            delivery text NOT NULL,
            degrade_after_secs bigint NOT NULL,
            strategy text NOT NULL,
            topology jsonb,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE TABLE replication_metadata_versions (
            kind text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            clock text NOT NULL,
            hash text NOT NULL,
            PRIMARY KEY (kind, key)
        );
    "#,
        // 2: degraded sync links, which were each process's own before.
        r#"
        CREATE TABLE replication_degraded (
            policy text COLLATE "C" NOT NULL,
            endpoint text COLLATE "C" NOT NULL,
            since timestamptz NOT NULL,
            error text NOT NULL,
            node text NOT NULL,
            PRIMARY KEY (policy, endpoint)
        );
    "#,
    ],
};

/// A unit enum's serde name (`push`, `berth`, …), the form its text column holds.
fn name_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value).expect("enums serialize") {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// A unit enum from its text column.
fn from_name<T: serde::de::DeserializeOwned>(table: &'static str, text: String) -> StoreResult<T> {
    serde_json::from_value(serde_json::Value::String(text)).map_err(|e| decode_error(table, e))
}

macro_rules! endpoint_columns {
    () => {
        "name, kind, url, username, sealed_password, insecure, ca_cert, instance, description, created_by, created_at, updated_at"
    };
}

macro_rules! policy_columns {
    () => {
        "name, description, enabled, mode, endpoints, filters, destination_namespace, schedule, on_change, replicate_deletions, override_existing, concurrency, bandwidth_limit_mbps, metadata, delivery, degrade_after_secs, strategy, topology, created_by, created_at, updated_at"
    };
}

fn endpoint(row: &Row) -> StoreResult<EndpointRecord> {
    Ok(EndpointRecord {
        name: row.get("name"),
        kind: from_name("replication_endpoints", row.get("kind"))?,
        url: row.get("url"),
        username: row.get("username"),
        sealed_password: row.get("sealed_password"),
        insecure: row.get("insecure"),
        ca_cert: row.get("ca_cert"),
        instance: row.get("instance"),
        description: row.get("description"),
        created_by: row.get("created_by"),
        created_at: millis(row.get("created_at")),
        updated_at: millis(row.get("updated_at")),
    })
}

fn policy(row: &Row) -> StoreResult<PolicyRecord> {
    const TABLE: &str = "replication_policies";
    let Json(filters) = row.try_get("filters").map_err(|e| decode_error(TABLE, e))?;
    let topology: Option<Json<_>> = row
        .try_get("topology")
        .map_err(|e| decode_error(TABLE, e))?;
    Ok(PolicyRecord {
        name: row.get("name"),
        description: row.get("description"),
        enabled: row.get("enabled"),
        mode: from_name(TABLE, row.get("mode"))?,
        endpoints: row.get("endpoints"),
        filters,
        destination_namespace: row.get("destination_namespace"),
        schedule: row.get("schedule"),
        on_change: row.get("on_change"),
        replicate_deletions: row.get("replicate_deletions"),
        override_existing: row.get("override_existing"),
        concurrency: row.get::<_, i32>("concurrency") as u32,
        bandwidth_limit_mbps: row
            .get::<_, Option<i32>>("bandwidth_limit_mbps")
            .map(|v| v as u32),
        metadata: row.get("metadata"),
        delivery: from_name(TABLE, row.get("delivery"))?,
        degrade_after_secs: row.get::<_, i64>("degrade_after_secs") as u64,
        strategy: row.get("strategy"),
        topology: topology.map(|Json(t)| t),
        created_by: row.get("created_by"),
        created_at: millis(row.get("created_at")),
        updated_at: millis(row.get("updated_at")),
    })
}

fn version(row: &Row) -> StoreResult<MetadataVersion> {
    let clock: String = row.get("clock");
    Ok(MetadataVersion {
        clock: clock
            .parse::<Clock>()
            .map_err(|e| decode_error("replication_metadata_versions", e))?,
        hash: row.get("hash"),
    })
}

impl ReplicationRead for PgTx<'_> {
    fn endpoint(&self, name: &str) -> StoreResult<Option<EndpointRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM replication_endpoints WHERE name = $1"
        );
        self.query_opt(SQL, &[&name])?
            .map(|row| endpoint(&row))
            .transpose()
    }

    fn endpoints(&self) -> StoreResult<Vec<EndpointRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            endpoint_columns!(),
            " FROM replication_endpoints ORDER BY name"
        );
        self.query(SQL, &[])?.iter().map(endpoint).collect()
    }

    fn policy(&self, name: &str) -> StoreResult<Option<PolicyRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            policy_columns!(),
            " FROM replication_policies WHERE name = $1"
        );
        self.query_opt(SQL, &[&name])?
            .map(|row| policy(&row))
            .transpose()
    }

    fn policies(&self) -> StoreResult<Vec<PolicyRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            policy_columns!(),
            " FROM replication_policies ORDER BY name"
        );
        self.query(SQL, &[])?.iter().map(policy).collect()
    }

    fn metadata_version(&self, kind: &str, key: &str) -> StoreResult<Option<MetadataVersion>> {
        self.query_opt(
            "SELECT clock, hash FROM replication_metadata_versions WHERE kind = $1 AND key = $2",
            &[&kind, &key],
        )?
        .map(|row| version(&row))
        .transpose()
    }

    fn metadata_versions(&self) -> StoreResult<Vec<(String, String, MetadataVersion)>> {
        self.query(
            "SELECT kind, key, clock, hash FROM replication_metadata_versions ORDER BY kind, key",
            &[],
        )?
        .iter()
        .map(|row| Ok((row.get("kind"), row.get("key"), version(row)?)))
        .collect()
    }

    fn degraded_link(&self, policy: &str, endpoint: &str) -> StoreResult<Option<DegradedLink>> {
        Ok(self
            .query_opt(
                "SELECT policy, endpoint, since, error, node FROM replication_degraded WHERE policy = $1 AND endpoint = $2",
                &[&policy, &endpoint],
            )?
            .map(|row| degraded(&row)))
    }

    fn degraded_links(&self) -> StoreResult<Vec<DegradedLink>> {
        Ok(self
            .query(
                "SELECT policy, endpoint, since, error, node FROM replication_degraded ORDER BY policy, endpoint",
                &[],
            )?
            .iter()
            .map(degraded)
            .collect())
    }
}

fn degraded(row: &Row) -> DegradedLink {
    DegradedLink {
        policy: row.get("policy"),
        endpoint: row.get("endpoint"),
        since: millis(row.get("since")),
        error: row.get("error"),
        node: row.get("node"),
    }
}

impl ReplicationWrite for PgTx<'_> {
    fn put_endpoint(&self, r: &EndpointRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO replication_endpoints (name, kind, url, username, sealed_password, insecure, ca_cert, instance, description, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (name) DO UPDATE SET
                 kind = EXCLUDED.kind, url = EXCLUDED.url, username = EXCLUDED.username,
                 sealed_password = EXCLUDED.sealed_password, insecure = EXCLUDED.insecure,
                 ca_cert = EXCLUDED.ca_cert, instance = EXCLUDED.instance,
                 description = EXCLUDED.description, created_by = EXCLUDED.created_by,
                 created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at",
            &[
                &r.name,
                &name_of(&r.kind),
                &r.url,
                &r.username,
                &r.sealed_password,
                &r.insecure,
                &r.ca_cert,
                &r.instance,
                &r.description,
                &r.created_by,
                &timestamp(r.created_at),
                &timestamp(r.updated_at),
            ],
        )?;
        Ok(())
    }

    fn remove_endpoint(&self, name: &str) -> StoreResult<bool> {
        Ok(self.execute(
            "DELETE FROM replication_endpoints WHERE name = $1",
            &[&name],
        )? > 0)
    }

    fn put_policy(&self, r: &PolicyRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO replication_policies (name, description, enabled, mode, endpoints, filters, destination_namespace, schedule, on_change, replicate_deletions, override_existing, concurrency, bandwidth_limit_mbps, metadata, delivery, degrade_after_secs, strategy, topology, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
             ON CONFLICT (name) DO UPDATE SET
                 description = EXCLUDED.description, enabled = EXCLUDED.enabled,
                 mode = EXCLUDED.mode, endpoints = EXCLUDED.endpoints,
                 filters = EXCLUDED.filters,
                 destination_namespace = EXCLUDED.destination_namespace,
                 schedule = EXCLUDED.schedule, on_change = EXCLUDED.on_change,
                 replicate_deletions = EXCLUDED.replicate_deletions,
                 override_existing = EXCLUDED.override_existing,
                 concurrency = EXCLUDED.concurrency,
                 bandwidth_limit_mbps = EXCLUDED.bandwidth_limit_mbps,
                 metadata = EXCLUDED.metadata, delivery = EXCLUDED.delivery,
                 degrade_after_secs = EXCLUDED.degrade_after_secs,
                 strategy = EXCLUDED.strategy, topology = EXCLUDED.topology,
                 created_by = EXCLUDED.created_by, created_at = EXCLUDED.created_at,
                 updated_at = EXCLUDED.updated_at",
            &[
                &r.name,
                &r.description,
                &r.enabled,
                &name_of(&r.mode),
                &r.endpoints,
                &Json(&r.filters),
                &r.destination_namespace,
                &r.schedule,
                &r.on_change,
                &r.replicate_deletions,
                &r.override_existing,
                &(r.concurrency.min(i32::MAX as u32) as i32),
                &r.bandwidth_limit_mbps.map(|v| v.min(i32::MAX as u32) as i32),
                &r.metadata,
                &name_of(&r.delivery),
                &(r.degrade_after_secs.min(i64::MAX as u64) as i64),
                &r.strategy,
                &r.topology.as_ref().map(Json),
                &r.created_by,
                &timestamp(r.created_at),
                &timestamp(r.updated_at),
            ],
        )?;
        Ok(())
    }

    fn remove_policy(&self, name: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM replication_policies WHERE name = $1", &[&name])? > 0)
    }

    fn put_metadata_version(&self, kind: &str, key: &str, v: &MetadataVersion) -> StoreResult<()> {
        self.execute(
            "INSERT INTO replication_metadata_versions (kind, key, clock, hash) VALUES ($1, $2, $3, $4)
             ON CONFLICT (kind, key) DO UPDATE SET clock = EXCLUDED.clock, hash = EXCLUDED.hash",
            &[&kind, &key, &v.clock.to_string(), &v.hash],
        )?;
        Ok(())
    }

    fn put_degraded_link(&self, link: &DegradedLink) -> StoreResult<()> {
        self.execute(
            "INSERT INTO replication_degraded (policy, endpoint, since, error, node) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (policy, endpoint) DO UPDATE SET since = EXCLUDED.since, error = EXCLUDED.error, node = EXCLUDED.node",
            &[
                &link.policy,
                &link.endpoint,
                &timestamp(link.since),
                &link.error,
                &link.node,
            ],
        )?;
        Ok(())
    }

    fn remove_degraded_link(&self, policy: &str, endpoint: &str) -> StoreResult<bool> {
        Ok(self.execute(
            "DELETE FROM replication_degraded WHERE policy = $1 AND endpoint = $2",
            &[&policy, &endpoint],
        )? > 0)
    }
}
