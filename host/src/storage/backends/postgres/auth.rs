//! The auth tables in PostgreSQL: a column per field; robot grants, which are only ever
//! read whole, as `jsonb`. Memberships are indexed by user too, for deleting a user.

use postgres::Row;
use postgres::types::Json;

use super::schema::Component;
use super::{PgTx, decode_error, millis, timestamp};
use crate::storage::store::StoreResult;
use crate::storage::tables::auth::{
    AuthRead, AuthWrite, FailureWindow, ProjectRecord, RobotGrant, RobotRecord, Role, UserRecord,
};

pub(super) const SCHEMA: Component = Component {
    name: "auth",
    steps: &[
        r#"
        CREATE TABLE users (
            name text COLLATE "C" PRIMARY KEY,
            password_hash text NOT NULL,
            admin boolean NOT NULL,
            disabled boolean NOT NULL,
            created_at timestamptz NOT NULL,
            password_changed_at timestamptz NOT NULL
        );
        CREATE TABLE projects (
            name text COLLATE "C" PRIMARY KEY,
            public boolean NOT NULL,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL
        );
        CREATE TABLE members (
            project text COLLATE "C" NOT NULL,
            username text COLLATE "C" NOT NULL,
            role text NOT NULL CHECK (role IN ('admin', 'developer', 'guest')),
            PRIMARY KEY (project, username)
        );
        CREATE INDEX members_by_user ON members (username);
        CREATE TABLE robots (
            name text COLLATE "C" PRIMARY KEY,
            secret_digest text NOT NULL,
            description text NOT NULL,
            grants jsonb NOT NULL,
            expires_at timestamptz,
            disabled boolean NOT NULL,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL
        );
    "#,
        // Version 2: the revocation counter every node watches.
        r#"
        CREATE TABLE auth_state (
            key text COLLATE "C" PRIMARY KEY,
            value bigint NOT NULL
        );
    "#,
        // Version 3: failed logins, shared by every node.
        r#"
        CREATE TABLE login_failures (
            key text COLLATE "C" PRIMARY KEY,
            started timestamptz NOT NULL,
            failures integer NOT NULL
        );
        CREATE INDEX login_failures_by_start ON login_failures (started);
    "#,
    ],
};

fn user(row: &Row) -> (String, UserRecord) {
    (
        row.get("name"),
        UserRecord {
            password_hash: row.get("password_hash"),
            admin: row.get("admin"),
            disabled: row.get("disabled"),
            created_at: millis(row.get("created_at")),
            password_changed_at: millis(row.get("password_changed_at")),
        },
    )
}

fn project(row: &Row) -> ProjectRecord {
    ProjectRecord {
        name: row.get("name"),
        public: row.get("public"),
        created_by: row.get("created_by"),
        created_at: millis(row.get("created_at")),
    }
}

fn robot(row: &Row) -> StoreResult<(String, RobotRecord)> {
    let Json(grants): Json<Vec<RobotGrant>> = row
        .try_get("grants")
        .map_err(|e| decode_error("robots", e))?;
    Ok((
        row.get("name"),
        RobotRecord {
            secret_digest: row.get("secret_digest"),
            description: row.get("description"),
            grants,
            expires_at: row
                .get::<_, Option<std::time::SystemTime>>("expires_at")
                .map(millis),
            disabled: row.get("disabled"),
            created_by: row.get("created_by"),
            created_at: millis(row.get("created_at")),
        },
    ))
}

fn role(row: &Row) -> StoreResult<Role> {
    let name: String = row.get("role");
    Role::parse(&name).ok_or_else(|| decode_error("members", format!("unknown role {name:?}")))
}

impl AuthRead for PgTx<'_> {
    fn user(&self, name: &str) -> StoreResult<Option<UserRecord>> {
        Ok(self
            .query_opt(
                "SELECT name, password_hash, admin, disabled, created_at, password_changed_at FROM users WHERE name = $1",
                &[&name],
            )?
            .map(|row| user(&row).1))
    }

    fn users(&self) -> StoreResult<Vec<(String, UserRecord)>> {
        Ok(self
            .query(
                "SELECT name, password_hash, admin, disabled, created_at, password_changed_at FROM users ORDER BY name",
                &[],
            )?
            .iter()
            .map(user)
            .collect())
    }

    fn user_count(&self) -> StoreResult<u64> {
        let row = self.query_opt("SELECT count(*) FROM users", &[])?;
        Ok(row.map(|r| r.get::<_, i64>(0)).unwrap_or(0) as u64)
    }

    fn project(&self, name: &str) -> StoreResult<Option<ProjectRecord>> {
        Ok(self
            .query_opt(
                "SELECT name, public, created_by, created_at FROM projects WHERE name = $1",
                &[&name],
            )?
            .map(|row| project(&row)))
    }

    fn projects(&self) -> StoreResult<Vec<ProjectRecord>> {
        Ok(self
            .query(
                "SELECT name, public, created_by, created_at FROM projects ORDER BY name",
                &[],
            )?
            .iter()
            .map(project)
            .collect())
    }

    fn role(&self, project: &str, user: &str) -> StoreResult<Option<Role>> {
        self.query_opt(
            "SELECT role FROM members WHERE project = $1 AND username = $2",
            &[&project, &user],
        )?
        .map(|row| role(&row))
        .transpose()
    }

    fn members(&self, project: &str) -> StoreResult<Vec<(String, Role)>> {
        self.query(
            "SELECT username, role FROM members WHERE project = $1 ORDER BY username",
            &[&project],
        )?
        .iter()
        .map(|row| Ok((row.get("username"), role(row)?)))
        .collect()
    }

    fn robot(&self, name: &str) -> StoreResult<Option<RobotRecord>> {
        self.query_opt(
            "SELECT name, secret_digest, description, grants, expires_at, disabled, created_by, created_at FROM robots WHERE name = $1",
            &[&name],
        )?
        .map(|row| robot(&row).map(|(_, r)| r))
        .transpose()
    }

    fn login_failures(&self, key: &str) -> StoreResult<Option<FailureWindow>> {
        Ok(self
            .query_opt(
                "SELECT started, failures FROM login_failures WHERE key = $1",
                &[&key],
            )?
            .map(|row| FailureWindow {
                started: millis(row.get("started")),
                failures: row.get::<_, i32>("failures") as u32,
            }))
    }

    fn revision(&self) -> StoreResult<u64> {
        Ok(self
            .query_opt("SELECT value FROM auth_state WHERE key = 'revision'", &[])?
            .map(|row| row.get::<_, i64>(0) as u64)
            .unwrap_or(0))
    }

    fn robots(&self) -> StoreResult<Vec<(String, RobotRecord)>> {
        self.query(
            "SELECT name, secret_digest, description, grants, expires_at, disabled, created_by, created_at FROM robots ORDER BY name",
            &[],
        )?
        .iter()
        .map(robot)
        .collect()
    }
}

impl AuthWrite for PgTx<'_> {
    fn put_user(&self, name: &str, r: &UserRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO users (name, password_hash, admin, disabled, created_at, password_changed_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (name) DO UPDATE SET
                 password_hash = EXCLUDED.password_hash, admin = EXCLUDED.admin,
                 disabled = EXCLUDED.disabled, created_at = EXCLUDED.created_at,
                 password_changed_at = EXCLUDED.password_changed_at",
            &[
                &name,
                &r.password_hash,
                &r.admin,
                &r.disabled,
                &timestamp(r.created_at),
                &timestamp(r.password_changed_at),
            ],
        )?;
        Ok(())
    }

    fn remove_user(&self, name: &str) -> StoreResult<bool> {
        self.execute("DELETE FROM members WHERE username = $1", &[&name])?;
        Ok(self.execute("DELETE FROM users WHERE name = $1", &[&name])? > 0)
    }

    fn put_project(&self, r: &ProjectRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO projects (name, public, created_by, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE SET
                 public = EXCLUDED.public, created_by = EXCLUDED.created_by,
                 created_at = EXCLUDED.created_at",
            &[&r.name, &r.public, &r.created_by, &timestamp(r.created_at)],
        )?;
        Ok(())
    }

    fn remove_project(&self, name: &str) -> StoreResult<bool> {
        self.execute("DELETE FROM members WHERE project = $1", &[&name])?;
        Ok(self.execute("DELETE FROM projects WHERE name = $1", &[&name])? > 0)
    }

    fn set_role(&self, project: &str, user: &str, role: Role) -> StoreResult<()> {
        self.execute(
            "INSERT INTO members (project, username, role) VALUES ($1, $2, $3)
             ON CONFLICT (project, username) DO UPDATE SET role = EXCLUDED.role",
            &[&project, &user, &role.as_str()],
        )?;
        Ok(())
    }

    fn remove_member(&self, project: &str, user: &str) -> StoreResult<bool> {
        Ok(self.execute(
            "DELETE FROM members WHERE project = $1 AND username = $2",
            &[&project, &user],
        )? > 0)
    }

    fn put_robot(&self, name: &str, r: &RobotRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO robots (name, secret_digest, description, grants, expires_at, disabled, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (name) DO UPDATE SET
                 secret_digest = EXCLUDED.secret_digest, description = EXCLUDED.description,
                 grants = EXCLUDED.grants, expires_at = EXCLUDED.expires_at,
                 disabled = EXCLUDED.disabled, created_by = EXCLUDED.created_by,
                 created_at = EXCLUDED.created_at",
            &[
                &name,
                &r.secret_digest,
                &r.description,
                &Json(&r.grants),
                &r.expires_at.map(timestamp),
                &r.disabled,
                &r.created_by,
                &timestamp(r.created_at),
            ],
        )?;
        Ok(())
    }

    fn put_login_failures(&self, key: &str, window: &FailureWindow) -> StoreResult<()> {
        self.execute(
            "INSERT INTO login_failures (key, started, failures) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET started = EXCLUDED.started, failures = EXCLUDED.failures",
            &[
                &key,
                &timestamp(window.started),
                &(window.failures.min(i32::MAX as u32) as i32),
            ],
        )?;
        Ok(())
    }

    fn remove_login_failures(&self, key: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM login_failures WHERE key = $1", &[&key])? > 0)
    }

    fn remove_login_failures_before(&self, started: u64) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM login_failures WHERE started < $1",
            &[&timestamp(started)],
        )
    }

    fn bump_revision(&self) -> StoreResult<u64> {
        let row = self
            .query_opt(
                "INSERT INTO auth_state (key, value) VALUES ('revision', 1)
                 ON CONFLICT (key) DO UPDATE SET value = auth_state.value + 1
                 RETURNING value",
                &[],
            )?
            .expect("INSERT … RETURNING returns a row");
        Ok(row.get::<_, i64>(0) as u64)
    }

    fn remove_robot(&self, name: &str) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM robots WHERE name = $1", &[&name])? > 0)
    }
}
