//! Deletes, and switching them off.

use super::*;

#[tokio::test]
async fn deletes_of_tags_manifests_and_blobs() {
    let berth = Berth::start();
    let http = client();
    let (digest, _) = push_image(&http, &berth.url, "team/app", "v1", 60).await;
    put_manifest(
        &http,
        &berth.url,
        "team/app",
        "v2",
        OCI_MANIFEST,
        &http
            .get(berth.v2("team/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .await;

    // Deleting a tag leaves the manifest and the other tag.
    assert_eq!(
        http.delete(berth.v2("team/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        http.get(berth.v2("team/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        http.get(berth.v2(&format!("team/app/manifests/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Deleting by digest removes the manifest and every tag pointing at it.
    assert_eq!(
        http.delete(berth.v2(&format!("team/app/manifests/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        http.get(berth.v2("team/app/manifests/v2"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http
        .delete(berth.v2(&format!("team/app/manifests/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");

    let blob = push_blob(&http, &berth.url, "team/app", b"blob to delete").await;
    assert_eq!(
        http.delete(berth.v2(&format!("team/app/blobs/{blob}")))
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let r = http
        .get(berth.v2(&format!("team/app/blobs/{blob}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
}

#[tokio::test]
async fn deletes_can_be_switched_off() {
    let berth = Berth::start_with(&[]);
    drop(berth);
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("berth.toml");
    std::fs::write(&cfg, "[registry]\ndelete_enabled = false\n").unwrap();
    let berth = Berth::start_with(&["--config", cfg.to_str().unwrap()]);
    let http = client();
    push_image(&http, &berth.url, "team/app", "v1", 61).await;
    let r = http
        .delete(berth.v2("team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "UNSUPPORTED");

    // The admin API and the CLI take the registry's one delete path, and are refused too.
    let (_, manifest) = push_image(&http, &berth.url, "team/app", "v2", 62).await;
    let digest = sha256(&manifest);
    for path in ["tags/v1".to_string(), format!("manifests/{digest}")] {
        let r = http
            .delete(format!(
                "{}/api/v1/repositories/team%2Fapp/{path}",
                berth.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{path}");
        let problem: serde_json::Value = r.json().await.unwrap();
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("registry.delete_enabled = false"),
            "{problem}"
        );
    }
    for args in [
        ["repo", "delete-tag", "team/app", "v1"],
        ["repo", "delete-manifest", "team/app", digest.as_str()],
    ] {
        let (ok, _, err) = crate::plugins::cli(&berth, &args);
        assert!(!ok, "{args:?}");
        assert!(err.contains("deletes are disabled"), "{args:?}: {err}");
    }
    for reference in ["v1", "v2", digest.as_str()] {
        assert_eq!(
            http.get(berth.v2(&format!("team/app/manifests/{reference}")))
                .send()
                .await
                .unwrap()
                .status(),
            200,
            "{reference}"
        );
    }
}
