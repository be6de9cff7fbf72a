//! First-party plugins compiled into the binary by `host/build.rs` from `plugins/`.

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
