//! Plugins as OCI artifacts, and the examples walkthrough from `cargo new`.

use super::*;

#[test]
fn the_cli_pushes_a_plugin_to_the_registry_loads_it_by_reference_and_it_survives_a_restart() {
    let mut berth = Berth::start();
    let file = test_plugin("berth-test-hostile");
    let reference = format!("{}/alpha/plugins/hostile:1.0", berth.addr);
    let (ok, pinned, err) = cli(
        &berth,
        &["plugin", "push", file.to_str().unwrap(), &reference],
    );
    assert!(ok, "{err}");
    let pinned = pinned.trim().to_string();
    assert!(
        pinned.starts_with(&format!("{}/alpha/plugins/hostile@sha256:", berth.addr)),
        "{pinned}"
    );

    // The artifact is a CNCF Wasm artifact in berth's own registry.
    let manifest: Value = tokio::runtime::Runtime::new().unwrap().block_on(async {
        client()
            .get(berth.v2("alpha/plugins/hostile/manifests/1.0"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(manifest["layers"][0]["mediaType"], "application/wasm");

    let (ok, out, err) = cli(&berth, &["plugin", "load", &reference]);
    assert!(ok, "{err}");
    assert!(
        out.contains("hostile") && err.contains(&pinned),
        "{out}\n{err}"
    );
    let (ok, out, _) = cli(
        &berth,
        &["plugin", "inspect", "hostile", "--output", "json"],
    );
    assert!(ok);
    let detail: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        detail["source"],
        json!({"type": "oci", "reference": pinned})
    );
    assert!(
        detail["imports"]
            .as_array()
            .unwrap()
            .contains(&json!("berth:plugin/host@0.3.0"))
    );
    assert!(
        detail["exports"]
            .as_array()
            .unwrap()
            .contains(&json!("berth:plugin/strategy@0.3.0"))
    );

    // The contract the server serves.
    let (ok, out, _) = cli(&berth, &["plugin", "worlds"]);
    assert!(
        ok && out.contains("berth:plugin@0.1.0")
            && out.contains("berth:plugin@0.2.0")
            && out.contains("berth:plugin@0.3.0")
            && out.contains("replication-strategy")
            && out.contains("host,http,secrets"),
        "{out}"
    );

    // Settings through the CLI.
    assert!(
        cli(
            &berth,
            &["plugin", "limits", "hostile", "--fuel", "123456789"]
        )
        .0
    );
    assert!(cli(&berth, &["plugin", "config", "hostile", "behaviour=ok"]).0);
    let (ok, out, err) = cli(
        &berth,
        &[
            "plugin",
            "call",
            "hostile",
            "plan",
            "--input",
            &plan_request().to_string(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("\"ok\""), "{out}");
    // Loading by a digest that does not match is refused before anything is sent.
    let wrong = format!(
        "{}/alpha/plugins/hostile@sha256:{}",
        berth.addr,
        "0".repeat(64)
    );
    let (ok, _, err) = cli(&berth, &["plugin", "load", &wrong]);
    assert!(!ok && err.contains("cannot pull"), "{err}");

    // After a restart the plugin is there, with its settings, from the compiled cache.
    berth.restart();
    let (ok, out, _) = cli(
        &berth,
        &["plugin", "inspect", "hostile", "--output", "json"],
    );
    assert!(ok, "{out}");
    let detail: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(detail["limits"]["fuel"], 123456789);
    assert_eq!(detail["config"]["behaviour"], "ok");
    assert_eq!(detail["state"], "ready");
    let compiled = std::fs::read_dir(berth.data_dir.join("plugins/compiled"))
        .unwrap()
        .count();
    assert!(compiled >= 3, "compiled artifacts cached: {compiled}");
    let (ok, _, err) = cli(
        &berth,
        &[
            "plugin",
            "call",
            "hostile",
            "plan",
            "--input",
            &plan_request().to_string(),
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&berth, &["plugin", "remove", "hostile"]);
    assert!(ok, "{err}");
    let (ok, _, err) = cli(&berth, &["plugin", "remove", "star"]);
    assert!(!ok && err.contains("built in"), "{err}");
}

#[test]
fn the_examples_walkthrough_builds_a_plugin_from_cargo_new_and_loads_it() {
    let berth = Berth::start();
    let work = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/plugin-walkthrough/walkthrough.sh"
    );
    let out = std::process::Command::new("sh")
        .arg(script)
        .env("WORK", work.path())
        .env("BERTH", berth_bin())
        .env("BERTH_SERVER", &berth.url)
        .env("BERTH_USERNAME", "admin")
        .env("BERTH_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_CONFIG_DIR", work.path().join("cli-config"))
        // The host's own build settings must not leak into the guest's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("nearest-first") && stdout.contains("ready"),
        "{stdout}"
    );
    let plan: Value = serde_json::from_str(&stdout[stdout.find('{').unwrap()..]).unwrap();
    let waves = plan["ok"]["waves"].as_array().unwrap();
    assert_eq!(waves.len(), 2, "{plan}");
    assert_eq!(
        waves[0]["transfers"],
        json!([{"artifact": "sha256:0c0ffee", "source": "main-1", "target": "east-1"}])
    );
    assert_eq!(waves[1]["transfers"].as_array().unwrap().len(), 2);
    let size = std::fs::metadata(
        work.path()
            .join("nearest-first/target/wasm32-wasip2/release/nearest_first.wasm"),
    )
    .unwrap()
    .len();
    assert!(
        size < 200_000,
        "the release profile keeps plugins small: {size} bytes"
    );
}
