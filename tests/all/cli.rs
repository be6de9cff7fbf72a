//! The command line and the server's edges: configuration layering, TLS, fsck.

use std::process::Command;

use crate::support::*;

#[test]
fn config_print_layers_file_environment_and_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("berth.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:6000\"\nshutdown_grace_secs = 5\n",
    )
    .unwrap();
    let out = Command::new(berth_bin())
        .args(["config", "print", "--config"])
        .arg(&file)
        .args(["--listen", "127.0.0.1:7000"])
        .env("BERTH_REGISTRY__DELETE_ENABLED", "false")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("listen = \"127.0.0.1:7000\""), "{text}");
    assert!(text.contains("shutdown_grace_secs = 5"), "{text}");
    assert!(text.contains("delete_enabled = false"), "{text}");
}

#[test]
fn a_misspelled_key_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("berth.toml");
    std::fs::write(&file, "[registry]\ndelete_enable = false\n").unwrap();
    let out = Command::new(berth_bin())
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("delete_enable"), "{err}");
}

#[tokio::test]
async fn serves_https_with_the_given_certificate() {
    require_tool("skopeo", "skopeo");
    let tmp = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let (cert_path, key_path) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    std::fs::write(&cert_path, &cert_pem).unwrap();
    std::fs::write(&key_path, &key_pem).unwrap();
    let berth = Berth::start_with(&[
        "--tls-cert",
        cert_path.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    assert!(berth.url.starts_with("https://"));
    let port = berth.addr.rsplit(':').next().unwrap();

    install_crypto();
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    let mut auth_header = reqwest::header::HeaderMap::new();
    auth_header.insert(
        reqwest::header::AUTHORIZATION,
        format!("Basic {basic}").parse().unwrap(),
    );
    let https = reqwest::Client::builder()
        .default_headers(auth_header)
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    let r = https
        .get(format!("https://localhost:{port}/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );

    // skopeo verifies the certificate through --cert-dir.
    let certs = tmp.path().join("certs");
    std::fs::create_dir(&certs).unwrap();
    std::fs::write(certs.join("ca.crt"), &cert_pem).unwrap();
    let http = https.clone();
    let base = format!("https://localhost:{port}");
    let r = http
        .post(format!("{base}/api/v1/projects"))
        .json(&serde_json::json!({"name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    push_image(&http, &base, "team/tls", "v1", 900).await;
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--creds", &skopeo_creds(), "--cert-dir"])
        .arg(&certs)
        .arg(format!("docker://localhost:{port}/team/tls:v1"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn fsck_finds_a_corrupt_blob_and_repair_quarantines_it() {
    let mut berth = Berth::start();
    let http = client();
    let layer = bytes(910, 50_000);
    let config = b"{\"os\":\"linux\"}".to_vec();
    push_blob(&http, &berth.url, "team/fsck", &config).await;
    let layer_digest = push_blob(&http, &berth.url, "team/fsck", &layer).await;
    put_manifest(
        &http,
        &berth.url,
        "team/fsck",
        "v1",
        "application/vnd.oci.image.manifest.v1+json",
        &image_manifest(&config, &[&layer]),
    )
    .await;

    // While the server runs, fsck refuses politely rather than racing it.
    let (ok, text) = fsck(&berth.data_dir, false);
    assert!(!ok && text.contains("stop the berth server"), "{text}");

    berth.kill9();
    let (ok, text) = berth.fsck(false);
    assert!(ok, "{text}");

    // Flip one byte of the layer on disk.
    let hex = &layer_digest[7..];
    let path = berth
        .data_dir
        .join("blobs/sha256")
        .join(&hex[..2])
        .join(hex);
    let mut data = std::fs::read(&path).unwrap();
    data[100] ^= 0xff;
    std::fs::write(&path, &data).unwrap();

    let (ok, text) = berth.fsck(false);
    assert!(!ok, "{text}");
    assert!(
        text.contains("corrupt-blob") && text.contains(&layer_digest),
        "{text}"
    );

    let (_, text) = berth.fsck(true);
    assert!(text.contains("repaired: moved to"), "{text}");
    assert!(
        std::fs::read_dir(berth.data_dir.join("quarantine"))
            .unwrap()
            .count()
            == 1
    );
    // The manifest still names the lost layer: reported, left for a person to decide.
    let (ok, text) = berth.fsck(false);
    assert!(
        !ok && text.contains("dangling-reference") && !text.contains("corrupt-blob"),
        "{text}"
    );

    berth.restart();
    let http = client(); // connections to the old process are dead
    let r = http
        .get(berth.v2(&format!("team/fsck/blobs/{layer_digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404, "a corrupt blob is never served");
}

/// Runs `berth <args>` with a private config dir; returns (success, stdout, stderr).
pub(crate) fn berth_cli(
    config_dir: &std::path::Path,
    envs: &[(&str, &str)],
    stdin: Option<&str>,
    args: &[&str],
) -> (bool, String, String) {
    use std::io::Write;
    let mut cmd = Command::new(berth_bin());
    cmd.args(args)
        .env("BERTH_CONFIG_DIR", config_dir)
        .env_remove("BERTH_SERVER")
        .env_remove("BERTH_USERNAME")
        .env_remove("BERTH_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_drive_the_admin_api() {
    let berth = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let run = |args: &[&str]| berth_cli(dir, &[], None, args);

    // Without a login, a clear refusal.
    let (ok, _, err) = run(&["project", "list"]);
    assert!(!ok && err.contains("berth login"), "{err}");

    let (ok, out, err) = berth_cli(
        dir,
        &[],
        Some(&format!("{ADMIN_PASSWORD}\n")),
        &["login", &berth.url, "-u", "admin", "--password-stdin"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("logged in"));
    let creds = dir.join("credentials.json");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let (ok, _, err) = berth_cli(
        dir,
        &[],
        Some("wrong password here\n"),
        &["login", &berth.url, "-u", "admin", "--password-stdin"],
    );
    assert!(!ok && err.contains("401"), "{err}");

    let (ok, out, err) = run(&["project", "create", "web", "--public"]);
    assert!(ok, "{err}");
    assert!(out.contains("web") && out.contains("true"), "{out}");
    let (ok, _, err) = berth_cli(
        dir,
        &[],
        Some("alice password 123\n"),
        &["user", "create", "alice", "--password-stdin"],
    );
    assert!(ok, "{err}");
    let (ok, out, _) = run(&["member", "add", "web", "alice", "developer"]);
    assert!(ok && out.contains("developer"), "{out}");
    let (ok, out, _) = run(&["member", "list", "web", "--output", "json"]);
    assert!(ok);
    let members: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        members,
        serde_json::json!([{"username": "alice", "role": "developer"}])
    );

    let (ok, out, err) = run(&[
        "robot",
        "create",
        "ci",
        "--permission",
        "web=pull,push",
        "--output",
        "json",
    ]);
    assert!(ok, "{err}");
    let robot: serde_json::Value = serde_json::from_str(&out).unwrap();
    let secret = robot["secret"].as_str().unwrap().to_owned();

    // Scripts use the environment instead of a login; the robot can push to web.
    let env = [
        ("BERTH_SERVER", berth.url.as_str()),
        ("BERTH_USERNAME", "robot$ci"),
        ("BERTH_PASSWORD", secret.as_str()),
    ];
    let (ok, out, err) = berth_cli(
        tmp.path().join("elsewhere").as_path(),
        &env,
        None,
        &["project", "list"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("web"));
    push_image(
        &client_as("robot$ci", &secret),
        &berth.url,
        "web/site",
        "v1",
        5,
    )
    .await;

    let (ok, out, _) = run(&["repo", "tags", "web/site"]);
    assert!(ok && out.contains("v1") && out.contains("sha256:"), "{out}");
    let (ok, _, err) = run(&["project", "delete", "web"]);
    assert!(!ok && err.contains("web/site"), "{err}");
    let (ok, _, _) = run(&["repo", "delete-tag", "web/site", "v1"]);
    assert!(ok);
    let (ok, out, _) = run(&["audit", "--actor", "robot$ci"]);
    assert!(
        ok && out.contains("push") && out.contains("web/site"),
        "{out}"
    );
    let (ok, _, _) = run(&["logout"]);
    assert!(ok);
    let (ok, _, _) = run(&["project", "list"]);
    assert!(!ok);
}
