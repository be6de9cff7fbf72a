//! Builds the plugins in `../plugins` for wasm32-wasip2, in their own target directory
//! (`target/plugins`), so the host's build never recompiles them and they never see the
//! host's flags. First-party plugins are embedded in the binary as built-ins
//! (`$OUT_DIR/builtins.rs`); the test plugins' directory is handed to the tests as
//! `BERTH_TEST_PLUGINS_DIR`.
//!
//! Each plugin is built by its own cargo invocation: the SDK picks its world by a cargo
//! feature, and one invocation would unify the features of all of them.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Shipped inside `berth` and loaded at start-up: (name, cargo package).
const BUILTINS: &[(&str, &str)] = &[
    ("star", "berth-star"),
    ("tree", "berth-tree"),
    ("dual-primary", "berth-dual-primary"),
    ("sysctl", "berth-sysctl"),
    ("aws-ec2", "berth-aws-ec2"),
    ("aliyun-ecs", "berth-aliyun-ecs"),
    ("openstack", "berth-openstack"),
    ("redfish", "berth-redfish"),
];

/// Set to 1, the plugins are built with their names (see `main`).
const SYMBOLS_VARIABLE: &str = "BERTH_PLUGIN_SYMBOLS";

/// Built for the end-to-end tests only.
const TEST_PLUGINS: &[&str] = &[
    "berth-test-hostile",
    "berth-test-inventory",
    "berth-test-sneaky",
    "berth-test-overreach",
    "berth-test-future",
    "berth-test-stall",
    "berth-test-prober",
    "berth-test-legacy",
    "berth-test-legacy-provider",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let plugins = root.join("plugins");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_root = out_dir.ancestors().nth(4).unwrap().to_path_buf();
    // With BERTH_PLUGIN_SYMBOLS=1 the plugins keep their function names (so a profile of
    // a built-in plugin names its functions); they are built apart, so switching back and
    // forth rebuilds nothing.
    println!("cargo:rerun-if-env-changed={SYMBOLS_VARIABLE}");
    let symbols = env::var(SYMBOLS_VARIABLE).is_ok_and(|v| v == "1");
    let plugin_target = target_root.join(if symbols {
        "plugins-symbols"
    } else {
        "plugins"
    });

    println!("cargo:rerun-if-changed={}", plugins.display());
    println!("cargo:rerun-if-changed={}", root.join("wit").display());

    for package in BUILTINS
        .iter()
        .map(|(_, p)| *p)
        .chain(TEST_PLUGINS.iter().copied())
    {
        build(&plugins, &plugin_target, package, symbols);
    }
    let wasm_dir = plugin_target.join("wasm32-wasip2").join("release");

    let mut builtins =
        String::from("/// First-party plugins built into this binary: (name, component bytes).\n");
    builtins.push_str("pub const BUILTINS: &[(&str, &[u8])] = &[\n");
    for (name, package) in BUILTINS {
        let file = wasm_dir.join(format!("{}.wasm", package.replace('-', "_")));
        let copy = out_dir.join(format!("{name}.wasm"));
        fs::copy(&file, &copy).unwrap_or_else(|e| panic!("copying {}: {e}", file.display()));
        builtins.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            copy.display().to_string()
        ));
    }
    builtins.push_str("];\n");
    fs::write(out_dir.join("builtins.rs"), builtins).unwrap();
    println!(
        "cargo:rustc-env=BERTH_TEST_PLUGINS_DIR={}",
        wasm_dir.display()
    );
}

fn build(plugins: &Path, target_dir: &Path, package: &str, symbols: bool) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command
        .current_dir(plugins)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--package",
            package,
            "--target-dir",
        ])
        .arg(target_dir);
    if symbols {
        command.args(["--config", "profile.release.strip=false"]);
    }
    // The host's own build settings must not leak into the guests' build.
    for (key, _) in env::vars() {
        let leaks = key.starts_with("CARGO_ENCODED_RUSTFLAGS")
            || key == "RUSTFLAGS"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key == "RUSTC_WRAPPER"
            || key == "CARGO_TARGET_DIR"
            || key == "CARGO_BUILD_TARGET"
            || key.starts_with("CARGO_PROFILE_")
            || key == "CARGO_MAKEFLAGS"
            || key == "MAKEFLAGS"
            || key == "MFLAGS"
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key == "__CARGO_FIX_PLZ";
        if leaks {
            command.env_remove(&key);
        }
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {package}: {e}"));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("wasm32-wasip2")
            && (stderr.contains("target may not be installed")
                || stderr.contains("can't find crate for `core`")
                || stderr.contains("can't find crate for `std`"))
        {
            panic!(
                "building the plugins needs the wasm32-wasip2 target, which is not installed: \
                 run `rustup target add wasm32-wasip2` (rust-toolchain.toml lists it, but \
                 rustup only installs it by itself when RUSTUP_AUTO_INSTALL is not 0)\n\n{stderr}"
            );
        }
        panic!("building plugin {package} failed:\n{stderr}");
    }
}
