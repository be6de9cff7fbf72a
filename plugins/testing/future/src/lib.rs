//! A replication strategy built for `berth:plugin@9.0.0`, which no host serves: loading
//! it must fail with a message naming both that version and the ones served.

wit_bindgen::generate!({
    inline: "
        package berth:plugin@9.0.0;
        interface meta {
            record plugin-info { name: string, version: string, description: string }
            info: func() -> plugin-info;
        }
        interface strategy {
            plan: func(request: string) -> result<string, string>;
        }
        world replication-strategy {
            export meta;
            export strategy;
        }
    ",
    world: "replication-strategy",
});

use exports::berth::plugin::meta::{Guest as Meta, PluginInfo};
use exports::berth::plugin::strategy::Guest as StrategyGuest;

struct Future;

impl Meta for Future {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "future".into(),
            version: "9.0.0".into(),
            description: "from the future".into(),
        }
    }
}

impl StrategyGuest for Future {
    fn plan(request: String) -> Result<String, String> {
        Ok(request)
    }
}

export!(Future);
