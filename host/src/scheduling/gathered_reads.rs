//! Reads of machines a provider is still making, gathered. Every create waiting for its
//! machine to run asks here, and the asks about one cluster and region in one poll
//! interval go to the provider together, as one `get-many`: a rollout of a hundred
//! machines costs about one read a second, not a hundred. Clouds meter reads per account
//! (EC2 throttles `DescribeInstances` by request count), and each read is a sandboxed
//! call, so this is both what keeps berth under a cloud's limits and what keeps its CPU
//! per create low.
//!
//! The first ask of a round leads it: it waits out the interval, gathering, then reads for
//! everyone. A leader that is cancelled hands nothing out, and its followers, seeing their
//! answer channel close, ask again (one of them leads the next round).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use berth_plugin_runtime::provider::{Machine, ProviderFailure};
use tokio::sync::oneshot;

use super::provider::ClusterProvider;

/// What one ask gets: the machine as the provider describes it, `None` when the provider
/// does not know it (yet: EC2's reads lag behind its creates).
pub(super) type Reading = Result<Option<Machine>, ProviderFailure>;

/// Which rounds are gathering, by (cluster, region).
#[derive(Default)]
pub(super) struct GatheredReads {
    rounds: Mutex<HashMap<(String, String), Round>>,
    /// Numbers rounds, so that a cancelled leader ends only its own.
    next_round: AtomicU64,
}

struct Round {
    number: u64,
    /// Who waits for this round's read: the provider id each asks about.
    waiting: Vec<(String, oneshot::Sender<Reading>)>,
}

/// Ends a leader's round if the leader goes away before reading: its followers' channels
/// close, and they ask again.
struct Lead<'a> {
    reads: &'a GatheredReads,
    key: (String, String),
    number: u64,
    done: bool,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut rounds = self.reads.rounds.lock().expect("rounds lock");
            if rounds
                .get(&self.key)
                .is_some_and(|r| r.number == self.number)
            {
                rounds.remove(&self.key);
            }
        }
    }
}

impl GatheredReads {
    /// Machine `id` of `cluster` in `region` as the provider describes it, read together
    /// with every other ask about that cluster and region within `interval`.
    pub(super) async fn read(
        &self,
        provider: &ClusterProvider<'_>,
        cluster: &str,
        region: &str,
        id: &str,
        interval: Duration,
    ) -> Reading {
        loop {
            let (answer, lead) = self.ask(cluster, region, id);
            if let Some(number) = lead {
                let mut lead = Lead {
                    reads: self,
                    key: (cluster.to_owned(), region.to_owned()),
                    number,
                    done: false,
                };
                tokio::time::sleep(interval).await;
                let waiting = {
                    let mut rounds = self.rounds.lock().expect("rounds lock");
                    lead.done = true;
                    rounds
                        .remove(&lead.key)
                        .map(|round| round.waiting)
                        .unwrap_or_default()
                };
                let mut ids: Vec<String> = waiting.iter().map(|(id, _)| id.clone()).collect();
                ids.sort();
                ids.dedup();
                let answer = provider.get_many(region, &ids).await;
                for (id, reply) in waiting {
                    let reading = match &answer {
                        Ok(machines) => Ok(machines.iter().find(|m| m.id == id).cloned()),
                        Err(e) => Err(e.clone()),
                    };
                    let _ = reply.send(reading);
                }
            }
            match answer.await {
                Ok(reading) => return reading,
                // The round's leader went away before reading: ask again.
                Err(_) => continue,
            }
        }
    }

    /// Joins the gathering round of (`cluster`, `region`), opening one (and leading it:
    /// its number) when none gathers.
    fn ask(
        &self,
        cluster: &str,
        region: &str,
        id: &str,
    ) -> (oneshot::Receiver<Reading>, Option<u64>) {
        let (reply, answer) = oneshot::channel();
        let mut rounds = self.rounds.lock().expect("rounds lock");
        let key = (cluster.to_owned(), region.to_owned());
        if let Some(round) = rounds.get_mut(&key) {
            round.waiting.push((id.to_owned(), reply));
            return (answer, None);
        }
        let number = self.next_round.fetch_add(1, Ordering::Relaxed);
        rounds.insert(
            key,
            Round {
                number,
                waiting: vec![(id.to_owned(), reply)],
            },
        );
        (answer, Some(number))
    }
}
