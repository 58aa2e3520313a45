//! DKIM signing of outbound mail (per domain and selector, RSA-2048+ and Ed25519) and ARC sealing of
//! inbound mail the gateway changed (RFC 6376, RFC 8463, RFC 8617): the settings, the key files read and
//! checked once when the configuration is loaded, and the DNS record a key needs. `outgoing.rs` applies
//! them to a message as it leaves.
//!
//! ```toml
//! [smtp.dkim]
//! headers = ["From", "To", ...]     # the default list below; From is always signed, and over-signed
//! expire_days = 0                   # x= tag: signatures expire after this many days (0: never)
//!
//! [[smtp.dkim.keys]]
//! domain = "acme.test"              # signs mail whose From: domain is exactly this (no parent match)
//! selector = "2026a"
//! key_file = "/var/lib/mailsift/dkim/acme.test.2026a.pem"   # PEM, PKCS#8 or PKCS#1, mode 0600
//! sign = true                       # false: listed and checked, not used (a key being published or retired)
//!
//! [smtp.dkim.arc]
//! enabled = false
//! when = "changed"                  # or "always": every inbound message that is delivered
//! domain = "acme.test"              # the sealing key, one of the keys above; default: the first RSA key
//! selector = "2026a"
//! ```
//!
//! Key rotation: publish the new selector's record, add it with `sign = true` next to the old one (mail
//! then carries both signatures), then set the old one to `sign = false` and finally remove it and its
//! record once mail in flight has been delivered.
//!
//! What it does not do: sign mail whose From: domain is a parent or child of a configured domain (exact match
//! only, so that a customer's subdomain is never signed with the parent's key), l= body lengths (they let
//! anyone append to a signed body), simple canonicalization, or RSA-SHA1.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use mail_auth::arc::ArcSealer;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// The headers signed when `headers` is not set (RFC 6376 §5.4.1's recommendation, plus the MIME and
/// thread fields and the list fields a mailing list manager would otherwise be free to change).
pub const DEFAULT_SIGNED_HEADERS: &[&str] = &[
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
    "List-Id",
    "List-Help",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Subscribe",
    "List-Post",
    "List-Owner",
    "List-Archive",
];

/// The smallest RSA key accepted: ring, which signs, refuses anything shorter (RFC 8301 requires 1024 and
/// recommends 2048).
pub const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimConfig {
    /// The header fields signed (case-insensitive names; `List-*` stands for the list fields). From is
    /// always added, and listed twice so that a second From: added later breaks the signature
    /// (over-signing). Fields named here and absent from a message are signed as absent too.
    pub headers: Vec<String>,
    /// Signatures carry `x=` this many days after signing (0: no expiry).
    pub expire_days: u64,
    /// The signing keys: one or more per domain.
    pub keys: Vec<DkimKeyConfig>,
    /// ARC sealing of inbound mail (RFC 8617).
    pub arc: ArcConfig,
    /// The keys as read at load time (not configuration).
    #[serde(skip)]
    loaded: Arc<OnceLock<Arc<LoadedKeys>>>,
}

impl Default for DkimConfig {
    fn default() -> Self {
        DkimConfig {
            headers: DEFAULT_SIGNED_HEADERS.iter().map(|h| h.to_string()).collect(),
            expire_days: 0,
            keys: Vec::new(),
            arc: ArcConfig::default(),
            loaded: Default::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DkimKeyConfig {
    /// The d= domain: mail whose From: address is in exactly this domain is signed.
    pub domain: String,
    /// The s= selector: the record is published at `SELECTOR._domainkey.DOMAIN`.
    pub selector: String,
    /// The private key (PEM: PKCS#8, or PKCS#1 for RSA), readable by the gateway's user only. The algorithm
    /// is the key's: RSA (2048 bits or more) or Ed25519.
    pub key_file: PathBuf,
    /// Whether mail is signed with this key (default true). A key with `sign = false` stays in `mailsift dkim
    /// check` and the console: a new key being published, or an old one being retired.
    #[serde(default = "yes")]
    pub sign: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SealWhen {
    /// Only inbound mail the gateway changed beyond adding its own headers (the subject tag).
    #[default]
    Changed,
    /// Every inbound message delivered.
    Always,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArcConfig {
    /// Seal inbound mail (off by default).
    pub enabled: bool,
    /// When to seal.
    pub when: SealWhen,
    /// The sealing key: the `[[smtp.dkim.keys]]` entry with this domain and selector. Both empty: the
    /// first RSA key listed (ARC verifiers widely support only rsa-sha256).
    pub domain: String,
    pub selector: String,
}

/// A key's algorithm, as read from its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyAlgorithm {
    Rsa,
    Ed25519,
}

impl KeyAlgorithm {
    /// The DNS record's k= value.
    pub fn dns_name(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "rsa",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

/// One key as read from its file.
pub struct LoadedKey {
    pub domain: String,
    pub selector: String,
    pub path: PathBuf,
    pub algorithm: KeyAlgorithm,
    pub bits: usize,
    pub sign: bool,
    /// The public key as the DNS record's p= carries it: SubjectPublicKeyInfo DER for RSA, the 32 raw bytes
    /// for Ed25519 (RFC 8463 §4.2).
    pub public_key: Vec<u8>,
    signer: DkimSigner<DkimKey, Done>,
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey")
            .field("domain", &self.domain)
            .field("selector", &self.selector)
            .field("path", &self.path)
            .field("algorithm", &self.algorithm)
            .field("bits", &self.bits)
            .finish()
    }
}

impl LoadedKey {
    /// The DKIM-Signature header field (with its CRLF) for `message`.
    pub fn sign(&self, message: &[u8]) -> Result<String, String> {
        use mail_auth::common::headers::HeaderWriter;
        self.signer.sign(message).map(|s| s.to_header()).map_err(|e| e.to_string())
    }

    /// The TXT record to publish.
    pub fn dns_record(&self) -> String {
        dns_record(self.algorithm, &self.public_key)
    }
}

/// The keys of a configuration, read once.
pub struct LoadedKeys {
    pub keys: Vec<LoadedKey>,
    /// The ARC sealer, when sealing is on: its d= and s=, and the sealer.
    pub sealer: Option<(String, String, ArcSealer<DkimKey, Done>)>,
}

impl std::fmt::Debug for LoadedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKeys").field("keys", &self.keys).field("sealing", &self.sealer.is_some()).finish()
    }
}

impl LoadedKeys {
    /// The keys that sign mail from `domain` (exact match, case-insensitive).
    pub fn signing_keys<'a>(&'a self, domain: &'a str) -> impl Iterator<Item = &'a LoadedKey> + 'a {
        let domain = domain.trim_end_matches('.');
        self.keys.iter().filter(move |k| k.sign && k.domain.eq_ignore_ascii_case(domain))
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field: field.into(), reason: reason.into() }
}

impl DkimConfig {
    /// Checks the settings and reads every key file (once: a clone shares what was read).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.loaded.get().is_some() {
            return Ok(());
        }
        let loaded = self.load()?;
        let _ = self.loaded.set(Arc::new(loaded));
        Ok(())
    }

    /// The keys read by [`DkimConfig::validate`]; `None` before it ran (or with no keys configured).
    pub fn loaded(&self) -> Option<&Arc<LoadedKeys>> {
        self.loaded.get().filter(|l| !l.keys.is_empty())
    }

    /// The header list given to the signer: the configured names with `List-*` expanded, From first and
    /// twice (over-signed), no other duplicates.
    pub fn signed_headers(&self) -> Vec<String> {
        let mut out: Vec<String> = vec!["From".into()];
        for h in &self.headers {
            let names: Vec<&str> = if h.eq_ignore_ascii_case("list-*") {
                DEFAULT_SIGNED_HEADERS.iter().copied().filter(|n| n.starts_with("List-")).collect()
            } else {
                vec![h.as_str()]
            };
            for n in names {
                if !out.iter().any(|o| o.eq_ignore_ascii_case(n)) {
                    out.push(n.to_string());
                }
            }
        }
        out.push("From".into());
        out
    }

    fn load(&self) -> Result<LoadedKeys, ConfigError> {
        for h in &self.headers {
            let ok = !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic() && b != b':' && b != b'*')
                || h.eq_ignore_ascii_case("list-*");
            if !ok {
                return Err(invalid("dkim.headers", format!("{h:?} is not a header field name")));
            }
            if h.eq_ignore_ascii_case("dkim-signature") {
                return Err(invalid("dkim.headers", "DKIM-Signature cannot be signed by a DKIM signature"));
            }
        }
        if self.expire_days > 3650 {
            return Err(invalid("dkim.expire_days", "at most 3650 days"));
        }
        let headers = self.signed_headers();
        let mut keys: Vec<LoadedKey> = Vec::new();
        for (i, k) in self.keys.iter().enumerate() {
            let field = format!("dkim.keys[{i}]");
            if !is_domain(&k.domain) {
                return Err(invalid(&field, format!("domain {:?} is not a domain name", k.domain)));
            }
            if !is_selector(&k.selector) {
                return Err(invalid(&field, format!("selector {:?}: letters, digits, '-' and '.' only", k.selector)));
            }
            if keys
                .iter()
                .any(|o| o.domain.eq_ignore_ascii_case(&k.domain) && o.selector.eq_ignore_ascii_case(&k.selector))
            {
                return Err(invalid(&field, format!("{}._domainkey.{} is listed twice", k.selector, k.domain)));
            }
            let key = read_key(&k.key_file).map_err(|reason| invalid(&field, reason))?;
            let mut signer = DkimSigner::from_key(key.key)
                .domain(k.domain.to_ascii_lowercase())
                .selector(k.selector.clone())
                .headers(headers.clone())
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed);
            if self.expire_days > 0 {
                signer = signer.expiration(self.expire_days * 86_400);
            }
            keys.push(LoadedKey {
                domain: k.domain.to_ascii_lowercase(),
                selector: k.selector.clone(),
                path: k.key_file.clone(),
                algorithm: key.algorithm,
                bits: key.bits,
                sign: k.sign,
                public_key: key.public_key,
                signer,
            });
        }
        let sealer = if self.arc.enabled {
            let chosen = if self.arc.domain.is_empty() && self.arc.selector.is_empty() {
                self.keys.iter().zip(&keys).find(|(_, l)| l.algorithm == KeyAlgorithm::Rsa).ok_or_else(|| {
                    invalid("dkim.arc", "sealing is on but no RSA key is listed in [[smtp.dkim.keys]] to seal with")
                })?
            } else {
                self.keys
                    .iter()
                    .zip(&keys)
                    .find(|(_, l)| {
                        l.domain.eq_ignore_ascii_case(&self.arc.domain)
                            && l.selector.eq_ignore_ascii_case(&self.arc.selector)
                    })
                    .ok_or_else(|| {
                        invalid(
                            "dkim.arc",
                            format!(
                                "no [[smtp.dkim.keys]] entry for domain {:?} and selector {:?}",
                                self.arc.domain, self.arc.selector
                            ),
                        )
                    })?
            };
            // The signer owns its key: the sealer reads the file again (it was just checked).
            let key = read_key(&chosen.0.key_file).map_err(|reason| invalid("dkim.arc", reason))?;
            let mut ams_headers = headers.clone();
            ams_headers.push("DKIM-Signature".into());
            let sealer = ArcSealer::from_key(key.key)
                .domain(chosen.1.domain.clone())
                .selector(chosen.1.selector.clone())
                .headers(ams_headers)
                .header_canonicalization(Canonicalization::Relaxed)
                .body_canonicalization(Canonicalization::Relaxed);
            Some((chosen.1.domain.clone(), chosen.1.selector.clone(), sealer))
        } else {
            None
        };
        Ok(LoadedKeys { keys, sealer })
    }
}

fn is_domain(d: &str) -> bool {
    let d = d.trim_end_matches('.');
    !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_selector(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.split('.').all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
}

/// A private key read from a file.
pub struct KeyFile {
    pub key: DkimKey,
    pub algorithm: KeyAlgorithm,
    pub bits: usize,
    pub public_key: Vec<u8>,
}

/// Reads and checks a private key file: not readable by group or others, PEM, RSA of at least
/// [`MIN_RSA_BITS`] bits or Ed25519. The error names the file and says what is wrong.
pub fn read_key(path: &Path) -> Result<KeyFile, String> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::PrivateKeyDer;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("key file {shown}: {e}"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "key file {shown} is readable by group or others (mode {:o}); run `chmod 600 {shown}`",
                mode & 0o777
            ));
        }
    }
    if meta.len() > 64 * 1024 {
        return Err(format!("key file {shown} is larger than a private key ({} bytes)", meta.len()));
    }
    let der = PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("key file {shown}: not a PEM private key (PKCS#8 or PKCS#1): {e}"))?;
    match der {
        PrivateKeyDer::Pkcs1(ref d) => rsa_key(path, d.secret_pkcs1_der(), false, der.clone_key()),
        PrivateKeyDer::Pkcs8(ref d) => {
            let bytes = d.secret_pkcs8_der();
            if let Ok(k) = Ed25519Key::from_pkcs8_maybe_unchecked_der(bytes) {
                let public_key = k.public_key();
                return Ok(KeyFile {
                    key: DkimKey::Ed25519(k),
                    algorithm: KeyAlgorithm::Ed25519,
                    bits: 256,
                    public_key,
                });
            }
            rsa_key(path, bytes, true, der.clone_key())
        }
        _ => Err(format!("key file {shown}: an EC key; DKIM signs with RSA or Ed25519 keys only")),
    }
}

fn rsa_key(
    path: &Path,
    der: &[u8],
    pkcs8: bool,
    key: tokio_rustls::rustls::pki_types::PrivateKeyDer<'static>,
) -> Result<KeyFile, String> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;
    let shown = path.display();
    // The rsa crate reads the size so that a short key is refused with its size named (ring only says no).
    let parsed =
        if pkcs8 { rsa::RsaPrivateKey::from_pkcs8_der(der).ok() } else { rsa::RsaPrivateKey::from_pkcs1_der(der).ok() };
    let Some(parsed) = parsed else {
        return Err(format!("key file {shown}: neither an RSA nor an Ed25519 private key"));
    };
    let bits = parsed.n().bits();
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "key file {shown}: the RSA key has {bits} bits; at least {MIN_RSA_BITS} are required (RFC 8301); make a new one with `mailsift dkim keygen`"
        ));
    }
    if bits > 4096 {
        return Err(format!("key file {shown}: the RSA key has {bits} bits; at most 4096 are supported"));
    }
    let k = RsaKey::<Sha256>::from_key_der(key).map_err(|e| format!("key file {shown}: {e}"))?;
    let public_key = rsa_spki(&k.public_key());
    Ok(KeyFile { key: DkimKey::Rsa(k), algorithm: KeyAlgorithm::Rsa, bits, public_key })
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1), the form DKIM's p= carries
/// (RFC 6376 §3.6.1) and every verifier reads.
pub fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }.
    const ALG: &[u8] = &[0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00];
    let mut bit_string = vec![0u8];
    bit_string.extend_from_slice(pkcs1);
    let mut inner = ALG.to_vec();
    inner.extend(der_header(0x03, bit_string.len()));
    inner.extend(bit_string);
    let mut out = der_header(0x30, inner.len());
    out.extend(inner);
    out
}

fn der_header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = vec![tag];
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out
}

/// The TXT record's text for a public key (`v=DKIM1; k=...; p=...`).
pub fn dns_record(algorithm: KeyAlgorithm, public_key: &[u8]) -> String {
    use base64::Engine;
    format!("v=DKIM1; k={}; p={}", algorithm.dns_name(), base64::engine::general_purpose::STANDARD.encode(public_key))
}

/// A TXT record's text as the quoted strings of at most 255 bytes a zone file needs (RFC 1035 §3.3.14).
pub fn zone_strings(text: &str) -> String {
    text.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect::<Vec<_>>().join(" ")
}

/// A new private key, PEM (PKCS#8), with its algorithm, size and public key.
pub struct NewKey {
    pub pem: String,
    pub algorithm: KeyAlgorithm,
    pub bits: usize,
    pub public_key: Vec<u8>,
}

/// Makes a key: RSA of `bits` bits (2048 to 4096) with the rsa crate, Ed25519 with ring. Slow for RSA (a
/// second or so for 2048 bits).
pub fn generate_key(algorithm: KeyAlgorithm, bits: usize) -> Result<NewKey, String> {
    match algorithm {
        KeyAlgorithm::Rsa => {
            use rsa::pkcs8::{EncodePrivateKey, LineEnding};
            if !(MIN_RSA_BITS..=4096).contains(&bits) {
                return Err(format!("RSA keys of {MIN_RSA_BITS} to 4096 bits are supported, not {bits}"));
            }
            let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, bits).map_err(|e| e.to_string())?;
            let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?.to_string();
            let signing = RsaKey::<Sha256>::from_key_der(tokio_rustls::rustls::pki_types::PrivateKeyDer::Pkcs8(
                key.to_pkcs8_der().map_err(|e| e.to_string())?.as_bytes().to_vec().into(),
            ))
            .map_err(|e| e.to_string())?;
            Ok(NewKey { pem, algorithm, bits, public_key: rsa_spki(&signing.public_key()) })
        }
        KeyAlgorithm::Ed25519 => {
            let der = Ed25519Key::generate_pkcs8().map_err(|e| e.to_string())?;
            let key = Ed25519Key::from_pkcs8_der(&der).map_err(|e| e.to_string())?;
            Ok(NewKey { pem: pem_encode("PRIVATE KEY", &der), algorithm, bits: 256, public_key: key.public_key() })
        }
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes a private key file readable by its owner only; refuses to replace an existing file unless `force`.
pub fn write_key_file(path: &Path, pem: &str, force: bool) -> Result<(), String> {
    use std::io::Write;
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            format!("{shown} exists; use --force to replace it (the published record would then no longer match)")
        } else {
            format!("cannot write {shown}: {e}")
        }
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // An existing file replaced with --force keeps its mode otherwise.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot restrict {shown}: {e}"))?;
    }
    f.write_all(pem.as_bytes()).map_err(|e| format!("cannot write {shown}: {e}"))
}
