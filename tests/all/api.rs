//! The distribution API over raw HTTP: every endpoint, its headers, and every error code,
//! against a real `berth serve`.

use crate::support::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

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
async fn monolithic_push_then_pull_with_all_headers() {
    let berth = Berth::start();
    let http = client();
    let data = bytes(1, 100_000);
    let digest = push_blob(&http, &berth.url, "team/app", &data).await;

    let head = http
        .head(berth.v2(&format!("team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "100000");
    assert_eq!(head.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(head.headers()["etag"], format!("\"{digest}\"").as_str());

    let get = http
        .get(berth.v2(&format!("team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(get.headers()["content-type"], "application/octet-stream");
    assert_eq!(get.bytes().await.unwrap().as_ref(), data.as_slice());
}

#[tokio::test]
async fn range_requests_on_blobs() {
    let berth = Berth::start();
    let http = client();
    let data = bytes(2, 10_000);
    let digest = push_blob(&http, &berth.url, "team/app", &data).await;
    let url = berth.v2(&format!("team/app/blobs/{digest}"));

    let r = http
        .get(&url)
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 100-199/10000");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[100..200]);

    let r = http
        .get(&url)
        .header("range", "bytes=-10")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[9990..]);

    let r = http
        .get(&url)
        .header("range", "bytes=20000-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["content-range"], "bytes */10000");
}

#[tokio::test]
async fn chunked_upload_with_out_of_order_chunk_and_status() {
    let berth = Berth::start();
    let http = client();
    let data = bytes(3, 300_000);
    let digest = sha256(&data);

    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/v2/team/app/blobs/uploads/"));
    assert_eq!(r.headers()["range"], "0-0");
    let upload = format!("{}{location}", berth.url);

    let r = http
        .patch(&upload)
        .header("content-range", "0-99999")
        .header("content-length", "100000")
        .body(data[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["range"], "0-99999");

    // A chunk that does not start where the last one ended: 416 with the current range.
    let r = http
        .patch(&upload)
        .header("content-range", "150000-199999")
        .body(data[150_000..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(r.headers()["range"], "0-99999");
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_INVALID");

    // A malformed Content-Range: 416 too, and nothing changes.
    let r = http
        .patch(&upload)
        .header("content-range", "bogus")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);

    let r = http.get(&upload).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-99999");

    let r = http
        .patch(&upload)
        .header("content-range", "100000-199999")
        .body(data[100_000..200_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    // The last chunk rides on the PUT.
    let r = http
        .put(format!("{upload}?digest={digest}"))
        .header("content-range", "200000-299999")
        .body(data[200_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/team/app/blobs/{digest}").as_str()
    );
    assert_eq!(r.headers()["docker-content-digest"], digest.as_str());

    let got = http
        .get(berth.v2(&format!("team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
    // The session is gone once closed.
    assert_eq!(http.get(&upload).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_streamed_patch_with_transfer_encoding_chunked_as_docker_sends_it() {
    let berth = Berth::start();
    let http = client();
    let data = bytes(4, 2 * 1024 * 1024 + 17);
    let digest = sha256(&data);
    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    // A stream body has no Content-Length: reqwest sends it chunked.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(65_536).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let r = http.patch(&upload).body(body).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.headers()["range"],
        format!("0-{}", data.len() - 1).as_str()
    );
    let r = http
        .put(format!("{upload}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let berth = Berth::start();
    let http = client();
    let wrong = sha256(b"something else");
    let r = http
        .post(berth.v2(&format!("team/app/blobs/uploads/?digest={wrong}")))
        .body(b"payload".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    for d in [wrong, sha256(b"payload")] {
        assert_eq!(
            http.head(berth.v2(&format!("team/app/blobs/{d}")))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }
    // Closing a session with the wrong digest discards it.
    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    let r = http
        .put(format!("{upload}?digest={}", sha256(b"x")))
        .body(b"y".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
    assert_eq!(http.get(&upload).send().await.unwrap().status(), 404);
    // A malformed digest is DIGEST_INVALID too.
    let r = http
        .put(format!("{upload}?digest=sha256:nothex"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "DIGEST_INVALID");
}

#[tokio::test]
async fn upload_sessions_can_be_cancelled_and_unknown_ones_are_refused() {
    let berth = Berth::start();
    let http = client();
    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    assert_eq!(http.delete(&upload).send().await.unwrap().status(), 204);
    let r = http.patch(&upload).body(vec![1u8; 3]).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    let r = http
        .get(berth.v2("team/app/blobs/uploads/00000000-0000-0000-0000-000000000000"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    // A session belongs to its repository.
    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let id = r.headers()["docker-upload-uuid"]
        .to_str()
        .unwrap()
        .to_owned();
    let r = http
        .get(berth.v2(&format!("team/other/blobs/uploads/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    // Ids that are not ours never reach the filesystem.
    let r = http
        .patch(berth.v2("team/app/blobs/uploads/..%2F..%2Fberth.redb"))
        .body(vec![1u8])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
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
async fn cross_repository_mount_and_fallback() {
    let berth = Berth::start();
    let http = client();
    let data = bytes(30, 5000);
    let digest = push_blob(&http, &berth.url, "team/src", &data).await;
    // Not yet visible in the destination.
    assert_eq!(
        http.head(berth.v2(&format!("team/dst/blobs/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = http
        .post(berth.v2(&format!(
            "team/dst/blobs/uploads/?mount={digest}&from=team/src"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.headers()["location"],
        format!("/v2/team/dst/blobs/{digest}").as_str()
    );
    assert_eq!(
        http.get(berth.v2(&format!("team/dst/blobs/{digest}")))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        data.as_slice()
    );
    // From a repository that does not hold it: a normal session instead.
    let r = http
        .post(berth.v2(&format!(
            "team/dst2/blobs/uploads/?mount={digest}&from=team/nowhere"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/v2/team/dst2/blobs/uploads/")
    );
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

#[tokio::test]
async fn oversized_blobs_are_refused_and_earlier_chunks_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("berth.toml");
    std::fs::write(&cfg, "[registry]\nmax_blob_bytes = 1000\n").unwrap();
    let berth = Berth::start_with(&["--config", cfg.to_str().unwrap()]);
    let http = client();
    let r = http
        .post(berth.v2("team/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    let r = http
        .patch(&upload)
        .header("content-range", "0-599")
        .body(vec![7u8; 600])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = http
        .patch(&upload)
        .header("content-range", "600-1199")
        .body(vec![7u8; 600])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(error_code(r).await, "SIZE_INVALID");
    let r = http.get(&upload).send().await.unwrap();
    assert_eq!(r.headers()["range"], "0-599");
    let r = http
        .put(format!("{upload}?digest={}", sha256(&[7u8; 600])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn sha512_digests_are_accepted_where_the_client_names_them() {
    let berth = Berth::start();
    let http = client();
    use sha2::Digest as _;
    let data = bytes(90, 7000);
    let digest = format!("sha512:{}", hex::encode(sha2::Sha512::digest(&data)));
    let r = http
        .post(berth.v2(&format!("team/app/blobs/uploads/?digest={digest}")))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = http
        .get(berth.v2(&format!("team/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["docker-content-digest"], digest.as_str());
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
}

#[tokio::test]
async fn idle_upload_sessions_expire_and_active_ones_stay() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("berth.toml");
    std::fs::write(
        &cfg,
        "[registry]\nupload_ttl_secs = 2\nupload_purge_interval_secs = 1\n",
    )
    .unwrap();
    let berth = Berth::start_with(&["--config", cfg.to_str().unwrap()]);
    let http = client();
    let open = |http: reqwest::Client, url: String| async move {
        let r = http.post(url).send().await.unwrap();
        r.headers()["location"].to_str().unwrap().to_owned()
    };
    let idle = format!(
        "{}{}",
        berth.url,
        open(http.clone(), berth.v2("team/app/blobs/uploads/")).await
    );
    let active = format!(
        "{}{}",
        berth.url,
        open(http.clone(), berth.v2("team/app/blobs/uploads/")).await
    );
    let r = http
        .patch(&idle)
        .header("content-range", "0-9")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Keep one session busy with a chunk every half second for five seconds.
    for i in 0..10u64 {
        let r = http
            .patch(&active)
            .header("content-range", format!("{}-{}", i * 10, i * 10 + 9))
            .body(vec![2u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "an active session must not expire");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let r = http.get(&idle).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(
        http.get(&active).send().await.unwrap().headers()["range"],
        "0-99"
    );
    // The idle session's staging file is gone; the active one's remains.
    assert_eq!(
        std::fs::read_dir(berth.data_dir.join("uploads"))
            .unwrap()
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_memory_stays_flat_while_a_gibibyte_streams_in() {
    let berth = Berth::start();
    let http = client();
    let pid = berth.child_pid();
    let rss_before = peak_rss_kib(pid);
    // Generated on the fly: neither side ever holds the blob.
    const TOTAL: u64 = 1 << 30;
    const CHUNK: usize = 1 << 20;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let producer = tokio::spawn(async move {
        use sha2::Digest as _;
        let mut hasher = sha2::Sha256::new();
        for i in 0..TOTAL / CHUNK as u64 {
            let chunk = bytes(10_000 + i, CHUNK);
            hasher.update(&chunk);
            tx.send(Ok(chunk)).await.unwrap();
        }
        format!("sha256:{}", hex::encode(hasher.finalize()))
    });
    let r = http
        .post(berth.v2("team/big/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let upload = format!("{}{}", berth.url, r.headers()["location"].to_str().unwrap());
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let r = http.patch(&upload).body(body).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let digest = producer.await.unwrap();
    let r = http
        .put(format!("{upload}?digest={digest}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let grown_mib = (peak_rss_kib(pid) - rss_before) / 1024;
    assert!(
        grown_mib < 48,
        "peak RSS grew by {grown_mib} MiB while 1 GiB streamed in"
    );
}
