//! Power control of physical pool hosts, where a host names one (`PoolHostRecord::power`):
//! a power-control plugin (the built-in `redfish`, or any `cloud-provider` plugin that
//! answers `get`, `start` and `stop`) reaches the host's BMC with the pool's credentials,
//! or, for `ipmi`, berth itself speaks IPMI 2.0 to it (`ipmi.rs`: UDP, which plugins
//! cannot reach).
//! An allocated host is powered on, and waited for, before it is probed; a released host
//! is powered off.

use std::time::Duration;

use futures::future::BoxFuture;

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
        let on = power == Power::Start;
        let describe = |e: &str| {
            format!(
                "power control of host {} ({}): {e}",
                host.name, control.plugin
            )
        };
        if control.plugin == ipmi::IPMI {
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
            ipmi::switch(&control.endpoint, login(), on)
                .await
                .map_err(|e| describe(&e))?;
            return self
                .await_power(on, || {
                    Box::pin(
                        async move { ipmi::powered_on(&control.endpoint, login()).await.map(Some) },
                    )
                })
                .await
                .map_err(|e| describe(&e));
        }
        let bmc = self
            .provider_with(
                &control.plugin,
                pool,
                std::slice::from_ref(&control.endpoint),
            )
            .await?;
        bmc.switch(power, "", &control.system)
            .await
            .map_err(|e| describe(&e.to_string()))?;
        let bmc = &bmc;
        self.await_power(on, || {
            Box::pin(async move {
                let machine = bmc
                    .get("", &control.system)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(match machine.state {
                    PowerState::Running => Some(true),
                    PowerState::Stopped => Some(false),
                    // Switching still.
                    _ => None,
                })
            })
        })
        .await
        .map_err(|e| describe(&e))
    }

    /// Reads `powered_on` (`None` while the BMC switches) until it says `on`, at most
    /// `scheduling.initialize_timeout_secs`.
    async fn await_power<'a>(
        &self,
        on: bool,
        mut powered_on: impl FnMut() -> BoxFuture<'a, Result<Option<bool>, String>>,
    ) -> Result<(), String> {
        let word = |on: bool| if on { "on" } else { "off" };
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.config.initialize_timeout_secs);
        loop {
            let now = powered_on().await?;
            if now == Some(on) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "still {} {} s after asking for {}",
                    now.map_or("switching", word),
                    self.config.initialize_timeout_secs,
                    word(on)
                ));
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
    }
}
