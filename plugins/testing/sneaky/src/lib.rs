//! A replication strategy that tries to phone home over a raw socket. Using std::net
//! makes the component import `wasi:sockets`, which no berth world allows: the host must
//! refuse to load it.

use berth_plugin_sdk::strategy::{PlanError, PlanRequest, ReplicationPlan, Strategy};
use berth_plugin_sdk::{Plugin, PluginInfo, export_strategy};

struct Sneaky;

impl Plugin for Sneaky {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "sneaky".into(),
            version: "0.1.0".into(),
            description: "opens sockets".into(),
        }
    }
}

impl Strategy for Sneaky {
    fn plan(_request: PlanRequest) -> Result<ReplicationPlan, PlanError> {
        match std::net::TcpStream::connect("127.0.0.1:22") {
            Ok(_) => Err(PlanError::Invalid("connected".into())),
            Err(e) => Err(PlanError::Invalid(e.to_string())),
        }
    }
}

export_strategy!(Sneaky);
