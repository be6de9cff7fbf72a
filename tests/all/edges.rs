//! The registry at its edges, as the specification and clients see it, with raw TCP where
//! an HTTP client would normalise the request: invalid references, empty referrers,
//! mount challenges, `?tag=` pushes, Host headers, error bodies on every 4xx, null
//! manifest lists and media types with a `+`.

use std::io::{Read, Write};

use serde_json::{Value, json};

use crate::support::*;

/// Sends `request` as written and reads the whole answer: (status, headers, body).
fn raw(addr: &str, request: &str) -> (u16, String, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn basic() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"))
}

/// The error code of an OCI error body, failing the test when it is not one.
fn code_of(body: &str) -> String {
    let v: Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("not an OCI error body ({e}): {body:?}"));
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_read_by_a_reference_that_is_not_a_tag_is_404_and_a_put_400() {
    let berth = Berth::start();
    push_image(&client(), &berth.url, "team/app", "v1", 1).await;
    let auth = basic();
    for reference in ["-bad", ".x", "sha256:zz", "a%20b", &"t".repeat(129)] {
        for method in ["GET", "HEAD", "DELETE"] {
            let (status, head, body) = raw(
                &berth.addr,
                &format!(
                    "{method} /v2/team/app/manifests/{reference} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n",
                    berth.addr
                ),
            );
            assert_eq!(status, 404, "{method} {reference}: {head}");
            if method != "HEAD" {
                assert_eq!(code_of(&body), "MANIFEST_UNKNOWN", "{method} {reference}");
            }
        }
    }
    let r = client()
        .put(berth.v2("team/app/manifests/-bad"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("invalid tag"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn referrers_are_never_404_and_a_plus_in_the_artifact_type_is_a_plus() {
    let berth = Berth::start();
    let http = client();
    let subject = format!("sha256:{}", "a".repeat(64));
    // A repository with no content at all: an empty index.
    let r = http
        .get(berth.v2(&format!("team/empty/referrers/{subject}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let index: Value = r.json().await.unwrap();
    assert_eq!(index["manifests"], json!([]));

    // An SBOM whose artifact type has a '+', found by a filter written with a raw '+'.
    let (subject, _) = push_image(&http, &berth.url, "team/app", "v1", 2).await;
    let empty = push_blob(&http, &berth.url, "team/app", b"{}").await;
    let sbom = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "artifactType": "application/spdx+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1},
    }))
    .unwrap();
    put_manifest(
        &http,
        &berth.url,
        "team/app",
        &sha256(&sbom),
        "application/vnd.oci.image.manifest.v1+json",
        &sbom,
    )
    .await;
    let (status, head, body) = raw(
        &berth.addr,
        &format!(
            "GET /v2/team/app/referrers/{subject}?artifactType=application/spdx+json HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {}\r\nConnection: close\r\n\r\n",
            berth.addr,
            basic()
        ),
    );
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("oci-filters-applied: artifacttype"),
        "{head}"
    );
    let index: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1, "{index:#}");
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/spdx+json"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_challenge_names_the_source_so_a_client_that_follows_it_mounts() {
    let berth = Berth::start();
    let http = client();
    let layer = bytes(40, 10_000);
    let digest = push_blob(&http, &berth.url, "alpha/base", &layer).await;
    let path = format!("/v2/team/app/blobs/uploads/?mount={digest}&from=alpha/base");

    // Unauthenticated: the challenge asks for both repositories.
    let r = anonymous_client()
        .post(format!("{}{path}", berth.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.contains("scope=\"repository:team/app:pull,push repository:alpha/base:pull\""),
        "{challenge}"
    );
    // Follow it as a client does: ask the realm for every scope it names.
    let scopes: Vec<&str> = challenge
        .split("scope=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .split(' ')
        .collect();
    let mut url = format!("{}/service/token?service=berth", berth.url);
    for scope in &scopes {
        url.push_str(&format!("&scope={scope}"));
    }
    let token: Value = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["token"].as_str().unwrap().to_string();
    let r = anonymous_client()
        .post(format!("{}{path}", berth.url))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "the mount happened");

    // A token for the destination alone, held by an account that may read the source:
    // asked for a fuller one rather than silently uploading.
    let mut url = format!(
        "{}/service/token?service=berth&scope=repository:team/other:pull,push",
        berth.url
    );
    let narrow: Value = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path2 = format!("/v2/team/other/blobs/uploads/?mount={digest}&from=alpha/base");
    let r = anonymous_client()
        .post(format!("{}{path2}", berth.url))
        .bearer_auth(narrow["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert!(
        challenge.contains("repository:alpha/base:pull"),
        "{challenge}"
    );

    // An account that may not read the source learns nothing: an ordinary upload.
    let r = http
        .post(format!("{}/api/v1/users", berth.url))
        .json(&json!({"username": "writer", "password": "writer password 1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!("{}/api/v1/projects/team/members", berth.url))
        .json(&json!({"username": "writer", "role": "developer"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    url = format!(
        "{}/service/token?service=berth&scope=repository:team/third:pull,push&scope=repository:alpha/base:pull",
        berth.url
    );
    let writer: Value = client_as("writer", "writer password 1")
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = anonymous_client()
        .post(format!(
            "{}/v2/team/third/blobs/uploads/?mount={digest}&from=alpha/base",
            berth.url
        ))
        .bearer_auth(writer["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "falls back to an upload session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_given_as_query_parameters_are_set_with_the_manifest() {
    let berth = Berth::start();
    let http = client();
    let config = push_blob(&http, &berth.url, "team/app", b"{\"os\":\"linux\"}").await;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 14},
        "layers": [],
    }))
    .unwrap();
    let digest = sha256(&manifest);
    let r = http
        .put(berth.v2(&format!(
            "team/app/manifests/{digest}?tag=1.2.3&tag=1.2&tag=latest&tag=1.2"
        )))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["oci-tag"], "1.2.3, 1.2, latest");
    for tag in ["1.2.3", "1.2", "latest"] {
        let r = http
            .head(berth.v2(&format!("team/app/manifests/{tag}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{tag}");
        assert_eq!(r.headers()["docker-content-digest"], digest.as_str());
    }
    // A bad tag refuses the whole push; nothing is stored under the good ones.
    let other = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 14},
        "layers": [], "annotations": {"x": "y"},
    }))
    .unwrap();
    let r = http
        .put(berth.v2(&format!(
            "team/app/manifests/{}?tag=good&tag=-bad",
            sha256(&other)
        )))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "MANIFEST_INVALID");
    let r = http
        .head(berth.v2("team/app/manifests/good"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn an_http11_request_needs_exactly_one_host_header() {
    let berth = Berth::start();
    let auth = basic();
    let (status, _, body) = raw(
        &berth.addr,
        &format!("GET /v2/ HTTP/1.1\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(status, 400);
    assert_eq!(code_of(&body), "UNSUPPORTED");
    assert!(body.contains("Host header"), "{body}");
    let (status, _, body) = raw(
        &berth.addr,
        &format!(
            "GET /v2/team/app/tags/list HTTP/1.1\r\nHost: {0}\r\nHost: evil.example\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n",
            berth.addr
        ),
    );
    assert_eq!(status, 400);
    assert!(body.contains("exactly one Host header"), "{body}");
    let (status, head, body) = raw(
        &berth.addr,
        "GET /api/v1/users/current HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 400);
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(body.contains("Host header"), "{body}");
    // HTTP/1.0 has no Host requirement; one Host header is fine.
    let (status, _, _) = raw(&berth.addr, "GET /v2/ HTTP/1.0\r\n\r\n");
    assert_eq!(status, 401);
    let (status, _, _) = raw(
        &berth.addr,
        &format!(
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n",
            berth.addr
        ),
    );
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_error_carries_an_oci_error_body() {
    let berth = Berth::start();
    let http = client();
    let blob = bytes(41, 1000);
    let digest = push_blob(&http, &berth.url, "team/app", &blob).await;
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (
            http.get(berth.v2(&format!("team/app/blobs/{digest}")))
                .header("range", "bytes=5000-6000"),
            416,
        ),
        (
            http.get(berth.v2(&format!("team/app/blobs/sha256:{}", "0".repeat(64)))),
            404,
        ),
        (http.get(berth.v2("team/app/manifests/nope")), 404),
        (http.get(berth.v2("team/app/blobs/uploads/nope")), 404),
        (http.post(berth.v2("team/app/tags/list")), 405),
        (http.get(berth.v2("Team/app/tags/list")), 400),
        (anonymous_client().get(berth.v2("team/app/tags/list")), 401),
        (http.get(berth.v2("nosuch/app/tags/list")), 404),
        (
            http.put(berth.v2("team/app/manifests/v1"))
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body("not json"),
            400,
        ),
        (
            http.patch(berth.v2("team/app/blobs/uploads/nope"))
                .body("x"),
            404,
        ),
    ];
    for (request, expected) in cases {
        let r = request.send().await.unwrap();
        let status = r.status().as_u16();
        let url = r.url().to_string();
        assert_eq!(status, expected, "{url}");
        let content_type = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = r.text().await.unwrap();
        assert_eq!(content_type.as_deref(), Some("application/json"), "{url}");
        code_of(&body);
    }
    // The 416 says what was asked and how large the blob is.
    let r = http
        .get(berth.v2(&format!("team/app/blobs/{digest}")))
        .header("range", "bytes=5000-6000")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-range"], "bytes */1000");
    let body = r.text().await.unwrap();
    assert!(body.contains("1000-byte blob"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_whose_manifests_are_null_is_an_empty_index() {
    let berth = Berth::start();
    let http = client();
    let index = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":null}"#;
    let r = http
        .put(berth.v2("team/app/manifests/filtered"))
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(index.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let got = http
        .get(berth.v2("team/app/manifests/filtered"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), index.as_slice(), "stored as pushed");
    // A list of the wrong type is refused, naming the field.
    let r = http
        .put(berth.v2("team/app/manifests/wrong"))
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("\\\"manifests\\\" must be an array"),
        "{body}"
    );
}

#[test]
fn one_component_names_answer_reads_as_absent_and_writes_with_the_rule() {
    let berth = Berth::start();
    let auth = basic();
    let digest = format!("sha256:{}", "b".repeat(64));
    let ask = |method: &str, path: &str| {
        raw(
            &berth.addr,
            &format!(
                "{method} /v2/{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Basic {auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                berth.addr
            ),
        )
    };
    let (status, _, _) = ask("HEAD", &format!("alpine/blobs/{digest}"));
    assert_eq!(status, 404, "a pushing client goes on to its upload");
    let (status, _, body) = ask("POST", "alpine/blobs/uploads/");
    assert_eq!(status, 400);
    assert_eq!(code_of(&body), "NAME_INVALID");
    assert!(body.contains("<project>/<repository>"), "{body}");
    let (status, _, body) = ask("GET", "alpine/manifests/latest");
    assert_eq!(status, 404);
    assert_eq!(code_of(&body), "MANIFEST_UNKNOWN");
}
