//! The administrator's policy as data: filter rules and allowed/blocked senders, as the configuration's
//! `[policy]` table, the store and the CLI hold them.
//!
//! These types only describe; they do not check that a regular expression compiles or that a CIDR range
//! parses. [`crate::policy::Policy::new`] does that, and refuses an invalid rule or entry naming the rule, the
//! field and the reason. Serde refuses unknown keys everywhere (a misspelt `requre_auth` must not silently
//! leave an allow entry unconditional), and the lists inside [`PolicyConfig`] name the rule or entry in
//! that error too.
//!
//! A filter rule in TOML:
//!
//! ```toml
//! [[policy.rules]]
//! name = "web forms"
//! direction = "inbound"          # inbound (default), outbound or both
//! match = "all"                  # all (default) or any
//! comment = "the contact form on web01 sends as forms@"
//! conditions = [
//!   { field = "envelope_from", op = "is", value = "forms@ourdomain.example" },
//!   { field = "client_ptr", op = "is", value = "web01.hosting.example" },
//! ]
//! actions = [{ action = "allow" }]
//! ```
//!
//! A rule that lets mail through should have a condition a forger cannot meet: the connecting server
//! (`client_ip`, `client_ptr`), a signing or authenticated domain (`dkim_domain`, `dkim_headers_domain`,
//! `auth_domain`, `arc_sealer`) or a line of our own relays (`trusted_hop`). Headers, the From: address,
//! MAIL FROM and HELO are written by the sender: [`FilterRule::forgery_warning`] says so for a rule that
//! relies on them alone.
//!
//! Allowed and blocked senders:
//!
//! ```toml
//! [[policy.allow]]
//! sender = "partner.example"                # a domain (and its subdomains) or an address
//! recipient = "alice@ourdomain.example"     # an address: alice's own list; a domain: that domain's list;
//!                                           # absent: the organisation's list
//! require_auth = true                       # SPF or DKIM must pass aligned with partner.example
//! expires = 1798761600                      # Unix seconds; ignored after that
//!
//! [[policy.block]]
//! sender = "offers@spam.example"
//! action = "reject"                         # quarantine (default) or reject
//! ```
//!
//! Everything here is also valid JSON through serde, for the store and the HTTP API.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The policy: filter rules, then allowed and blocked senders. `[policy]` in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// Filter rules, evaluated in this order.
    #[serde(deserialize_with = "named_items", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<FilterRule>,
    /// Allowed senders (organisation, domain and user level together; each entry's `recipient` says which).
    #[serde(deserialize_with = "named_items", skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<AllowEntry>,
    /// Blocked senders, at the same three levels.
    #[serde(deserialize_with = "named_items", skip_serializing_if = "Vec::is_empty")]
    pub block: Vec<BlockEntry>,
}

impl PolicyConfig {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.allow.is_empty() && self.block.is_empty()
    }
}

/// One filter rule: when its conditions hold, its actions apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterRule {
    /// Unique name, ignoring case; it appears in the verdict (`decided_by`, the `POLICY_RULE` symbol,
    /// `X-Mailsift-Rule`).
    pub name: String,
    /// A disabled rule is kept but never evaluated. Default true.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Which mail the rule applies to. Default inbound.
    #[serde(default)]
    pub direction: RuleDirection,
    /// Whether all conditions must hold or any one. Default all.
    #[serde(default, rename = "match")]
    pub match_mode: MatchMode,
    /// The conditions, in order. A rule without conditions matches every message of its direction.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// What happens when the rule matches. At least one; at most one of allow, quarantine and reject.
    pub actions: Vec<RuleAction>,
    /// Free text for the administrators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// The mail a rule applies to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleDirection {
    /// Mail arriving from outside (the default: spam filtering is about inbound mail).
    #[default]
    Inbound,
    /// Mail our users send out through the gateway.
    Outbound,
    Both,
}

impl RuleDirection {
    pub fn applies_to(self, d: crate::Direction) -> bool {
        matches!(
            (self, d),
            (RuleDirection::Both, _)
                | (RuleDirection::Inbound, crate::Direction::Inbound)
                | (RuleDirection::Outbound, crate::Direction::Outbound)
        )
    }
}

/// How a rule combines its conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchMode {
    /// Every condition holds (the default).
    #[default]
    All,
    /// At least one condition holds.
    Any,
}

/// One test on the message, its envelope or its evidence.
///
/// Text comparisons ignore case. A field with several values (the recipients, every `Received` header, the
/// attachments, the authenticated domains) satisfies the condition when any one value does; with
/// `not = true` the condition holds when no value does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pub field: Field,
    /// The header's name, for `field = "header"` only (e.g. "Received", "X-Mailer").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    pub op: Operator,
    /// What to compare with: text, a number (`size`, `score`), or a list of texts (any of them). Not used by
    /// `exists`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    /// Negates the condition.
    #[serde(default, skip_serializing_if = "is_false")]
    pub not: bool,
}

impl Condition {
    /// Why a forger can satisfy this condition, in plain words, when it is on a field the sender writes
    /// (see [`Field::forgeable`]); None for facts of the connection and authentication results.
    pub fn forgeable_note(&self) -> Option<&'static str> {
        let received = self.header.as_deref().is_some_and(|h| h.trim().eq_ignore_ascii_case("received"));
        Some(match self.field {
            Field::Header if received => {
                "a Received header can be written by the sender: only the lines your own servers add are facts (trusted_hop)"
            }
            Field::Header | Field::AnyHeader => "any header can be written by the sender",
            Field::Subject => "the sender writes the subject",
            Field::Body => "the sender writes the body",
            Field::From | Field::FromDomain => {
                "the From: address is written by the sender; only DMARC, a DKIM signature of that domain or the sending server prove it"
            }
            Field::EnvelopeFrom | Field::EnvelopeFromDomain => {
                "the envelope sender (MAIL FROM) is chosen by the sender; only SPF proves it"
            }
            Field::Helo => "the HELO name is chosen by the connecting server; its verified reverse DNS name is client_ptr",
            Field::AttachmentName | Field::AttachmentType => "the sender chooses the attachments",
            _ => return None,
        })
    }

    /// Whether the condition, holding, ties the message to a sender a forger cannot impersonate: a positive
    /// test of a connection fact or an authenticated domain with a value. `exists`, negations and the bare
    /// `dkim`/`spf`/`dmarc` results do not (a forger's own domain passes DKIM); `dmarc is pass` and
    /// `spf is pass` do when the rule also names the domain they authenticate (`paired`).
    fn binds_sender(&self, paired_from: bool, paired_envelope: bool) -> bool {
        if self.not || self.op == Operator::Exists {
            return false;
        }
        let only_pass = || {
            self.value.as_ref().is_some_and(|v| {
                let t = v.texts();
                !t.is_empty() && t.iter().all(|t| t.trim().eq_ignore_ascii_case("pass"))
            })
        };
        match self.field {
            Field::ClientIp
            | Field::ClientPtr
            | Field::AuthDomain
            | Field::DkimDomain
            | Field::DkimHeadersDomain
            | Field::ArcSealer
            | Field::TrustedHop => true,
            Field::Dmarc => paired_from && only_pass(),
            Field::Spf => paired_envelope && only_pass(),
            _ => false,
        }
    }

    /// The condition as the rule shows it, for the warning: `header Received contains "web01"`.
    fn describe(&self) -> String {
        let field = match (self.field, &self.header) {
            (Field::Header, Some(h)) => format!("header {}", h.trim()),
            (f, _) => f.as_str().to_string(),
        };
        let not = if self.not { "not " } else { "" };
        match (&self.value, self.op) {
            (_, Operator::Exists) | (None, _) => format!("{not}{field} {}", self.op.as_str()),
            (Some(v), op) => format!("{not}{field} {} {v}", op.as_str()),
        }
    }
}

impl FilterRule {
    /// Whether the rule lets mail through or softens its judgement when it matches: allow, a negative
    /// `add_score`, or `stop` without a quarantine or reject (it skips the later rules, which may be the
    /// ones that block).
    pub fn lets_mail_through(&self) -> bool {
        let blocks = self.actions.iter().any(|a| matches!(a, RuleAction::Quarantine {} | RuleAction::Reject { .. }));
        self.actions.iter().any(|a| match a {
            RuleAction::Allow {} => true,
            RuleAction::AddScore { score } => *score < 0.0,
            RuleAction::Stop {} => !blocks,
            _ => false,
        })
    }

    /// Some(plain words) when a forger can satisfy this rule and it lets mail through (see
    /// [`FilterRule::lets_mail_through`]): with `match = "all"` when no condition ties the message to a
    /// sender a forger cannot impersonate (the connecting server, a verified PTR name, an authenticated
    /// domain, a trusted hop), with `match = "any"` when any condition does not (a forger satisfies that one
    /// alone). The text names the conditions a forger satisfies and what to add. Outbound-only rules are
    /// not warned about: a forger cannot make its mail outbound.
    pub fn forgery_warning(&self) -> Option<String> {
        if !self.lets_mail_through() || self.direction == RuleDirection::Outbound {
            return None;
        }
        let positive = |fields: &[Field]| self.conditions.iter().any(|c| !c.not && fields.contains(&c.field));
        let paired_from = positive(&[Field::From, Field::FromDomain]);
        let paired_envelope = positive(&[Field::EnvelopeFrom, Field::EnvelopeFromDomain]);
        let binds = |c: &Condition| c.binds_sender(paired_from, paired_envelope);
        let weak: Vec<&Condition> = self.conditions.iter().filter(|c| !binds(c)).collect();
        let exposed = match self.match_mode {
            _ if self.conditions.is_empty() => true,
            MatchMode::All => weak.len() == self.conditions.len(),
            MatchMode::Any => !weak.is_empty(),
        };
        if !exposed {
            return None;
        }
        const ADD: &str = "a condition a forger cannot meet: the connecting server (client_ip in_cidr its network, or \
                           client_ptr ends_with its verified host name), the signing domain (dkim_domain, or \
                           dkim_headers_domain when a footer breaks the body hash), auth_domain, or a trusted_hop";
        let name = self.name.trim();
        if self.conditions.is_empty() {
            return Some(format!(
                "rule {name:?} lets mail through and has no conditions, so it matches every message, forged or not. Add {ADD}."
            ));
        }
        let reasons: Vec<String> = weak
            .iter()
            .map(|c| match c.forgeable_note() {
                Some(n) => format!("{} ({n})", c.describe()),
                None if c.not => {
                    format!("{} (a forger satisfies a negated condition by being anyone else)", c.describe())
                }
                None if c.op == Operator::Exists => format!("{} (true of a forger's mail too)", c.describe()),
                None => match c.field {
                    Field::Dkim | Field::Spf | Field::Dmarc => format!(
                        "{} (a forger passes with a domain of its own unless the rule also names the domain)",
                        c.describe()
                    ),
                    _ => format!("{} (the sender chooses it)", c.describe()),
                },
            })
            .collect();
        Some(match self.match_mode {
            MatchMode::All => format!(
                "rule {name:?} lets mail through, and a forger can satisfy all its conditions: {}. Add {ADD}.",
                reasons.join("; ")
            ),
            MatchMode::Any => format!(
                "rule {name:?} lets mail through when any one condition holds, and a forger can satisfy: {}. \
                 Use match = \"all\" with {ADD}, or move these conditions to a rule that does not let mail through.",
                reasons.join("; ")
            ),
        })
    }
}

/// What a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// MAIL FROM address (absent for the null sender of bounces).
    EnvelopeFrom,
    /// The domain of MAIL FROM.
    EnvelopeFromDomain,
    /// The From: header's address.
    From,
    /// The From: header's domain.
    FromDomain,
    /// Any envelope recipient's address (RCPT TO).
    Recipient,
    /// Any envelope recipient's domain.
    RecipientDomain,
    /// Every instance of the header named in `header`, decoded and unfolded.
    Header,
    /// Every header, as "Name: value".
    AnyHeader,
    /// The decoded Subject.
    Subject,
    /// The text a reader sees (plain parts, or rendered HTML when there is no plain part).
    Body,
    /// The connecting client's IP address (`is`, `in_cidr`).
    ClientIp,
    /// The HELO/EHLO name.
    Helo,
    /// The SPF result: pass, fail, softfail, neutral, none, temperror, permerror. No value when SPF was not
    /// checked, so `spf is none` means "checked and no record", not "not checked".
    Spf,
    /// The DKIM result: pass (a signature verified), fail (signatures, none verified), none (no signature),
    /// temperror. No value when DKIM was not checked.
    Dkim,
    /// The DMARC result of the From: domain: pass, fail, none (no policy published), temperror, permerror.
    Dmarc,
    /// A domain that authenticated: the d= of a DKIM signature that verified, or the MAIL FROM domain when
    /// SPF passed.
    AuthDomain,
    /// The message size in bytes (`above`, `below`); the value may be a number or text such as "10 MB".
    Size,
    /// Any attachment's file name.
    AttachmentName,
    /// Any attachment's real type, from its content: exe, elf, zip, rar, 7z, gzip, pdf, ole, rtf, png, jpeg,
    /// gif, html, script, iso, text, unknown.
    AttachmentType,
    /// The spam score so far: the checks' score plus the `add_score` of earlier matching rules (`above`,
    /// `below`).
    Score,
    /// The connecting server's forward-confirmed reverse-DNS name(s): our own DNS evidence (PTR result
    /// pass), or in milter mode the name the MTA verified. When the connecting server is one of
    /// `[organisation] trusted_relay_networks`, the name that relay recorded for the first untrusted
    /// server instead (see `crate::trust`). A forger cannot choose it.
    ClientPtr,
    /// The d= of each DKIM signature that fully verified (headers and body).
    DkimDomain,
    /// The d= of each DKIM signature whose signed headers verify, whether or not the body hash still
    /// matches (a footer added after signing); includes every `dkim_domain`.
    DkimHeadersDomain,
    /// The d= of every ARC-Seal of a chain that validated (ARC result pass).
    ArcSealer,
    /// Each Received field written on our side of the trust boundary (by a relay of
    /// `[organisation] trusted_relay_networks`), as text, unfolded. Lines the sender wrote are never here.
    /// The line still quotes what its client claimed (the HELO name after `from`): match the part the relay
    /// verified, e.g. `(web01.hoster.example [203.0.113.50])`, or use `client_ip`/`client_ptr`, which look
    /// at that client when the message came through our relays.
    TrustedHop,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::EnvelopeFrom => "envelope_from",
            Field::EnvelopeFromDomain => "envelope_from_domain",
            Field::From => "from",
            Field::FromDomain => "from_domain",
            Field::Recipient => "recipient",
            Field::RecipientDomain => "recipient_domain",
            Field::Header => "header",
            Field::AnyHeader => "any_header",
            Field::Subject => "subject",
            Field::Body => "body",
            Field::ClientIp => "client_ip",
            Field::Helo => "helo",
            Field::Spf => "spf",
            Field::Dkim => "dkim",
            Field::Dmarc => "dmarc",
            Field::AuthDomain => "auth_domain",
            Field::Size => "size",
            Field::AttachmentName => "attachment_name",
            Field::AttachmentType => "attachment_type",
            Field::Score => "score",
            Field::ClientPtr => "client_ptr",
            Field::DkimDomain => "dkim_domain",
            Field::DkimHeadersDomain => "dkim_headers_domain",
            Field::ArcSealer => "arc_sealer",
            Field::TrustedHop => "trusted_hop",
        }
    }

    /// True when the sender writes the value: the message's headers and content, the envelope sender and
    /// the HELO name. False for facts of the connection and results of authentication (which a forger
    /// cannot choose), and for the recipients, size and score (which are not the sender's identity).
    pub fn forgeable(self) -> bool {
        match self {
            Field::Header
            | Field::AnyHeader
            | Field::Subject
            | Field::Body
            | Field::From
            | Field::FromDomain
            | Field::EnvelopeFrom
            | Field::EnvelopeFromDomain
            | Field::Helo
            | Field::AttachmentName
            | Field::AttachmentType => true,
            Field::ClientIp
            | Field::ClientPtr
            | Field::AuthDomain
            | Field::DkimDomain
            | Field::DkimHeadersDomain
            | Field::ArcSealer
            | Field::TrustedHop
            | Field::Spf
            | Field::Dkim
            | Field::Dmarc
            | Field::Recipient
            | Field::RecipientDomain
            | Field::Size
            | Field::Score => false,
        }
    }

    /// Every field, in the order of the documentation (for the CLI's and console's lists).
    pub const ALL: &'static [Field] = &[
        Field::EnvelopeFrom,
        Field::EnvelopeFromDomain,
        Field::From,
        Field::FromDomain,
        Field::Recipient,
        Field::RecipientDomain,
        Field::Header,
        Field::AnyHeader,
        Field::Subject,
        Field::Body,
        Field::ClientIp,
        Field::ClientPtr,
        Field::Helo,
        Field::TrustedHop,
        Field::Spf,
        Field::Dkim,
        Field::Dmarc,
        Field::AuthDomain,
        Field::DkimDomain,
        Field::DkimHeadersDomain,
        Field::ArcSealer,
        Field::Size,
        Field::AttachmentName,
        Field::AttachmentType,
        Field::Score,
    ];
}

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// Equal to the value (or to one of a list), ignoring case.
    Is,
    /// Contains the text.
    Contains,
    StartsWith,
    EndsWith,
    /// Matches the regular expression (Rust `regex` syntax, case-insensitive unless it says `(?-i)`),
    /// anywhere in the text unless anchored with `^`/`$`.
    Matches,
    /// The client IP is in the CIDR range (`client_ip` only).
    InCidr,
    /// Greater than the number (`size`, `score`).
    Above,
    /// Less than the number (`size`, `score`).
    Below,
    /// The field has a value: for `header`, the header is present.
    Exists,
}

impl Operator {
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Is => "is",
            Operator::Contains => "contains",
            Operator::StartsWith => "starts_with",
            Operator::EndsWith => "ends_with",
            Operator::Matches => "matches",
            Operator::InCidr => "in_cidr",
            Operator::Above => "above",
            Operator::Below => "below",
            Operator::Exists => "exists",
        }
    }
}

/// A condition's value: text, a number, or a list of texts (the condition holds for any of them). Written
/// as a plain TOML/JSON string, number or array.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Number(f64),
    List(Vec<String>),
}

impl Value {
    /// The texts of the value: one for text, each for a list, the number's text for a number.
    pub fn texts(&self) -> Vec<String> {
        match self {
            Value::Text(t) => vec![t.clone()],
            Value::List(l) => l.clone(),
            Value::Number(n) => vec![n.to_string()],
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(t) => write!(f, "{t:?}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::List(l) => write!(f, "{l:?}"),
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Text(t) => s.serialize_str(t),
            // Whole numbers stay integers, so a size written as 1000000 reads back as it was written.
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => s.serialize_i64(*n as i64),
            Value::Number(n) => s.serialize_f64(*n),
            Value::List(l) => l.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a text, a number or a list of texts")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
                Ok(Value::Text(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                Ok(Value::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Number(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(Value::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// What a matching rule does.
///
/// Allow, quarantine and reject are decisions: the first matching rule that makes one ends the rule
/// stage, and neither the lists nor the score can change it. `stop` ends the rule stage without a
/// decision. The others accumulate over every matching rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleAction {
    /// Skip spam filtering: deliver with SCL -1. The message is still scanned (its symbols are shown) and
    /// logged.
    Allow {},
    /// Quarantine the message, whatever its score.
    Quarantine {},
    /// Refuse the message (550), with this text for the sender when given.
    Reject {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Deliver tagged as spam at least (quarantine and reject, from a rule, a blocked sender or the score,
    /// still win; an allow decision still delivers untagged).
    Tag {},
    /// Add to the spam score (negative to subtract); the total is then held against the thresholds.
    AddScore { score: f64 },
    /// Add a header field to the delivered message.
    AddHeader { name: String, value: String },
    /// Deliver to this address instead of the envelope recipients.
    Redirect { to: String },
    /// Deliver a copy to this address as well (a blind copy: the message is not changed).
    Copy { to: String },
    /// Evaluate no further rules.
    Stop {},
}

impl RuleAction {
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleAction::Allow {} => "allow",
            RuleAction::Quarantine {} => "quarantine",
            RuleAction::Reject { .. } => "reject",
            RuleAction::Tag {} => "tag",
            RuleAction::AddScore { .. } => "add_score",
            RuleAction::AddHeader { .. } => "add_header",
            RuleAction::Redirect { .. } => "redirect",
            RuleAction::Copy { .. } => "copy",
            RuleAction::Stop {} => "stop",
        }
    }
}

/// Whose list an entry belongs to, derived from its `recipient`: the precedence order is user, then
/// domain, then organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// One recipient's own list (`recipient` is an address).
    User,
    /// The list of a recipient domain of ours (`recipient` is a domain).
    Domain,
    /// The organisation's list (no `recipient`).
    Organisation,
}

impl Level {
    pub fn of(recipient: Option<&str>) -> Level {
        match recipient.map(str::trim) {
            None | Some("") => Level::Organisation,
            Some(r) if r.contains('@') => Level::User,
            Some(_) => Level::Domain,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::User => "user",
            Level::Domain => "domain",
            Level::Organisation => "organisation",
        }
    }
}

/// An allowed sender: mail from it skips spam filtering (SCL -1) for the recipients the entry covers.
///
/// It never lets through mail that spoofs one of our protected domains (`SPOOF_OWN_DOMAIN`) or that fails
/// the sender domain's DMARC with a quarantine or reject policy, unless `allow_spoofed` says so: a
/// forged From: of a well-known partner is the oldest way round an allow list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowEntry {
    /// A stable identifier the store assigns (its row id), reported when the entry matches so the store can
    /// record when it last matched. Optional in configuration files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The sender: an address (`news@partner.example`) or a domain (`partner.example`, which also covers
    /// its subdomains). Compared with both the envelope sender and the From: address.
    pub sender: String,
    /// Whose list: a recipient address (user level), a recipient domain (domain level), or absent (the
    /// organisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// Honour the entry only when the sender's domain authenticated: SPF passed for it, or a DKIM signature
    /// of it verified (same registrable domain).
    #[serde(default, skip_serializing_if = "is_false")]
    pub require_auth: bool,
    /// Honour the entry only when the client's forward-confirmed reverse DNS name is in this domain
    /// (e.g. "mailgun.net"): the sending infrastructure the sender legitimately uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ptr_domain: Option<String>,
    /// Honour the entry only when the client IP is in this CIDR range (e.g. "198.51.100.0/24").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_network: Option<String>,
    /// Honour the entry even when the message spoofs one of our protected domains or fails the sender's
    /// DMARC. Off by default, and rarely right.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_spoofed: bool,
    /// Unix seconds after which the entry is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl AllowEntry {
    pub fn level(&self) -> Level {
        Level::of(self.recipient.as_deref())
    }
}

/// What a blocked sender's mail gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockAction {
    /// The default: a mistaken block is recoverable from the quarantine, a rejection is not.
    #[default]
    Quarantine,
    Reject,
}

/// A blocked sender: its mail is quarantined (or rejected) for the recipients the entry covers, whatever
/// its score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockEntry {
    /// A stable identifier the store assigns; see [`AllowEntry::id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// An address or a domain (with its subdomains), compared with the envelope sender and the From: address.
    pub sender: String,
    /// Whose list: see [`AllowEntry::recipient`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// quarantine (default) or reject.
    #[serde(default)]
    pub action: BlockAction,
    /// Unix seconds after which the entry is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl BlockEntry {
    pub fn level(&self) -> Level {
        Level::of(self.recipient.as_deref())
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Deserializes a list item by item, so an error names the item (`rules[2] "web forms": unknown field
/// ...`) rather than only the position of the whole list.
fn named_items<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let raw = Vec::<toml::Value>::deserialize(d)?;
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| {
            let label = match v.get("name").or_else(|| v.get("sender")).and_then(|n| n.as_str()) {
                Some(n) => format!("[{i}] {n:?}"),
                None => format!("[{i}]"),
            };
            v.try_into::<T>().map_err(|e| de::Error::custom(format!("{label}: {}", e.message())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[rules]]
name = "web forms"
comment = "the contact form on web01 sends as forms@"
conditions = [
  { field = "envelope_from", op = "is", value = "forms@ourdomain.example" },
  { field = "header", header = "Received", op = "contains", value = "web01.hosting.example" },
  { field = "size", op = "below", value = 1000000 },
  { field = "recipient", op = "is", value = ["a@ourdomain.example", "b@ourdomain.example"], not = true },
]
actions = [{ action = "allow" }, { action = "add_score", score = -2.5 }, { action = "reject", message = "no" }]

[[rules]]
name = "open sesame"
direction = "outbound"
match = "any"
enabled = false
actions = [{ action = "stop" }, { action = "add_header", name = "X-Open", value = "sesame" }]

[[allow]]
sender = "partner.example"
recipient = "alice@ourdomain.example"
require_auth = true
expires = 1798761600

[[block]]
id = "17"
sender = "offers@spam.example"
action = "reject"
"#;

    #[test]
    fn the_documented_example_reads_and_round_trips() {
        let p: PolicyConfig = toml::from_str(EXAMPLE).unwrap();
        assert_eq!(p.rules.len(), 2);
        let r = &p.rules[0];
        assert!(r.enabled);
        assert_eq!((r.direction, r.match_mode), (RuleDirection::Inbound, MatchMode::All));
        assert_eq!(r.conditions[1].header.as_deref(), Some("Received"));
        assert_eq!(r.conditions[2].value, Some(Value::Number(1_000_000.0)));
        assert!(r.conditions[3].not);
        assert_eq!(r.actions[1], RuleAction::AddScore { score: -2.5 });
        assert_eq!(p.rules[1].match_mode, MatchMode::Any);
        assert!(!p.rules[1].enabled);
        assert_eq!(p.allow[0].level(), Level::User);
        assert_eq!(p.block[0].level(), Level::Organisation);
        assert_eq!(p.block[0].action, BlockAction::Reject);

        let text = toml::to_string(&p).unwrap();
        let back: PolicyConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, p, "{text}");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<PolicyConfig>(&json).unwrap(), p);
    }

    #[test]
    fn unknown_keys_are_refused_with_the_item_named() {
        let bad = "[[rules]]\nname = \"web forms\"\nactons = []\n";
        let e = toml::from_str::<PolicyConfig>(bad).unwrap_err().to_string();
        assert!(e.contains("\"web forms\"") && e.contains("actons"), "{e}");

        let bad = "[[allow]]\nsender = \"x.example\"\nrequre_auth = true\n";
        let e = toml::from_str::<PolicyConfig>(bad).unwrap_err().to_string();
        assert!(e.contains("\"x.example\"") && e.contains("requre_auth"), "{e}");

        // Unknown keys inside an action and a condition, including beside a decision without parameters.
        for bad in [
            "[[rules]]\nname = \"r\"\nactions = [{ action = \"allow\", score = 3 }]\n",
            "[[rules]]\nname = \"r\"\nactions = [{ action = \"add_score\", score = 3, why = 1 }]\n",
            "[[rules]]\nname = \"r\"\nactions = [{ action = \"explode\" }]\n",
            "[[rules]]\nname = \"r\"\nactions = []\nconditions = [{ field = \"body\", op = \"contains\", valu = \"x\" }]\n",
            "[[rules]]\nname = \"r\"\nactions = []\nconditions = [{ field = \"bdy\", op = \"contains\", value = \"x\" }]\n",
        ] {
            let e = toml::from_str::<PolicyConfig>(bad).unwrap_err().to_string();
            assert!(e.contains("[0] \"r\""), "{bad}: {e}");
        }
    }

    fn rule(text: &str) -> FilterRule {
        let p: PolicyConfig = toml::from_str(&format!("[[rules]]\nname = \"r\"\n{text}")).unwrap();
        p.rules.into_iter().next().unwrap()
    }

    #[test]
    fn fields_a_sender_writes_are_forgeable() {
        let forgeable: Vec<&str> = Field::ALL.iter().filter(|f| f.forgeable()).map(|f| f.as_str()).collect();
        assert_eq!(
            forgeable,
            [
                "envelope_from",
                "envelope_from_domain",
                "from",
                "from_domain",
                "header",
                "any_header",
                "subject",
                "body",
                "helo",
                "attachment_name",
                "attachment_type"
            ]
        );
        // Every field once in ALL, each with a name serde reads back.
        for f in Field::ALL {
            let back: Field = serde_json::from_str(&format!("{:?}", f.as_str())).unwrap();
            assert_eq!(back, *f);
        }
        assert_eq!(Field::ALL.len(), 25);
        let c = |field: &str, header: &str| -> Condition {
            let h = if header.is_empty() { String::new() } else { format!(", header = {header:?}") };
            let r = rule(&format!(
                "conditions = [{{ field = {field:?}{h}, op = \"exists\" }}]\nactions = [{{ action = \"allow\" }}]"
            ));
            r.conditions[0].clone()
        };
        assert!(c("header", "Received").forgeable_note().unwrap().contains("Received header can be written"));
        assert!(c("header", "X-Mailer").forgeable_note().unwrap().contains("any header"));
        assert!(c("helo", "").forgeable_note().unwrap().contains("client_ptr"));
        assert_eq!(c("client_ptr", "").forgeable_note(), None);
        assert_eq!(c("trusted_hop", "").forgeable_note(), None);
    }

    #[test]
    fn forgery_warnings_name_what_a_forger_can_satisfy() {
        // The rule diagnose once proposed: a spoofer writes both.
        let r = rule(
            r#"conditions = [
  { field = "from", op = "is", value = "webform@acme.test" },
  { field = "header", header = "Received", op = "contains", value = "web01.hoster.test" },
]
actions = [{ action = "allow" }]"#,
        );
        let w = r.forgery_warning().expect("forgeable");
        assert!(w.contains("a Received header can be written by the sender"), "{w}");
        assert!(w.contains("from is \"webform@acme.test\""), "{w}");
        assert!(w.contains("client_ip") && w.contains("client_ptr"), "says what to add: {w}");

        // With the connecting server, a forger cannot meet it.
        let safe = |extra: &str, actions: &str| {
            rule(&format!(
                "conditions = [{{ field = \"from\", op = \"is\", value = \"webform@acme.test\" }}, {extra}]\nactions = [{actions}]"
            ))
            .forgery_warning()
        };
        let allow = r#"{ action = "allow" }"#;
        for binding in [
            r#"{ field = "client_ip", op = "in_cidr", value = "203.0.113.0/24" }"#,
            r#"{ field = "client_ptr", op = "ends_with", value = "hoster.test" }"#,
            r#"{ field = "dkim_domain", op = "is", value = "acme.test" }"#,
            r#"{ field = "dkim_headers_domain", op = "is", value = "acme.test" }"#,
            r#"{ field = "auth_domain", op = "is", value = "acme.test" }"#,
            r#"{ field = "arc_sealer", op = "is", value = "sig.test" }"#,
            r#"{ field = "trusted_hop", op = "contains", value = "web01.hoster.test" }"#,
            r#"{ field = "dmarc", op = "is", value = "pass" }"#,
        ] {
            assert_eq!(safe(binding, allow), None, "{binding}");
        }
        for weak in [
            r#"{ field = "dkim", op = "is", value = "pass" }"#,
            r#"{ field = "spf", op = "is", value = "pass" }"#,
            r#"{ field = "client_ip", op = "in_cidr", value = "203.0.113.0/24", not = true }"#,
            r#"{ field = "dkim_domain", op = "exists" }"#,
            r#"{ field = "helo", op = "is", value = "web01.hoster.test" }"#,
            r#"{ field = "recipient", op = "is", value = "sales@acme.test" }"#,
        ] {
            assert!(safe(weak, allow).is_some(), "{weak}");
        }
        // A negative score lets mail through too; a positive one, a block or a tag does not.
        let client = r#"{ field = "subject", op = "contains", value = "invoice" }"#;
        assert!(safe(client, r#"{ action = "add_score", score = -3 }"#).is_some());
        assert!(safe(client, r#"{ action = "stop" }"#).is_some(), "stop skips the later (blocking) rules");
        for harmless in [
            r#"{ action = "add_score", score = 3 }"#,
            r#"{ action = "quarantine" }"#,
            r#"{ action = "reject" }, { action = "stop" }"#,
            r#"{ action = "tag" }"#,
        ] {
            assert_eq!(safe(client, harmless), None, "{harmless}");
        }

        // Any: one forgeable condition is enough for a forger.
        let any = rule(
            r#"match = "any"
conditions = [
  { field = "client_ip", op = "in_cidr", value = "203.0.113.0/24" },
  { field = "header", header = "X-Origin", op = "is", value = "web01" },
]
actions = [{ action = "allow" }]"#,
        );
        let w = any.forgery_warning().unwrap();
        assert!(w.contains("any header can be written") && !w.contains("203.0.113.0/24"), "{w}");
        assert!(w.contains("match = \"all\""), "{w}");
        // No conditions: every message.
        assert!(rule("actions = [{ action = \"allow\" }]").forgery_warning().unwrap().contains("every message"));
        // Outbound mail is ours: a forger cannot make its mail outbound.
        let out = rule("direction = \"outbound\"\nconditions = [{ field = \"subject\", op = \"contains\", value = \"open sesame\" }]\nactions = [{ action = \"allow\" }]");
        assert_eq!(out.forgery_warning(), None);
    }

    #[test]
    fn levels_follow_the_recipient() {
        assert_eq!(Level::of(None), Level::Organisation);
        assert_eq!(Level::of(Some("ourdomain.example")), Level::Domain);
        assert_eq!(Level::of(Some("bob@ourdomain.example")), Level::User);
        assert!(Level::User < Level::Domain && Level::Domain < Level::Organisation);
    }
}
