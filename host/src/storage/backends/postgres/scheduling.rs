//! Scheduling's tables in PostgreSQL: a column per scalar field; lists as arrays; labels,
//! settings and a machine's spec (read whole, never queried into) as `jsonb`. Machines are
//! indexed by cluster and by project with their state (reconciliation and quotas read
//! those), and unique by `(project, client_token)`; a pool host is allocated to at most
//! one machine.

use postgres::Row;
use postgres::types::Json;

use super::schema::Component;
use super::{PgTx, decode_error, millis, timestamp};
use crate::storage::store::StoreResult;
use crate::storage::tables::scheduling::{
    ClusterRecord, MachineFilter, MachineRecord, MachineState, PoolHostRecord, QuotaRecord,
    SchedulingRead, SchedulingWrite, TransitionRecord,
};

pub(super) const SCHEMA: Component = Component {
    name: "scheduling",
    steps: &[r#"
        CREATE TABLE clusters (
            name text COLLATE "C" PRIMARY KEY,
            provider text NOT NULL,
            regions text[] NOT NULL,
            endpoint text,
            settings jsonb NOT NULL,
            sealed_credentials bytea,
            labels jsonb NOT NULL,
            projects text[] NOT NULL,
            probe jsonb NOT NULL,
            enabled boolean NOT NULL,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL
        );
        CREATE TABLE machines (
            id text COLLATE "C" PRIMARY KEY,
            cluster text NOT NULL,
            project text NOT NULL,
            provider_id text,
            region text,
            zone text,
            client_token text NOT NULL,
            spec jsonb NOT NULL,
            addresses text[] NOT NULL,
            labels jsonb NOT NULL,
            state text NOT NULL,
            reason text,
            host_key_fingerprint text,
            billing_started_at timestamptz,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            UNIQUE (project, client_token)
        );
        CREATE INDEX machines_by_cluster ON machines (cluster, state);
        CREATE INDEX machines_by_project ON machines (project, state);
        CREATE TABLE machine_transitions (
            machine text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            from_state text,
            to_state text NOT NULL,
            actor text NOT NULL,
            reason text,
            at timestamptz NOT NULL,
            PRIMARY KEY (machine, seq)
        );
        CREATE TABLE quotas (
            project text COLLATE "C" PRIMARY KEY,
            machines integer,
            cpus integer,
            memory_mib bigint
        );
        CREATE TABLE pool_hosts (
            cluster text COLLATE "C" NOT NULL,
            name text COLLATE "C" NOT NULL,
            address text NOT NULL,
            ssh_port integer NOT NULL,
            cpus integer NOT NULL,
            memory_mib bigint NOT NULL,
            disks_gib integer[] NOT NULL,
            labels jsonb NOT NULL,
            rack text,
            zone text,
            power jsonb,
            machine text,
            needs_init boolean NOT NULL,
            PRIMARY KEY (cluster, name)
        );
        CREATE UNIQUE INDEX pool_hosts_by_machine ON pool_hosts (machine) WHERE machine IS NOT NULL;
    "#],
};

macro_rules! cluster_columns {
    () => {
        "name, provider, regions, endpoint, settings, sealed_credentials, labels, projects, probe, enabled, created_by, created_at, updated_at"
    };
}

macro_rules! machine_columns {
    () => {
        "id, cluster, project, provider_id, region, zone, client_token, spec, addresses, labels, state, reason, host_key_fingerprint, billing_started_at, created_by, created_at, updated_at"
    };
}

macro_rules! pool_host_columns {
    () => {
        "cluster, name, address, ssh_port, cpus, memory_mib, disks_gib, labels, rack, zone, power, machine, needs_init"
    };
}

fn state(table: &'static str, text: &str) -> StoreResult<MachineState> {
    MachineState::parse(text)
        .ok_or_else(|| decode_error(table, format!("unknown machine state {text:?}")))
}

fn json_of<T: serde::de::DeserializeOwned>(
    row: &Row,
    table: &'static str,
    column: &str,
) -> StoreResult<T> {
    let Json(value) = row.try_get(column).map_err(|e| decode_error(table, e))?;
    Ok(value)
}

fn cluster(row: &Row) -> StoreResult<ClusterRecord> {
    const TABLE: &str = "clusters";
    Ok(ClusterRecord {
        name: row.get("name"),
        provider: row.get("provider"),
        regions: row.get("regions"),
        endpoint: row.get("endpoint"),
        settings: json_of(row, TABLE, "settings")?,
        sealed_credentials: row.get("sealed_credentials"),
        labels: json_of(row, TABLE, "labels")?,
        projects: row.get("projects"),
        probe: json_of(row, TABLE, "probe")?,
        enabled: row.get("enabled"),
        created_by: row.get("created_by"),
        created_at: millis(row.get("created_at")),
        updated_at: millis(row.get("updated_at")),
    })
}

fn machine(row: &Row) -> StoreResult<MachineRecord> {
    const TABLE: &str = "machines";
    Ok(MachineRecord {
        id: row.get("id"),
        cluster: row.get("cluster"),
        project: row.get("project"),
        provider_id: row.get("provider_id"),
        region: row.get("region"),
        zone: row.get("zone"),
        client_token: row.get("client_token"),
        spec: json_of(row, TABLE, "spec")?,
        addresses: row.get("addresses"),
        labels: json_of(row, TABLE, "labels")?,
        state: state(TABLE, row.get("state"))?,
        reason: row.get("reason"),
        host_key_fingerprint: row.get("host_key_fingerprint"),
        billing_started_at: row
            .get::<_, Option<std::time::SystemTime>>("billing_started_at")
            .map(millis),
        created_by: row.get("created_by"),
        created_at: millis(row.get("created_at")),
        updated_at: millis(row.get("updated_at")),
    })
}

fn transition(row: &Row) -> StoreResult<TransitionRecord> {
    const TABLE: &str = "machine_transitions";
    Ok(TransitionRecord {
        machine: row.get("machine"),
        seq: row.get::<_, i64>("seq") as u64,
        from: row
            .get::<_, Option<&str>>("from_state")
            .map(|s| state(TABLE, s))
            .transpose()?,
        to: state(TABLE, row.get("to_state"))?,
        actor: row.get("actor"),
        reason: row.get("reason"),
        at: millis(row.get("at")),
    })
}

fn quota(row: &Row) -> QuotaRecord {
    QuotaRecord {
        machines: row.get::<_, Option<i32>>("machines").map(|v| v as u32),
        cpus: row.get::<_, Option<i32>>("cpus").map(|v| v as u32),
        memory_mib: row.get::<_, Option<i64>>("memory_mib").map(|v| v as u64),
    }
}

fn pool_host(row: &Row) -> StoreResult<PoolHostRecord> {
    Ok(PoolHostRecord {
        cluster: row.get("cluster"),
        name: row.get("name"),
        address: row.get("address"),
        ssh_port: row.get::<_, i32>("ssh_port") as u16,
        cpus: row.get::<_, i32>("cpus") as u32,
        memory_mib: row.get::<_, i64>("memory_mib") as u64,
        disks_gib: row
            .get::<_, Vec<i32>>("disks_gib")
            .into_iter()
            .map(|d| d as u32)
            .collect(),
        labels: json_of(row, "pool_hosts", "labels")?,
        rack: row.get("rack"),
        zone: row.get("zone"),
        machine: row.get("machine"),
        needs_init: row.get("needs_init"),
        power: row
            .get::<_, Option<Json<crate::storage::tables::scheduling::PowerControl>>>("power")
            .map(|Json(p)| p),
    })
}

/// A count or size as PostgreSQL's signed column holds it (saturating; no real quota or
/// host comes near).
fn int(v: u32) -> i32 {
    v.min(i32::MAX as u32) as i32
}

fn bigint(v: u64) -> i64 {
    v.min(i64::MAX as u64) as i64
}

impl SchedulingRead for PgTx<'_> {
    fn cluster(&self, name: &str) -> StoreResult<Option<ClusterRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            cluster_columns!(),
            " FROM clusters WHERE name = $1"
        );
        self.query_opt(SQL, &[&name])?
            .map(|row| cluster(&row))
            .transpose()
    }

    fn clusters(&self) -> StoreResult<Vec<ClusterRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            cluster_columns!(),
            " FROM clusters ORDER BY name"
        );
        self.query(SQL, &[])?.iter().map(cluster).collect()
    }

    fn machine(&self, id: &str) -> StoreResult<Option<MachineRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            machine_columns!(),
            " FROM machines WHERE id = $1"
        );
        self.query_opt(SQL, &[&id])?
            .map(|row| machine(&row))
            .transpose()
    }

    fn machine_by_token(
        &self,
        project: &str,
        client_token: &str,
    ) -> StoreResult<Option<MachineRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            machine_columns!(),
            " FROM machines WHERE project = $1 AND client_token = $2"
        );
        self.query_opt(SQL, &[&project, &client_token])?
            .map(|row| machine(&row))
            .transpose()
    }

    fn machines(&self, filter: &MachineFilter) -> StoreResult<Vec<MachineRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            machine_columns!(),
            " FROM machines WHERE ($1::text IS NULL OR cluster = $1) AND ($2::text IS NULL OR project = $2)",
            " AND (cardinality($3::text[]) = 0 OR state = ANY($3)) ORDER BY id"
        );
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        self.query(SQL, &[&filter.cluster, &filter.project, &states])?
            .iter()
            .map(machine)
            .collect()
    }

    fn transitions(&self, machine: &str) -> StoreResult<Vec<TransitionRecord>> {
        self.query(
            "SELECT machine, seq, from_state, to_state, actor, reason, at FROM machine_transitions WHERE machine = $1 ORDER BY seq",
            &[&machine],
        )?
        .iter()
        .map(transition)
        .collect()
    }

    fn quota(&self, project: &str) -> StoreResult<Option<QuotaRecord>> {
        Ok(self
            .query_opt(
                "SELECT machines, cpus, memory_mib FROM quotas WHERE project = $1",
                &[&project],
            )?
            .map(|row| quota(&row)))
    }

    fn quotas(&self) -> StoreResult<Vec<(String, QuotaRecord)>> {
        Ok(self
            .query(
                "SELECT project, machines, cpus, memory_mib FROM quotas ORDER BY project",
                &[],
            )?
            .iter()
            .map(|row| (row.get("project"), quota(row)))
            .collect())
    }

    fn pool_host(&self, cluster: &str, name: &str) -> StoreResult<Option<PoolHostRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            pool_host_columns!(),
            " FROM pool_hosts WHERE cluster = $1 AND name = $2"
        );
        self.query_opt(SQL, &[&cluster, &name])?
            .map(|row| pool_host(&row))
            .transpose()
    }

    fn pool_hosts(&self, cluster: &str) -> StoreResult<Vec<PoolHostRecord>> {
        const SQL: &str = concat!(
            "SELECT ",
            pool_host_columns!(),
            " FROM pool_hosts WHERE cluster = $1 ORDER BY name"
        );
        self.query(SQL, &[&cluster])?
            .iter()
            .map(pool_host)
            .collect()
    }
}

impl SchedulingWrite for PgTx<'_> {
    fn put_cluster(&self, r: &ClusterRecord) -> StoreResult<()> {
        self.execute(
            concat!(
                "INSERT INTO clusters (",
                cluster_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (name) DO UPDATE SET
                     provider = EXCLUDED.provider, regions = EXCLUDED.regions,
                     endpoint = EXCLUDED.endpoint, settings = EXCLUDED.settings,
                     sealed_credentials = EXCLUDED.sealed_credentials,
                     labels = EXCLUDED.labels, projects = EXCLUDED.projects,
                     probe = EXCLUDED.probe, enabled = EXCLUDED.enabled, created_by = EXCLUDED.created_by,
                     created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at"
            ),
            &[
                &r.name,
                &r.provider,
                &r.regions,
                &r.endpoint,
                &Json(&r.settings),
                &r.sealed_credentials,
                &Json(&r.labels),
                &r.projects,
                &Json(&r.probe),
                &r.enabled,
                &r.created_by,
                &timestamp(r.created_at),
                &timestamp(r.updated_at),
            ],
        )?;
        Ok(())
    }

    fn remove_cluster(&self, name: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM clusters WHERE name = $1", &[&name])? > 0)
    }

    fn put_machine(&self, r: &MachineRecord) -> StoreResult<()> {
        self.execute(
            concat!(
                "INSERT INTO machines (",
                machine_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
                 ON CONFLICT (id) DO UPDATE SET
                     cluster = EXCLUDED.cluster, project = EXCLUDED.project,
                     provider_id = EXCLUDED.provider_id, region = EXCLUDED.region,
                     zone = EXCLUDED.zone, client_token = EXCLUDED.client_token,
                     spec = EXCLUDED.spec, addresses = EXCLUDED.addresses,
                     labels = EXCLUDED.labels, state = EXCLUDED.state, reason = EXCLUDED.reason,
                     host_key_fingerprint = EXCLUDED.host_key_fingerprint,
                     billing_started_at = EXCLUDED.billing_started_at,
                     created_by = EXCLUDED.created_by, created_at = EXCLUDED.created_at,
                     updated_at = EXCLUDED.updated_at"
            ),
            &[
                &r.id,
                &r.cluster,
                &r.project,
                &r.provider_id,
                &r.region,
                &r.zone,
                &r.client_token,
                &Json(&r.spec),
                &r.addresses,
                &Json(&r.labels),
                &r.state.as_str(),
                &r.reason,
                &r.host_key_fingerprint,
                &r.billing_started_at.map(timestamp),
                &r.created_by,
                &timestamp(r.created_at),
                &timestamp(r.updated_at),
            ],
        )?;
        Ok(())
    }

    fn add_transition(&self, r: &TransitionRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO machine_transitions (machine, seq, from_state, to_state, actor, reason, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &r.machine,
                &bigint(r.seq),
                &r.from.map(|s| s.as_str()),
                &r.to.as_str(),
                &r.actor,
                &r.reason,
                &timestamp(r.at),
            ],
        )?;
        Ok(())
    }

    fn put_quota(&self, project: &str, q: &QuotaRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO quotas (project, machines, cpus, memory_mib) VALUES ($1, $2, $3, $4)
             ON CONFLICT (project) DO UPDATE SET machines = EXCLUDED.machines,
                 cpus = EXCLUDED.cpus, memory_mib = EXCLUDED.memory_mib",
            &[
                &project,
                &q.machines.map(int),
                &q.cpus.map(int),
                &q.memory_mib.map(bigint),
            ],
        )?;
        Ok(())
    }

    fn remove_quota(&self, project: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM quotas WHERE project = $1", &[&project])? > 0)
    }

    fn put_pool_host(&self, r: &PoolHostRecord) -> StoreResult<()> {
        let disks: Vec<i32> = r.disks_gib.iter().copied().map(int).collect();
        self.execute(
            concat!(
                "INSERT INTO pool_hosts (",
                pool_host_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (cluster, name) DO UPDATE SET
                     power = EXCLUDED.power,
                     address = EXCLUDED.address, ssh_port = EXCLUDED.ssh_port,
                     cpus = EXCLUDED.cpus, memory_mib = EXCLUDED.memory_mib,
                     disks_gib = EXCLUDED.disks_gib, labels = EXCLUDED.labels,
                     rack = EXCLUDED.rack, zone = EXCLUDED.zone, machine = EXCLUDED.machine,
                     needs_init = EXCLUDED.needs_init"
            ),
            &[
                &r.cluster,
                &r.name,
                &r.address,
                &i32::from(r.ssh_port),
                &int(r.cpus),
                &bigint(r.memory_mib),
                &disks,
                &Json(&r.labels),
                &r.rack,
                &r.zone,
                &r.power.as_ref().map(Json),
                &r.machine,
                &r.needs_init,
            ],
        )?;
        Ok(())
    }

    fn remove_pool_host(&self, cluster: &str, name: &str) -> StoreResult<bool> {
        Ok(self.execute(
            "DELETE FROM pool_hosts WHERE cluster = $1 AND name = $2",
            &[&cluster, &name],
        )? > 0)
    }
}
