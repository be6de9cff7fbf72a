//! `berth cluster|machine|quota` against a real berth.

use serde_json::{Value, json};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_machine_and_quota_commands_drive_the_api() {
    let berth = Berth::start();
    let answering = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = answering.local_addr().unwrap().port();
    std::thread::spawn(move || for _ in answering.incoming() {});
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = |args: &[&str]| {
        let (ok, out, err) = crate::cli::berth_cli(dir, &[], None, args);
        assert!(ok, "berth {}: {err}", args.join(" "));
        out
    };
    let (ok, _, err) = crate::cli::berth_cli(
        dir,
        &[],
        Some(&format!("{ADMIN_PASSWORD}\n")),
        &["login", &berth.url, "-u", "admin", "--password-stdin"],
    );
    assert!(ok, "{err}");
    run(&["project", "create", "infra"]);
    let credentials = dir.join("credentials-of-rack.json");
    std::fs::write(&credentials, r#"{"ipmi_password": "hunter2"}"#).unwrap();
    let out = run(&[
        "cluster",
        "add",
        "rack",
        "--provider",
        "static-pool",
        "--project",
        "infra",
        "--label",
        "dc=one",
        "--credentials-file",
        credentials.to_str().unwrap(),
    ]);
    assert!(out.contains("rack") && out.contains("static-pool"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    let hosts = dir.join("hosts.json");
    std::fs::write(
        &hosts,
        format!(r#"[{{"name": "h1", "address": "127.0.0.1", "ssh_port": {port}, "cpus": 4, "memory_mib": 8192}}]"#),
    )
    .unwrap();
    let out = run(&[
        "cluster",
        "hosts",
        "rack",
        "--file",
        hosts.to_str().unwrap(),
    ]);
    assert!(out.contains("h1"), "{out}");
    let out = run(&[
        "quota",
        "set",
        "infra",
        "--machines",
        "2",
        "--output",
        "json",
    ]);
    let quota: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(quota["quota"], json!({"machines": 2}));

    let out = run(&[
        "machine",
        "create",
        "--project",
        "infra",
        "--cluster",
        "rack",
        "--cpus",
        "2",
        "--memory-mib",
        "4096",
        "--client-token",
        "cli-1",
        "--output",
        "json",
    ]);
    let created: Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let shown: Value =
            serde_json::from_str(&run(&["machine", "show", &id, "--output", "json"])).unwrap();
        if shown["state"] == "online" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{shown:#}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let out = run(&["machine", "list", "--project", "infra"]);
    assert!(out.contains(&id) && out.contains("online"), "{out}");
    let out = run(&[
        "machine",
        "offline",
        &id,
        "--force",
        "--reason",
        "maintenance",
    ]);
    assert!(out.contains("offline"), "{out}");
    run(&["machine", "retire", &id]);
    let out = run(&["machine", "history", &id]);
    for state in ["requested", "online", "offline", "retiring"] {
        assert!(out.contains(state), "{state}: {out}");
    }
    assert!(out.contains("maintenance"), "{out}");
    let out = run(&["quota", "show", "infra"]);
    assert!(out.contains("infra"), "{out}");
    run(&["cluster", "update", "rack", "--disable"]);
    let out = run(&["cluster", "show", "rack", "--output", "json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["enabled"],
        false
    );
    let (ok, _, err) = crate::cli::berth_cli(dir, &[], None, &["cluster", "remove", "nope"]);
    assert!(!ok && err.contains("404"), "{err}");
}
