//! Webhooks: every machine state change is POSTed to `scheduling.webhook_url`, so a load
//! balancer or a service registry can follow machines going online and offline, and so
//! is every budget threshold a project's month crosses (`budget.threshold`).
//!
//! The webhook is a consumer of the event feed (`machine-webhooks`): it reads machine
//! transitions past its durable cursor, delivers them in order, and moves the cursor past
//! what was delivered. A delivery that fails is retried with backoff, and nothing after
//! it goes out first. Delivery is at least once: a node that dies between a delivery and
//! the cursor's move, or two nodes delivering the same batch, repeat an event, and
//! `X-Berth-Delivery` (the event's number) tells a receiver it has seen it.
//!
//! Each request is signed: `X-Berth-Signature: sha256=<hex>`, the HMAC-SHA256, keyed with
//! `scheduling.webhook_secret`, of `X-Berth-Timestamp`, a `.`, and the body, so that a
//! receiver can refuse forgeries and replays.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Scheduling;
use crate::events::{self, Event, Start};
use crate::jobs::backoff;
use crate::storage::store::{Durability, StoreError, StoreResult, now_millis};

/// The webhook's name as a consumer of the event feed.
pub const CONSUMER: &str = "machine-webhooks";

/// Events read per round.
const BATCH: usize = 100;

/// How long one delivery may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where delivery stands on this node: failures in a row and when to try next.
#[derive(Debug, Default)]
pub(super) struct Delivery {
    failures: u32,
    next_try: Option<Instant>,
    registered: bool,
}

/// The signature of a delivery: `sha256=` and the hex HMAC-SHA256 of
/// `<timestamp>.<body>` keyed with `secret`.
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Scheduling {
    /// Delivers the machine transitions past the webhook's cursor, if a webhook is set
    /// and its backoff allows.
    pub(super) async fn deliver_webhooks(&self) -> StoreResult<()> {
        let Some(url) = self.config.webhook_url.clone() else {
            return Ok(());
        };
        {
            let delivery = self.delivery.lock().expect("delivery lock");
            if delivery.next_try.is_some_and(|t| Instant::now() < t) {
                return Ok(());
            }
        }
        if !self.delivery.lock().expect("delivery lock").registered {
            // From now on: a webhook set up later does not replay the past.
            self.store
                .write(|tx| events::register_in(tx, CONSUMER, Start::Newest))
                .await?;
            self.delivery.lock().expect("delivery lock").registered = true;
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || events::sequence(&store))
            .await
            .map_err(|e| StoreError::Backend(e.to_string()))??;
        let batch = self
            .store
            .read(|tx| events::read(tx, CONSUMER, BATCH))
            .await?;
        let mut delivered = batch.cursor;
        let mut failed = false;
        for (seq, event) in &batch.events {
            let message = match event {
                Event::Machine(transition) => Some((
                    "machine.transition",
                    serde_json::json!({
                        "event": "machine.transition",
                        "delivery": seq,
                        "machine": transition.machine,
                        "cluster": transition.cluster,
                        "project": transition.project,
                        "from": transition.from,
                        "to": transition.to,
                        "actor": transition.actor,
                        "reason": transition.reason,
                        "at": transition.at,
                    }),
                )),
                Event::Budget(alert) => Some((
                    "budget.threshold",
                    serde_json::json!({
                        "event": "budget.threshold",
                        "delivery": seq,
                        "project": alert.project,
                        "currency": alert.currency,
                        "month": alert.month,
                        "threshold_percent": alert.threshold,
                        "monthly": alert.monthly,
                        "spent": alert.spent,
                        "at": alert.at,
                    }),
                )),
                Event::Registry(_) => None,
            };
            if let Some((kind, body)) = message {
                let body = serde_json::to_vec(&body).expect("serializes");
                if let Err(e) = self.post(&url, kind, *seq, body).await {
                    tracing::warn!(delivery = seq, error = %e, "scheduling: the webhook failed; retrying with backoff");
                    failed = true;
                    break;
                }
            }
            delivered = *seq;
        }
        if delivered > batch.cursor {
            let from = batch.cursor;
            self.store
                .write_with(Durability::Patient, move |tx| {
                    events::acknowledge(tx, CONSUMER, from, delivered)
                })
                .await?;
        }
        let mut delivery = self.delivery.lock().expect("delivery lock");
        if failed {
            delivery.failures += 1;
            let wait = backoff::delay_ms(delivery.failures, 500, 60_000);
            delivery.next_try = Some(Instant::now() + Duration::from_millis(wait));
        } else {
            delivery.failures = 0;
            delivery.next_try = None;
        }
        Ok(())
    }

    async fn post(&self, url: &str, kind: &str, seq: u64, body: Vec<u8>) -> Result<(), String> {
        let timestamp = now_millis().to_string();
        let mut request = self
            .http
            .post(url)
            .timeout(TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Berth-Event", kind)
            .header("X-Berth-Delivery", seq.to_string())
            .header("X-Berth-Timestamp", &timestamp);
        if let Some(secret) = &self.config.webhook_secret {
            request = request.header(
                "X-Berth-Signature",
                signature(secret.as_bytes(), &timestamp, &body),
            );
        }
        let response = request.body(body).send().await.map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {}", response.status()))
        }
    }
}
