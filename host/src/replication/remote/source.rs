//! A remote registry read from: manifests, blobs, referrers, the catalog, tags.

use async_trait::async_trait;
use oci_client::manifest::OciDescriptor;

use crate::replication::endpoints::EndpointKind;
use crate::replication::side::{ByteStream, FetchedManifest, SideError, SideResult, Source};

use super::*;

#[async_trait]
impl Source for Remote {
    fn describe(&self) -> String {
        format!("endpoint {}", self.name)
    }

    async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> SideResult<Option<FetchedManifest>> {
        self.authorize(repository, false).await?;
        let image = self.reference(repository, reference);
        match self
            .client()
            .pull_manifest_raw(&image, &self.auth, MANIFEST_TYPES)
            .await
        {
            Ok((bytes, digest)) => Ok(Some(FetchedManifest {
                digest,
                media_type: crate::replication::side::media_type_of(&bytes),
                bytes,
                clock: None,
            })),
            Err(e) => match self.error(e, &format!("reading {repository}:{reference}")) {
                SideError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn blob(&self, repository: &str, digest: &str, size: u64) -> SideResult<ByteStream> {
        self.authorize(repository, false).await?;
        let descriptor = OciDescriptor {
            digest: digest.to_string(),
            size: size as i64,
            ..OciDescriptor::default()
        };
        let sized = self
            .client()
            .pull_blob_stream(&self.reference(repository, digest), &descriptor)
            .await
            .map_err(|e| self.error(e, &format!("reading blob {digest}")))?;
        Ok(Box::pin(sized.stream))
    }

    async fn referrers(&self, repository: &str, digest: &str) -> SideResult<Vec<String>> {
        if self.kind == EndpointKind::Distribution {
            return Ok(Vec::new()); // distribution 2.x has no referrers API
        }
        self.authorize(repository, false).await?;
        match self
            .client()
            .pull_referrers(&self.reference(repository, digest), None)
            .await
        {
            Ok(index) => Ok(index.manifests.into_iter().map(|m| m.digest).collect()),
            Err(e) => match self.error(e, &format!("listing referrers of {digest}")) {
                // A registry without the referrers API answers 404: there are none to move.
                SideError::NotFound(_) => Ok(Vec::new()),
                other => Err(other),
            },
        }
    }

    async fn repositories(&self) -> SideResult<Vec<String>> {
        let token = self.token_for(&["registry:catalog:*".to_string()]).await?;
        let mut out: Vec<String> = Vec::new();
        loop {
            let mut url = format!("{}/v2/_catalog?n=1000", self.base_url);
            if let Some(last) = out.last() {
                url.push_str(&format!("&last={last}"));
            }
            let response = self
                .request(reqwest::Method::GET, url, token.clone())
                .send()
                .await
                .map_err(|e| self.transport(e, "listing repositories"))?;
            if !response.status().is_success() {
                return Err(self.status_error(response, "listing repositories").await);
            }
            #[derive(serde::Deserialize)]
            struct Catalog {
                #[serde(default)]
                repositories: Vec<String>,
            }
            let page: Catalog = response
                .json()
                .await
                .map_err(|e| self.transport(e, "reading the catalog"))?;
            if page.repositories.is_empty() {
                return Ok(out);
            }
            out.extend(page.repositories);
        }
    }

    async fn tags(&self, repository: &str) -> SideResult<Vec<String>> {
        self.authorize(repository, false).await?;
        let image = self.reference(repository, "latest");
        let mut out: Vec<String> = Vec::new();
        loop {
            let page = self
                .client()
                .list_tags(
                    &image,
                    &self.auth,
                    Some(1000),
                    out.last().map(String::as_str),
                )
                .await;
            let page = match page {
                Ok(page) => page,
                Err(e) => match self.error(e, &format!("listing tags of {repository}")) {
                    SideError::NotFound(_) => return Ok(out),
                    other => return Err(other),
                },
            };
            if page.tags.is_empty() {
                return Ok(out);
            }
            let before = out.len();
            out.extend(page.tags);
            out.dedup();
            if out.len() == before {
                return Ok(out); // a registry that ignores `last`
            }
        }
    }
}
