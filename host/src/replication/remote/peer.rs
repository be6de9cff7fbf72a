//! What only a berth peer answers: tokens for scopes oci-client never asks for, metadata
//! exchange, and transfers delegated to it (a tree's later hops).

use oci_client::secrets::RegistryAuth;

use crate::replication::delegate::{
    FailureKind, TransferRequest, TransferState, TransferStatus, TransferTarget,
};
use crate::replication::endpoints::EndpointKind;
use crate::replication::metadata::MetadataState;
use crate::replication::side::{SideError, SideResult};
use crate::replication::transfer::CopyOutcome;

use super::*;

impl Remote {
    /// A token for `scopes`, for what oci-client never asks for: `delete` (registries
    /// that use tokens grant it only when asked by name), the catalog, and a mount's two
    /// repositories at once. `None` when the registry wants no token (anonymous, or Basic
    /// credentials).
    pub async fn token_for(&self, scopes: &[String]) -> SideResult<Option<String>> {
        if let RegistryAuth::Bearer(token) = &self.auth {
            return Ok(Some(token.clone())); // all this client may ever present
        }
        let challenge = self
            .challenge
            .get_or_try_init(|| async {
                let probe = self
                    .http
                    .get(format!("{}/v2/", self.base_url))
                    .send()
                    .await
                    .map_err(|e| self.transport(e, "GET /v2/"))?;
                let header = probe
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                // Anonymous or Basic: `request` adds what is needed.
                Ok::<_, SideError>(header.strip_prefix("Bearer ").and_then(|params| {
                    let mut params = parse_challenge(params);
                    let realm = params.remove("realm")?;
                    Some((realm, params.remove("service")))
                }))
            })
            .await?;
        let Some((realm, service)) = challenge else {
            return Ok(None);
        };
        let mut request = self.http.get(realm.as_str());
        for scope in scopes {
            request = request.query(&[("scope", scope)]);
        }
        if let Some(service) = service {
            request = request.query(&[("service", service)]);
        }
        if let RegistryAuth::Basic(user, password) = &self.auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request
            .send()
            .await
            .map_err(|e| self.transport(e, "asking for a token"))?;
        if !response.status().is_success() {
            return Err(self.status_error(response, "asking for a token").await);
        }
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token = response
            .json()
            .await
            .map_err(|e| self.transport(e, "reading a token"))?;
        Ok(token.token.or(token.access_token))
    }
}

impl Remote {
    /// What answers at this endpoint.
    pub fn kind(&self) -> EndpointKind {
        self.kind
    }

    /// This endpoint as the destination of a delegated transfer, with `token`.
    pub fn as_target(&self, token: String) -> TransferTarget {
        TransferTarget {
            url: self.base_url.clone(),
            kind: self.kind,
            token,
            insecure: self.insecure,
            ca_cert: self.ca_cert.clone(),
        }
    }

    /// One metadata round with this berth (see [`crate::replication::metadata`]): sends our state,
    /// returns theirs.
    pub async fn exchange_metadata(&self, state: &MetadataState) -> SideResult<MetadataState> {
        let doing = "exchanging metadata";
        let response = self
            .request(
                reqwest::Method::POST,
                format!("{}/api/v1/replication/metadata", self.base_url),
                None,
            )
            .json(state)
            .send()
            .await
            .map_err(|e| self.transport(e, doing))?;
        if !response.status().is_success() {
            return Err(self.status_error(response, doing).await);
        }
        response.json().await.map_err(|e| self.transport(e, doing))
    }

    /// Asks this berth to send an artifact it holds to another registry, and waits for
    /// the outcome (see [`crate::replication::delegate`]).
    pub async fn delegate_copy(&self, request: &TransferRequest) -> SideResult<CopyOutcome> {
        let doing = format!(
            "sending {}:{} on to {}",
            request.repository, request.reference, request.target.url
        );
        let response = self
            .request(
                reqwest::Method::POST,
                format!("{}/api/v1/replication/transfers", self.base_url),
                None,
            )
            .json(request)
            .send()
            .await
            .map_err(|e| self.transport(e, &doing))?;
        if !response.status().is_success() {
            return Err(self.status_error(response, &doing).await);
        }
        let mut state: TransferState = response
            .json()
            .await
            .map_err(|e| self.transport(e, &doing))?;
        // Long polls, each shorter than the read timeout, until the transfer ends.
        let wait_ms = (self.timeout.as_millis() as u64 / 2).clamp(100, 20_000);
        while state.status == TransferStatus::Running {
            let response = self
                .request(
                    reqwest::Method::GET,
                    format!(
                        "{}/api/v1/replication/transfers/{}?wait_ms={wait_ms}",
                        self.base_url, state.id
                    ),
                    None,
                )
                .send()
                .await
                .map_err(|e| self.transport(e, &doing))?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Err(SideError::Failed(format!(
                    "{} ({}): {doing}: it no longer knows the transfer (did it restart?)",
                    self.name, self.base_url
                )));
            }
            if !response.status().is_success() {
                return Err(self.status_error(response, &doing).await);
            }
            state = response
                .json()
                .await
                .map_err(|e| self.transport(e, &doing))?;
        }
        if state.status == TransferStatus::Succeeded {
            return Ok(CopyOutcome {
                progress: state.progress,
                note: state.note,
            });
        }
        let text = format!(
            "{} ({}) {doing}: {}",
            self.name,
            self.base_url,
            state.error.unwrap_or_default()
        );
        Err(match state.failure {
            Some(FailureKind::Unauthorized) => SideError::Unauthorized(text),
            Some(FailureKind::NotFound) => SideError::NotFound(text),
            Some(FailureKind::Refused) => SideError::Refused(text),
            Some(FailureKind::NoDestination) => SideError::NoDestination(text),
            _ => SideError::Failed(text),
        })
    }
}
