//! Power control of physical pool hosts, where a host names one (`PoolHostRecord::power`):
//! a power-control plugin (the built-in `redfish`, or any `cloud-provider` plugin that
//! answers `get`, `start` and `stop`) reaches the host's BMC with the pool's credentials,
//! or, for `ipmi`, berth itself speaks IPMI 2.0 to it (`ipmi.rs`: UDP, which plugins
//! cannot reach).
//! An allocated host is powered on, and waited for, before it is probed; a released host
//! is powered off.

use std::time::Duration;

use berth_plugin_runtime::provider::{MachineState as PowerState, Power};

use super::clusters::open_credentials;
use super::{ClusterRecord, PoolHostRecord, Scheduling, ipmi};

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
        if control.plugin == ipmi::IPMI {
            return self.switch_over_ipmi(pool, host, power).await;
        }
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

    /// [`Scheduling::switch_host`] for a host whose BMC speaks IPMI.
    async fn switch_over_ipmi(
        &self,
        pool: &ClusterRecord,
        host: &PoolHostRecord,
        power: Power,
    ) -> Result<(), String> {
        let Some(control) = &host.power else {
            return Ok(());
        };
        let describe = |e: &str| format!("power control of host {} (ipmi): {e}", host.name);
        let credentials = open_credentials(&self.sealer, pool)?;
        let (Some(username), Some(password)) = (
            credentials.get("bmc-username"),
            credentials.get("bmc-password"),
        ) else {
            return Err(describe(&format!(
                "pool {} has no bmc-username and bmc-password credentials",
                pool.name
            )));
        };
        let login = || ipmi::Login { username, password };
        let on = power == Power::Start;
        ipmi::switch(&control.endpoint, login(), on)
            .await
            .map_err(|e| describe(&e))?;
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.config.initialize_timeout_secs);
        loop {
            if ipmi::powered_on(&control.endpoint, login())
                .await
                .map_err(|e| describe(&e))?
                == on
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(describe(&format!(
                    "still powered {} {} s after asking for {}",
                    if on { "off" } else { "on" },
                    self.config.initialize_timeout_secs,
                    if on { "on" } else { "off" },
                )));
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }
}
