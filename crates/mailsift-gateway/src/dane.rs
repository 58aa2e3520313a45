//! DANE for SMTP (RFC 7672): whether a certificate chain a next hop presented matches its TLSA records.
//!
//! Only the matching is here, pure and tested against certificates the tests make: usages DANE-TA (2) and
//! DANE-EE (3) (the PKIX usages 0 and 1 are not for SMTP, RFC 7672 §3.1.3), selectors 0 (the whole
//! certificate) and 1 (its SubjectPublicKeyInfo), matching types 0 (exact), 1 (SHA-256) and 2 (SHA-512).
//!
//! Not covered, deliberately: the TLSA lookup itself. DANE is only sound over DNSSEC-validated answers
//! (RFC 7672 §2.2), and the gateway's resolver does not validate DNSSEC (nor does the loopback DNS server of
//! the tests sign zones), so no delivery consults TLSA records yet. For DANE-TA this module checks that a
//! presented certificate matches; the chain path validation to it and the name check (§3.2.2) are not done.

use sha2::Digest;

/// One TLSA record (RFC 6698 §2.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// A record from its RDATA: usage, selector, matching type, then the association data.
    pub fn from_rdata(rdata: &[u8]) -> Option<Tlsa> {
        let (&usage, &selector, &matching) = (rdata.first()?, rdata.get(1)?, rdata.get(2)?);
        Some(Tlsa { usage, selector, matching, data: rdata[3..].to_vec() })
    }

    /// Whether RFC 7672 lets an SMTP client use this record (§3.1: DANE-TA or DANE-EE, known selector and
    /// matching type, data of the right length); unusable records are ignored.
    pub fn usable(&self) -> bool {
        matches!(self.usage, 2 | 3)
            && matches!(self.selector, 0 | 1)
            && match self.matching {
                0 => !self.data.is_empty(),
                1 => self.data.len() == 32,
                2 => self.data.len() == 64,
                _ => false,
            }
    }

    /// Whether this certificate (DER) matches the record's selector, matching type and data.
    pub fn matches_certificate(&self, der: &[u8]) -> bool {
        let selected = match self.selector {
            0 => der,
            1 => match subject_public_key_info(der) {
                Some(spki) => spki,
                None => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data.as_slice(),
            1 => sha2::Sha256::digest(selected).as_slice() == self.data.as_slice(),
            2 => sha2::Sha512::digest(selected).as_slice() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// Whether a presented chain (end entity first, DER) satisfies a set of TLSA records: some usable DANE-EE
/// record matches the end entity, or some usable DANE-TA record matches a certificate of the chain other
/// than the end entity. No usable record: `false` (the caller decides what an unusable set means, §2.2).
pub fn chain_matches(records: &[Tlsa], chain: &[&[u8]]) -> bool {
    let Some((end_entity, issuers)) = chain.split_first() else {
        return false;
    };
    records.iter().filter(|r| r.usable()).any(|r| match r.usage {
        3 => r.matches_certificate(end_entity),
        2 => issuers.iter().any(|c| r.matches_certificate(c)),
        _ => false,
    })
}

/// A DER element: its tag, the whole element, its contents, and what follows it.
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// One DER element at the start of `input`: (tag, the whole element, its contents, the rest). Definite
/// lengths of up to four bytes only; no recursion.
fn der_element(input: &[u8]) -> Option<Element<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let bytes = input.get(2..2 + n)?;
        (bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize), 2 + n)
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    Some((tag, whole, &whole[header..], &input[end..]))
}

/// The DER SubjectPublicKeyInfo of an X.509 certificate (RFC 5280 §4.1): the seventh field of
/// tbsCertificate when the explicit version is present, else the sixth.
pub fn subject_public_key_info(cert: &[u8]) -> Option<&[u8]> {
    let (tag, _, certificate, _) = der_element(cert)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, _, tbs, _) = der_element(certificate)?;
    if tag != 0x30 {
        return None;
    }
    let mut rest = tbs;
    // [0] EXPLICIT version, when present.
    if rest.first() == Some(&0xa0) {
        rest = der_element(rest)?.3;
    }
    // serialNumber, signature, issuer, validity, subject.
    for _ in 0..5 {
        rest = der_element(rest)?.3;
    }
    let (tag, spki, _, _) = der_element(rest)?;
    (tag == 0x30).then_some(spki)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rcgen::PublicKeyData;

    fn d(c: &rcgen::Certificate) -> &[u8] {
        c.der().as_ref()
    }

    fn made(name: &str) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().self_signed(&key).unwrap();
        (cert, key)
    }

    #[test]
    fn the_spki_found_is_the_key_the_certificate_was_made_for() {
        let (cert, key) = made("mx.example.net");
        assert_eq!(subject_public_key_info(cert.der()).unwrap(), key.subject_public_key_info().as_slice());
    }

    #[test]
    fn dane_ee_and_dane_ta_records_match_what_they_name() {
        let (leaf, leaf_key) = made("mx.example.net");
        let (ca, _) = made("ca.example.net");
        let (other, _) = made("mx.example.net");
        let spki_sha256 = sha2::Sha256::digest(leaf_key.subject_public_key_info()).to_vec();
        let ee = Tlsa { usage: 3, selector: 1, matching: 1, data: spki_sha256 };
        assert!(ee.usable());
        assert!(chain_matches(std::slice::from_ref(&ee), &[d(&leaf)]));
        assert!(!chain_matches(std::slice::from_ref(&ee), &[d(&other)]), "another key");
        let full_sha512 = Tlsa { usage: 3, selector: 0, matching: 2, data: sha2::Sha512::digest(leaf.der()).to_vec() };
        assert!(chain_matches(&[full_sha512], &[d(&leaf)]));
        let exact = Tlsa { usage: 3, selector: 0, matching: 0, data: leaf.der().to_vec() };
        assert!(chain_matches(&[exact], &[d(&leaf)]));
        let ta = Tlsa { usage: 2, selector: 0, matching: 1, data: sha2::Sha256::digest(ca.der()).to_vec() };
        assert!(chain_matches(std::slice::from_ref(&ta), &[d(&leaf), d(&ca)]));
        assert!(!chain_matches(std::slice::from_ref(&ta), &[d(&ca)]), "DANE-TA never matches the end entity");
        // PKIX usages and a wrong digest length are not usable for SMTP.
        let pkix = Tlsa { usage: 1, ..ee.clone() };
        assert!(!pkix.usable() && !chain_matches(&[pkix], &[d(&leaf)]));
        let short = Tlsa { data: vec![0; 31], ..ee };
        assert!(!short.usable());
    }

    #[test]
    fn rdata() {
        assert_eq!(
            Tlsa::from_rdata(&[3, 1, 1, 0xaa]),
            Some(Tlsa { usage: 3, selector: 1, matching: 1, data: vec![0xaa] })
        );
        assert_eq!(Tlsa::from_rdata(&[3, 1]), None);
    }

    proptest! {
        #[test]
        fn any_bytes_as_a_certificate(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = subject_public_key_info(&bytes);
            let _ = Tlsa::from_rdata(&bytes);
            let r = Tlsa { usage: 3, selector: 1, matching: 1, data: vec![0; 32] };
            prop_assert!(!chain_matches(&[r], &[&bytes]));
        }
    }
}
