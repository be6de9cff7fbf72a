//! Cost accounting's tables in PostgreSQL: sheets and rates as `jsonb` documents by
//! `(cluster | machine, effective_from)`; the ledger as columns, amounts as `numeric`
//! (exact, as `rust_decimal` holds them), numbered by a sequence and indexed by start
//! time alone and with project, cluster and machine, which reports group and filter by;
//! their daily totals by `(day, project, cluster, currency)` (the empty string for none),
//! kept in the statement that appends, which reports and budgets read a month of.

use postgres::Row;
use postgres::types::Json;
use rust_decimal::Decimal;

use super::schema::Component;
use super::{PgTx, decode_error, millis, timestamp};
use crate::storage::store::StoreResult;
use crate::storage::tables::cost::{
    BilledPhase, Budget, BudgetAlert, CostEntry, CostRead, CostWrite, DailyTotal, EntryFilter,
    ExchangeRate, MachineRate, SheetVersion, TotalsFilter,
};

pub(super) const SCHEMA: Component = Component {
    name: "cost",
    steps: &[
        r#"
        CREATE TABLE price_sheets (
            cluster text COLLATE "C" NOT NULL,
            effective_from timestamptz NOT NULL,
            sheet jsonb NOT NULL,
            set_by text NOT NULL,
            set_at timestamptz NOT NULL,
            PRIMARY KEY (cluster, effective_from)
        );
        CREATE TABLE machine_rates (
            machine text COLLATE "C" NOT NULL,
            effective_from timestamptz NOT NULL,
            rate jsonb,
            PRIMARY KEY (machine, effective_from)
        );
        CREATE TABLE accrual_cursors (
            machine text COLLATE "C" PRIMARY KEY,
            accrued_to timestamptz NOT NULL
        );
        CREATE TABLE cost_entries (
            seq bigserial PRIMARY KEY,
            machine text COLLATE "C" NOT NULL,
            project text COLLATE "C" NOT NULL,
            cluster text COLLATE "C" NOT NULL,
            from_at timestamptz NOT NULL,
            to_at timestamptz NOT NULL,
            phase text NOT NULL,
            currency text,
            amount numeric NOT NULL,
            rate_from timestamptz,
            note text,
            CHECK (to_at >= from_at)
        );
        CREATE INDEX cost_entries_by_time ON cost_entries (from_at, seq);
        CREATE INDEX cost_entries_by_project ON cost_entries (project, from_at);
        CREATE INDEX cost_entries_by_cluster ON cost_entries (cluster, from_at);
        CREATE INDEX cost_entries_by_machine ON cost_entries (machine, from_at);
    "#,
        r#"
        CREATE TABLE cost_daily (
            day timestamptz NOT NULL,
            project text COLLATE "C" NOT NULL,
            cluster text COLLATE "C" NOT NULL,
            currency text COLLATE "C" NOT NULL,
            amount numeric NOT NULL,
            unpriced_ms bigint NOT NULL,
            entries bigint NOT NULL,
            PRIMARY KEY (day, project, cluster, currency)
        );
        CREATE INDEX cost_daily_by_project ON cost_daily (project, day);
        INSERT INTO cost_daily
            SELECT date_trunc('day', from_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC',
                   project, cluster, coalesce(currency, ''), sum(amount),
                   sum(CASE WHEN currency IS NULL
                       THEN (extract(epoch FROM to_at - from_at) * 1000)::bigint ELSE 0 END),
                   count(*)
            FROM cost_entries GROUP BY 1, 2, 3, 4;
    "#,
        r#"
        CREATE TABLE budgets (
            project text COLLATE "C" NOT NULL,
            currency text COLLATE "C" NOT NULL,
            monthly numeric NOT NULL,
            thresholds integer[] NOT NULL,
            enforce boolean NOT NULL,
            set_by text NOT NULL,
            set_at timestamptz NOT NULL,
            PRIMARY KEY (project, currency)
        );
        CREATE TABLE budget_alerts (
            project text COLLATE "C" NOT NULL,
            month text COLLATE "C" NOT NULL,
            currency text COLLATE "C" NOT NULL,
            threshold integer NOT NULL,
            spent numeric NOT NULL,
            monthly numeric NOT NULL,
            at timestamptz NOT NULL,
            PRIMARY KEY (project, month, currency, threshold)
        );
    "#,
        r#"
        CREATE TABLE exchange_rates (
            from_currency text COLLATE "C" NOT NULL,
            to_currency text COLLATE "C" NOT NULL,
            effective_from timestamptz NOT NULL,
            rate numeric NOT NULL,
            set_by text NOT NULL,
            set_at timestamptz NOT NULL,
            PRIMARY KEY (from_currency, to_currency, effective_from)
        );
    "#,
    ],
};

fn sheet_version(row: &Row) -> StoreResult<SheetVersion> {
    let Json(sheet) = row
        .try_get("sheet")
        .map_err(|e| decode_error("price_sheets", e))?;
    Ok(SheetVersion {
        cluster: row.get("cluster"),
        effective_from: millis(row.get("effective_from")),
        sheet,
        set_by: row.get("set_by"),
        set_at: millis(row.get("set_at")),
    })
}

fn machine_rate(row: &Row) -> StoreResult<MachineRate> {
    let rate: Option<Json<serde_json::Value>> = row
        .try_get("rate")
        .map_err(|e| decode_error("machine_rates", e))?;
    Ok(MachineRate {
        machine: row.get("machine"),
        effective_from: millis(row.get("effective_from")),
        rate: rate.map(|Json(r)| r),
    })
}

fn entry(row: &Row) -> StoreResult<CostEntry> {
    const TABLE: &str = "cost_entries";
    let phase: String = row.get("phase");
    let amount: Decimal = row.try_get("amount").map_err(|e| decode_error(TABLE, e))?;
    let seq: i64 = row.get("seq");
    Ok(CostEntry {
        seq: seq as u64,
        machine: row.get("machine"),
        project: row.get("project"),
        cluster: row.get("cluster"),
        from: millis(row.get("from_at")),
        to: millis(row.get("to_at")),
        phase: BilledPhase::parse(&phase)
            .ok_or_else(|| decode_error(TABLE, format!("unknown phase {phase:?}")))?,
        currency: row.get("currency"),
        amount,
        rate_from: row
            .get::<_, Option<std::time::SystemTime>>("rate_from")
            .map(millis),
        note: row.get("note"),
    })
}

impl CostRead for PgTx<'_> {
    fn sheet_versions(&self, cluster: &str) -> StoreResult<Vec<SheetVersion>> {
        self.query(
            "SELECT cluster, effective_from, sheet, set_by, set_at FROM price_sheets
             WHERE cluster = $1 ORDER BY effective_from",
            &[&cluster],
        )?
        .iter()
        .map(sheet_version)
        .collect()
    }

    fn machine_rates(&self, machine: &str) -> StoreResult<Vec<MachineRate>> {
        self.query(
            "SELECT machine, effective_from, rate FROM machine_rates
             WHERE machine = $1 ORDER BY effective_from",
            &[&machine],
        )?
        .iter()
        .map(machine_rate)
        .collect()
    }

    fn accrued_to(&self, machine: &str) -> StoreResult<Option<u64>> {
        Ok(self
            .query_opt(
                "SELECT accrued_to FROM accrual_cursors WHERE machine = $1",
                &[&machine],
            )?
            .map(|row| millis(row.get("accrued_to"))))
    }

    fn accrual_cursors(&self) -> StoreResult<std::collections::BTreeMap<String, u64>> {
        Ok(self
            .query("SELECT machine, accrued_to FROM accrual_cursors", &[])?
            .iter()
            .map(|row| (row.get("machine"), millis(row.get("accrued_to"))))
            .collect())
    }

    fn entries(&self, filter: &EntryFilter) -> StoreResult<Vec<CostEntry>> {
        self.query(
            "SELECT seq, machine, project, cluster, from_at, to_at, phase, currency, amount,
                    rate_from, note
             FROM cost_entries
             WHERE from_at >= $1 AND from_at < $2
               AND ($3::text IS NULL OR project = $3)
               AND ($4::text IS NULL OR cluster = $4)
               AND ($5::text IS NULL OR machine = $5)
             ORDER BY from_at, seq",
            &[
                &timestamp(filter.from),
                &timestamp(filter.to),
                &filter.project,
                &filter.cluster,
                &filter.machine,
            ],
        )?
        .iter()
        .map(entry)
        .collect()
    }

    fn daily_totals(&self, filter: &TotalsFilter) -> StoreResult<Vec<DailyTotal>> {
        self.query(
            "SELECT day, project, cluster, currency, amount, unpriced_ms, entries
             FROM cost_daily
             WHERE day >= $1 AND day < $2
               AND ($3::text IS NULL OR project = $3)
               AND ($4::text IS NULL OR cluster = $4)
             ORDER BY day, project, cluster, currency",
            &[
                &timestamp(filter.from),
                &timestamp(filter.to),
                &filter.project,
                &filter.cluster,
            ],
        )?
        .iter()
        .map(daily_total)
        .collect()
    }

    fn budgets(&self, project: Option<&str>) -> StoreResult<Vec<Budget>> {
        self.query(
            "SELECT project, currency, monthly, thresholds, enforce, set_by, set_at
             FROM budgets WHERE ($1::text IS NULL OR project = $1)
             ORDER BY project, currency",
            &[&project],
        )?
        .iter()
        .map(budget)
        .collect()
    }

    fn exchange_rates(&self) -> StoreResult<Vec<ExchangeRate>> {
        self.query(
            "SELECT from_currency, to_currency, effective_from, rate, set_by, set_at
             FROM exchange_rates ORDER BY from_currency, to_currency, effective_from",
            &[],
        )?
        .iter()
        .map(|row| {
            Ok(ExchangeRate {
                from: row.get("from_currency"),
                to: row.get("to_currency"),
                effective_from: millis(row.get("effective_from")),
                rate: row
                    .try_get("rate")
                    .map_err(|e| decode_error("exchange_rates", e))?,
                set_by: row.get("set_by"),
                set_at: millis(row.get("set_at")),
            })
        })
        .collect()
    }

    fn budget_alerts(&self, project: &str, month: &str) -> StoreResult<Vec<BudgetAlert>> {
        self.query(
            "SELECT project, month, currency, threshold, spent, monthly, at
             FROM budget_alerts WHERE project = $1 AND month = $2
             ORDER BY currency, threshold",
            &[&project, &month],
        )?
        .iter()
        .map(budget_alert)
        .collect()
    }
}

fn budget(row: &Row) -> StoreResult<Budget> {
    let thresholds: Vec<i32> = row.get("thresholds");
    Ok(Budget {
        project: row.get("project"),
        currency: row.get("currency"),
        monthly: row
            .try_get("monthly")
            .map_err(|e| decode_error("budgets", e))?,
        thresholds: thresholds.into_iter().map(|t| t as u32).collect(),
        enforce: row.get("enforce"),
        set_by: row.get("set_by"),
        set_at: millis(row.get("set_at")),
    })
}

fn budget_alert(row: &Row) -> StoreResult<BudgetAlert> {
    let threshold: i32 = row.get("threshold");
    let amount = |name: &str| -> StoreResult<Decimal> {
        row.try_get(name)
            .map_err(|e| decode_error("budget_alerts", e))
    };
    Ok(BudgetAlert {
        project: row.get("project"),
        currency: row.get("currency"),
        month: row.get("month"),
        threshold: threshold as u32,
        spent: amount("spent")?,
        monthly: amount("monthly")?,
        at: millis(row.get("at")),
    })
}

fn daily_total(row: &Row) -> StoreResult<DailyTotal> {
    let amount: Decimal = row
        .try_get("amount")
        .map_err(|e| decode_error("cost_daily", e))?;
    let currency: String = row.get("currency");
    let unpriced: i64 = row.get("unpriced_ms");
    let entries: i64 = row.get("entries");
    Ok(DailyTotal {
        day: millis(row.get("day")),
        project: row.get("project"),
        cluster: row.get("cluster"),
        currency: (!currency.is_empty()).then_some(currency),
        amount,
        unpriced_ms: unpriced as u64,
        entries: entries as u64,
    })
}

impl CostWrite for PgTx<'_> {
    fn put_sheet_version(&self, v: &SheetVersion) -> StoreResult<()> {
        self.execute(
            "INSERT INTO price_sheets (cluster, effective_from, sheet, set_by, set_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (cluster, effective_from) DO UPDATE SET sheet = EXCLUDED.sheet,
                 set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at",
            &[
                &v.cluster,
                &timestamp(v.effective_from),
                &Json(&v.sheet),
                &v.set_by,
                &timestamp(v.set_at),
            ],
        )?;
        Ok(())
    }

    fn put_machine_rate(&self, r: &MachineRate) -> StoreResult<()> {
        self.execute(
            "INSERT INTO machine_rates (machine, effective_from, rate) VALUES ($1, $2, $3)
             ON CONFLICT (machine, effective_from) DO UPDATE SET rate = EXCLUDED.rate",
            &[
                &r.machine,
                &timestamp(r.effective_from),
                &r.rate.as_ref().map(Json),
            ],
        )?;
        Ok(())
    }

    fn append_entries(&self, entries: &[CostEntry]) -> StoreResult<Vec<u64>> {
        let mut numbers = Vec::with_capacity(entries.len());
        for e in entries {
            let row = self
                .query_opt(
                    "INSERT INTO cost_entries (machine, project, cluster, from_at, to_at, phase,
                         currency, amount, rate_from, note)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq",
                    &[
                        &e.machine,
                        &e.project,
                        &e.cluster,
                        &timestamp(e.from),
                        &timestamp(e.to),
                        &e.phase.as_str(),
                        &e.currency,
                        &e.amount,
                        &e.rate_from.map(timestamp),
                        &e.note,
                    ],
                )?
                .expect("INSERT … RETURNING returns its row");
            let seq: i64 = row.get("seq");
            numbers.push(seq as u64);
        }
        // One upsert per day, project, cluster and currency of the batch.
        let mut totals: std::collections::BTreeMap<_, DailyTotal> = Default::default();
        for e in entries {
            let total = DailyTotal::of(e);
            let key = (
                total.day,
                e.project.clone(),
                e.cluster.clone(),
                e.currency.clone(),
            );
            totals.entry(key).or_insert(total).add(e);
        }
        for t in totals.values() {
            self.execute(
                "INSERT INTO cost_daily (day, project, cluster, currency, amount, unpriced_ms,
                     entries)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (day, project, cluster, currency) DO UPDATE SET
                     amount = cost_daily.amount + EXCLUDED.amount,
                     unpriced_ms = cost_daily.unpriced_ms + EXCLUDED.unpriced_ms,
                     entries = cost_daily.entries + EXCLUDED.entries",
                &[
                    &timestamp(t.day),
                    &t.project,
                    &t.cluster,
                    &t.currency.as_deref().unwrap_or(""),
                    &t.amount,
                    &(t.unpriced_ms as i64),
                    &(t.entries as i64),
                ],
            )?;
        }
        Ok(numbers)
    }

    fn put_budget(&self, b: &Budget) -> StoreResult<()> {
        let thresholds: Vec<i32> = b.thresholds.iter().map(|t| *t as i32).collect();
        self.execute(
            "INSERT INTO budgets (project, currency, monthly, thresholds, enforce, set_by, set_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (project, currency) DO UPDATE SET monthly = EXCLUDED.monthly,
                 thresholds = EXCLUDED.thresholds, enforce = EXCLUDED.enforce,
                 set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at",
            &[
                &b.project,
                &b.currency,
                &b.monthly,
                &thresholds,
                &b.enforce,
                &b.set_by,
                &timestamp(b.set_at),
            ],
        )?;
        Ok(())
    }

    fn delete_budget(&self, project: &str, currency: &str) -> StoreResult<bool> {
        Ok(self.execute(
            "DELETE FROM budgets WHERE project = $1 AND currency = $2",
            &[&project, &currency],
        )? > 0)
    }

    fn put_exchange_rate(&self, r: &ExchangeRate) -> StoreResult<()> {
        self.execute(
            "INSERT INTO exchange_rates (from_currency, to_currency, effective_from, rate,
                 set_by, set_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (from_currency, to_currency, effective_from) DO UPDATE SET
                 rate = EXCLUDED.rate, set_by = EXCLUDED.set_by, set_at = EXCLUDED.set_at",
            &[
                &r.from,
                &r.to,
                &timestamp(r.effective_from),
                &r.rate,
                &r.set_by,
                &timestamp(r.set_at),
            ],
        )?;
        Ok(())
    }

    fn add_budget_alert(&self, a: &BudgetAlert) -> StoreResult<bool> {
        Ok(self.execute(
            "INSERT INTO budget_alerts (project, month, currency, threshold, spent, monthly, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            &[
                &a.project,
                &a.month,
                &a.currency,
                &(a.threshold as i32),
                &a.spent,
                &a.monthly,
                &timestamp(a.at),
            ],
        )? > 0)
    }

    fn set_accrued_to(&self, machine: &str, at: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO accrual_cursors (machine, accrued_to) VALUES ($1, $2)
             ON CONFLICT (machine) DO UPDATE SET accrued_to = EXCLUDED.accrued_to",
            &[&machine, &timestamp(at)],
        )?;
        Ok(())
    }
}
