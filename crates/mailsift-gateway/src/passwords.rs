//! Argon2id password hashes for configured accounts: made here, checked by [`crate::auth`].

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::Argon2;

/// The Argon2id hash of `password` with a fresh random salt, as a PHC string (`$argon2id$v=19$m=...`), for
/// `password = "..."` in `[[smtp.users]]`.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    // The operating system's generator; without it no safe salt can be made, and a fixed salt would be a
    // silent weakness, so this is a hard failure.
    getrandom::getrandom(&mut salt).expect("the operating system's random number generator works");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes are a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("Argon2id with its default parameters hashes any password")
        .to_string()
}

/// Whether `hash` is an Argon2id PHC string this module can verify against.
pub fn is_argon2id_hash(hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| h.algorithm.as_str() == "argon2id" && h.hash.is_some())
}
