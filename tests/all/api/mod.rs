//! The distribution API over raw HTTP: every endpoint, its headers, and every error code,
//! against a real `berth serve`.

use crate::support::*;

mod deletes;
mod manifests;
mod uploads;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
