//! The admin API's OpenAPI document and its answers to malformed requests.

use super::*;

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
