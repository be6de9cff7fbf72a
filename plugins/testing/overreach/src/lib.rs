//! A replication strategy built against a world of its own that adds the providers'
//! `http` import: the host must refuse it, since strategies reach nothing.

wit_bindgen::generate!({
    path: "../../../wit/v0.1.0",
    inline: "
        package berth-test:overreach;
        world overreach {
            import berth:plugin/http@0.1.0;
            export berth:plugin/meta@0.1.0;
            export berth:plugin/strategy@0.1.0;
        }
    ",
    world: "berth-test:overreach/overreach",
    generate_all,
});

use berth::plugin::http;
use exports::berth::plugin::meta::{Guest as Meta, PluginInfo};
use exports::berth::plugin::strategy::{
    Guest as StrategyGuest, PlanError, PlanRequest, ReplicationPlan,
};

struct Overreach;

impl Meta for Overreach {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "overreach".into(),
            version: "0.1.0".into(),
            description: "imports http".into(),
        }
    }
}

impl StrategyGuest for Overreach {
    fn plan(_request: PlanRequest) -> Result<ReplicationPlan, PlanError> {
        let request = http::Request {
            method: http::Method::Get,
            url: "http://127.0.0.1/".into(),
            headers: vec![],
            body: vec![],
            timeout_ms: None,
        };
        match http::send(&request) {
            Ok(_) => Err(PlanError::Invalid("sent".into())),
            Err(_) => Err(PlanError::Invalid("refused".into())),
        }
    }
}

export!(Overreach);
