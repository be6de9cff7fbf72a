//! The `berth replication` commands end to end.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replication_commands_drive_endpoints_policies_runs_and_jobs() {
    let primary = Berth::start();
    let replica = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let env = [
        ("BERTH_SERVER", primary.url.as_str()),
        ("BERTH_USERNAME", "admin"),
        ("BERTH_PASSWORD", ADMIN_PASSWORD),
    ];
    let run = |stdin: Option<&str>, args: &[&str]| {
        let mut all = vec!["replication"];
        all.extend_from_slice(args);
        crate::cli::berth_cli(tmp.path(), &env, stdin, &all)
    };
    let (ok, out, err) = run(
        Some(&format!("{ADMIN_PASSWORD}\n")),
        &[
            "endpoint",
            "create",
            "dc2",
            "--kind",
            "berth",
            "--url",
            &replica.url,
            "--username",
            "admin",
            "--password-stdin",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("dc2") && out.contains("true"), "{out}");
    assert!(
        !out.contains(ADMIN_PASSWORD),
        "the password is never printed: {out}"
    );
    let (ok, out, err) = run(None, &["endpoint", "check", "dc2"]);
    assert!(ok && out.contains("true"), "{out}{err}");
    let topology = tmp.path().join("topology.toml");
    std::fs::write(
        &topology,
        r#"
datacenters = [{ id = "main" }, { id = "east", parent = "main" }]
instances = [
  { id = "primary", datacenter = "main" },
  { id = "dc2", datacenter = "east", endpoint = "dc2" },
]
"#,
    )
    .unwrap();
    let (ok, out, err) = run(
        None,
        &[
            "policy",
            "create",
            "east",
            "--endpoint",
            "dc2",
            "--repository",
            "team/**",
            "--tag",
            "v*",
            "--strategy",
            "tree",
            "--topology",
            topology.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("east") && out.contains("tree"), "{out}");
    let (ok, _, err) = run(None, &["policy", "create", "bad", "--endpoint", "nowhere"]);
    assert!(
        !ok && err.contains("nowhere") && err.contains("400"),
        "{err}"
    );

    let http = client();
    let (digest, _) = push_image(&http, &primary.url, "team/app", "v1", 5).await;
    let (ok, out, err) = run(None, &["run", "east", "--wait"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(
        resolve(&http, &replica.url, "team/app", "v1")
            .await
            .as_deref(),
        Some(digest.as_str())
    );
    let (ok, out, err) = run(None, &["jobs", "--policy", "east"]);
    assert!(
        ok && out.contains("succeeded") && out.contains("1/1 done"),
        "{out}{err}"
    );
    // Job ids are the shared runner's, over every kind of job: ask for this one's.
    let (ok, out, err) = run(None, &["jobs", "--policy", "east", "--output", "json"]);
    assert!(ok, "{out}{err}");
    let listed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let job = listed[0]["id"].to_string();
    let (ok, out, err) = run(None, &["job", "show", &job]);
    assert!(
        ok && out.contains("copy team/app:v1 → team/app") && out.contains("dc2"),
        "{out}{err}"
    );
    let (ok, _, err) = run(None, &["job", "retry", &job]);
    assert!(!ok && err.contains("409"), "{err}");
    let (ok, _, err) = run(None, &["job", "cancel", &job]);
    assert!(!ok && err.contains("already succeeded"), "{err}");
    let (ok, out, err) = run(None, &["--output", "json", "status"]);
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        status["policies"][0]["last_status"], "succeeded",
        "{status}"
    );
    let (ok, out, _) = run(None, &["policy", "disable", "east"]);
    assert!(ok && out.contains("false"), "{out}");
    let (ok, _, err) = run(None, &["run", "east"]);
    assert!(!ok && err.contains("disabled"), "{err}");
    let (ok, _, err) = run(None, &["endpoint", "delete", "dc2"]);
    assert!(!ok && err.contains("used by policies east"), "{err}");
    let (ok, _, err) = run(None, &["policy", "delete", "east"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(None, &["endpoint", "delete", "dc2"]);
    assert!(ok, "{err}");
    let (ok, out, _) = run(None, &["endpoint", "list"]);
    assert!(ok && !out.contains("dc2"), "{out}");
}
