//! Expiry of abandoned upload sessions (their staging data, record and in-memory state),
//! and of staging files no session owns that nothing has written for an hour.
//!
//! A session still in use is never purged: the sweep takes the session's lock without
//! waiting and skips it if a request holds it, and re-checks the last activity under the
//! lock.

use std::sync::Arc;
use std::time::Duration;

use super::Registry;
use super::handlers::uploads::forget;
use crate::storage::store::now_millis;

/// Removes every session idle for longer than `ttl`; returns how many.
pub async fn purge_expired(registry: &Arc<Registry>, ttl: Duration) -> anyhow::Result<usize> {
    let cutoff = now_millis().saturating_sub(ttl.as_millis() as u64);
    let records = registry.uploads().await?;
    let mut purged = 0;
    for (id, record) in records {
        if record.updated_at > cutoff {
            continue;
        }
        let Some((_, mut state)) = registry.sessions.lock(registry, &id, false).await? else {
            continue;
        };
        if state.record.updated_at > cutoff {
            continue;
        }
        forget(registry, &id, &mut state)
            .await
            .map_err(|e| anyhow::anyhow!("purging upload {id}: {e:?}"))?;
        purged += 1;
    }
    Ok(purged)
}

/// Sweeps every `interval` for sessions idle longer than `ttl`, for as long as the
/// process runs.
pub async fn run(registry: Arc<Registry>, ttl: Duration, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match purge_expired(&registry, ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                sessions = n,
                ttl_secs = ttl.as_secs(),
                "removed expired upload sessions"
            ),
            Err(e) => tracing::warn!(error = %e, "sweeping expired upload sessions failed"),
        }
        let swept = registry.clone();
        let orphans = tokio::task::spawn_blocking(move || {
            super::fsck::remove_unacknowledged_staging(
                &swept.metadata,
                swept.store.as_ref(),
                super::fsck::ABANDONED_STAGING_AFTER,
            )
        })
        .await;
        match orphans {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(
                files = n,
                "removed staging files of uploads abandoned before any acknowledgement"
            ),
            Ok(Err(e)) => tracing::warn!(error = %e, "sweeping abandoned staging files failed"),
            Err(e) => tracing::warn!(error = %e, "sweeping abandoned staging files failed"),
        }
    }
}
