//! Password hashing (argon2id), secret generation and constant-time comparison.

use argon2::password_hash::{
    PasswordHash, PasswordHasher, PasswordVerifier, SaltString, rand_core::OsRng,
};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shortest password accepted. Long passphrases beat complexity rules; twelve characters
/// resist offline guessing of an argon2id hash for a long time.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Longest password accepted: bounds the hashing work one request can ask for.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// argon2id's memory per hash, KiB.
const MEMORY_KIB: u64 = 7 * 1024;

fn argon2() -> Argon2<'static> {
    // One of OWASP's equal-strength argon2id profiles: 7 MiB, 5 passes, 1 lane. Chosen over
    // the 19 MiB / 2-pass one because every hash in flight holds its memory, and a
    // registry's resident size matters more than the passes. Stored hashes carry their
    // own parameters, so this can change without invalidating anyone's password.
    Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(MEMORY_KIB as u32, 5, 1, None).expect("valid argon2 parameters"),
    )
}

/// Checks a new password against the policy; the error says what to change.
pub fn check_policy(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN {
        return Err(format!(
            "passwords need at least {MIN_PASSWORD_LEN} characters; this one has {n}"
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!("passwords are at most {MAX_PASSWORD_LEN} bytes"));
    }
    Ok(())
}

/// An argon2id PHC string for `password`.
pub fn hash(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters")
        .to_string()
}

/// The memory (KiB) checking a password against the PHC string `stored` takes: its
/// `m=` parameter, or berth's own when it cannot be read.
pub fn memory_kib(stored: &str) -> u64 {
    PasswordHash::new(stored)
        .ok()
        .and_then(|parsed| parsed.params.get_decimal("m").map(u64::from))
        .unwrap_or(MEMORY_KIB)
}

/// Whether `password` matches the PHC string `stored` (constant time in the hash).
pub fn verify(password: &str, stored: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    PasswordHash::new(stored).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A fresh random secret: 32 bytes, URL-safe base64 (43 characters).
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The stored form of a high-entropy secret (robot secrets, refresh tokens). A plain hash
/// suffices: 256 random bits cannot be guessed, so the slow hash passwords need would
/// only slow down every CI request.
pub fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod memory_tests {
    #[test]
    fn a_hash_names_the_memory_its_check_takes() {
        assert_eq!(
            super::memory_kib(&super::hash("a password of length")),
            7 * 1024
        );
        assert_eq!(
            super::memory_kib("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"),
            19456
        );
        assert_eq!(super::memory_kib("not a hash"), 7 * 1024);
    }
}

/// Constant-time equality of two strings.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_differ_by_salt() {
        let a = hash("correct horse battery staple");
        let b = hash("correct horse battery staple");
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse battery staple", &a));
        assert!(!verify("correct horse battery stapler", &a));
        assert!(!verify("x", "not a phc string"));
    }

    #[test]
    fn the_policy_explains_itself() {
        assert!(check_policy("short").unwrap_err().contains("at least 12"));
        assert!(check_policy("a long enough passphrase").is_ok());
    }

    #[test]
    fn secrets_are_long_and_compare_in_constant_time() {
        let s = random_secret();
        assert_eq!(s.len(), 43);
        assert!(constant_time_eq(&s, &s.clone()));
        assert!(!constant_time_eq(&s, &random_secret()));
        assert_eq!(secret_digest("x").len(), 64);
    }
}
