//! Manifests, tags, the catalog, referrers and names.

use super::*;

#[tokio::test]
async fn base_endpoint_announces_the_api_version() {
    let berth = Berth::start();
    let r = client().get(berth.v2("")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
}

#[tokio::test]
async fn manifests_by_tag_and_digest_are_byte_identical() {
    let berth = Berth::start();
    let http = client();
    let (digest, manifest) = push_image(&http, &berth.url, "team/app", "v1", 10).await;
    for reference in ["v1", digest.as_str()] {
        let r = http
            .get(berth.v2(&format!("team/app/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], OCI_MANIFEST);
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
        assert_eq!(r.headers()["etag"], format!("\"{digest}\"").as_str());
        assert_eq!(r.bytes().await.unwrap().as_ref(), manifest.as_slice());
        let h = http
            .head(berth.v2(&format!("team/app/manifests/{reference}")))
            .send()
            .await
            .unwrap();
        assert_eq!(h.status(), 200);
        assert_eq!(
            h.headers()["content-length"],
            manifest.len().to_string().as_str()
        );
    }
    // Pushing by digest works and checks the digest.
    let r = http
        .put(berth.v2(&format!("team/app/manifests/{digest}")))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let wrong = sha256(b"nope");
    let r = http
        .put(berth.v2(&format!("team/app/manifests/{wrong}")))
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    // Whitespace changes the digest; the registry keeps whatever bytes it was given.
    let mut spaced = manifest.clone();
    spaced.extend_from_slice(b"\n  ");
    put_manifest(
        &http,
        &berth.url,
        "team/app",
        "spaced",
        OCI_MANIFEST,
        &spaced,
    )
    .await;
    let got = http
        .get(berth.v2("team/app/manifests/spaced"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.headers()["docker-content-digest"],
        sha256(&spaced).as_str()
    );
    assert_eq!(got.bytes().await.unwrap().as_ref(), spaced.as_slice());
}

#[tokio::test]
async fn manifest_rejections_store_nothing() {
    let berth = Berth::start();
    let http = client();
    let config = b"{}".to_vec();
    let layer = bytes(20, 1000);
    push_blob(&http, &berth.url, "team/app", &config).await;
    // The layer is not pushed: MANIFEST_BLOB_UNKNOWN.
    let manifest = image_manifest(&config, &[&layer]);
    let put = |body: Vec<u8>, ct: &'static str, reference: &'static str| {
        let http = http.clone();
        let url = berth.v2(&format!("team/app/manifests/{reference}"));
        async move {
            http.put(url)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let r = put(manifest.clone(), OCI_MANIFEST, "v1").await;
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN");
    assert_eq!(body["errors"][0]["detail"]["digest"], sha256(&layer));

    // A layer pushed to another repository does not count here.
    push_blob(&http, &berth.url, "team/other", &layer).await;
    assert_eq!(
        error_code(put(manifest.clone(), OCI_MANIFEST, "v1").await).await,
        "MANIFEST_BLOB_UNKNOWN"
    );

    assert_eq!(
        error_code(put(b"{not json".to_vec(), OCI_MANIFEST, "v1").await).await,
        "MANIFEST_INVALID"
    );
    assert_eq!(
        error_code(
            put(
                br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#
                    .to_vec(),
                OCI_MANIFEST,
                "v1"
            )
            .await
        )
        .await,
        "MANIFEST_INVALID"
    );
    assert_eq!(
        error_code(put(manifest.clone(), OCI_INDEX, "v1").await).await,
        "MANIFEST_INVALID"
    );
    let r = put(manifest.clone(), OCI_MANIFEST, "bad..tag").await;
    assert_eq!(r.status(), 400);

    // An index whose child is not in the repository.
    let index = serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"mediaType":OCI_INDEX,"manifests":[{"mediaType":OCI_MANIFEST,"digest":sha256(&manifest),"size":manifest.len()}]})).unwrap();
    assert_eq!(
        error_code(put(index, OCI_INDEX, "v1").await).await,
        "MANIFEST_BLOB_UNKNOWN"
    );

    // Over the size limit: 413, and the body is not read into memory.
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = put(huge, OCI_MANIFEST, "v1").await;
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");

    // After all that: no tag, no manifest.
    let r = http
        .get(berth.v2("team/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "MANIFEST_UNKNOWN");
    let tags: serde_json::Value = http
        .get(berth.v2("team/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], serde_json::json!([]));
}

#[tokio::test]
async fn a_manifest_of_exactly_four_mebibytes_is_accepted() {
    let berth = Berth::start();
    let http = client();
    let config = b"{}".to_vec();
    push_blob(&http, &berth.url, "team/big", &config).await;
    let mut value: serde_json::Value =
        serde_json::from_slice(&image_manifest(&config, &[])).unwrap();
    let base = serde_json::to_vec(&value).unwrap().len();
    let pad = 4 * 1024 * 1024 - base - r#","annotations":{"pad":""}"#.len();
    value["annotations"] = serde_json::json!({"pad": "x".repeat(pad)});
    let body = serde_json::to_vec(&value).unwrap();
    assert_eq!(body.len(), 4 * 1024 * 1024);
    put_manifest(&http, &berth.url, "team/big", "large", OCI_MANIFEST, &body).await;
}

#[tokio::test]
async fn names_outside_the_grammar_are_refused() {
    let berth = Berth::start();
    let http = client();
    for path in [
        "Team/app/tags/list",
        "team/a%2e%2e/tags/list",
        &format!("team/{}/tags/list", "a".repeat(260)),
    ] {
        let r = http.get(berth.v2(path)).send().await.unwrap();
        assert_eq!(r.status(), 400, "{path}");
        assert_eq!(error_code(r).await, "NAME_INVALID", "{path}");
    }
    // A one-component name is in the distribution grammar but holds nothing here: reads
    // find nothing, and the first write says why (see one_component_names_*).
    let r = http
        .get(berth.v2("noproject/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
    let r = http
        .get(berth.v2("team/nothing/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "NAME_UNKNOWN");
    let r = http
        .get(berth.v2("team/app/blobs/sha256:abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = http
        .get(berth.v2(&format!("team/app/blobs/md5:{}", "a".repeat(32))))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    let r = http
        .post(berth.v2("team/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(error_code(r).await, "UNSUPPORTED");
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link_headers() {
    let berth = Berth::start();
    let http = client();
    for i in 0..5 {
        push_image(&http, &berth.url, "team/app", &format!("t{i}"), 40 + i).await;
    }
    push_image(&http, &berth.url, "team/zzz", "x", 50).await;
    push_image(&http, &berth.url, "alpha/app", "x", 51).await;

    let r = http
        .get(berth.v2("team/app/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    let link = r.headers()["link"].to_str().unwrap().to_owned();
    assert_eq!(link, "</v2/team/app/tags/list?last=t1&n=2>; rel=\"next\"");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "team/app", "tags": ["t0", "t1"]})
    );
    let r = http
        .get(berth.v2("team/app/tags/list?n=2&last=t3"))
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["tags"], serde_json::json!(["t4"]));

    let r = http.get(berth.v2("_catalog?n=1")).send().await.unwrap();
    assert!(
        r.headers()["link"]
            .to_str()
            .unwrap()
            .contains("last=alpha%2Fapp")
    );
    let all: serde_json::Value = http
        .get(berth.v2("_catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        all["repositories"],
        serde_json::json!(["alpha/app", "team/app", "team/zzz"])
    );
    let r = http.get(berth.v2("_catalog?n=abc")).send().await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn referrers_with_artifact_type_filter_and_subject_header() {
    let berth = Berth::start();
    let http = client();
    let (subject, subject_bytes) = push_image(&http, &berth.url, "team/app", "v1", 70).await;
    let empty = b"{}".to_vec();
    push_blob(&http, &berth.url, "team/app", &empty).await;
    let mut digests = Vec::new();
    for (i, artifact_type) in [
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
    ]
    .iter()
    .enumerate()
    {
        let payload = bytes(71 + i as u64, 300);
        push_blob(&http, &berth.url, "team/app", &payload).await;
        let m = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(&empty), "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": sha256(&payload), "size": 300}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_bytes.len()},
            "annotations": {"n": i.to_string()},
        })).unwrap();
        let d = sha256(&m);
        let r = http
            .put(berth.v2(&format!("team/app/manifests/{d}")))
            .header("content-type", OCI_MANIFEST)
            .body(m)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["oci-subject"], subject.as_str());
        digests.push(d);
    }
    let r = http
        .get(berth.v2(&format!("team/app/referrers/{subject}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], OCI_INDEX);
    assert!(r.headers().get("oci-filters-applied").is_none());
    let index: serde_json::Value = r.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);

    let r = http
        .get(berth.v2(&format!(
            "team/app/referrers/{subject}?artifactType=application/vnd.example.sbom"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["oci-filters-applied"], "artifactType");
    let index: serde_json::Value = r.json().await.unwrap();
    let list = index["manifests"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["digest"], digests[1]);
    assert_eq!(list[0]["artifactType"], "application/vnd.example.sbom");
    assert_eq!(list[0]["annotations"]["n"], "1");

    // Unknown subject: an empty index. Deleting a referrer removes it from the list.
    let none: serde_json::Value = http
        .get(berth.v2(&format!("team/app/referrers/{}", sha256(b"zz"))))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["manifests"], serde_json::json!([]));
    http.delete(berth.v2(&format!("team/app/manifests/{}", digests[0])))
        .send()
        .await
        .unwrap();
    let index: serde_json::Value = http
        .get(berth.v2(&format!("team/app/referrers/{subject}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn docker_schema2_manifest_and_manifest_list() {
    let berth = Berth::start();
    let http = client();
    let config = b"{\"architecture\":\"arm64\"}".to_vec();
    let layer = bytes(80, 2000);
    push_blob(&http, &berth.url, "team/docker", &config).await;
    push_blob(&http, &berth.url, "team/docker", &layer).await;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha256(&layer), "size": layer.len()}],
    })).unwrap();
    put_manifest(
        &http,
        &berth.url,
        "team/docker",
        "arm64",
        "application/vnd.docker.distribution.manifest.v2+json",
        &m,
    )
    .await;
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": sha256(&m), "size": m.len(), "platform": {"architecture": "arm64", "os": "linux"}}],
    })).unwrap();
    put_manifest(
        &http,
        &berth.url,
        "team/docker",
        "latest",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        &list,
    )
    .await;
    let r = http
        .get(berth.v2("team/docker/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    assert_eq!(r.bytes().await.unwrap().as_ref(), list.as_slice());
}
