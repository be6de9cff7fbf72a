//! Keystone v3: a token for the cluster's credentials (a password scoped to a project, or
//! an application credential), and from its service catalog the compute and image
//! endpoints of one region and interface. Requests to a service go through [`Session`],
//! which signs in again once when a token expires under it.

use berth_plugin_sdk::http::{Method, Request, Response};
use berth_plugin_sdk::provider::{ClusterContext, ErrorKind, ProviderError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::errors::error_of;

/// The compute API version asked for: 2.47 embeds the flavor (its name) in a server.
pub const MICROVERSION: &str = "2.47";

/// A signed-in session for one region of one cluster.
pub struct Session<'a> {
    cluster: &'a ClusterContext,
    region: String,
    token: String,
    /// The compute endpoint, without a trailing slash.
    pub compute: String,
    /// The image endpoint, without a trailing slash, when the catalog has one.
    pub image: Option<String>,
}

#[derive(Deserialize)]
struct TokenBody {
    token: Token,
}

#[derive(Deserialize)]
struct Token {
    #[serde(default)]
    catalog: Vec<Service>,
}

#[derive(Deserialize)]
struct Service {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    endpoints: Vec<ServiceEndpoint>,
}

#[derive(Deserialize)]
struct ServiceEndpoint {
    interface: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    region_id: Option<String>,
    url: String,
}

impl<'a> Session<'a> {
    /// Signs in for `region` of `cluster`.
    pub fn open(cluster: &'a ClusterContext, region: &str) -> Result<Session<'a>, ProviderError> {
        let (token, compute, image) = sign_in(cluster, region)?;
        Ok(Session {
            cluster,
            region: region.to_string(),
            token,
            compute,
            image,
        })
    }

    /// `method` of `path` (with its query) on the compute endpoint, with `body` as JSON;
    /// signed in again once if the token expired meanwhile. Answers 2xx responses; any
    /// other is the provider error it means, `what` naming the request in its message.
    pub fn compute(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Response, ProviderError> {
        let url = format!("{}{path}", self.compute);
        self.send(&url, method, body, what)
    }

    /// A GET of `url` (an image endpoint's), signed in again once as [`Session::compute`].
    pub fn get(&mut self, url: &str, what: &str) -> Result<Response, ProviderError> {
        self.send(url, Method::Get, None, what)
    }

    fn send(
        &mut self,
        url: &str,
        method: Method,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Response, ProviderError> {
        for attempt in 0..2 {
            let mut request = Request::new(method, url)
                .header("X-Auth-Token", &self.token)
                .header("OpenStack-API-Version", format!("compute {MICROVERSION}"))
                .header("Accept", "application/json");
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send()?;
            if response.status == 401 && attempt == 0 {
                // The token expired under us (or was revoked): once more, with a new one.
                let (token, compute, image) = sign_in(self.cluster, &self.region)?;
                self.token = token;
                self.compute = compute;
                self.image = image;
                continue;
            }
            if response.is_success() {
                return Ok(response);
            }
            return Err(error_of(&response, what));
        }
        unreachable!("the loop returns on its second attempt")
    }
}

/// The auth request for the cluster's credentials.
fn auth_body(cluster: &ClusterContext) -> Result<Value, ProviderError> {
    let has = |name: &str| cluster.credentials.iter().any(|c| c == name);
    if has("application-credential-id") {
        return Ok(json!({"auth": {"identity": {
        "methods": ["application_credential"],
        "application_credential": {
            "id": cluster.credential("application-credential-id")?,
            "secret": cluster.credential("application-credential-secret")?,
        }}}}));
    }
    let setting = |key: &str| -> Result<String, ProviderError> {
        cluster.setting(key).map(str::to_string).ok_or_else(|| {
            ProviderError::invalid(format!(
                "cluster {} signs in with a password: set the setting {key} (or give the \
                 credentials application-credential-id and application-credential-secret)",
                cluster.name
            ))
        })
    };
    let user_domain = cluster.setting("user-domain").unwrap_or("Default");
    let project_domain = cluster.setting("project-domain").unwrap_or("Default");
    Ok(json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": setting("username")?,
            "domain": {"name": user_domain},
            "password": cluster.credential("password")?,
        }}},
        "scope": {"project": {"name": setting("project")?, "domain": {"name": project_domain}}},
    }}))
}

/// A token, and the compute and image endpoints of `region` from its catalog.
fn sign_in(
    cluster: &ClusterContext,
    region: &str,
) -> Result<(String, String, Option<String>), ProviderError> {
    let endpoint = cluster.endpoint.as_deref().ok_or_else(|| {
        ProviderError::invalid(format!(
            "cluster {} names no endpoint: set it to Keystone's v3 URL (https://keystone.example:5000/v3)",
            cluster.name
        ))
    })?;
    let url = format!("{}/auth/tokens", endpoint.trim_end_matches('/'));
    let response = Request::post(url)
        .json(&auth_body(cluster)?)
        .header("Accept", "application/json")
        .send()?;
    if !response.is_success() {
        let mut error = error_of(&response, "signing in to Keystone");
        if response.status == 401 {
            error.kind = ErrorKind::Auth;
        }
        return Err(error);
    }
    let token = response
        .header("X-Subject-Token")
        .ok_or_else(|| {
            ProviderError::new(ErrorKind::Other, "Keystone answered no X-Subject-Token")
        })?
        .to_string();
    let body: TokenBody = response.json()?;
    let interface = cluster.setting("interface").unwrap_or("public");
    let find = |kind: &str| {
        body.token
            .catalog
            .iter()
            .filter(|s| s.kind == kind)
            .flat_map(|s| &s.endpoints)
            .find(|e| {
                e.interface == interface
                    && (e.region_id.as_deref() == Some(region)
                        || e.region.as_deref() == Some(region))
            })
            .map(|e| e.url.trim_end_matches('/').to_string())
    };
    let compute = find("compute").ok_or_else(|| {
        ProviderError::invalid(format!(
            "Keystone's catalog for cluster {} has no compute endpoint in region {region} \
             (interface {interface})",
            cluster.name
        ))
    })?;
    Ok((token, compute, find("image")))
}
