//! Several berth nodes serving one registry: what they must share, and that sharing it
//! works (the keys, here; the metadata on PostgreSQL as the storage interface grows).

use std::process::Command;

use crate::support::*;

fn berth_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(berth_bin()).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

async fn status_with(berth: &Berth, path: &str, token: &str) -> u16 {
    anonymous_client()
        .get(berth.v2(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn nodes_that_share_the_keys_accept_each_others_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let token_key = dir.path().join("token.key");
    let file = token_key.to_str().unwrap();

    // `berth key generate` writes a key file once, 0600, and never over an existing one.
    let (ok, _, err) = berth_cli(&["key", "generate", "token", "--out", file]);
    assert!(ok, "{err}");
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(&token_key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert_eq!(meta.len(), 64, "an Ed25519 key pair");
    let before = std::fs::read(&token_key).unwrap();
    let (ok, _, err) = berth_cli(&["key", "generate", "token", "--out", file]);
    assert!(!ok && err.contains("cannot create"), "{err}");
    assert_eq!(std::fs::read(&token_key).unwrap(), before);
    // Printed as base64 for the environment.
    let (ok, secrets_key, _) = berth_cli(&["key", "generate", "secrets"]);
    assert!(ok);
    let secrets_key = secrets_key.trim().to_string();
    assert_eq!(secrets_key.len(), 44, "32 bytes of base64: {secrets_key}");

    let shared = [
        ("BERTH_KEYS__TOKEN_SIGNING_KEY_FILE", file),
        ("BERTH_SECRETS_KEY", secrets_key.as_str()),
    ];
    let a = Berth::start_configured(&[], &shared);
    let b = Berth::start_configured(&[], &shared);
    let alone = Berth::start();
    push_image(&client(), &b.url, "team/app", "v1", 5).await;

    let token = token_from(&a, "repository:team/app:pull").await;
    assert_eq!(status_with(&b, "", &token).await, 200);
    assert_eq!(status_with(&b, "team/app/tags/list", &token).await, 200);
    assert_eq!(status_with(&b, "team/app/manifests/v1", &token).await, 200);
    // A node with its own key refuses it.
    assert_eq!(status_with(&alone, "", &token).await, 401);
    // And a token of the node with its own key is refused by the pair.
    let own = token_from(&alone, "repository:team/app:pull").await;
    assert_eq!(status_with(&b, "team/app/tags/list", &own).await, 401);

    // Neither node kept a key of its own in its data directory.
    for node in [&a, &b] {
        assert!(!node.data_dir.join("keys/token-ed25519.key").exists());
        assert!(!node.data_dir.join("keys/secrets.key").exists());
    }
}

#[test]
fn a_node_whose_configured_key_file_is_missing_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.key");
    let out = Command::new(berth_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--admin-password", ADMIN_PASSWORD])
        .env("BERTH_KEYS__TOKEN_SIGNING_KEY_FILE", &missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing.key"), "{err}");
    assert!(err.contains("berth key generate token --out FILE"), "{err}");
    assert!(!dir.path().join("data/keys/token-ed25519.key").exists());
}
