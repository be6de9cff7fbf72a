//! What one call of a plugin may consume, and the store-level limiter that enforces the
//! memory and table parts (CPU is fuel, wall time a timer: see `runtime.rs`).

use serde::{Deserialize, Serialize};

/// Per-plugin limits, set by an admin. Every call starts from a fresh sandbox, so each
/// limit applies to one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Linear memory, summed over the instance's memories, in bytes.
    pub memory_bytes: u64,
    /// Elements across the instance's tables.
    pub table_elements: u64,
    /// CPU, as fuel: about one unit per WebAssembly instruction executed. Fuel, unlike a
    /// timer, counts only the plugin's own work, whatever else the machine is doing.
    pub fuel: u64,
    /// Wall time of one call, host calls (HTTP) included, in milliseconds.
    pub wall_time_ms: u64,
    /// Events one call may write to berth's log; the rest are dropped and counted.
    pub log_events: u64,
    /// Bytes (messages and fields) one call may write to berth's log.
    pub log_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 * 1024 * 1024,
            table_elements: 100_000,
            fuel: 20_000_000_000,
            wall_time_ms: 30_000,
            // Enough for a plugin that says what it does at every step of a large plan,
            // and at most 64 KiB per call however long the call runs.
            log_events: 256,
            log_bytes: 64 * 1024,
        }
    }
}

/// The largest values an admin may set; the memory ceiling is also what the instance
/// pool reserves address space for.
pub const CEILING: Limits = Limits {
    memory_bytes: 4 * 1024 * 1024 * 1024,
    table_elements: 10_000_000,
    fuel: u64::MAX,
    wall_time_ms: 60 * 60 * 1000,
    log_events: 100_000,
    log_bytes: 16 * 1024 * 1024,
};

impl Limits {
    /// Checks every value against the ceiling and against zero.
    pub fn validate(&self) -> Result<(), String> {
        let checks = [
            (
                "memory_bytes",
                self.memory_bytes,
                CEILING.memory_bytes,
                64 * 1024,
            ),
            (
                "table_elements",
                self.table_elements,
                CEILING.table_elements,
                1,
            ),
            ("fuel", self.fuel, CEILING.fuel, 1),
            ("wall_time_ms", self.wall_time_ms, CEILING.wall_time_ms, 1),
            ("log_events", self.log_events, CEILING.log_events, 0),
            ("log_bytes", self.log_bytes, CEILING.log_bytes, 0),
        ];
        for (name, value, max, min) in checks {
            if value < min || value > max {
                return Err(format!(
                    "{name} must be between {min} and {max}, not {value}"
                ));
            }
        }
        Ok(())
    }
}

/// Which limit a call ran into, recorded by the limiter so the error can name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exceeded {
    Memory { limit: u64 },
    Table { limit: u64 },
}

/// Enforces `memory_bytes` and `table_elements` for one store. A growth past the limit
/// traps (rather than failing `memory.grow`), so the guest cannot turn it into an
/// allocation-failure abort with no message: the host reports the limit by name.
pub(crate) struct Limiter {
    limits: Limits,
    memory_in_use: u64,
    table_elements_in_use: u64,
    pub(crate) exceeded: Option<Exceeded>,
}

impl Limiter {
    pub(crate) fn new(limits: Limits) -> Self {
        Limiter {
            limits,
            memory_in_use: 0,
            table_elements_in_use: 0,
            exceeded: None,
        }
    }
}

/// The trap a limiter raises; `runtime.rs` turns it into the call's error.
#[derive(Debug, thiserror::Error)]
#[error("resource limit exceeded")]
pub(crate) struct LimitTrap;

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.memory_in_use - current as u64 + desired as u64;
        if total > self.limits.memory_bytes {
            self.exceeded = Some(Exceeded::Memory {
                limit: self.limits.memory_bytes,
            });
            return Err(LimitTrap.into());
        }
        self.memory_in_use = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.table_elements_in_use - current as u64 + desired as u64;
        if total > self.limits.table_elements {
            self.exceeded = Some(Exceeded::Table {
                limit: self.limits.table_elements,
            });
            return Err(LimitTrap.into());
        }
        self.table_elements_in_use = total;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_out_of_range_values_are_named() {
        assert_eq!(Limits::default().validate(), Ok(()));
        let err = Limits {
            memory_bytes: 1,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.starts_with("memory_bytes must be between"), "{err}");
        let err = Limits {
            wall_time_ms: 0,
            ..Limits::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("wall_time_ms"), "{err}");
    }

    #[test]
    fn memory_is_summed_over_memories_and_growth_past_the_limit_traps() {
        use wasmtime::ResourceLimiter as _;
        let mut limiter = Limiter::new(Limits {
            memory_bytes: 100,
            ..Limits::default()
        });
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        assert!(limiter.memory_growing(0, 40, None).unwrap());
        assert!(limiter.memory_growing(40, 41, None).is_err());
        assert_eq!(limiter.exceeded, Some(Exceeded::Memory { limit: 100 }));
    }
}
