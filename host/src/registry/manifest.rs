//! Manifest parsing and validation: OCI image manifest and index, Docker schema 2 manifest
//! and manifest list, and artifacts (`artifactType`, `subject`, the empty config).
//!
//! Parsing only reads what the registry must check or index; the bytes themselves are
//! stored untouched, so the digest a client computed stays the digest it pulls.

use serde_json::{Map, Value};

use crate::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 1, refused: it is deprecated and unsigned content cannot be verified.
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Layer media types whose content may live elsewhere (`urls`), so the registry need not
/// hold them.
const FOREIGN_LAYER_PREFIXES: [&str; 2] = [
    "application/vnd.docker.image.rootfs.foreign.",
    "application/vnd.oci.image.layer.nondistributable.",
];

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ManifestError(pub String);

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError(msg.into())
}

/// A content descriptor a manifest points to.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// What the registry needs to know about a manifest it is asked to store.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedManifest {
    /// The effective media type.
    pub media_type: String,
    /// Blobs that must be present in the repository (config and distributable layers).
    pub blobs: Vec<Descriptor>,
    /// Manifests that must be present in the repository (an index's children).
    pub children: Vec<Descriptor>,
    /// The manifest this one refers to, if any.
    pub subject: Option<Descriptor>,
    /// `artifactType`, or the config's media type for image manifests.
    pub artifact_type: Option<String>,
    /// Top-level annotations.
    pub annotations: Option<Map<String, Value>>,
}

fn descriptor(value: &Value, what: &str) -> Result<Descriptor, ManifestError> {
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(format!("{what} is not a descriptor object")))?;
    let media_type = obj
        .get("mediaType")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(format!("{what} has no mediaType")))?
        .to_owned();
    let digest = obj
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("{what} has no digest")))?;
    let digest: Digest = digest
        .parse()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    let size = obj
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid(format!("{what} has no size (a non-negative integer)")))?;
    Ok(Descriptor {
        media_type,
        digest,
        size,
    })
}

fn is_foreign(value: &Value, d: &Descriptor) -> bool {
    FOREIGN_LAYER_PREFIXES
        .iter()
        .any(|p| d.media_type.starts_with(p))
        && value
            .get("urls")
            .and_then(Value::as_array)
            .is_some_and(|u| !u.is_empty())
}

/// Parses `bytes` as a manifest. `content_type` is the request's Content-Type header.
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<ParsedManifest, ManifestError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("manifest is not valid JSON: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| invalid("manifest is not a JSON object"))?;

    let declared = match obj.get("mediaType") {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("mediaType must be a string")),
    };
    // Content-Type may carry parameters; compare the bare type.
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim())
        .filter(|c| !c.is_empty());
    let media_type = match (declared, header) {
        (Some(d), Some(h))
            if d != h && h != "application/json" && h != "application/octet-stream" =>
        {
            return Err(invalid(format!(
                "Content-Type {h:?} does not match the manifest's mediaType {d:?}"
            )));
        }
        (Some(d), _) => d.to_owned(),
        (None, Some(h)) if h != "application/json" && h != "application/octet-stream" => {
            h.to_owned()
        }
        // Neither says: the OCI image spec lets the shape decide.
        (None, _) if obj.contains_key("manifests") => OCI_INDEX.to_owned(),
        (None, _) if obj.contains_key("config") => OCI_MANIFEST.to_owned(),
        (None, _) => {
            return Err(invalid(
                "cannot tell the manifest's type: no mediaType and no Content-Type",
            ));
        }
    };
    if DOCKER_SCHEMA1.contains(&media_type.as_str()) {
        return Err(invalid(
            "Docker schema 1 manifests are not supported; push with a current client (schema 2 or OCI)",
        ));
    }
    match obj.get("schemaVersion").and_then(Value::as_u64) {
        Some(2) => {}
        _ => return Err(invalid("schemaVersion must be 2")),
    }

    let subject = match obj.get("subject") {
        None | Some(Value::Null) => None,
        Some(v) => Some(descriptor(v, "subject")?),
    };
    let annotations = obj.get("annotations").and_then(Value::as_object).cloned();
    let artifact_type = match obj.get("artifactType") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(invalid("artifactType must be a string")),
    };

    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let config = obj
                .get("config")
                .ok_or_else(|| invalid("image manifest has no config"))?;
            let config = descriptor(config, "config")?;
            // `null` is an empty list, as CNCF distribution (Go's JSON) reads it.
            let layers = match obj.get("layers") {
                Some(Value::Array(a)) => a.as_slice(),
                Some(Value::Null) => &[][..],
                None if media_type == OCI_MANIFEST => &[][..],
                _ => return Err(invalid("layers must be an array of descriptors")),
            };
            let mut blobs = vec![config.clone()];
            for (i, layer) in layers.iter().enumerate() {
                let d = descriptor(layer, &format!("layers[{i}]"))?;
                if !is_foreign(layer, &d) {
                    blobs.push(d);
                }
            }
            let artifact_type = artifact_type.or(Some(config.media_type));
            Ok(ParsedManifest {
                media_type,
                blobs,
                children: Vec::new(),
                subject,
                artifact_type,
                annotations,
            })
        }
        OCI_INDEX | DOCKER_MANIFEST_LIST => {
            // `null` (what `crane index filter` writes when it filters everything out) or
            // an absent list is an empty index, as CNCF distribution (Go's JSON) reads it.
            let manifests = match obj.get("manifests") {
                Some(Value::Array(a)) => a.as_slice(),
                Some(Value::Null) | None => &[][..],
                Some(_) => {
                    return Err(invalid(
                        "the index's \"manifests\" must be an array of descriptors",
                    ));
                }
            };
            let children = manifests
                .iter()
                .enumerate()
                .map(|(i, m)| descriptor(m, &format!("manifests[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ParsedManifest {
                media_type,
                blobs: Vec::new(),
                children,
                subject,
                artifact_type,
                annotations,
            })
        }
        other => Err(invalid(format!(
            "unsupported manifest media type {other:?}; berth accepts {OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST} and {DOCKER_MANIFEST_LIST}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(b: &[u8]) -> String {
        Digest::sha256_of(b).to_string()
    }

    #[test]
    fn an_oci_image_manifest_lists_config_and_layers() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","size":3}}]}}"#,
            d(b"{}"),
            d(b"abc")
        );
        let p = parse(Some(OCI_MANIFEST), m.as_bytes()).unwrap();
        assert_eq!(p.blobs.len(), 2);
        assert_eq!(
            p.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
    }

    #[test]
    fn foreign_layers_with_urls_need_not_be_present() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{}","size":2}},"layers":[{{"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"{}","size":3,"urls":["https://example.invalid/x"]}}]}}"#,
            d(b"{}"),
            d(b"abc")
        );
        assert_eq!(parse(None, m.as_bytes()).unwrap().blobs.len(), 1);
    }

    #[test]
    fn malformed_manifests_are_refused_with_a_reason() {
        assert!(
            parse(None, b"not json")
                .unwrap_err()
                .0
                .contains("not valid JSON")
        );
        assert!(parse(None, b"[]").is_err());
        assert!(
            parse(Some(OCI_MANIFEST), br#"{"schemaVersion":1}"#)
                .unwrap_err()
                .0
                .contains("schemaVersion")
        );
        let bad_digest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"x","digest":"sha256:nope","size":2}},"layers":[]}}"#
        );
        assert!(
            parse(None, bad_digest.as_bytes())
                .unwrap_err()
                .0
                .contains("config")
        );
        let mismatch = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(
            parse(Some(OCI_MANIFEST), mismatch.as_bytes())
                .unwrap_err()
                .0
                .contains("does not match")
        );
        assert!(
            parse(
                Some("application/vnd.docker.distribution.manifest.v1+json"),
                br#"{"schemaVersion":1}"#
            )
            .unwrap_err()
            .0
            .contains("schema 1")
        );
    }

    #[test]
    fn an_index_lists_children_and_a_subject_is_read() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","artifactType":"application/x.sig","subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":5}},"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":9}}]}}"#,
            d(b"s"),
            d(b"c")
        );
        let p = parse(Some(OCI_INDEX), m.as_bytes()).unwrap();
        assert_eq!(p.children.len(), 1);
        assert_eq!(p.subject.unwrap().digest.to_string(), d(b"s"));
        assert_eq!(p.artifact_type.as_deref(), Some("application/x.sig"));
    }
}
