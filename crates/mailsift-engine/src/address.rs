//! Addresses and domains, parsed once: one meaning of "the domain of an address" for every crate.
//!
//! [`Domain`] is a domain name as mailsift compares it: IDNA-mapped (UTS #46, so `Example.COM` and
//! `bücher.example` become `example.com` and `xn--bcher-kva.example`), lower-case ASCII, without the
//! trailing dot of a fully qualified name, at most 253 octets in labels of 1 to 63 octets; or an address
//! literal (`[192.0.2.1]`, `[ipv6:2001:db8::1]`). [`Address`] is a local part and an optional domain, read
//! the way envelope paths and header addresses are written: surrounding whitespace and one pair of angle
//! brackets are dropped, `<>` is the null sender, a source route (`@a,@b:user@c`, RFC 5321 section 4.1.2)
//! is ignored, a quoted local part (`"john doe"@example.com`) is kept as written, and the domain is the
//! text after the LAST `@` (so `"a@b"@example.com` belongs to example.com).
//!
//! Everything here reads sender-controlled text: the input is bounded ([`MAX_ADDRESS_LEN`]) before any
//! work, nothing recurses, and control characters (CR, LF, NUL...) are refused anywhere, so a parsed
//! address can go into a header or a reply line as it is. What this module deliberately does not do:
//! display names (`Bob <bob@example.com>` is a header's business, mail-parser reads those), comments,
//! or deciding whether a local part's routing syntax is acceptable (the SMTP session does that).

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The longest input [`Address::parse`] and [`Domain::parse`] look at, in bytes (surrounding whitespace
/// included). RFC 5321 allows a 256-octet path; the slack is for brackets, source routes and whitespace.
pub const MAX_ADDRESS_LEN: usize = 1024;
/// The longest domain name, in octets of its ASCII form without the trailing dot (RFC 1035, 2181).
pub const MAX_DOMAIN_LEN: usize = 253;
/// The longest label of a domain name, in octets.
pub const MAX_LABEL_LEN: usize = 63;
/// The longest local part, in bytes. RFC 5321 says 64, but VERP and SRS addresses seen in real mail
/// are longer; the bound is there against hostile input, not to police senders.
pub const MAX_LOCAL_LEN: usize = 512;

/// Why a text is not an address or a domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("longer than {MAX_ADDRESS_LEN} bytes")]
    TooLong,
    #[error("a control character (CR, LF, NUL, ...) in it")]
    ControlCharacter,
    #[error("the domain is empty")]
    EmptyDomain,
    #[error("the local part is empty")]
    EmptyLocalPart,
    #[error("the local part is longer than {MAX_LOCAL_LEN} bytes")]
    LocalPartTooLong,
    #[error("the local part has whitespace or an angle bracket outside quotes")]
    BadLocalPart,
    #[error("not a domain name: {0}")]
    BadDomain(&'static str),
}

/// A domain name or address literal, normalised for comparison (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain(String);

impl Domain {
    /// Parses a domain name (Unicode or ASCII, any case, with or without the trailing dot) or an address
    /// literal in brackets.
    pub fn parse(text: &str) -> Result<Domain, AddressError> {
        if text.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(AddressError::ControlCharacter);
        }
        let text = text.trim();
        if text.starts_with('[') {
            return Self::literal(text);
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        if name.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        let ascii = if name.is_ascii() {
            // The common case needs no IDNA work: ASCII maps to its lower case.
            name.to_ascii_lowercase()
        } else {
            let mapped = idna::domain_to_ascii(name).map_err(|_| AddressError::BadDomain("IDNA mapping failed"))?;
            // A full stop of another script (`。`) maps to `.`: the trailing one goes here too.
            match mapped.strip_suffix('.') {
                Some(m) => m.to_string(),
                None => mapped,
            }
        };
        Self::check_ascii(&ascii)?;
        Ok(Domain(ascii))
    }

    fn check_ascii(name: &str) -> Result<(), AddressError> {
        if name.is_empty() {
            return Err(AddressError::EmptyDomain);
        }
        if name.len() > MAX_DOMAIN_LEN {
            return Err(AddressError::BadDomain("longer than 253 octets"));
        }
        for label in name.split('.') {
            if label.is_empty() {
                return Err(AddressError::BadDomain("an empty label"));
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(AddressError::BadDomain("a label longer than 63 octets"));
            }
            // Letters, digits and hyphens (RFC 1123), and the underscore real DNS names carry.
            if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_') {
                return Err(AddressError::BadDomain("a character other than a letter, digit, '-' or '_'"));
            }
        }
        Ok(())
    }

    fn literal(text: &str) -> Result<Domain, AddressError> {
        let inner = text
            .strip_prefix('[')
            .and_then(|t| t.strip_suffix(']'))
            .ok_or(AddressError::BadDomain("an address literal without its closing bracket"))?;
        if let Ok(v4) = inner.parse::<Ipv4Addr>() {
            return Ok(Domain(format!("[{v4}]")));
        }
        let v6 = inner
            .get(..5)
            .filter(|tag| tag.eq_ignore_ascii_case("ipv6:"))
            .and_then(|_| inner[5..].parse::<Ipv6Addr>().ok())
            .ok_or(AddressError::BadDomain("an address literal that is neither IPv4 nor IPv6:"))?;
        Ok(Domain(format!("[ipv6:{v6}]")))
    }

    /// The normalised name: lower-case ASCII, no trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this is an address literal (`[192.0.2.1]`) rather than a name.
    pub fn is_literal(&self) -> bool {
        self.0.starts_with('[')
    }

    /// The same domain, nothing more: `Example.COM.` matches `example.com`, `mail.example.com` does not.
    /// A text that is not a domain matches nothing.
    pub fn matches(&self, other: &str) -> bool {
        Domain::parse(other).is_ok_and(|o| o == *self)
    }

    /// Whether this domain is `parent` or lies below it, label by label: `mail.example.com` is within
    /// `example.com`; `badexample.com` and `example.com.evil.test` are not. Address literals are within
    /// only themselves.
    pub fn is_subdomain_of(&self, parent: &Domain) -> bool {
        if self.is_literal() || parent.is_literal() {
            return self == parent;
        }
        self.0 == parent.0 || self.0.strip_suffix(parent.0.as_str()).is_some_and(|head| head.ends_with('.'))
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Domain {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Domain, AddressError> {
        Domain::parse(s)
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An address: a local part and, except for a bare local part (`postmaster`) and the null sender, a domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    local: String,
    domain: Option<Domain>,
}

impl Address {
    /// The null sender `<>` (bounces and other automatic replies).
    pub fn null() -> Address {
        Address { local: String::new(), domain: None }
    }

    /// Parses an envelope path or a bare address (see the module documentation for what is accepted).
    pub fn parse(text: &str) -> Result<Address, AddressError> {
        if text.len() > MAX_ADDRESS_LEN {
            return Err(AddressError::TooLong);
        }
        if text.chars().any(char::is_control) {
            return Err(AddressError::ControlCharacter);
        }
        let mut a = text.trim();
        if let Some(inner) = a.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
            a = inner.trim();
        }
        if a.is_empty() {
            return Ok(Address::null());
        }
        // A source route: `@relay1,@relay2:user@domain`; the route is ignored (RFC 5321 section 4.1.2).
        if a.starts_with('@') {
            if let Some((_, rest)) = a.split_once(':') {
                a = rest;
            }
        }
        let (local, domain) = match a.rsplit_once('@') {
            Some((local, domain)) => (local, Some(Domain::parse(domain)?)),
            None => (a, None),
        };
        Self::check_local(local)?;
        Ok(Address { local: local.to_string(), domain })
    }

    fn check_local(local: &str) -> Result<(), AddressError> {
        if local.is_empty() {
            return Err(AddressError::EmptyLocalPart);
        }
        if local.len() > MAX_LOCAL_LEN {
            return Err(AddressError::LocalPartTooLong);
        }
        // Whitespace and angle brackets only inside a quoted local part, which must be closed.
        // A leading `@` would read as a source route once displayed.
        let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
        if !quoted
            && (local.starts_with(['@', '"']) || local.chars().any(|c| c.is_whitespace() || c == '<' || c == '>'))
        {
            return Err(AddressError::BadLocalPart);
        }
        Ok(())
    }

    /// Whether this is the null sender.
    pub fn is_null(&self) -> bool {
        self.local.is_empty()
    }

    /// The local part as written (case kept: only the receiving host may interpret it; quotes kept).
    pub fn local_part(&self) -> &str {
        &self.local
    }

    /// The domain, `None` for the null sender and a bare local part.
    pub fn domain(&self) -> Option<&Domain> {
        self.domain.as_ref()
    }
}

/// `local@domain` without brackets; the null sender displays as the empty text (which parses back to it).
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(d) => write!(f, "{}@{d}", self.local),
            None => f.write_str(&self.local),
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Address, AddressError> {
        Address::parse(s)
    }
}

/// The domain of an address, as every part of mailsift compares it: the domain [`Address::parse`] finds
/// (surrounding whitespace and angle brackets removed, the text after the last `@`, IDNA-mapped, without a
/// trailing dot, lower-case ASCII). Empty when there is none: the null sender, a bare local part, or a
/// text that is not an address (a control character, an invalid or overlong domain name).
pub fn domain_of(address: &str) -> String {
    match Address::parse(address) {
        Ok(a) => a.domain.map(|d| d.0).unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn domains_are_normalised() {
        assert_eq!(Domain::parse("Example.COM.").unwrap().as_str(), "example.com");
        assert_eq!(Domain::parse(" bücher.Example ").unwrap().as_str(), "xn--bcher-kva.example");
        assert_eq!(Domain::parse("[127.0.0.1]").unwrap().as_str(), "[127.0.0.1]");
        assert_eq!(Domain::parse("[IPv6:::1]").unwrap().as_str(), "[ipv6:::1]");
        assert_eq!(Domain::parse("_dmarc.example.com").unwrap().as_str(), "_dmarc.example.com");
        for bad in ["", ".", "a..b", "exa mple.com", "a/b.com", "[1.2.3]", "[127.0.0.1", "x\r\n.com"] {
            assert!(Domain::parse(bad).is_err(), "{bad:?}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(Domain::parse(&long_label).is_err());
        let long_name = ["abcdefghi"; 26].join(".");
        assert!(long_name.len() > MAX_DOMAIN_LEN && Domain::parse(&long_name).is_err());
        assert!(Domain::parse(&"a.".repeat(600)).is_err(), "overlong input");
    }

    #[test]
    fn subdomains_go_label_by_label() {
        let parent = Domain::parse("example.com").unwrap();
        assert!(Domain::parse("example.com").unwrap().is_subdomain_of(&parent));
        assert!(Domain::parse("Mail.Example.com").unwrap().is_subdomain_of(&parent));
        assert!(!Domain::parse("badexample.com").unwrap().is_subdomain_of(&parent));
        assert!(!Domain::parse("example.com.evil.test").unwrap().is_subdomain_of(&parent));
        assert!(!parent.is_subdomain_of(&Domain::parse("mail.example.com").unwrap()));
        assert!(parent.matches("EXAMPLE.com."));
        assert!(!parent.matches("example.co"));
        assert!(!parent.matches("not a domain"));
    }

    #[test]
    fn addresses_as_written_on_the_wire() {
        let a = Address::parse(" <Bob@Example.COM.> ").unwrap();
        assert_eq!((a.local_part(), a.domain().map(Domain::as_str)), ("Bob", Some("example.com")));
        assert_eq!(a.to_string(), "Bob@example.com");
        assert!(Address::parse("<>").unwrap().is_null());
        assert!(Address::parse("  ").unwrap().is_null());
        assert_eq!(Address::parse("<>").unwrap().to_string(), "");
        let q = Address::parse("\"john doe@home\"@example.com").unwrap();
        assert_eq!(q.local_part(), "\"john doe@home\"");
        assert_eq!(q.domain().unwrap().as_str(), "example.com");
        let routed = Address::parse("<@relay.test,@other.test:user@example.com>").unwrap();
        assert_eq!(routed.to_string(), "user@example.com");
        let bare = Address::parse("postmaster").unwrap();
        assert_eq!((bare.local_part(), bare.domain()), ("postmaster", None));
        assert_eq!(Address::parse("a%b@c.test").unwrap().local_part(), "a%b");
        for bad in ["@example.com", "user@", "us er@example.com", "a@b\r\nBcc: x@y", "x@exa mple.com", "\"open@x.test"]
        {
            assert!(Address::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Address::parse(&format!("{}@example.com", "a".repeat(MAX_ADDRESS_LEN))).is_err());
    }

    #[test]
    fn domain_of_is_the_domain_of_the_parsed_address() {
        assert_eq!(domain_of("Bob@Example.COM."), "example.com");
        assert_eq!(domain_of(" <bob@Example.com> "), "example.com");
        assert_eq!(domain_of("a@b@C.test"), "c.test");
        assert_eq!(domain_of("user@bücher.example"), "xn--bcher-kva.example");
        assert_eq!(domain_of(""), "");
        assert_eq!(domain_of("<>"), "");
        assert_eq!(domain_of("example.com"), "", "a text without @ has no domain");
        assert_eq!(domain_of("x@evil.test\r\n"), "", "control characters make it no address");
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(s in "\\PC{0,80}|[ <>\"@a-zA-Z0-9.\\-_]{0,40}") {
            let domain = domain_of(&s);
            match Address::parse(&s) {
                Ok(a) => {
                    prop_assert_eq!(&domain, &a.domain().map(|d| d.to_string()).unwrap_or_default());
                    let shown = a.to_string();
                    let again = Address::parse(&shown);
                    prop_assert_eq!(again.as_ref(), Ok(&a), "{} -> {}", s, shown);
                    prop_assert!(!shown.chars().any(char::is_control));
                }
                Err(_) => prop_assert_eq!(domain, ""),
            }
            if let Ok(d) = Domain::parse(&s) {
                prop_assert_eq!(Domain::parse(&d.to_string()), Ok(d.clone()));
                prop_assert!(d.as_str().len() <= MAX_DOMAIN_LEN + 48);
                prop_assert!(d.is_subdomain_of(&d));
            }
        }

        #[test]
        fn real_looking_addresses_keep_their_parts(local in "[a-zA-Z0-9._%+-]{1,30}", labels in proptest::collection::vec("[a-zA-Z0-9-]{1,20}", 1..5)) {
            let domain = labels.join(".");
            let a = Address::parse(&format!("<{local}@{domain}>")).unwrap();
            prop_assert_eq!(a.local_part(), local.as_str());
            prop_assert_eq!(a.domain().unwrap().as_str(), domain.to_ascii_lowercase());
            prop_assert_eq!(domain_of(&format!("{local}@{domain}")), domain.to_ascii_lowercase());
        }
    }
}
