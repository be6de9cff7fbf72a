//! The token service: challenges, scopes granted as asked and allowed, tampering, refresh.

use super::*;

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

    // Expiry, on a server whose tokens live two seconds. (Token times are whole seconds,
    // so a token lives between ttl - 1 and ttl seconds: with one second, one issued late
    // in a second could lapse before a busy machine used it.)
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("berth.toml");
    std::fs::write(&cfg, "[auth]\ntoken_ttl_secs = 2\n").unwrap();
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
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
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
