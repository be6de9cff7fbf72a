//! Access control end to end: the whole permission matrix, the token service, attacks
//! that must fail, login rate limiting, the audit log, and the admin API's OpenAPI document.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::*;

mod access;
mod admin_api;
mod clients;
mod tokens;

const PASSWORD: &str = "a long test password";

/// A server with projects `pub` (public) and `priv` (private) and one user per role.
struct World {
    berth: Berth,
    robots: BTreeMap<&'static str, String>,
}

async fn api(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn world() -> World {
    let berth = Berth::start();
    let admin = client();
    let base = berth.url.clone();
    for (name, public) in [("pub", true), ("priv", false)] {
        let (s, _) = api(
            &admin,
            reqwest::Method::POST,
            format!("{base}/api/v1/projects"),
            Some(json!({"name": name, "public": public})),
        )
        .await;
        assert_eq!(s, 201);
    }
    for user in ["padmin", "dev", "guest", "outsider"] {
        let (s, body) = api(
            &admin,
            reqwest::Method::POST,
            format!("{base}/api/v1/users"),
            Some(json!({"username": user, "password": PASSWORD})),
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }
    for project in ["pub", "priv"] {
        for (user, role) in [
            ("padmin", "admin"),
            ("dev", "developer"),
            ("guest", "guest"),
        ] {
            let (s, body) = api(
                &admin,
                reqwest::Method::POST,
                format!("{base}/api/v1/projects/{project}/members"),
                Some(json!({"username": user, "role": role})),
            )
            .await;
            assert_eq!(s, 201, "{body}");
        }
        push_image(&admin, &base, &format!("{project}/app"), "v1", 1).await;
    }
    let mut robots = BTreeMap::new();
    for (name, actions) in [
        ("ci-push", json!(["pull", "push"])),
        ("ci-pull", json!(["pull"])),
    ] {
        let (s, body) = api(
            &admin,
            reqwest::Method::POST,
            format!("{base}/api/v1/robots"),
            Some(json!({"name": name, "permissions": [{"project": "pub", "actions": actions}, {"project": "priv", "actions": actions}]})),
        )
        .await;
        assert_eq!(s, 201, "{body}");
        assert_eq!(body["name"], format!("robot${name}"));
        robots.insert(name, body["secret"].as_str().unwrap().to_owned());
    }
    World { berth, robots }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    SystemAdmin,
    ProjectAdmin,
    Developer,
    Guest,
    NonMember,
    Anonymous,
    RobotPush,
    RobotPull,
}

impl World {
    fn client(&self, who: Who) -> reqwest::Client {
        match who {
            Who::SystemAdmin => client(),
            Who::ProjectAdmin => client_as("padmin", PASSWORD),
            Who::Developer => client_as("dev", PASSWORD),
            Who::Guest => client_as("guest", PASSWORD),
            Who::NonMember => client_as("outsider", PASSWORD),
            Who::Anonymous => anonymous_client(),
            Who::RobotPush => client_as("robot$ci-push", &self.robots["ci-push"]),
            Who::RobotPull => client_as("robot$ci-pull", &self.robots["ci-pull"]),
        }
    }
}

/// Every action of the matrix, performed for real; true when it was allowed.
async fn attempt(w: &World, who: Who, project: &str, action: &str, n: u64) -> bool {
    let base = &w.berth.url;
    let admin = client();
    let http = w.client(who);
    let repo = format!("{project}/app");
    match action {
        "pull" => {
            http.get(format!("{base}/v2/{repo}/manifests/v1"))
                .send()
                .await
                .unwrap()
                .status()
                == 200
        }
        "push" => {
            let data = bytes(10_000 + n, 100);
            let r = http
                .post(format!(
                    "{base}/v2/{repo}/blobs/uploads/?digest={}",
                    sha256(&data)
                ))
                .body(data)
                .send()
                .await
                .unwrap();
            r.status() == 201
        }
        "delete tag" => {
            let tag = format!("del{n}");
            push_image(&admin, base, &repo, &tag, 1).await;
            http.delete(format!("{base}/v2/{repo}/manifests/{tag}"))
                .send()
                .await
                .unwrap()
                .status()
                == 202
        }
        "delete manifest" => {
            let (digest, _) = push_image(&admin, base, &repo, &format!("m{n}"), 1000 + n).await;
            http.delete(format!("{base}/v2/{repo}/manifests/{digest}"))
                .send()
                .await
                .unwrap()
                .status()
                == 202
        }
        "manage members" => {
            let r = http
                .post(format!("{base}/api/v1/projects/{project}/members"))
                .json(&json!({"username": "outsider", "role": "guest"}))
                .send()
                .await
                .unwrap();
            let ok = r.status() == 201;
            if ok {
                admin
                    .delete(format!("{base}/api/v1/projects/{project}/members/outsider"))
                    .send()
                    .await
                    .unwrap();
            }
            ok
        }
        "create robot" => {
            let r = http
                .post(format!("{base}/api/v1/robots"))
                .json(&json!({"name": format!("r{n}"), "permissions": [{"project": project, "actions": ["pull"]}]}))
                .send()
                .await
                .unwrap();
            r.status() == 201
        }
        _ => unreachable!(),
    }
}

async fn token(w: &World, basic: Option<(&str, &str)>, scopes: &[&str]) -> (u16, Value) {
    let mut url = format!("{}/service/token?service=berth", w.berth.url);
    for s in scopes {
        url.push_str(&format!("&scope={s}"));
    }
    let http = match basic {
        Some((u, p)) => client_as(u, p),
        None => anonymous_client(),
    };
    api(&http, reqwest::Method::GET, url, None).await
}

fn bearer(t: &str) -> reqwest::Client {
    install_crypto();
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {t}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(h)
        .build()
        .unwrap()
}

/// A GET sent exactly as written, over a raw connection; returns (status, body).
fn raw_get(addr: &str, path: &str, basic: &str) -> (u16, String) {
    use base64::Engine;
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(basic);
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, response)
}

/// Removes a directory when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
