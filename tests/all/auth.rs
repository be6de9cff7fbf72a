//! Access control end to end: the whole permission matrix, the token service, attacks
//! that must fail, login rate limiting, the audit log, and the admin API's OpenAPI document.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::support::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_permission_matrix_holds_for_every_role_action_and_project() {
    use Who::*;
    let w = world().await;
    let actions = [
        "pull",
        "push",
        "delete tag",
        "delete manifest",
        "manage members",
        "create robot",
    ];
    // (who, allowed on the public project, allowed on the private project), per action.
    let expected: &[(Who, [bool; 6], [bool; 6])] = &[
        (SystemAdmin, [true; 6], [true; 6]),
        (ProjectAdmin, [true; 6], [true; 6]),
        (
            Developer,
            [true, true, false, false, false, false],
            [true, true, false, false, false, false],
        ),
        (
            Guest,
            [true, false, false, false, false, false],
            [true, false, false, false, false, false],
        ),
        (
            NonMember,
            [true, false, false, false, false, false],
            [false; 6],
        ),
        (
            Anonymous,
            [true, false, false, false, false, false],
            [false; 6],
        ),
        (
            RobotPush,
            [true, true, false, false, false, false],
            [true, true, false, false, false, false],
        ),
        (
            RobotPull,
            [true, false, false, false, false, false],
            [true, false, false, false, false, false],
        ),
    ];
    let mut n = 0;
    let mut wrong = Vec::new();
    for (who, on_pub, on_priv) in expected {
        for (project, row) in [("pub", on_pub), ("priv", on_priv)] {
            for (action, allowed) in actions.iter().zip(row) {
                n += 1;
                let got = attempt(&w, *who, project, action, n).await;
                if got != *allowed {
                    wrong.push(format!(
                        "{who:?} {action} on {project}: expected {allowed}, got {got}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "matrix cells that do not hold:\n{}",
        wrong.join("\n")
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_challenged_toward_the_token_service() {
    let w = world().await;
    let r = anonymous_client()
        .get(w.berth.v2("priv/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_owned();
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"{}/service/token\",service=\"berth\",scope=\"repository:priv/app:pull\"",
            w.berth.url
        )
    );
    assert_eq!(error_code(r).await, "UNAUTHORIZED");
    let r = anonymous_client().get(w.berth.v2("")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_grant_the_intersection_of_what_was_asked_and_what_is_allowed() {
    let w = world().await;
    let (s, body) = token(
        &w,
        Some(("guest", PASSWORD)),
        &["repository:priv/app:pull,push"],
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["scope"], "repository:priv/app:pull");
    let t = body["token"].as_str().unwrap();
    assert!(body["expires_in"].as_u64().unwrap() > 0 && body["issued_at"].is_string());
    let http = bearer(t);
    assert_eq!(
        http.get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = http
        .post(w.berth.v2("priv/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"insufficient_scope\"")
    );

    // A token for one project does not open another, even where the user may pull.
    let (_, body) = token(&w, Some(("dev", PASSWORD)), &["repository:pub/app:pull"]).await;
    let http = bearer(body["token"].as_str().unwrap());
    assert_eq!(
        http.get(w.berth.v2("pub/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Anonymous tokens read public projects only.
    let (s, body) = token(
        &w,
        None,
        &["repository:pub/app:pull", "repository:priv/app:pull"],
    )
    .await;
    assert_eq!(s, 200);
    let http = bearer(body["token"].as_str().unwrap());
    assert_eq!(
        http.get(w.berth.v2("pub/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // A token for another service is refused.
    let (s, _) = api(
        &client(),
        reqwest::Method::GET,
        format!(
            "{}/service/token?service=other&scope=repository:pub/app:pull",
            w.berth.url
        ),
        None,
    )
    .await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_re_signed_and_expired_tokens_are_refused() {
    use base64::Engine;
    let w = world().await;
    let (_, body) = token(&w, Some(("guest", PASSWORD)), &["repository:priv/app:pull"]).await;
    let t = body["token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = t.split('.').collect();
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = String::from_utf8(engine.decode(parts[1]).unwrap()).unwrap();

    // Escalate the scope in the payload, keep the signature.
    let escalated = payload.replace("[\"pull\"]", "[\"pull\",\"push\",\"delete\"]");
    assert_ne!(escalated, payload);
    let forged = format!("{}.{}.{}", parts[0], engine.encode(&escalated), parts[2]);
    let r = bearer(&forged)
        .delete(w.berth.v2("priv/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    // Re-sign the escalated claims with a key of our own under the server's kid.
    use jwt_simple::prelude::*;
    let header: Value = serde_json::from_slice(&engine.decode(parts[0]).unwrap()).unwrap();
    let kid = header["kid"].as_str().unwrap();
    let ours = Ed25519KeyPair::generate().with_key_id(kid);
    let mut claims: Value = serde_json::from_str(&escalated).unwrap();
    let custom = json!({"access": claims["access"].take()});
    let resigned = ours
        .sign(
            Claims::with_custom_claims(custom, Duration::from_secs(300))
                .with_issuer(claims["iss"].as_str().unwrap())
                .with_audience(claims["aud"].as_str().unwrap())
                .with_subject("guest"),
        )
        .unwrap();
    assert_eq!(
        bearer(&resigned)
            .delete(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // The manifest is still there.
    assert_eq!(
        client()
            .get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Expiry, on a server whose tokens live one second.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("berth.toml");
    std::fs::write(&cfg, "[auth]\ntoken_ttl_secs = 1\n").unwrap();
    let short = Berth::start_with(&["--config", cfg.to_str().unwrap()]);
    let (_, body) = api(
        &client(),
        reqwest::Method::GET,
        format!(
            "{}/service/token?service=berth&scope=repository:team/x:pull",
            short.url
        ),
        None,
    )
    .await;
    let http = bearer(body["token"].as_str().unwrap());
    assert_eq!(
        http.get(short.v2("team/x/tags/list"))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "valid while fresh"
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = http.get(short.v2("team/x/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), 401, "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_and_the_oauth2_form_as_containerd_uses_them() {
    let w = world().await;
    let form = |pairs: Vec<(&'static str, String)>| {
        let url = format!("{}/service/token", w.berth.url);
        async move {
            let r = anonymous_client()
                .post(url)
                .form(&pairs)
                .send()
                .await
                .unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, body) = form(vec![
        ("grant_type", "password".into()),
        ("username", "dev".into()),
        ("password", PASSWORD.into()),
        ("service", "berth".into()),
        ("scope", "repository:priv/app:pull,push".into()),
        ("access_type", "offline".into()),
        ("client_id", "test".into()),
    ])
    .await;
    assert_eq!(s, 200, "{body}");
    let refresh = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(body["scope"], "repository:priv/app:pull,push");

    let (s, body) = form(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh.clone()),
        ("service", "berth".into()),
        ("scope", "repository:priv/app:pull".into()),
    ])
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        bearer(body["access_token"].as_str().unwrap())
            .get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // A refresh token is not an access token.
    assert_eq!(
        bearer(&refresh)
            .get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // After a password change, earlier refresh tokens are void.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (s, _) = api(
        &client_as("dev", PASSWORD),
        reqwest::Method::PUT,
        format!("{}/api/v1/users/dev/password", w.berth.url),
        Some(json!({"old_password": PASSWORD, "new_password": "another long password"})),
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = form(vec![
        ("grant_type", "refresh_token".into()),
        ("refresh_token", refresh),
        ("service", "berth".into()),
    ])
    .await;
    assert_eq!(s, 401);
    let (s, _) = form(vec![("grant_type", "client_credentials".into())]).await;
    assert_eq!(s, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_projects_blob_cannot_be_read_or_mounted_by_digest() {
    let w = world().await;
    let secret = bytes(777, 5000);
    let digest = push_blob(&client(), &w.berth.url, "priv/app", &secret).await;
    // The non-member may push to no project; make one where they may.
    let (s, _) = api(
        &client(),
        reqwest::Method::POST,
        format!("{}/api/v1/projects", w.berth.url),
        Some(json!({"name": "mine"})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = api(
        &client(),
        reqwest::Method::POST,
        format!("{}/api/v1/projects/mine/members", w.berth.url),
        Some(json!({"username": "outsider", "role": "developer"})),
    )
    .await;
    assert_eq!(s, 201);
    let http = client_as("outsider", PASSWORD);
    let r = http
        .get(w.berth.v2(&format!("mine/app/blobs/{digest}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(error_code(r).await, "BLOB_UNKNOWN");
    // Mounting from a repository they cannot read falls back to a plain upload session.
    let r = http
        .post(w.berth.v2(&format!(
            "mine/app/blobs/uploads/?mount={digest}&from=priv/app"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        http.head(w.berth.v2(&format!("mine/app/blobs/{digest}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // The same mount by someone who can read the source works.
    let r = client()
        .post(w.berth.v2(&format!(
            "mine/app/blobs/uploads/?mount={digest}&from=priv/app"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_before_anything_else() {
    let w = world().await;
    // Sent byte for byte: HTTP client libraries would normalise the dot segments away.
    for path in [
        "pub/../priv/app/tags/list",
        "pub/%2e%2e/priv/app/tags/list",
        "Pub/app/tags/list",
        &format!("pub/{}/tags/list", "a".repeat(300)),
    ] {
        let (status, body) = raw_get(
            &w.berth.addr,
            &format!("/v2/{path}"),
            &format!("admin:{ADMIN_PASSWORD}"),
        );
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("NAME_INVALID"), "{path}: {body}");
    }
    // Pushing into a project that does not exist: a clear refusal.
    let r = client()
        .post(w.berth.v2("nosuch/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("project nosuch does not exist"),
        "{body}"
    );
    let r = client_as("dev", PASSWORD)
        .post(w.berth.v2("nosuch/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brute_force_logins_are_rate_limited() {
    let w = world().await;
    let wrong = client_as("guest", "not the password at all");
    for _ in 0..5 {
        assert_eq!(
            wrong
                .get(w.berth.v2("pub/app/manifests/v1"))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }
    let r = wrong
        .get(w.berth.v2("pub/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(error_code(r).await, "TOOMANYREQUESTS");
    // Even the right password waits out the window: the limit is per account.
    let (s, body) = token(&w, Some(("guest", PASSWORD)), &["repository:pub/app:pull"]).await;
    assert_eq!(s, 429, "{body}");
    // Other accounts are unaffected.
    assert_eq!(
        client_as("dev", PASSWORD)
            .get(w.berth.v2("pub/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_users_and_revoked_robots_lose_access_at_once() {
    let w = world().await;
    let (_, body) = token(&w, Some(("dev", PASSWORD)), &["repository:priv/app:pull"]).await;
    let t = body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        bearer(&t)
            .get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (s, _) = api(
        &client(),
        reqwest::Method::PATCH,
        format!("{}/api/v1/users/dev", w.berth.url),
        Some(json!({"disabled": true})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        bearer(&t)
            .get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        client_as("dev", PASSWORD)
            .get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let robot = w.client(Who::RobotPush);
    assert_eq!(
        robot
            .get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (s, _) = api(
        &client(),
        reqwest::Method::DELETE,
        format!("{}/api/v1/robots/robot$ci-push", w.berth.url),
        None,
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        robot
            .get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_logs_in_and_copies_as_a_user_and_as_a_robot() {
    require_tool("skopeo", "skopeo");
    let w = world().await;
    let tmp = tempfile::tempdir().unwrap();
    let auth_file = tmp.path().join("auth.json");
    let run = |args: Vec<String>| {
        let out = std::process::Command::new("skopeo")
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let host = w.berth.addr.clone();
    let af = auth_file.display().to_string();
    for (user, password) in [
        ("dev".to_string(), PASSWORD.to_string()),
        ("robot$ci-push".to_string(), w.robots["ci-push"].clone()),
    ] {
        let (ok, err) = run(vec![
            "login".into(),
            "--tls-verify=false".into(),
            "--authfile".into(),
            af.clone(),
            "-u".into(),
            user.clone(),
            "-p".into(),
            password.clone(),
            host.clone(),
        ]);
        assert!(ok, "skopeo login as {user}: {err}");
        let dest = format!(
            "docker://{host}/priv/copied-by-{}:v1",
            user.replace('$', "-")
        );
        let (ok, err) = run(vec![
            "copy".into(),
            "--authfile".into(),
            af.clone(),
            "--src-tls-verify=false".into(),
            "--dest-tls-verify=false".into(),
            format!("docker://{host}/priv/app:v1"),
            dest.clone(),
        ]);
        assert!(ok, "skopeo copy as {user}: {err}");
        let (ok, err) = run(vec![
            "logout".into(),
            "--authfile".into(),
            af.clone(),
            host.clone(),
        ]);
        assert!(ok, "{err}");
    }
    // A wrong password is refused at login.
    let (ok, _) = run(vec![
        "login".into(),
        "--tls-verify=false".into(),
        "--authfile".into(),
        af,
        "-u".into(),
        "guest".into(),
        "-p".into(),
        "wrong password!!".into(),
        host,
    ]);
    assert!(!ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_and_access_is_in_the_audit_log() {
    let w = world().await;
    let dev = client_as("dev", PASSWORD);
    dev.get(w.berth.v2("priv/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    client_as("guest", PASSWORD)
        .delete(w.berth.v2("priv/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    let (s, body) = api(
        &client(),
        reqwest::Method::GET,
        format!("{}/api/v1/audit?limit=1000", w.berth.url),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let entries = body.as_array().unwrap();
    let has = |actor: &str, action: &str, resource: &str, outcome: &str| {
        entries.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["resource"] == resource
                && e["outcome"] == outcome
        })
    };
    assert!(has("admin", "project.create", "priv", "success"));
    assert!(has("admin", "user.create", "dev", "success"));
    assert!(has("admin", "member.set", "priv", "success"));
    assert!(has("admin", "robot.create", "robot$ci-push", "success"));
    assert!(has("admin", "push", "priv/app", "success"));
    assert!(has("dev", "pull", "priv/app", "success"));
    assert!(has("guest", "delete", "priv/app", "denied"));
    let pull = entries
        .iter()
        .find(|e| e["actor"] == "dev" && e["action"] == "pull")
        .unwrap();
    assert_eq!(pull["source"], "127.0.0.1");
    assert_eq!(pull["tag"], "v1");
    assert!(pull["digest"].as_str().unwrap().starts_with("sha256:"));
    // Filters and paging.
    let (_, only) = api(
        &client(),
        reqwest::Method::GET,
        format!("{}/api/v1/audit?actor=guest", w.berth.url),
        None,
    )
    .await;
    assert!(
        only.as_array()
            .unwrap()
            .iter()
            .all(|e| e["actor"] == "guest")
    );
    let (_, page) = api(
        &client(),
        reqwest::Method::GET,
        format!("{}/api/v1/audit?limit=2", w.berth.url),
        None,
    )
    .await;
    assert_eq!(page.as_array().unwrap().len(), 2);
    // Only system administrators read it.
    let (s, _) = api(
        &dev,
        reqwest::Method::GET,
        format!("{}/api/v1/audit", w.berth.url),
        None,
    )
    .await;
    assert_eq!(s, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_are_not_deleted_while_they_hold_repositories_unless_forced() {
    let w = world().await;
    let url = format!("{}/api/v1/projects/priv", w.berth.url);
    let (s, body) = api(&client(), reqwest::Method::DELETE, url.clone(), None).await;
    assert_eq!(s, 409, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("priv/app"),
        "{body}"
    );
    assert_eq!(
        client()
            .get(w.berth.v2("priv/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let (s, _) = api(
        &client_as("dev", PASSWORD),
        reqwest::Method::DELETE,
        format!("{url}?force=true"),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, _) = api(
        &client_as("padmin", PASSWORD),
        reqwest::Method::DELETE,
        format!("{url}?force=true"),
        None,
    )
    .await;
    assert_eq!(s, 204);
    let (s, _) = api(&client(), reqwest::Method::GET, url, None).await;
    assert_eq!(s, 404);
    // Its repositories went with it.
    let r = client()
        .get(w.berth.v2("priv/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_every_route_answers_as_documented() {
    let w = world().await;
    let r = anonymous_client()
        .get(format!("{}/api/v1/openapi.json", w.berth.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    // The official validator, if installed (.ci/run installs it).
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openapi-spec-validator rejected the document (pip install openapi-spec-validator):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Call every operation, with path parameters that exist, and check the status is documented.
    let fill = |path: &str| {
        path.replace("{username}", "guest")
            .replace("{name}/members/", "pub/members/")
            .replace("{project}", "pub")
            .replace("/robots/{name}", "/robots/robot$ci-pull")
            .replace("{name}", "pub")
            .replace("{repository}", "pub%2Fapp")
            .replace("{tag}", "v1")
            .replace("{digest}", &sha256(b"none"))
            .replace("{id}", "1")
    };
    let bodies: BTreeMap<(&str, &str), Value> = BTreeMap::from([
        (
            ("post", "/api/v1/users"),
            json!({"username": "newbie", "password": PASSWORD}),
        ),
        (
            ("patch", "/api/v1/users/{username}"),
            json!({"disabled": false}),
        ),
        (
            ("put", "/api/v1/users/{username}/password"),
            json!({"new_password": "a third long password"}),
        ),
        (("post", "/api/v1/projects"), json!({"name": "fresh"})),
        (
            ("patch", "/api/v1/projects/{name}"),
            json!({"public": true}),
        ),
        (
            ("post", "/api/v1/projects/{name}/members"),
            json!({"username": "outsider", "role": "guest"}),
        ),
        (
            ("put", "/api/v1/projects/{name}/members/{username}"),
            json!({"role": "developer"}),
        ),
        (
            ("post", "/api/v1/robots"),
            json!({"name": "docs", "permissions": [{"project": "pub", "actions": ["pull"]}]}),
        ),
        (
            ("patch", "/api/v1/robots/{name}"),
            json!({"disabled": false}),
        ),
        (
            ("patch", "/api/v1/plugins/{name}"),
            json!({"enabled": true}),
        ),
        (
            ("post", "/api/v1/plugins/{name}/invoke"),
            json!({"function": "info"}),
        ),
        (
            ("put", "/api/v1/plugin-secrets/{name}"),
            json!({"value": "a secret"}),
        ),
        (
            ("post", "/api/v1/replication/endpoints"),
            json!({"name": "pub", "kind": "berth", "url": "http://127.0.0.1:9"}),
        ),
        (
            ("patch", "/api/v1/replication/endpoints/{name}"),
            json!({"description": "a peer that is not there"}),
        ),
        (
            ("post", "/api/v1/replication/policies"),
            json!({"name": "pub", "endpoints": ["pub"]}),
        ),
        (
            ("patch", "/api/v1/replication/policies/{name}"),
            json!({"enabled": false}),
        ),
        (
            ("post", "/api/v1/replication/transfers"),
            json!({"repository": "pub/app", "reference": "v1", "destination": "pub/app",
                   "target": {"url": "http://127.0.0.1:9", "kind": "berth", "token": "t"}}),
        ),
    ]);
    let mut checked = 0;
    let mut order: Vec<(String, String, Value)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            order.push((method.clone(), path.clone(), op.clone()));
        }
    }
    // Deletes last, so they do not remove what the others use.
    order.sort_by_key(|(m, _, _)| m == "delete");
    for (method, path, op) in order {
        let url = format!("{}{}", w.berth.url, fill(&path));
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let body = bodies.get(&(method.as_str(), path.as_str())).cloned();
        let (status, answer) = api(&client(), m, url, body).await;
        let documented: Vec<String> = op["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert!(
            documented.contains(&status.to_string()),
            "{method} {path} answered {status} ({answer}), documented: {documented:?}"
        );
        if status >= 400 {
            assert!(
                answer["detail"].is_string(),
                "{method} {path}: errors are problem documents: {answer}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} operations documented");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_api_requests_get_problem_documents_and_change_nothing() {
    let w = world().await;
    let url = format!("{}/api/v1/projects", w.berth.url);
    let cases: Vec<(reqwest::RequestBuilder, u16)> = vec![
        (client().post(&url).header("content-type", "application/json").body("{not json"), 400),
        (client().post(&url).header("content-type", "application/json").body(r#"{"name": "typo", "pubic": true}"#), 400),
        (client().post(&url).header("content-type", "application/json").body(r#"{"name": 42}"#), 400),
        (client().post(&url).body(r#"{"name": "nocontenttype"}"#), 415),
        (client().post(&url).json(&json!({"name": "Bad_Name!"})), 400),
        (client().post(&url).json(&json!({"name": "pub"})), 409),
        (client().get(format!("{url}?page=abc")), 400),
        (client().post(format!("{}/api/v1/users", w.berth.url)).json(&json!({"username": "weak", "password": "short"})), 400),
        (client().post(format!("{}/api/v1/robots", w.berth.url)).json(&json!({"name": "r", "permissions": [{"project": "pub", "actions": ["manage_members"]}]})), 400),
        (anonymous_client().post(&url).json(&json!({"name": "sneaky"})), 401),
        (client_as("dev", PASSWORD).post(&url).json(&json!({"name": "sneaky"})), 403),
    ];
    for (i, (request, expected)) in cases.into_iter().enumerate() {
        let r = request.send().await.unwrap();
        assert_eq!(r.status().as_u16(), expected, "case {i}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "case {i}"
        );
        let body: Value = r.json().await.unwrap();
        assert!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "case {i}: {body}"
        );
    }
    let (_, list) = api(&client(), reqwest::Method::GET, url, None).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["alpha", "priv", "pub", "team"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_logs_in_pushes_and_pulls_as_a_user_and_as_a_robot() {
    require_tool("podman", "podman");
    let w = world().await;
    // podman names an image from an OCI layout by its path, and names must be lowercase.
    let tmp = tempfile::Builder::new()
        .prefix("berth-podman")
        .tempdir()
        .unwrap();
    let lower = std::env::temp_dir().join(format!(
        "berth-podman-{}",
        tmp.path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "")
    ));
    std::fs::create_dir_all(&lower).unwrap();
    let _cleanup = RemoveOnDrop(lower.clone());
    let dir = lower.as_path();
    // A real (uncompressed) layer and an OCI layout, so podman can unpack the image.
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::write(dir.join("rootfs/hello.txt"), "hello from berth\n").unwrap();
    let tar = std::process::Command::new("tar")
        .arg("cf")
        .arg(dir.join("layer.tar"))
        .arg("-C")
        .arg(dir.join("rootfs"))
        .arg(".")
        .status()
        .unwrap();
    assert!(tar.success());
    let layer = std::fs::read(dir.join("layer.tar")).unwrap();
    let blobs = dir.join("layout/blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| {
        let d = sha256(data);
        std::fs::write(blobs.join(&d[7..]), data).unwrap();
        (d, data.len())
    };
    let (layer_d, layer_n) = put(&layer);
    let config = serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [layer_d]}})).unwrap();
    let (config_d, config_n) = put(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config_n},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer_n}],
    }))
    .unwrap();
    let (manifest_d, manifest_n) = put(&manifest);
    std::fs::write(
        dir.join("layout/oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest_n, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(
        dir.join("layout/index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();

    let podman = |args: &[&str]| {
        let out = std::process::Command::new("podman")
            .arg("--root")
            .arg(dir.join("storage"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("REGISTRY_AUTH_FILE", dir.join("auth.json"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    // podman insists that a named auth file exists.
    std::fs::write(dir.join("auth.json"), "{}").unwrap();
    let host = w.berth.addr.clone();
    let layout = format!("oci:{}:v1", dir.join("layout").display());
    let (ok, err) = podman(&["pull", "-q", "--tls-verify=false", &layout]);
    assert!(ok, "podman pull from the layout: {err}");
    let image = err.lines().next().unwrap_or_default().trim().to_owned();

    for (user, password) in [
        ("dev".to_string(), PASSWORD.to_string()),
        ("robot$ci-push".to_string(), w.robots["ci-push"].clone()),
    ] {
        let target = format!("{host}/priv/podman-{}:v1", user.replace('$', "-"));
        let (ok, err) = podman(&[
            "login",
            "--tls-verify=false",
            "-u",
            &user,
            "-p",
            &password,
            &host,
        ]);
        assert!(ok, "podman login as {user}: {err}");
        let (ok, err) = podman(&["tag", &image, &target]);
        assert!(ok, "{err}");
        let (ok, err) = podman(&["push", "--tls-verify=false", &target]);
        assert!(ok, "podman push as {user}: {err}");
        let (ok, err) = podman(&["pull", "--tls-verify=false", &target]);
        assert!(ok, "podman pull as {user}: {err}");
        let (ok, err) = podman(&["logout", &host]);
        assert!(ok, "{err}");
    }
    // A guest may pull but not push.
    let (ok, err) = podman(&[
        "login",
        "--tls-verify=false",
        "-u",
        "guest",
        "-p",
        PASSWORD,
        &host,
    ]);
    assert!(ok, "{err}");
    let (ok, _) = podman(&[
        "pull",
        "--tls-verify=false",
        &format!("{host}/priv/podman-dev:v1"),
    ]);
    assert!(ok);
    let guest_target = format!("{host}/priv/podman-guest:v1");
    assert!(podman(&["tag", &image, &guest_target]).0);
    let (ok, err) = podman(&["push", "--tls-verify=false", &guest_target]);
    assert!(!ok, "a guest push must fail");
    // The refusal comes through the token, and says why, as the Basic path does.
    assert!(
        err.contains("guest has no role in project priv that allows push"),
        "{err}"
    );
    // A project that does not exist, and a name without one, say so too.
    let (ok, err) = podman(&[
        "login",
        "--tls-verify=false",
        "-u",
        "dev",
        "-p",
        PASSWORD,
        &host,
    ]);
    assert!(ok, "{err}");
    let nowhere = format!("{host}/nosuch/app:v1");
    assert!(podman(&["tag", &image, &nowhere]).0);
    let (ok, err) = podman(&["push", "--tls-verify=false", &nowhere]);
    assert!(!ok);
    assert!(err.contains("project nosuch does not exist"), "{err}");
    let bare = format!("{host}/alpine:v1");
    assert!(podman(&["tag", &image, &bare]).0);
    let (ok, err) = podman(&["push", "--tls-verify=false", &bare]);
    assert!(!ok);
    assert!(err.contains("<project>/<repository>"), "{err}");
}

/// Removes a directory when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
