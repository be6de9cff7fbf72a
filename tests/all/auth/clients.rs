//! skopeo and podman logging in and copying as users and robots.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_logs_in_and_copies_as_a_user_and_as_a_robot() {
    require_tool("skopeo", "skopeo");
    let w = world().await;
    let tmp = tempfile::tempdir().unwrap();
    let auth_file = tmp.path().join("auth.json");
    let run = |args: Vec<String>| {
        let out = std::process::Command::new("skopeo")
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let host = w.berth.addr.clone();
    let af = auth_file.display().to_string();
    for (user, password) in [
        ("dev".to_string(), PASSWORD.to_string()),
        ("robot$ci-push".to_string(), w.robots["ci-push"].clone()),
    ] {
        let (ok, err) = run(vec![
            "login".into(),
            "--tls-verify=false".into(),
            "--authfile".into(),
            af.clone(),
            "-u".into(),
            user.clone(),
            "-p".into(),
            password.clone(),
            host.clone(),
        ]);
        assert!(ok, "skopeo login as {user}: {err}");
        let dest = format!(
            "docker://{host}/priv/copied-by-{}:v1",
            user.replace('$', "-")
        );
        let (ok, err) = run(vec![
            "copy".into(),
            "--authfile".into(),
            af.clone(),
            "--src-tls-verify=false".into(),
            "--dest-tls-verify=false".into(),
            format!("docker://{host}/priv/app:v1"),
            dest.clone(),
        ]);
        assert!(ok, "skopeo copy as {user}: {err}");
        let (ok, err) = run(vec![
            "logout".into(),
            "--authfile".into(),
            af.clone(),
            host.clone(),
        ]);
        assert!(ok, "{err}");
    }
    // A wrong password is refused at login.
    let (ok, _) = run(vec![
        "login".into(),
        "--tls-verify=false".into(),
        "--authfile".into(),
        af,
        "-u".into(),
        "guest".into(),
        "-p".into(),
        "wrong password!!".into(),
        host,
    ]);
    assert!(!ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_logs_in_pushes_and_pulls_as_a_user_and_as_a_robot() {
    require_tool("podman", "podman");
    let w = world().await;
    // podman names an image from an OCI layout by its path, and names must be lowercase.
    let tmp = tempfile::Builder::new()
        .prefix("berth-podman")
        .tempdir()
        .unwrap();
    let lower = std::env::temp_dir().join(format!(
        "berth-podman-{}",
        tmp.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    ));
    std::fs::create_dir_all(&lower).unwrap();
    let _cleanup = RemoveOnDrop(lower.clone());
    let dir = lower.as_path();
    // A real (uncompressed) layer and an OCI layout, so podman can unpack the image.
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::write(dir.join("rootfs/hello.txt"), "hello from berth\n").unwrap();
    let tar = std::process::Command::new("tar")
        .arg("cf")
        .arg(dir.join("layer.tar"))
        .arg("-C")
        .arg(dir.join("rootfs"))
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    let layer = std::fs::read(dir.join("layer.tar")).unwrap();
    let blobs = dir.join("layout/blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        (d, data.len())
    };
    let (layer_d, layer_n) = put(&layer);
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer_d]}})).unwrap();
    let (config_d, config_n) = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config_n},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer_n}],
    }))
    .unwrap();
    let (manifest_d, manifest_n) = put(&manifest);
    std::fs::write(
        dir.join("layout/oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest_n, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(
        dir.join("layout/index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();

    let podman = |args: &[&str]| {
        let out = std::process::Command::new("podman")
            .arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    // podman insists that a named auth file exists.
    std::fs::write(dir.join("auth.json"), "{}").unwrap();
    let host = w.berth.addr.clone();
    let layout = format!("oci:{}:v1", dir.join("layout").display());
    let (ok, err) = podman(&["pull", "-q", "--tls-verify=false", &layout]);
    assert!(ok, "podman pull from the layout: {err}");
    let image = err.lines().next().unwrap_or_default().trim().to_owned();

    for (user, password) in [
        ("dev".to_string(), PASSWORD.to_string()),
        ("robot$ci-push".to_string(), w.robots["ci-push"].clone()),
    ] {
        let target = format!("{host}/priv/podman-{}:v1", user.replace('$', "-"));
        let (ok, err) = podman(&[
            "login",
            "--tls-verify=false",
            "-u",
            &user,
            "-p",
            &password,
            &host,
        ]);
        assert!(ok, "podman login as {user}: {err}");
        let (ok, err) = podman(&["tag", &image, &target]);
        assert!(ok, "{err}");
        let (ok, err) = podman(&["push", "--tls-verify=false", &target]);
        assert!(ok, "podman push as {user}: {err}");
        let (ok, err) = podman(&["pull", "--tls-verify=false", &target]);
        assert!(ok, "podman pull as {user}: {err}");
        let (ok, err) = podman(&["logout", &host]);
        assert!(ok, "{err}");
    }
    // A guest may pull but not push.
    let (ok, err) = podman(&[
        "login",
        "--tls-verify=false",
        "-u",
        "guest",
        "-p",
        PASSWORD,
        &host,
    ]);
    assert!(ok, "{err}");
    let (ok, _) = podman(&[
        "pull",
        "--tls-verify=false",
        &format!("{host}/priv/podman-dev:v1"),
    ]);
    assert!(ok);
    let guest_target = format!("{host}/priv/podman-guest:v1");
    assert!(podman(&["tag", &image, &guest_target]).0);
    let (ok, err) = podman(&["push", "--tls-verify=false", &guest_target]);
    assert!(!ok, "a guest push must fail");
    // The refusal comes through the token, and says why, as the Basic path does.
    assert!(
        err.contains("guest has no role in project priv that allows push"),
        "{err}"
    );
    // A project that does not exist, and a name without one, say so too.
    let (ok, err) = podman(&[
        "login",
        "--tls-verify=false",
        "-u",
        "dev",
        "-p",
        PASSWORD,
        &host,
    ]);
    assert!(ok, "{err}");
    let nowhere = format!("{host}/nosuch/app:v1");
    assert!(podman(&["tag", &image, &nowhere]).0);
    let (ok, err) = podman(&["push", "--tls-verify=false", &nowhere]);
    assert!(!ok);
    assert!(err.contains("project nosuch does not exist"), "{err}");
    let bare = format!("{host}/alpine:v1");
    assert!(podman(&["tag", &image, &bare]).0);
    let (ok, err) = podman(&["push", "--tls-verify=false", &bare]);
    assert!(!ok);
    assert!(err.contains("<project>/<repository>"), "{err}");
}
