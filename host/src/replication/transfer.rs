//! Copying one artifact from a source registry to a sink registry: the manifest byte for
//! byte (so digests stay the same), every blob it references streamed and never held
//! whole, an index's children before the index, and referrers (signatures, SBOMs) after
//! their subject.
//!
//! What the destination already holds is not sent: a blob it has is skipped (HEAD), one
//! it holds in another repository is mounted, and one that another transfer of the same
//! job is sending right now is waited for, so that a job sends each distinct blob to each
//! destination once.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;

use super::jobs::JobProgress;
use super::side::{ByteStream, FetchedManifest, SideError, SideResult, Sink, Source};
use crate::registry::manifest;

/// Referrers of referrers are followed this deep at most.
const MAX_REFERRER_DEPTH: usize = 4;

/// Per destination: which blobs are being sent right now, and where on the destination
/// each blob seen lately lives, so that concurrent transfers (of one job or of several)
/// neither send a blob twice nor miss a chance to mount it. One per engine.
#[derive(Default)]
pub struct BlobGate {
    locks: Mutex<HashMap<BlobKey, Arc<tokio::sync::Mutex<()>>>>,
    known: Mutex<HashMap<BlobKey, String>>,
}

/// A destination instance and a blob digest.
type BlobKey = (String, String);

/// Where-it-lives entries remembered at most; past this the memory starts over (it only
/// saves mounts, never correctness).
const KNOWN_LIMIT: usize = 100_000;

impl BlobGate {
    fn lock_for(&self, target: &str, digest: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .expect("gate lock")
            .entry((target.to_string(), digest.to_string()))
            .or_default()
            .clone()
    }

    /// Drops the entry of a lock nobody else holds or waits for. Clones are only made
    /// under the map's lock, so the count cannot grow while it is checked.
    fn release(&self, target: &str, digest: &str, lock: Arc<tokio::sync::Mutex<()>>) {
        let mut locks = self.locks.lock().expect("gate lock");
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&(target.to_string(), digest.to_string()));
        }
    }

    fn known(&self, target: &str, digest: &str) -> Option<String> {
        self.known
            .lock()
            .expect("gate lock")
            .get(&(target.to_string(), digest.to_string()))
            .cloned()
    }

    fn remember(&self, target: &str, digest: &str, repository: &str) {
        let mut known = self.known.lock().expect("gate lock");
        if known.len() >= KNOWN_LIMIT {
            known.clear();
        }
        known.insert(
            (target.to_string(), digest.to_string()),
            repository.to_string(),
        );
    }
}

/// A cap on the bytes per second a job sends, shared by its transfers.
pub struct Throttle {
    bytes_per_sec: f64,
    state: Mutex<(Instant, u64)>,
}

impl Throttle {
    /// A cap of `mbps` megabits per second.
    pub fn new(mbps: u32) -> Throttle {
        Throttle {
            bytes_per_sec: f64::from(mbps) * 1_000_000.0 / 8.0,
            state: Mutex::new((Instant::now(), 0)),
        }
    }

    /// Waits until `n` more bytes fit under the cap.
    async fn take(&self, n: usize) {
        let due = {
            let mut state = self.state.lock().expect("throttle lock");
            state.1 += n as u64;
            state.0 + Duration::from_secs_f64(state.1 as f64 / self.bytes_per_sec)
        };
        tokio::time::sleep_until(due.into()).await;
    }
}

/// How a copy behaves.
pub struct CopyOptions {
    /// Move a destination tag that points elsewhere.
    pub override_existing: bool,
    /// Blobs of one manifest sent at once.
    pub parallel_blobs: usize,
    /// The job's bandwidth cap, if any.
    pub throttle: Option<Arc<Throttle>>,
}

/// What one copy did.
#[derive(Debug, Default, Clone)]
pub struct CopyOutcome {
    /// Bytes and counts.
    pub progress: JobProgress,
    /// Why less than asked was done, when it succeeded anyway (a tag left alone).
    pub note: Option<String>,
}

/// Copies artifacts from one source to one destination.
pub struct Copier<'a> {
    /// Where content is read.
    pub source: &'a dyn Source,
    /// Where content is written.
    pub sink: &'a dyn Sink,
    /// The destination's id in the job (keys the gate).
    pub target: &'a str,
    /// Shared by the job's transfers.
    pub gate: &'a BlobGate,
    /// Behaviour.
    pub options: &'a CopyOptions,
}

impl Copier<'_> {
    /// Copies what `reference` (a tag or a digest) names in `repository` to
    /// `destination`, under the same reference.
    pub async fn copy(
        &self,
        repository: &str,
        reference: &str,
        destination: &str,
    ) -> SideResult<CopyOutcome> {
        let mut outcome = CopyOutcome::default();
        let Some(top) = self.source.manifest(repository, reference).await? else {
            return Err(SideError::NotFound(format!(
                "{} no longer holds {repository}:{reference}",
                self.source.describe()
            )));
        };
        let is_tag = !reference.contains(':');
        let current = self.sink.resolve(destination, reference).await?;
        match &current {
            Some(d) if *d == top.digest => {
                outcome.progress.manifests_skipped += 1;
            }
            Some(d) if is_tag && !self.options.override_existing => {
                outcome.note = Some(format!(
                    "{} has {destination}:{reference} at {d}, not {}; left alone (override_existing is off)",
                    self.sink.describe(),
                    top.digest
                ));
                return Ok(outcome);
            }
            _ => {
                self.copy_tree(repository, destination, &top, &mut outcome.progress)
                    .await?;
                self.sink.put_manifest(destination, reference, &top).await?;
                outcome.progress.manifests_copied += 1;
            }
        }
        let mut seen = BTreeSet::from([top.digest.clone()]);
        self.copy_referrers(
            repository,
            destination,
            &top.digest,
            0,
            &mut seen,
            &mut outcome.progress,
        )
        .await?;
        Ok(outcome)
    }

    /// Everything `manifest` references: children (recursively, each put by digest) and
    /// blobs, so that the destination accepts `manifest` itself afterwards.
    async fn copy_tree(
        &self,
        repository: &str,
        destination: &str,
        top: &FetchedManifest,
        progress: &mut JobProgress,
    ) -> SideResult<()> {
        let parsed = manifest::parse(Some(&top.media_type), &top.bytes).map_err(|e| {
            SideError::Refused(format!(
                "{repository}@{} on {} is not a manifest berth can copy: {}",
                top.digest,
                self.source.describe(),
                e.0
            ))
        })?;
        for child in &parsed.children {
            let digest = child.digest.to_string();
            if self.sink.resolve(destination, &digest).await?.is_some() {
                progress.manifests_skipped += 1;
                continue;
            }
            let Some(fetched) = self.source.manifest(repository, &digest).await? else {
                return Err(SideError::NotFound(format!(
                    "{} does not hold {repository}@{digest}, a child of {}",
                    self.source.describe(),
                    top.digest
                )));
            };
            Box::pin(self.copy_tree(repository, destination, &fetched, progress)).await?;
            self.sink
                .put_manifest(destination, &digest, &fetched)
                .await?;
            progress.manifests_copied += 1;
        }
        let blobs: Vec<(String, u64)> = parsed
            .blobs
            .iter()
            .map(|b| (b.digest.to_string(), b.size))
            .collect();
        // Blobs of one manifest go in parallel (Harbor copied them one after another,
        // goharbor/harbor#20301), a bounded number at a time.
        let mut waiting = blobs.iter();
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < self.options.parallel_blobs.max(1) {
                let Some((digest, size)) = waiting.next() else {
                    break;
                };
                running.push(self.copy_blob(repository, destination, digest, *size));
            }
            match running.next().await {
                Some(done) => progress.add(&done?),
                None => break,
            }
        }
        Ok(())
    }

    async fn copy_referrers(
        &self,
        repository: &str,
        destination: &str,
        subject: &str,
        depth: usize,
        seen: &mut BTreeSet<String>,
        progress: &mut JobProgress,
    ) -> SideResult<()> {
        if depth >= MAX_REFERRER_DEPTH {
            return Ok(());
        }
        for digest in self.source.referrers(repository, subject).await? {
            if !seen.insert(digest.clone()) {
                continue;
            }
            if self.sink.resolve(destination, &digest).await?.is_some() {
                progress.manifests_skipped += 1;
            } else if let Some(fetched) = self.source.manifest(repository, &digest).await? {
                self.copy_tree(repository, destination, &fetched, progress)
                    .await?;
                self.sink
                    .put_manifest(destination, &digest, &fetched)
                    .await?;
                progress.manifests_copied += 1;
            } else {
                continue; // deleted since it was listed
            }
            Box::pin(self.copy_referrers(
                repository,
                destination,
                &digest,
                depth + 1,
                seen,
                progress,
            ))
            .await?;
        }
        Ok(())
    }

    async fn copy_blob(
        &self,
        repository: &str,
        destination: &str,
        digest: &str,
        size: u64,
    ) -> SideResult<JobProgress> {
        // One transfer per blob and destination at a time: a second one waits, then finds
        // the blob there (or mountable) instead of sending it again.
        let lock = self.gate.lock_for(self.target, digest);
        let held = lock.lock().await;
        let result = self
            .copy_blob_locked(repository, destination, digest, size)
            .await;
        drop(held);
        self.gate.release(self.target, digest, lock);
        result
    }

    async fn copy_blob_locked(
        &self,
        repository: &str,
        destination: &str,
        digest: &str,
        size: u64,
    ) -> SideResult<JobProgress> {
        let mut progress = JobProgress::default();
        if self.sink.has_blob(destination, digest).await? {
            progress.blobs_skipped += 1;
            self.gate.remember(self.target, digest, destination);
            return Ok(progress);
        }
        if let Some(from) = self.gate.known(self.target, digest)
            && from != destination
            && self.sink.mount(destination, &from, digest).await?
        {
            progress.blobs_skipped += 1;
            self.gate.remember(self.target, digest, destination);
            return Ok(progress);
        }
        let bytes = self.source.blob(repository, digest, size).await?;
        let bytes: ByteStream = match &self.options.throttle {
            Some(throttle) => {
                let throttle = throttle.clone();
                Box::pin(bytes.then(move |chunk| {
                    let throttle = throttle.clone();
                    async move {
                        if let Ok(c) = &chunk {
                            throttle.take(c.len()).await;
                        }
                        chunk
                    }
                }))
            }
            None => bytes,
        };
        self.sink.put_blob(destination, digest, size, bytes).await?;
        progress.blobs_copied += 1;
        progress.bytes += size;
        self.gate.remember(self.target, digest, destination);
        Ok(progress)
    }
}

#[cfg(test)]
mod tests {
    use super::Throttle;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_throttle_holds_bytes_to_the_cap() {
        // 8 Mbit/s is 1 MB/s: 3 MB take three seconds, however they are chunked.
        let throttle = Throttle::new(8);
        let started = tokio::time::Instant::now();
        for _ in 0..30 {
            throttle.take(100_000).await;
        }
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(2990) && took <= Duration::from_millis(3010),
            "{took:?}"
        );
    }
}
