//! A remote registry written to: mounts, blob uploads, manifests (with berth's origin
//! and clock headers), deletes.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;

use crate::replication::endpoints::EndpointKind;
use crate::replication::side::{ByteStream, FetchedManifest, SideError, SideResult, Sink};

use crate::registry::routes::{CLOCK_HEADER, ORIGIN_HEADER};
use crate::storage::clock::Clock;

use super::*;

#[async_trait]
impl Sink for Remote {
    fn describe(&self) -> String {
        format!("endpoint {}", self.name)
    }

    async fn resolve(&self, repository: &str, reference: &str) -> SideResult<Option<String>> {
        self.authorize(repository, true).await?;
        match self
            .client()
            .fetch_manifest_digest(&self.reference(repository, reference), &self.auth)
            .await
        {
            Ok(digest) => Ok(Some(digest)),
            Err(e) => match self.error(e, &format!("checking {repository}:{reference}")) {
                SideError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn has_blob(&self, repository: &str, digest: &str) -> SideResult<bool> {
        self.authorize(repository, true).await?;
        self.client()
            .blob_exists(&self.reference(repository, digest), digest)
            .await
            .map_err(|e| self.error(e, &format!("checking blob {digest}")))
    }

    async fn mount(&self, repository: &str, from: &str, digest: &str) -> SideResult<bool> {
        if matches!(self.auth, RegistryAuth::Bearer(_)) {
            return Ok(false); // a delegated token covers the destination only
        }
        // A mount reads `from`: registries that use tokens want pull on it in the same
        // token as push on the destination, which oci-client cannot ask for.
        let token = self
            .token_for(&[
                format!("repository:{repository}:pull,push"),
                format!("repository:{from}:pull"),
            ])
            .await?;
        let url = format!(
            "{}/v2/{repository}/blobs/uploads/?mount={digest}&from={from}",
            self.base_url
        );
        let response = self
            .request(reqwest::Method::POST, url, token.clone())
            .send()
            .await
            .map_err(|e| self.transport(e, &format!("mounting blob {digest}")))?;
        match response.status().as_u16() {
            201 => Ok(true),
            202 => {
                // Not mountable here: the registry opened an upload session instead;
                // cancel it rather than leave it to expire.
                if let Some(location) = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                {
                    let location = if location.starts_with('/') {
                        format!("{}{location}", self.base_url)
                    } else {
                        location.to_string()
                    };
                    let _ = self
                        .request(reqwest::Method::DELETE, location, token)
                        .send()
                        .await;
                }
                Ok(false)
            }
            _ => Err(self
                .status_error(response, &format!("mounting blob {digest}"))
                .await
                .at_destination()),
        }
    }

    async fn put_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        bytes: ByteStream,
    ) -> SideResult<()> {
        self.authorize(repository, true).await?;
        let stream = bytes.map_err(OciDistributionError::IoError).boxed();
        self.client()
            .push_blob_stream(
                &self.reference(repository, digest),
                stream,
                digest,
                Some(size),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                self.error(e, &format!("sending blob {digest}"))
                    .at_destination()
            })
    }

    async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        manifest: &FetchedManifest,
    ) -> SideResult<()> {
        let token = self.authorize(repository, true).await?;
        let mut request = self
            .request(
                reqwest::Method::PUT,
                format!("{}/v2/{repository}/manifests/{reference}", self.base_url),
                token,
            )
            .header(reqwest::header::CONTENT_TYPE, &manifest.media_type)
            .body(manifest.bytes.clone());
        if self.kind == EndpointKind::Berth {
            request = request.header(ORIGIN_HEADER, &self.origin);
            if let Some(clock) = &manifest.clock {
                request = request.header(CLOCK_HEADER, clock.to_string());
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport(e, &format!("writing {repository}:{reference}")))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self
                .status_error(response, &format!("writing {repository}:{reference}"))
                .await
                .at_destination())
        }
    }

    async fn delete(
        &self,
        repository: &str,
        reference: &str,
        clock: Option<&Clock>,
    ) -> SideResult<bool> {
        let token = self
            .token_for(&[format!("repository:{repository}:pull,push,delete")])
            .await?;
        let mut request = self.request(
            reqwest::Method::DELETE,
            format!("{}/v2/{repository}/manifests/{reference}", self.base_url),
            token,
        );
        if self.kind == EndpointKind::Berth {
            request = request.header(ORIGIN_HEADER, &self.origin);
            if let Some(clock) = clock {
                request = request.header(CLOCK_HEADER, clock.to_string());
            }
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport(e, &format!("deleting {repository}:{reference}")))?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(self
                .status_error(response, &format!("deleting {repository}:{reference}"))
                .await),
        }
    }
}
