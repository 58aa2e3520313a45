//! Whether each configured DKIM key's record is published and matches the private key: the check behind
//! `mailsift dkim check` and the console's DKIM page (`GET /api/v1/dkim`). It asks DNS through the gateway's
//! resolver (`[dns]`), so what it says is what the receivers of our mail see, give or take caching.
//!
//! A record matches when its p= is the key's public key (RSA as SubjectPublicKeyInfo, as published by
//! `mailsift dkim keygen`, or the bare PKCS#1 key some tools publish; Ed25519 as its 32 bytes) and its k= is
//! the key's algorithm. An empty p= is a revoked key (RFC 6376 §3.6.1).

use serde::Serialize;

use crate::signing::{KeyAlgorithm, LoadedKeys};
use mailsift_evidence::spf::SpfDns;

/// What the published record says about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// The record is there and carries this key.
    Match,
    /// No DKIM record at the name.
    Missing,
    /// A record for another key (or another algorithm).
    Mismatch,
    /// The record's p= is empty: the key was revoked.
    Revoked,
    /// DNS did not answer; try again.
    TempError,
}

impl RecordStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Match => "match",
            RecordStatus::Missing => "missing",
            RecordStatus::Mismatch => "mismatch",
            RecordStatus::Revoked => "revoked",
            RecordStatus::TempError => "temperror",
        }
    }
}

/// One key and its record.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    pub domain: String,
    pub selector: String,
    pub algorithm: KeyAlgorithm,
    pub bits: usize,
    pub file: String,
    /// Whether mail is signed with it (`sign = true`).
    pub signing: bool,
    /// Where the record belongs (`SELECTOR._domainkey.DOMAIN`).
    pub name: String,
    /// The record to publish.
    pub record: String,
    pub status: RecordStatus,
    /// What DNS has at the name (DKIM records only), when anything.
    pub published: Option<String>,
}

/// Checks every key against DNS, one lookup per key, all at once.
pub async fn check(keys: &LoadedKeys, dns: &(impl SpfDns + ?Sized)) -> Vec<KeyStatus> {
    let lookups = keys.keys.iter().map(|k| async move {
        let name = format!("{}._domainkey.{}", k.selector, k.domain);
        let answer = dns.txt(&format!("{name}.")).await;
        let (status, published) = match answer {
            Err(true) => (RecordStatus::Missing, None),
            Err(false) => (RecordStatus::TempError, None),
            Ok(records) => {
                let dkim: Vec<&String> = records.iter().filter(|r| is_dkim_record(r)).collect();
                match dkim.first() {
                    None => (RecordStatus::Missing, None),
                    Some(r) => (compare(k.algorithm, &k.public_key, r), Some(r.to_string())),
                }
            }
        };
        KeyStatus {
            domain: k.domain.clone(),
            selector: k.selector.clone(),
            algorithm: k.algorithm,
            bits: k.bits,
            file: k.path.display().to_string(),
            signing: k.sign,
            name,
            record: k.dns_record(),
            status,
            published,
        }
    });
    let mut out = Vec::new();
    // A handful of keys: one after another is simple and still bounded by the resolver's timeout each.
    for l in lookups {
        out.push(l.await);
    }
    out
}

fn tags(record: &str) -> impl Iterator<Item = (String, String)> + '_ {
    record.split(';').filter_map(|t| {
        let (k, v) = t.split_once('=')?;
        Some((k.trim().to_ascii_lowercase(), v.chars().filter(|c| !c.is_whitespace()).collect()))
    })
}

fn is_dkim_record(record: &str) -> bool {
    tags(record).any(|(k, v)| (k == "v" && v == "DKIM1") || k == "p")
}

/// How a published record compares with a key.
pub fn compare(algorithm: KeyAlgorithm, public_key: &[u8], record: &str) -> RecordStatus {
    use base64::Engine;
    let mut k = "rsa".to_string();
    let mut p: Option<String> = None;
    for (tag, value) in tags(record) {
        match tag.as_str() {
            "k" => k = value.to_ascii_lowercase(),
            "p" => p = Some(value),
            _ => {}
        }
    }
    let Some(p) = p else {
        return RecordStatus::Mismatch;
    };
    if p.is_empty() {
        return RecordStatus::Revoked;
    }
    if k != algorithm.dns_name() {
        return RecordStatus::Mismatch;
    }
    let Ok(published) = base64::engine::general_purpose::STANDARD.decode(p.as_bytes()) else {
        return RecordStatus::Mismatch;
    };
    // The bare PKCS#1 key is the SubjectPublicKeyInfo's tail (its BIT STRING's content).
    let same = published == public_key
        || (algorithm == KeyAlgorithm::Rsa && published.len() > 64 && public_key.ends_with(&published));
    if same {
        RecordStatus::Match
    } else {
        RecordStatus::Mismatch
    }
}
