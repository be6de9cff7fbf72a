//! Background loops, supervised: each runs under a name, is started again if it ends or
//! panics while berth runs (after a pause that doubles up to a minute, so a loop that
//! fails at once does not spin), and is stopped at shutdown.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The longest pause before a failed loop starts again.
const MAX_PAUSE: Duration = Duration::from_secs(60);

/// The supervisor of one process's background loops.
#[derive(Debug, Default)]
pub struct Supervisor {
    stop: CancellationToken,
    loops: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
}

impl Supervisor {
    /// A supervisor with no loops yet.
    pub fn new() -> Supervisor {
        Supervisor::default()
    }

    /// Cancelled when shutdown begins, for work that should stop with the loops.
    pub fn stopping(&self) -> CancellationToken {
        self.stop.child_token()
    }

    /// Runs the loop `make` builds, under `name`, until shutdown: if it ends or panics, it
    /// is logged and built again. Must run inside a Tokio runtime.
    pub fn spawn<F, Fut>(&self, name: &'static str, mut make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        let handle = tokio::spawn(async move {
            let mut pause = Duration::from_secs(1);
            loop {
                let mut run = tokio::spawn(make());
                tokio::select! {
                    () = stop.cancelled() => {
                        run.abort();
                        let _ = run.await;
                        return;
                    }
                    outcome = &mut run => match outcome {
                        Ok(()) => tracing::error!(
                            background_loop = name,
                            restart_in_secs = pause.as_secs(),
                            "a background loop ended; starting it again"
                        ),
                        Err(e) if e.is_panic() => tracing::error!(
                            background_loop = name,
                            restart_in_secs = pause.as_secs(),
                            "a background loop panicked; starting it again"
                        ),
                        Err(_) => return,
                    },
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
        });
        self.loops.lock().expect("loops lock").push((name, handle));
    }

    /// Stops every loop and waits for each to end.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let loops: Vec<(&'static str, JoinHandle<()>)> =
            std::mem::take(&mut *self.loops.lock().expect("loops lock"));
        for (name, handle) in loops {
            if let Err(e) = handle.await {
                tracing::warn!(background_loop = name, error = %e, "a background loop did not stop cleanly");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_panics_or_ends_is_started_again_until_shutdown() {
        let supervisor = Supervisor::new();
        let starts = Arc::new(AtomicU32::new(0));
        let counted = starts.clone();
        supervisor.spawn("flaky", move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                match n {
                    0 => panic!("the first run panics"),
                    1 => {}
                    _ => std::future::pending::<()>().await,
                }
            }
        });
        // Runs, panics, waits 1 s, runs and ends, waits 2 s, runs and stays.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        supervisor.shutdown().await;
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn shutdown_stops_a_loop_that_never_ends() {
        let supervisor = Supervisor::new();
        let stopped = Arc::new(AtomicU32::new(0));
        struct OnDrop(Arc<AtomicU32>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let flag = stopped.clone();
        supervisor.spawn("forever", move || {
            let guard = OnDrop(flag.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await
            }
        });
        tokio::task::yield_now().await;
        tokio::time::timeout(Duration::from_secs(5), supervisor.shutdown())
            .await
            .expect("shutdown returns");
        assert_eq!(stopped.load(Ordering::SeqCst), 1);
    }
}
