//! Who may do what: the matrix, cross-project reads, hostile names, rate limits,
//! revocation, the audit log, project deletion.

use super::*;

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
    // The next page's link keeps the filters: following it pages through one actor.
    let mut url = format!(
        "{}/api/v1/audit?actor=admin&resource=priv&limit=1",
        w.berth.url
    );
    let mut seen = 0;
    loop {
        let response = client().get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let link = response
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let page: Vec<serde_json::Value> = response.json().await.unwrap();
        assert!(page.len() <= 1);
        for e in &page {
            assert_eq!(e["actor"], "admin", "{e}");
            assert!(e["resource"].as_str().unwrap().starts_with("priv"), "{e}");
        }
        seen += page.len();
        let Some(link) = link else { break };
        assert!(
            link.contains("actor=admin") && link.contains("resource=priv"),
            "{link}"
        );
        let path = link.trim_start_matches('<').split('>').next().unwrap();
        url = format!("{}{path}", w.berth.url);
    }
    // project.create, member.set (three roles), push at least.
    assert!(seen >= 4, "{seen}");
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
