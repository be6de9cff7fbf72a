//! The first start: create the `admin` user. There is never a default password: it comes
//! from `--admin-password` / `BERTH_ADMIN_PASSWORD`, or is generated and printed once.

use super::authenticate::AccessControl;
use super::{AuthResult, AuthStoreError, passwords};

/// What bootstrapping did.
#[derive(Debug, PartialEq)]
pub enum Bootstrap {
    /// Users exist already; nothing was done.
    AlreadyDone,
    /// `admin` was created with the given password.
    CreatedWithGivenPassword,
    /// `admin` was created with this generated password, to be shown once.
    CreatedWithGeneratedPassword(String),
}

/// Creates `admin` if there are no users yet. Blocking: runs once at start.
pub fn ensure_admin(auth: &AccessControl, password: Option<&str>) -> AuthResult<Bootstrap> {
    if auth.has_users()? {
        return Ok(Bootstrap::AlreadyDone);
    }
    if let Some(p) = password {
        passwords::check_policy(p)
            .map_err(|e| AuthStoreError::Invalid(format!("--admin-password: {e}")))?;
    }
    let generated = password.is_none().then(passwords::random_secret);
    let chosen = password
        .map(str::to_owned)
        .or_else(|| generated.clone())
        .expect("one of them");
    // Another node may have bootstrapped the shared database meanwhile.
    if !auth.create_first_admin(&chosen)? {
        return Ok(Bootstrap::AlreadyDone);
    }
    Ok(match generated {
        Some(p) => Bootstrap::CreatedWithGeneratedPassword(p),
        None => Bootstrap::CreatedWithGivenPassword,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_first_start_creates_admin_once() {
        let (auth, _dir) = crate::auth::testing::access_control();
        let Bootstrap::CreatedWithGeneratedPassword(p) = ensure_admin(&auth, None).unwrap() else {
            panic!()
        };
        assert!(p.len() >= 40);
        assert_eq!(
            ensure_admin(&auth, Some("another long password")).unwrap(),
            Bootstrap::AlreadyDone
        );
        let admin = auth.user("admin").await.unwrap().unwrap();
        assert!(admin.admin && passwords::verify(&p, &admin.password_hash));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_weak_given_password_is_refused() {
        let (auth, _dir) = crate::auth::testing::access_control();
        assert!(
            ensure_admin(&auth, Some("short"))
                .unwrap_err()
                .to_string()
                .contains("--admin-password")
        );
    }
}
