//! skopeo against a real `berth serve`: copy a single-arch image and a multi-arch index in
//! and out of OCI layouts, inspect, list tags, delete; the copy back out is bit-identical.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Writes an OCI image layout with a single-arch image tagged `single` and a two-platform
/// index tagged `multi`; returns the manifest digests by tag.
fn build_layout(dir: &Path) -> BTreeMap<&'static str, String> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let digest = sha256(data);
        std::fs::write(dir.join("blobs/sha256").join(&digest[7..]), data).unwrap();
        (digest, data.len())
    };
    let image = |seed: u64, arch: &str| -> (String, usize) {
        let layer = bytes(seed, 1024 * 1024 + seed as usize);
        let shared = bytes(999, 300_000); // a base layer shared by every image
        let (shared_d, shared_n) = put(&shared);
        let (layer_d, layer_n) = put(&layer);
        let config = serde_json::to_vec(&serde_json::json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [shared_d, layer_d]}})).unwrap();
        let (config_d, config_n) = put(&config);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config_n},
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": shared_d, "size": shared_n},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_d, "size": layer_n},
            ],
        })).unwrap();
        put(&manifest)
    };
    let (single, single_n) = image(200, "amd64");
    let (amd, amd_n) = image(201, "amd64");
    let (arm, arm_n) = image(202, "arm64");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd, "size": amd_n, "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm, "size": arm_n, "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    })).unwrap();
    let (multi, multi_n) = put(&index);
    let top = serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": single, "size": single_n, "annotations": {"org.opencontainers.image.ref.name": "single"}},
            {"mediaType": OCI_INDEX, "digest": multi, "size": multi_n, "annotations": {"org.opencontainers.image.ref.name": "multi"}},
        ],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    BTreeMap::from([("single", single), ("multi", multi)])
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn blob_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn skopeo_copies_single_and_multi_arch_images_in_and_out_bit_identical() {
    require_tool("skopeo", "skopeo");
    let berth = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("in");
    let digests = build_layout(&layout);
    let src = |tag: &str| format!("oci:{}:{tag}", layout.display());
    let dst = |tag: &str| format!("docker://{}/team/skopeo:{tag}", berth.addr);
    let creds = skopeo_creds();

    for tag in ["single", "multi"] {
        skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &src(tag),
            &dst(tag),
        ]);
    }

    // inspect: the digest and the raw manifest are exactly what was pushed.
    for (tag, digest) in &digests {
        let raw = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &dst(tag),
        ]);
        assert_eq!(sha256(raw.as_bytes()), *digest, "raw manifest of {tag}");
    }
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        &dst("single"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], digests["single"].as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);

    let tags: serde_json::Value = serde_json::from_str(&skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{}/team/skopeo", berth.addr),
    ]))
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["multi", "single"]));

    // Out again into a fresh layout: every blob identical to what went in.
    let out = tmp.path().join("out");
    for tag in ["single", "multi"] {
        skopeo(&[
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &dst(tag),
            &format!("oci:{}:{tag}", out.display()),
        ]);
    }
    let (before, after) = (blob_files(&layout), blob_files(&out));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "same set of blobs"
    );
    for (name, data) in &before {
        assert!(
            after[name] == *data,
            "blob {name} differs after the round trip"
        );
    }

    // Delete: the tag's manifest is gone, the other image is untouched.
    skopeo(&[
        "delete",
        "--tls-verify=false",
        "--creds",
        &creds,
        &dst("single"),
    ]);
    let gone = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &dst("single"),
        ])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "deleted image still inspectable");
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds",
        &creds,
        &dst("multi"),
    ]);
}

#[test]
fn a_one_component_name_leads_skopeo_to_the_project_rule() {
    require_tool("skopeo", "skopeo");
    let berth = Berth::start();
    let tmp = tempfile::tempdir().unwrap();
    build_layout(tmp.path());
    let src = format!("oci:{}:single", tmp.path().display());
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &skopeo_creds(),
            &src,
            &format!("docker://{}/alpine:latest", berth.addr),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    // Not a bare "400 (Bad Request)": the client reached the request whose answer it shows.
    assert!(err.contains("<project>/<repository>"), "{err}");
    assert!(err.contains("library/alpine"), "{err}");
}
