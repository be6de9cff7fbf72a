//! Conformance cases of cost accounting's tables.

use rust_decimal::Decimal;

use crate::storage::store::{Durability, Store, StoreError, WriteTx};
use crate::storage::tables::cost::{
    BilledPhase, CostEntry, EntryFilter, MachineRate, SheetVersion,
};

/// A write given up by its caller after some of its work.
#[derive(Debug)]
enum Stopped {
    Store(#[expect(dead_code, reason = "shown by Debug when a case fails")] StoreError),
    Midway,
}

impl From<StoreError> for Stopped {
    fn from(e: StoreError) -> Stopped {
        Stopped::Store(e)
    }
}

fn write(store: &Store, f: impl FnMut(&dyn WriteTx) -> Result<(), StoreError>) {
    store.write_blocking(Durability::Immediate, f).unwrap();
}

fn entry(machine: &str, project: &str, cluster: &str, from: u64, amount: &str) -> CostEntry {
    CostEntry {
        seq: 0,
        machine: machine.into(),
        project: project.into(),
        cluster: cluster.into(),
        from,
        to: from + 3_600_000,
        phase: BilledPhase::Running,
        currency: Some("USD".into()),
        amount: amount.parse().unwrap(),
        rate_from: Some(from - 10),
        note: None,
    }
}

pub(super) fn sheet_versions_and_rates_round_trip_in_time_order(store: &Store) {
    let version = |cluster: &str, at: u64, price: &str| SheetVersion {
        cluster: cluster.into(),
        effective_from: at,
        sheet: serde_json::json!({"kind": "flavors", "currency": "EUR", "flavors": {"m1.ü": {"per_hour": price}}}),
        set_by: "admin".into(),
        set_at: 1_764_000_000_000 + at,
    };
    write(store, |tx| {
        tx.cost().put_sheet_version(&version("os", 2_000, "0.2"))?;
        tx.cost().put_sheet_version(&version("os", 1_000, "0.1"))?;
        tx.cost().put_sheet_version(&version("os-b", 500, "9"))?;
        // The same effective time again replaces.
        tx.cost().put_sheet_version(&version("os", 2_000, "0.25"))
    });
    let versions = store
        .read_blocking(|tx| tx.cost().sheet_versions("os"))
        .unwrap();
    assert_eq!(
        versions,
        vec![version("os", 1_000, "0.1"), version("os", 2_000, "0.25")]
    );
    assert!(
        store
            .read_blocking(|tx| tx.cost().sheet_versions("o"))
            .unwrap()
            .is_empty()
    );

    let rate = |at: u64, rate: Option<serde_json::Value>| MachineRate {
        machine: "m-1".into(),
        effective_from: at,
        rate,
    };
    let priced = serde_json::json!({"currency": "USD", "basis": "hour", "running": "0.0416", "source": "provider"});
    write(store, |tx| {
        tx.cost().put_machine_rate(&rate(7_000, None))?;
        tx.cost()
            .put_machine_rate(&rate(3_000, Some(priced.clone())))
    });
    assert_eq!(
        store
            .read_blocking(|tx| tx.cost().machine_rates("m-1"))
            .unwrap(),
        vec![rate(3_000, Some(priced.clone())), rate(7_000, None)]
    );
    assert!(
        store
            .read_blocking(|tx| tx.cost().machine_rates("m-2"))
            .unwrap()
            .is_empty()
    );
}

pub(super) fn entries_are_numbered_exact_and_filtered(store: &Store) {
    let hour = 3_600_000;
    let t0 = 1_764_547_200_000; // 2025-12-01T00:00:00Z
    let mut first = vec![
        entry("m-1", "web", "aws", t0, "0.041600000"),
        entry("m-2", "web", "pool", t0 + hour, "12345678.123456789"),
        entry("m-3", "data", "aws", t0 + 2 * hour, "0.000000001"),
    ];
    first[2].phase = BilledPhase::Stopped;
    first[2].currency = None;
    first[2].rate_from = None;
    let mut numbers = Vec::new();
    write(store, |tx| {
        numbers = tx.cost().append_entries(&first)?;
        Ok(())
    });
    assert_eq!(numbers.len(), 3);
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    let mut correction = entry("m-1", "web", "aws", t0, "-0.0416");
    correction.note = Some("refund: ünïcödé \"quoted\"".into());
    let mut later = Vec::new();
    write(store, |tx| {
        later = tx
            .cost()
            .append_entries(std::slice::from_ref(&correction))?;
        Ok(())
    });
    assert!(later[0] > numbers[2]);

    let all = EntryFilter {
        from: t0,
        to: t0 + 24 * hour,
        ..EntryFilter::default()
    };
    let read = store.read_blocking(|tx| tx.cost().entries(&all)).unwrap();
    // By start time, then number: the correction (same start as the first) comes second.
    let seqs: Vec<u64> = read.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [numbers[0], later[0], numbers[1], numbers[2]]);
    for (stored, given) in read
        .iter()
        .zip([&first[0], &correction, &first[1], &first[2]])
    {
        assert_eq!(
            stored,
            &CostEntry {
                seq: stored.seq,
                ..given.clone()
            }
        );
    }
    // Exact amounts: the sum is the sum of the decimals, to the last place.
    let sum: Decimal = read.iter().map(|e| e.amount).sum();
    assert_eq!(sum, "12345678.123456790".parse::<Decimal>().unwrap());

    let only = |f: EntryFilter| -> Vec<u64> {
        store
            .read_blocking(|tx| tx.cost().entries(&f))
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect()
    };
    assert_eq!(
        only(EntryFilter {
            project: Some("web".into()),
            ..all.clone()
        }),
        [numbers[0], later[0], numbers[1]]
    );
    assert_eq!(
        only(EntryFilter {
            cluster: Some("aws".into()),
            ..all.clone()
        }),
        [numbers[0], later[0], numbers[2]]
    );
    assert_eq!(
        only(EntryFilter {
            machine: Some("m-2".into()),
            ..all.clone()
        }),
        [numbers[1]]
    );
    // The window is on the start time, half open.
    assert_eq!(
        only(EntryFilter {
            from: t0 + hour,
            to: t0 + 2 * hour,
            ..all.clone()
        }),
        [numbers[1]]
    );
    assert!(
        only(EntryFilter {
            from: t0 + hour,
            to: t0 + hour,
            ..all.clone()
        })
        .is_empty()
    );
}

pub(super) fn a_cursor_moves_with_its_entries_or_not_at_all(store: &Store) {
    let t0 = 1_764_547_200_000;
    write(store, |tx| {
        tx.cost()
            .append_entries(&[entry("m-1", "web", "aws", t0, "1")])?;
        tx.cost().set_accrued_to("m-1", t0 + 3_600_000)
    });
    assert_eq!(
        store
            .read_blocking(|tx| tx.cost().accrued_to("m-1"))
            .unwrap(),
        Some(t0 + 3_600_000)
    );
    assert_eq!(
        store
            .read_blocking(|tx| tx.cost().accrued_to("m-9"))
            .unwrap(),
        None
    );
    // A transaction that fails after appending and moving the cursor leaves neither.
    let failed: Result<(), Stopped> = store.write_blocking(Durability::Immediate, |tx| {
        tx.cost()
            .append_entries(&[entry("m-1", "web", "aws", t0 + 3_600_000, "1")])?;
        tx.cost().set_accrued_to("m-1", t0 + 7_200_000)?;
        Err(Stopped::Midway)
    });
    assert!(matches!(failed, Err(Stopped::Midway)), "{failed:?}");
    assert_eq!(
        store
            .read_blocking(|tx| tx.cost().accrued_to("m-1"))
            .unwrap(),
        Some(t0 + 3_600_000)
    );
    let filter = EntryFilter {
        from: t0,
        to: t0 + 86_400_000,
        ..EntryFilter::default()
    };
    assert_eq!(
        store
            .read_blocking(|tx| tx.cost().entries(&filter))
            .unwrap()
            .len(),
        1
    );
}
