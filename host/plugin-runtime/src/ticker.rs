//! The engine's epoch clock, which makes a running guest yield every few milliseconds so
//! that its call's wall-time limit is checked. Fuel yields alone are not enough: a guest
//! that spends its time in host calls burns little fuel, and could outlive its limit
//! between two fuel yields. The clock runs only while a call does, so an idle berth
//! takes no wake-ups from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use wasmtime::Engine;

/// How often a running guest yields to its wall timer.
pub(crate) const TICK: Duration = Duration::from_millis(10);

/// The thread that advances the epoch.
pub(crate) struct EpochTicker {
    state: Arc<State>,
    thread: std::thread::Thread,
}

struct State {
    /// Calls running now; the thread sleeps while there are none.
    active: AtomicUsize,
    stop: AtomicBool,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> std::io::Result<EpochTicker> {
        let state = Arc::new(State {
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn({
                let state = state.clone();
                move || {
                    while !state.stop.load(Ordering::Acquire) {
                        if state.active.load(Ordering::Acquire) == 0 {
                            // Woken by the next call (an unpark before this park is kept).
                            std::thread::park();
                            continue;
                        }
                        std::thread::sleep(TICK);
                        engine.increment_epoch();
                    }
                }
            })?
            .thread()
            .clone();
        Ok(EpochTicker { state, thread })
    }

    /// Keeps the clock running for as long as the returned guard lives.
    pub(crate) fn running(&self) -> Running {
        if self.state.active.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Running {
            state: self.state.clone(),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

/// A call in progress, as far as the clock is concerned.
pub(crate) struct Running {
    state: Arc<State>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.state.active.fetch_sub(1, Ordering::AcqRel);
    }
}
