//! Group commit for the embedded backend's durable writes from async code. redb commits
//! one transaction at a time and a durable commit waits for its fsync, so concurrent
//! writers used to queue for one fsync each. Here one committer thread takes every write
//! that queued while the previous group was flushing and runs them in one transaction:
//! one fsync for the group, and readers still see only what is on disk (committing each
//! without a flush and flushing later would show readers writes a crash can undo).
//!
//! A lazy write (`Durability::Lazy`: state whose loss after a crash costs only a retry)
//! shares a group as any other and waits for no flush of its own: a group of lazy writes
//! alone commits without one, and the next durable commit carries it to disk (redb
//! persists a non-durable commit with the next durable one). Readers may see a lazy write
//! that a crash undoes; that is what the caller accepted by asking for one.
//!
//! A patient write (`Durability::Patient`: background work no client waits on) is durable
//! too, but a group of patient writes is held open up to [`PATIENCE`] for others to join
//! it: a machine operation's steps arrive one by one, a few milliseconds apart, and would
//! otherwise flush one by one. An impatient write that arrives ends the wait at once.
//!
//! A write that fails (or panics) rolls its group back: it is set apart, the rest of the
//! group runs together again without it, and then it runs again alone, on what the group
//! committed. Writes may run more than once anyway (PostgreSQL retries them: see
//! `storage::store`), so that is safe.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::RedbTx;
use crate::storage::meta::Metadata;
use crate::storage::store::{Durability, StoreError, WriteTx};

/// The most writes one transaction takes: a bound on what one failing write makes run
/// again, and on how long the first of a group waits behind the others.
const MOST_PER_GROUP: usize = 64;

type Erased = Box<dyn Any + Send>;

/// A write's own result, type-erased: its `Ok` or its `Err`.
type Answer = Result<Erased, Erased>;

type Write = Box<dyn FnMut(&dyn WriteTx) -> Answer + Send>;

/// What became of one write.
enum Outcome {
    /// It ran; when it answered `Ok`, its transaction is committed and flushed.
    Answered(Answer),
    /// Its transaction could not begin or commit.
    Failed(StoreError),
    /// It panicked; the panic is raised again in the caller.
    Panicked(Erased),
}

/// How long a group of patient writes waits for others to share its flush, from the
/// first one's arrival.
pub(crate) const PATIENCE: Duration = Duration::from_millis(50);

struct Request {
    write: Write,
    reply: oneshot::Sender<Outcome>,
    /// Whether its caller waits for the flush (not `Durability::Lazy`).
    durable: bool,
    /// Whether its flush may wait for company (`Durability::Patient` and
    /// `Durability::Lazy`).
    patient: bool,
    /// When it was queued.
    queued: Instant,
}

/// Whether `group` should wait for more writes: it needs a flush, and nobody in it is in
/// a hurry.
fn waits_for_company(group: &[Request]) -> bool {
    group.iter().any(|r| r.durable) && group.iter().all(|r| r.patient)
}

/// The durability a transaction of `requests` needs: a flush if any of them asked for one.
fn durability_of<'r>(requests: impl IntoIterator<Item = &'r Request>) -> redb::Durability {
    if requests.into_iter().any(|r| r.durable) {
        redb::Durability::Immediate
    } else {
        redb::Durability::None
    }
}

/// The committer of one database: a thread started with it, stopped (and waited for)
/// when this is dropped, so the database is closed once its store is.
pub(super) struct GroupCommit {
    /// Taken only by `drop`, which closes the queue to end the thread.
    committer: Option<(mpsc::Sender<Request>, JoinHandle<()>)>,
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "read by the tests; by /metrics once it exists")
    )]
    counts: Arc<Counts>,
}

/// What the committer has done: how well writes share commits.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Transactions committed (shared or alone).
    pub commits: AtomicU64,
    /// Writes answered `Ok` with their transaction committed.
    pub writes: AtomicU64,
    /// Commits that waited for the disk (lazy writes alone do not).
    pub flushes: AtomicU64,
}

impl Counts {
    fn committed(&self, writes: usize, durability: redb::Durability) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes.fetch_add(writes as u64, Ordering::Relaxed);
        if matches!(durability, redb::Durability::Immediate) {
            self.flushes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl GroupCommit {
    /// Starts the committer of `meta`.
    pub(super) fn start(meta: Arc<Metadata>) -> Result<GroupCommit, StoreError> {
        let counts = Arc::<Counts>::default();
        let (queue, requests) = mpsc::channel();
        let counted = counts.clone();
        let thread = std::thread::Builder::new()
            .name("berth-commit".into())
            .spawn(move || commit_groups(&meta, &requests, &counted))
            .map_err(|e| StoreError::Backend(format!("cannot start the committer: {e}")))?;
        Ok(GroupCommit {
            committer: Some((queue, thread)),
            counts,
        })
    }

    /// Runs `f` in a write transaction shared with the writes queued beside it, and
    /// returns once that transaction is committed — and flushed, unless `durability` is
    /// lazy (or `f`'s error, with nothing of it kept).
    pub(super) async fn write<T, E>(
        &self,
        durability: Durability,
        mut f: impl FnMut(&dyn WriteTx) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let write: Write = Box::new(move |tx| match f(tx) {
            Ok(value) => Ok(Box::new(value)),
            Err(e) => Err(Box::new(e)),
        });
        let (queue, _) = self
            .committer
            .as_ref()
            .expect("the committer runs until drop");
        queue
            .send(Request {
                write,
                reply,
                durable: durability != Durability::Lazy,
                patient: durability != Durability::Immediate,
                queued: Instant::now(),
            })
            .map_err(|_| StoreError::Backend("the committer has stopped".into()))?;
        match answer.await {
            Ok(Outcome::Answered(Ok(value))) => Ok(*value
                .downcast::<T>()
                .expect("a write's answer has the type it was given with")),
            Ok(Outcome::Answered(Err(e))) => Err(*e
                .downcast::<E>()
                .expect("a write's error has the type it was given with")),
            Ok(Outcome::Failed(e)) => Err(e.into()),
            Ok(Outcome::Panicked(payload)) => std::panic::resume_unwind(payload),
            Err(_) => Err(StoreError::Backend(
                "the transaction was cancelled: berth is shutting down".into(),
            )
            .into()),
        }
    }

    /// The committer's counts so far (read by the tests today; by `/metrics` once it
    /// exists).
    #[cfg(test)]
    pub(super) fn counts(&self) -> &Counts {
        &self.counts
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        if let Some((queue, thread)) = self.committer.take() {
            // Closing the queue ends the committer once it has answered what is queued.
            drop(queue);
            let _ = thread.join();
        }
    }
}

/// The committer's loop: a group is what queued while the last one committed, and, for
/// patient writes, what arrives within their patience.
fn commit_groups(meta: &Metadata, requests: &mpsc::Receiver<Request>, counts: &Counts) {
    while let Ok(first) = requests.recv() {
        let until = first.queued + PATIENCE;
        let mut group = vec![first];
        while group.len() < MOST_PER_GROUP {
            match requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        while group.len() < MOST_PER_GROUP && waits_for_company(&group) {
            let left = until.saturating_duration_since(Instant::now());
            match requests.recv_timeout(left) {
                Ok(request) => group.push(request),
                // Time is up, or the store is closing: commit what there is.
                Err(_) => break,
            }
        }
        commit_group(meta, group, counts);
    }
}

/// How many failing writes a group sets apart before all of it runs alone: each costs the
/// rest of the group a run.
const MOST_SET_APART: usize = 4;

/// Commits `group` together, setting apart each write that fails (it rolls the group
/// back; the rest run together again without it); what was set apart then runs alone, on
/// what the group committed, so its answer is one a lone write would have had.
fn commit_group(meta: &Metadata, mut group: Vec<Request>, counts: &Counts) {
    let mut apart = Vec::new();
    while group.len() > 1 {
        match run_together(meta, &mut group) {
            Together::Committed(answers) => {
                counts.committed(answers.len(), durability_of(group.iter()));
                for (request, answer) in group.drain(..).zip(answers) {
                    let _ = request.reply.send(Outcome::Answered(Ok(answer)));
                }
            }
            Together::FailedAt(index) if apart.len() < MOST_SET_APART => {
                apart.push(group.remove(index));
            }
            Together::FailedAt(_) | Together::NotCommitted => break,
        }
    }
    for mut request in group.into_iter().chain(apart) {
        let outcome = run_alone(meta, &mut request);
        if matches!(outcome, Outcome::Answered(Ok(_))) {
            counts.committed(1, durability_of([&request]));
        }
        let _ = request.reply.send(outcome);
    }
}

/// What became of a group run in one transaction.
enum Together {
    /// Committed and flushed: each write's answer, in order.
    Committed(Vec<Erased>),
    /// The write at this index failed or panicked; nothing of the group is kept.
    FailedAt(usize),
    /// The transaction could not begin or commit; nothing of the group is kept.
    NotCommitted,
}

/// Every write of `group` in one transaction, committed.
fn run_together(meta: &Metadata, group: &mut [Request]) -> Together {
    let Ok(tx) = meta.begin_write(durability_of(group.iter())) else {
        return Together::NotCommitted;
    };
    let tx = RedbTx(tx);
    let mut answers = Vec::with_capacity(group.len());
    for (index, request) in group.iter_mut().enumerate() {
        match catch_unwind(AssertUnwindSafe(|| (request.write)(&tx))) {
            Ok(Ok(answer)) => answers.push(answer),
            // Dropping the uncommitted transaction rolls the group back.
            Ok(Err(_)) | Err(_) => return Together::FailedAt(index),
        }
    }
    match tx.0.commit() {
        Ok(()) => Together::Committed(answers),
        Err(_) => Together::NotCommitted,
    }
}

/// `request`'s write in a transaction of its own.
fn run_alone(meta: &Metadata, request: &mut Request) -> Outcome {
    let tx = match meta.begin_write(durability_of([&*request])) {
        Ok(tx) => RedbTx(tx),
        Err(e) => return Outcome::Failed(StoreError::from(e)),
    };
    match catch_unwind(AssertUnwindSafe(|| (request.write)(&tx))) {
        Ok(Ok(answer)) => match tx.0.commit() {
            Ok(()) => Outcome::Answered(Ok(answer)),
            Err(e) => Outcome::Failed(super::backend(e)),
        },
        Ok(Err(e)) => Outcome::Answered(Err(e)),
        Err(payload) => Outcome::Panicked(payload),
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::store::{Store, StoreResult};
    use crate::storage::tables::auth::ProjectRecord;

    use super::*;

    fn project(name: &str) -> ProjectRecord {
        ProjectRecord {
            name: name.into(),
            public: false,
            created_by: "test".into(),
            created_at: 1,
        }
    }

    fn store() -> (tempfile::TempDir, Store) {
        let (dir, store, _) = store_and_metadata();
        (dir, store)
    }

    /// A store, and its database for a committer of the test's own.
    fn store_and_metadata() -> (tempfile::TempDir, Store, Arc<Metadata>) {
        let dir = tempfile::tempdir().unwrap();
        let meta = Arc::new(Metadata::open(&dir.path().join("berth.redb")).unwrap());
        let store = Store::redb(meta.clone()).unwrap();
        (dir, store, meta)
    }

    /// Writes racing each other all land, each answered with its own result, and share
    /// commits; the one that fails keeps nothing it wrote (its half-done write is rolled
    /// back), and the group it was in is not lost with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writes_share_commits_and_a_failing_one_keeps_nothing() {
        let (_dir, store, meta) = store_and_metadata();
        let group = Arc::new(GroupCommit::start(meta).unwrap());
        let writes = (0..200).map(|i| {
            let group = group.clone();
            tokio::spawn(async move {
                group
                    .write(Durability::Immediate, move |tx| -> StoreResult<usize> {
                        tx.auth().put_project(&project(&format!("p{i}")))?;
                        if i % 50 == 7 {
                            return Err(StoreError::Backend(format!("write {i} refuses")));
                        }
                        Ok(i)
                    })
                    .await
            })
        });
        let answers = futures::future::join_all(writes).await;
        for (i, answer) in answers.into_iter().enumerate() {
            match answer.unwrap() {
                Ok(n) => assert_eq!(n, i),
                Err(e) => {
                    assert_eq!(i % 50, 7, "write {i} failed: {e}");
                    assert!(e.to_string().contains(&format!("write {i} refuses")), "{e}");
                }
            }
        }
        let kept: Vec<String> = store
            .read(|tx| tx.auth().projects())
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.name)
            .collect();
        assert_eq!(kept.len(), 196, "{kept:?}");
        for i in [7, 57, 107, 157] {
            assert!(!kept.contains(&format!("p{i}")), "p{i} was kept");
        }
        let counts = group.counts();
        let (commits, writes) = (
            counts.commits.load(Ordering::Relaxed),
            counts.writes.load(Ordering::Relaxed),
        );
        assert_eq!(writes, 196);
        // 200 writes queued at once while the first commit flushes cannot each need one.
        assert!(
            commits < writes / 2,
            "{commits} commits for {writes} writes"
        );
    }

    /// A lazy write alone commits without a flush and is seen at once; the next durable
    /// write flushes; a lazy write beside durable ones rides their flush.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lazy_writes_wait_for_no_flush_and_ride_the_next() {
        let (_dir, store, meta) = store_and_metadata();
        let group = GroupCommit::start(meta).unwrap();
        let put =
            |name: &'static str| move |tx: &dyn WriteTx| tx.auth().put_project(&project(name));
        group.write(Durability::Lazy, put("lazy")).await.unwrap();
        let flushes = || group.counts().flushes.load(Ordering::Relaxed);
        assert_eq!(
            (group.counts().commits.load(Ordering::Relaxed), flushes()),
            (1, 0)
        );
        assert!(
            store
                .read(|tx| tx.auth().project("lazy"))
                .await
                .unwrap()
                .is_some()
        );
        group
            .write(Durability::Immediate, put("durable"))
            .await
            .unwrap();
        assert_eq!(flushes(), 1);
        let (lazy, durable) = futures::join!(
            group.write(Durability::Lazy, put("lazy beside")),
            group.write(Durability::Immediate, put("durable beside")),
        );
        lazy.unwrap();
        durable.unwrap();
        assert!(flushes() >= 2, "the durable write of the pair flushed");
        assert_eq!(group.counts().writes.load(Ordering::Relaxed), 4);
    }

    /// Patient writes that trickle in a few milliseconds apart share one flush, and an
    /// impatient write that arrives meanwhile joins that flush instead of waiting for it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn patient_writes_trickling_in_share_a_flush() {
        let (_dir, store, meta) = store_and_metadata();
        let group = Arc::new(GroupCommit::start(meta).unwrap());
        let put = |name: String| move |tx: &dyn WriteTx| tx.auth().put_project(&project(&name));
        let mut writes = Vec::new();
        for (i, durability) in [
            Durability::Patient,
            Durability::Patient,
            Durability::Lazy,
            Durability::Patient,
            Durability::Immediate,
        ]
        .into_iter()
        .enumerate()
        {
            let group = group.clone();
            writes.push(tokio::spawn(async move {
                group.write(durability, put(format!("p{i}"))).await
            }));
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        for write in writes {
            write.await.unwrap().unwrap();
        }
        let counts = group.counts();
        assert_eq!(counts.writes.load(Ordering::Relaxed), 5);
        assert_eq!(
            (
                counts.commits.load(Ordering::Relaxed),
                counts.flushes.load(Ordering::Relaxed)
            ),
            (1, 1),
            "five writes 3 ms apart, the last impatient, share one flush"
        );
        assert_eq!(
            store.read(|tx| tx.auth().projects()).await.unwrap().len(),
            5
        );
    }

    /// A write that panics raises its panic in its caller; the committer lives on and the
    /// writes queued with it land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_panics_its_caller_only() {
        let (_dir, store) = store();
        let panicking = {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(|_tx| -> StoreResult<()> { panic!("this write is broken") })
                    .await
            })
        };
        let fine = (0..20).map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .write(move |tx| tx.auth().put_project(&project(&format!("q{i}"))))
                    .await
            })
        });
        let fine = futures::future::join_all(fine).await;
        let panicked = panicking.await.unwrap_err();
        assert!(panicked.is_panic());
        for answer in fine {
            answer.unwrap().unwrap();
        }
        store
            .write(|tx| tx.auth().put_project(&project("after")))
            .await
            .unwrap();
        let kept = store.read(|tx| tx.auth().projects()).await.unwrap();
        assert_eq!(kept.len(), 21);
    }

    /// Dropping the store stops its committer and closes the database: the file opens
    /// again at once.
    #[tokio::test]
    async fn dropping_the_store_closes_the_database() {
        let (dir, store) = store();
        store
            .write(|tx| tx.auth().put_project(&project("kept")))
            .await
            .unwrap();
        drop(store);
        let meta = Arc::new(Metadata::open(&dir.path().join("berth.redb")).unwrap());
        let store = Store::redb(meta).unwrap();
        let kept = store.read(|tx| tx.auth().projects()).await.unwrap();
        assert_eq!(kept.len(), 1);
    }
}
