#!/bin/sh
# The walk-through in README.md as one script: from `cargo new` to `berth plugin load`.
# Needs a running berth and BERTH_SERVER/BERTH_USERNAME/BERTH_PASSWORD (or `berth login`).
# tests/all/plugins.rs runs exactly this.
set -eu
EXAMPLE=$(cd "$(dirname "$0")" && pwd)
SDK="$EXAMPLE/../../plugins/sdk"
WORK=${WORK:-$(mktemp -d)}
BERTH=${BERTH:-berth}

# 1. A library crate, built as a WebAssembly component.
cd "$WORK"
cargo new --lib --vcs none --quiet nearest-first
cd nearest-first
cargo add --quiet --path "$SDK" --features replication-strategy
cat >> Cargo.toml <<'TOML'

[lib]
crate-type = ["cdylib"]

# Small plugins: about 60 KB instead of 2 MB.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"
TOML

# 2. The plugin: implement Plugin and Strategy, then export_strategy!.
cp "$EXAMPLE/src/lib.rs" src/lib.rs

# 3. Build for wasm32-wasip2.
cargo build --quiet --release --target wasm32-wasip2

# 4. Load it into berth and ask it for a plan.
"$BERTH" plugin load target/wasm32-wasip2/release/nearest_first.wasm
"$BERTH" plugin call nearest-first plan --input @"$EXAMPLE/request.json"
