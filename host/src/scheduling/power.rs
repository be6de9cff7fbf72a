//! Power control of physical pool hosts, where a host names one (`PoolHostRecord::power`):
//! a power-control plugin (the built-in `redfish`, or any `cloud-provider` plugin that
//! answers `get`, `start` and `stop`) reaches the host's BMC with the pool's credentials.
//! An allocated host is powered on, and waited for, before it is probed; a released host
//! is powered off.

use std::time::Duration;

use berth_plugin_runtime::provider::{MachineState as PowerState, Power};

use super::{ClusterRecord, PoolHostRecord, Scheduling};

/// Pause between two reads of a host's power state.
const POLL_PAUSE: Duration = Duration::from_secs(1);

impl Scheduling {
    /// Switches `host` of pool `pool` on (`Power::Start`) or off (`Power::Stop`) and waits
    /// until its BMC says it is, at most `scheduling.initialize_timeout_secs`. Nothing to
    /// do for a host without power control.
    pub(super) async fn switch_host(
        &self,
        pool: &ClusterRecord,
        host: &PoolHostRecord,
        power: Power,
    ) -> Result<(), String> {
        let Some(control) = &host.power else {
            return Ok(());
        };
        let bmc = self
            .provider_with(&control.plugin, pool, Some(&control.endpoint))
            .await?;
        let describe = |e: &dyn std::fmt::Display| {
            format!(
                "power control of host {} ({}): {e}",
                host.name, control.plugin
            )
        };
        bmc.switch(power, "", &control.system)
            .await
            .map_err(|e| describe(&e))?;
        let wanted = if power == Power::Start {
            PowerState::Running
        } else {
            PowerState::Stopped
        };
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.config.initialize_timeout_secs);
        loop {
            let state = bmc
                .get("", &control.system)
                .await
                .map_err(|e| describe(&e))?
                .state;
            if state == wanted {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(describe(&format!(
                    "still {state:?} {} s after asking for {wanted:?}",
                    self.config.initialize_timeout_secs
                )));
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }
}
