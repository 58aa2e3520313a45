//! Signed, expiring tokens: the links in a quarantine digest and API keys.
//!
//! A token authorises one action on one thing for a while, and nothing else: `release` of quarantine item 42
//! for alice@example.com until a time. It is `v1.<payload>.<mac>`, both parts base64url: the payload is
//! JSON (purpose, item id, subject, expiry) and the mac is HMAC-SHA256 over `v1.<payload>` with the
//! installation's key: 32 random bytes made on first start. On SQLite it is `web.key` in the data
//! directory, readable by its owner only; on PostgreSQL it is in the gateway database (the first node to
//! start stores its key, every node reads back the one stored), so a link or API token made by one node
//! works on every node. Changing one character of the payload, the purpose or the expiry breaks the mac; the
//! comparison is constant-time. Tokens are not stored, so they cannot be listed or revoked one by one:
//! they expire, and replacing the key revokes them all. What they authorise is bounded by the action
//! itself (a release happens once; see `mailsift_gateway::release`).

use std::io::Write;
use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Release one quarantined copy to its recipient.
    Release,
    /// Release it and add its sender to the recipient's allowed senders.
    Approve,
    /// Add the sender of one quarantined copy to the recipient's blocked senders (and delete the copy).
    Block,
    /// Open the recipient's own quarantine in the console (an end user's session, without a password).
    Digest,
    /// Call the JSON API as an account (`Authorization: Bearer <token>`).
    Api,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Release => "release",
            Purpose::Approve => "approve",
            Purpose::Block => "block",
            Purpose::Digest => "digest",
            Purpose::Api => "api",
        }
    }
}

/// The signed content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    #[serde(rename = "p")]
    pub purpose: Purpose,
    /// The quarantine item (link tokens) or the account id (API tokens).
    #[serde(rename = "i")]
    pub id: i64,
    /// Who the token is for: the recipient's address, or the account name.
    #[serde(rename = "s")]
    pub subject: String,
    /// Unix seconds after which the token is refused.
    #[serde(rename = "e")]
    pub expires: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the link is not a mailsift token")]
    Malformed,
    #[error("the link was changed or was not made by this gateway")]
    BadSignature,
    #[error("the link expired")]
    Expired,
    #[error("the link is for another action")]
    WrongPurpose,
}

const VERSION: &str = "v1";

/// Makes and checks tokens with one key.
#[derive(Clone)]
pub struct Signer {
    key: [u8; 32],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer { key: <secret> }")
    }
}

impl Signer {
    pub fn new(key: [u8; 32]) -> Signer {
        Signer { key }
    }

    /// The installation's key: on PostgreSQL the one shared through the gateway database (stored by the
    /// first node to ask), on SQLite [`Signer::load_or_create`] in the data directory.
    pub fn shared_or_file(db: &mailsift_store::Database, data_dir: &Path) -> Result<Signer, crate::WebError> {
        match db.web_signing_key(&random_bytes::<32>()) {
            Ok(Some(bytes)) => {
                let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    crate::WebError::SharedKey(format!("not a key ({} bytes, 32 expected)", bytes.len()))
                })?;
                Ok(Signer { key })
            }
            Ok(None) => Signer::load_or_create(data_dir)
                .map_err(|source| crate::WebError::Key { path: data_dir.join("web.key"), source }),
            Err(e) => Err(crate::WebError::SharedKey(e.to_string())),
        }
    }

    /// The installation's key from `<data_dir>/web.key`, made (owner-only) when missing.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<Signer> {
        let path = data_dir.join("web.key");
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut key = [0; 32];
                key.copy_from_slice(&bytes);
                return Ok(Signer { key });
            }
            Ok(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not a key (32 bytes expected); remove it to make a new one", path.display()),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let key = random_bytes::<32>();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&path) {
            Ok(mut f) => {
                f.write_all(&key)?;
                f.sync_all()?;
                Ok(Signer { key })
            }
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Signer::load_or_create(data_dir),
            Err(e) => Err(e),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
        let signed = format!("{VERSION}.{payload}");
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}.{tag}")
    }

    /// Checks the signature, then the expiry and the purpose.
    pub fn verify(&self, token: &str, purpose: Purpose, now: i64) -> Result<Claims, TokenError> {
        let claims = self.verify_any(token, now)?;
        if claims.purpose != purpose {
            return Err(TokenError::WrongPurpose);
        }
        Ok(claims)
    }

    /// As [`Signer::verify`], for whichever purpose the token has (the caller checks it).
    pub fn verify_any(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let (signed, tag) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (version, payload) = signed.split_once('.').ok_or(TokenError::Malformed)?;
        if version != VERSION || token.len() > 2048 {
            return Err(TokenError::Malformed);
        }
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        mac.verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
        if claims.expires < now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0; N];
    getrandom::fill(&mut b).expect("the operating system's random source");
    b
}

/// A random identifier for sessions and CSRF tokens (base64url, 256 bits).
pub fn random_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires: i64) -> Claims {
        Claims { purpose: Purpose::Release, id: 42, subject: "alice@example.com".into(), expires }
    }

    #[test]
    fn a_token_round_trips_and_is_refused_when_changed_expired_or_misused() {
        let s = Signer::new([7; 32]);
        let t = s.sign(&claims(1_000));
        assert_eq!(s.verify(&t, Purpose::Release, 999).unwrap(), claims(1_000));
        assert_eq!(s.verify(&t, Purpose::Release, 1_001), Err(TokenError::Expired));
        assert_eq!(s.verify(&t, Purpose::Approve, 999), Err(TokenError::WrongPurpose));
        // Another key, or a payload changed to another item, breaks the signature.
        assert_eq!(Signer::new([8; 32]).verify(&t, Purpose::Release, 999), Err(TokenError::BadSignature));
        let (_, payload, tag) = {
            let mut p = t.splitn(3, '.');
            (p.next().unwrap(), p.next().unwrap(), p.next().unwrap())
        };
        let mut other = claims(1_000);
        other.id = 43;
        let forged_payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&other).unwrap());
        assert_ne!(forged_payload, payload);
        assert_eq!(
            s.verify(&format!("v1.{forged_payload}.{tag}"), Purpose::Release, 999),
            Err(TokenError::BadSignature)
        );
        for junk in ["", "v1", "v1..", "v2.a.b", "v1.!!.??", "v1.e30.AAAA"] {
            assert!(s.verify(junk, Purpose::Release, 0).is_err(), "{junk}");
        }
    }

    #[test]
    fn the_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = Signer::load_or_create(dir.path()).unwrap();
        let b = Signer::load_or_create(dir.path()).unwrap();
        let t = a.sign(&claims(10));
        assert!(b.verify(&t, Purpose::Release, 0).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("web.key")).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key must not be readable by others");
        }
    }
}
