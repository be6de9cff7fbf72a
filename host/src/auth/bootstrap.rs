//! The first start: create the `admin` user. There is never a default password: it comes
//! from `--admin-password` / `BERTH_ADMIN_PASSWORD`, or is generated and printed once.

use super::{AuthResult, AuthStoreError, passwords, users};
use crate::storage::meta::Metadata;

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

/// Creates `admin` if there are no users yet.
pub fn ensure_admin(meta: &Metadata, password: Option<&str>) -> AuthResult<Bootstrap> {
    if users::count(&meta.read()?)? > 0 {
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
    meta.write(|tx| users::insert(tx, "admin", &chosen, true))?;
    Ok(match generated {
        Some(p) => Bootstrap::CreatedWithGeneratedPassword(p),
        None => Bootstrap::CreatedWithGivenPassword,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_start_creates_admin_once() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::sync::Arc::new(Metadata::open(&dir.path().join("m.redb")).unwrap());
        crate::auth::prepare(&meta).unwrap();
        let Bootstrap::CreatedWithGeneratedPassword(p) = ensure_admin(&meta, None).unwrap() else {
            panic!()
        };
        assert!(p.len() >= 40);
        assert_eq!(
            ensure_admin(&meta, Some("another long password")).unwrap(),
            Bootstrap::AlreadyDone
        );
        let admin = users::get(&meta.read().unwrap(), "admin").unwrap().unwrap();
        assert!(admin.admin && passwords::verify(&p, &admin.password_hash));
    }

    #[test]
    fn a_weak_given_password_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let meta = std::sync::Arc::new(Metadata::open(&dir.path().join("m.redb")).unwrap());
        crate::auth::prepare(&meta).unwrap();
        assert!(
            ensure_admin(&meta, Some("short"))
                .unwrap_err()
                .to_string()
                .contains("--admin-password")
        );
    }
}
