//! HTTP clients as the tests' users, and content to push: blobs, image manifests.

use sha2::{Digest as _, Sha256};

use super::ADMIN_PASSWORD;

/// An HTTP client logged in as `admin` with Basic credentials, following no redirects (the
/// registry's Location headers are for the test to read).
pub fn client() -> reqwest::Client {
    client_as("admin", ADMIN_PASSWORD)
}

/// An HTTP client with the given Basic credentials.
pub fn client_as(user: &str, password: &str) -> reqwest::Client {
    install_crypto();
    use base64::Engine;
    let mut headers = reqwest::header::HeaderMap::new();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Basic {basic}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .default_headers(headers)
        .build()
        .expect("client")
}

/// An HTTP client without credentials.
pub fn anonymous_client() -> reqwest::Client {
    install_crypto();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// `--creds` for skopeo.
pub fn skopeo_creds() -> String {
    format!("admin:{ADMIN_PASSWORD}")
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Deterministic pseudo-random bytes (xorshift), different per seed.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Pushes a blob monolithically (`POST ?digest=`); returns its digest.
pub async fn push_blob(http: &reqwest::Client, base: &str, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let mut r = http
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .expect("push blob");
    if r.status() == 202 {
        // A registry without monolithic POSTs (CNCF distribution) opens a session
        // instead: finish it with one PUT, as docker does.
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("{base}{location}")
        } else {
            location
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        r = http
            .put(format!("{location}{separator}digest={digest}"))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec())
            .send()
            .await
            .expect("push blob");
    }
    assert_eq!(
        r.status(),
        201,
        "push blob {digest}: {}",
        r.text().await.unwrap_or_default()
    );
    digest
}

/// An OCI image manifest over the given config and layers.
pub fn image_manifest(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|l| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256(l), "size": l.len()}))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config), "size": config.len()},
        "layers": layers,
    }))
    .unwrap()
}

/// Pushes config, layers and an image manifest under `reference`; returns the manifest
/// digest and bytes.
pub async fn push_image(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
    seed: u64,
) -> (String, Vec<u8>) {
    let config =
        format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}").into_bytes();
    let layer = bytes(seed, 4096 + seed as usize % 1000);
    push_blob(http, base, repo, &config).await;
    push_blob(http, base, repo, &layer).await;
    let manifest = image_manifest(&config, &[&layer]);
    put_manifest(
        http,
        base,
        repo,
        reference,
        "application/vnd.oci.image.manifest.v1+json",
        &manifest,
    )
    .await;
    (sha256(&manifest), manifest)
}

/// PUTs a manifest and asserts 201.
pub async fn put_manifest(
    http: &reqwest::Client,
    base: &str,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) {
    let r = http
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .expect("put manifest");
    let status = r.status();
    assert_eq!(
        status,
        201,
        "put manifest {repo}:{reference}: {}",
        r.text().await.unwrap_or_default()
    );
}

/// The `errors[0].code` of an error response body.
pub async fn error_code(r: reqwest::Response) -> String {
    let body: serde_json::Value = r.json().await.expect("json error body");
    body["errors"][0]["code"]
        .as_str()
        .expect("error code")
        .to_owned()
}

/// reqwest and oci-client are built without a bundled TLS provider; tests use the same
/// ring provider as the server.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A bearer token for `scope` from `berth`'s token service, as the admin.
pub async fn token_from(berth: &super::Berth, scope: &str) -> String {
    let r = client()
        .get(format!(
            "{}/service/token?service=berth&scope={scope}",
            berth.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    body["token"].as_str().unwrap().to_string()
}
