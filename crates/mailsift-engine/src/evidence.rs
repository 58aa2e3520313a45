//! Facts gathered before judging, as plain data: what the sender-evidence stage (the `mailsift-evidence`
//! crate: reverse DNS, SPF, DKIM, DMARC, ARC, DNS lists), the store (local reputation) and the classifiers
//! found out about a message.
//!
//! The checks read these facts and never look them up themselves; this module does no I/O either. A fact
//! that could not be established (a DNS timeout) is a fact too, reported as a temporary error rather than a
//! pass or a fail.

use serde::{Deserialize, Serialize};

/// The SPF result of the envelope sender (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

/// Outcome of a DNS-based check that can also fail to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Pass,
    Fail,
    None,
    TempError,
    PermError,
}

/// Reverse DNS of the client.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PtrFacts {
    /// Pass: a PTR name resolves back to the IP. Fail: PTR names exist but none confirms. None: no PTR.
    pub result: Outcome,
    /// With Pass, only the names that resolve back to the IP (forward-confirmed): whoever runs the reverse
    /// zone of an address can add a PTR record naming anybody's host, so an unconfirmed name is a claim,
    /// never a fact to match trusted relays or rules against. Otherwise every PTR name found.
    pub names: Vec<String>,
}

/// What happened to one DKIM signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DkimVerdict {
    Pass,
    /// The signed headers verify with the published key but the body hash does not: the body changed after
    /// signing (footer, disclaimer). A signature whose headers do not verify either is `Fail`, so a
    /// DKIM-Signature header copied onto another message never earns this.
    BodyModified,
    /// The signature does not verify.
    Fail,
    /// No key published at selector._domainkey.domain.
    KeyMissing,
    Expired,
    TempError,
    PermError,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DkimFacts {
    pub domain: String,
    pub selector: String,
    pub verdict: DkimVerdict,
    pub detail: String,
    /// The headers this very signature covers (its `h=` tag, lower case), as the verifier read them.
    #[serde(default)]
    pub signed_headers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DmarcFacts {
    /// The From: domain the policy is about.
    pub domain: String,
    /// Pass when SPF or DKIM passed aligned with it; None when the domain publishes no policy.
    pub result: Outcome,
    pub policy: DmarcPolicy,
    pub spf_aligned: bool,
    pub dkim_aligned: bool,
}

/// The DMARC record the policy came from, as far as aggregate reports (RFC 7489 §7.2) need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmarcRecordFacts {
    /// `p=`, `sp=` (`sp` is `p`'s value when the record has none), as published.
    pub p: DmarcPolicy,
    pub sp: DmarcPolicy,
    /// `pct=`: 100, or 0 under `t=y` (mail-auth keeps no `pct` of its own).
    pub pct: u8,
    /// `adkim=s`, `aspf=s` (strict); relaxed otherwise.
    pub adkim_strict: bool,
    pub aspf_strict: bool,
    /// `fo=` as published (`0` by default).
    pub fo: String,
    /// `rua=` URIs and their `!size` limits in bytes (0: none).
    pub rua: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ArcFacts {
    pub result: Outcome,
    /// Number of ARC sets (hops that sealed the message).
    pub hops: usize,
    /// The authentication results the first ARC sealer recorded (what it saw before forwarding).
    pub first_hop_results: Option<String>,
    /// Why the chain failed, when it is malformed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Everything the sender-evidence stage found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SenderFacts {
    pub ptr: Option<PtrFacts>,
    /// SPF domain checked (MAIL FROM domain, or HELO for the null sender).
    pub spf_domain: Option<String>,
    pub dkim: Vec<DkimFacts>,
    pub dmarc: Option<DmarcFacts>,
    /// The record `dmarc` was evaluated against, for DMARC aggregate reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc_record: Option<DmarcRecordFacts>,
    pub arc: Option<ArcFacts>,
    /// The RFC 8601 Authentication-Results header value (without the field name).
    pub authentication_results: Option<String>,
    /// SPF result of the envelope sender (or HELO for the null sender).
    pub spf: Option<SpfResult>,
    /// DNS list listings: (symbol, what was looked up, the list's answer).
    pub dns_lists: Vec<DnsListHit>,
    /// Lists that answered with an error or policy code (refused, over quota): never taken as a listing.
    pub dns_list_errors: Vec<String>,
    /// A port on the client that answered as an open proxy, when the probe is on.
    pub open_proxy: Option<u16>,
    /// Lookups that did not finish before the deadline.
    pub timed_out: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DnsListHit {
    pub symbol: String,
    pub zone: String,
    pub queried: String,
    pub code: String,
}

impl SenderFacts {
    /// The checks that could not be completed (timeouts and temporary DNS errors), for deferring.
    pub fn temporary_failures(&self) -> Vec<String> {
        let mut out = self.timed_out.clone();
        if self.spf == Some(SpfResult::TempError) {
            out.push("spf".into());
        }
        if self.dkim.iter().any(|d| d.verdict == DkimVerdict::TempError) {
            out.push("dkim".into());
        }
        if self.dmarc.as_ref().is_some_and(|d| d.result == Outcome::TempError) {
            out.push("dmarc".into());
        }
        out.sort();
        out.dedup();
        out
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// SPF of the envelope sender, when the sender-evidence stage ran.
    pub spf: Option<SpfResult>,
    /// Everything else the sender-evidence stage found (reverse DNS, DKIM, DMARC, ARC).
    pub sender: Option<SenderFacts>,
    /// Our own history of this sender, from the store (decayed counts of spam and good evidence).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reputation: Option<ReputationFacts>,
    /// Spam probabilities from the statistical engines, when a model was consulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<ClassifierScores>,
}

impl Evidence {
    /// Evidence from the sender-evidence stage.
    pub fn from_sender(facts: SenderFacts) -> Evidence {
        Evidence { spf: facts.spf, sender: Some(facts), ..Evidence::default() }
    }
}

/// The classifiers' answers about one message (computed by `classify`): spam probabilities, `None` when an engine stayed silent
/// (too little training).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassifierScores {
    pub bayes: Option<f64>,
    pub linear: Option<f64>,
    /// How much of the message's vocabulary the model has seen (tokens met in at least two trained
    /// messages, over all its tokens), in 0..=1: mail unlike anything learned gets a smaller say.
    #[serde(default)]
    pub familiarity: Option<f64>,
    /// Set when the answers come from the shipped day-one model (the local model has not learned enough):
    /// the share of the points it is given (`classifier.day_one_say`).
    #[serde(default)]
    pub day_one_say: Option<f64>,
    /// Set when the local model has not learned this organisation's own ham (`classifier.stranger_say`): the
    /// share of the points its engines' spam side scores unless the rest of the evidence agrees.
    #[serde(default)]
    pub stranger_say: Option<f64>,
    /// The combination fitted on this installation's mail, when the local model has one
    /// (`classify::combine`): each engine's points are scaled by its multiplier.
    #[serde(default)]
    pub combination: Option<Combination>,
    /// The local head's spam probability (`classify::linear::LinearModel::local_score`), when the model has
    /// learned enough of the organisation this message was addressed to.
    #[serde(default)]
    pub local: Option<f64>,
}

/// The least a fitted multiplier scales an engine's points by: the fixed combination (`classify::combine`).
pub const MULTIPLIER_FLOOR: f64 = 1.0;

/// How much of its points each engine's answer scores, per side, as fitted on this installation's mail.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Combination {
    pub bayes_spam: f64,
    pub bayes_ham: f64,
    pub linear_spam: f64,
    pub linear_ham: f64,
    /// The held-out messages it was fitted on.
    pub ham: u32,
    pub spam: u32,
}

impl Combination {
    /// The multiplier for an engine's points (`bayes`: Bayes, else the linear model) when they point
    /// toward spam (`toward_spam`) or toward ham.
    pub fn multiplier(&self, bayes: bool, toward_spam: bool) -> f64 {
        let m = match (bayes, toward_spam) {
            (true, true) => self.bayes_spam,
            (true, false) => self.bayes_ham,
            (false, true) => self.linear_spam,
            (false, false) => self.linear_ham,
        };
        if m.is_finite() {
            m.clamp(MULTIPLIER_FLOOR, crate::symbols::CLASSIFIER_FACTOR_MAX)
        } else {
            1.0
        }
    }

    /// The multipliers in the store's order: Bayes spam, Bayes ham, linear spam, linear ham.
    pub fn multipliers(&self) -> [f64; 4] {
        [self.bayes_spam, self.bayes_ham, self.linear_spam, self.linear_ham]
    }
}

/// What local reputation is kept about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReputationKind {
    /// The connecting IP address.
    Ip,
    /// Its network: the /24 of an IPv4 address, the /64 of an IPv6 one.
    Net,
    /// The sender's registrable domain (envelope sender, else From:).
    Domain,
    /// The sender's full address.
    Address,
}

impl ReputationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReputationKind::Ip => "ip",
            ReputationKind::Net => "net",
            ReputationKind::Domain => "domain",
            ReputationKind::Address => "address",
        }
    }
}

/// One remembered sender identity, with evidence decayed to now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReputationEntry {
    pub kind: ReputationKind,
    pub key: String,
    /// Decayed weight of bad evidence (spam verdicts, spamtrap hits, spam reports).
    pub spam: f64,
    /// Decayed weight of good evidence (clean verdicts, false-positive reports).
    pub ham: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReputationFacts {
    pub entries: Vec<ReputationEntry>,
}

/// The reputation keys of a message as the gateway should use them, knowing our own domains: as
/// [`reputation_keys`], except that a sender domain of ours (in `organisation.domains` or
/// `organisation.protected`) and its addresses are left out unless the message is our own outbound mail
/// or came from one of that domain's sending servers. Anyone can write our domain into MAIL FROM or From:,
/// so a spoof of it must count against the spoofing IP and network only, never against our domain (whose
/// own mail would then pay for it), and a spoof must not borrow our domain's good name either.
pub fn reputation_keys_for(
    envelope: &crate::Envelope,
    msg: &crate::Message<'_>,
    org: &crate::config::OrganisationConfig,
) -> Vec<(ReputationKind, String)> {
    let mut keys = reputation_keys(envelope, msg);
    if envelope.is_outbound() {
        return keys;
    }
    keys.retain(|(kind, key)| {
        let domain = match kind {
            ReputationKind::Domain => key.as_str(),
            ReputationKind::Address => key.rsplit_once('@').map(|(_, d)| d).unwrap_or(""),
            ReputationKind::Ip | ReputationKind::Net => return true,
        };
        !claims_our_domain(envelope, org, &crate::message::urls::registrable_domain(domain))
    });
    keys
}

/// Whether `domain` (registrable) is ours and the client is not one of its sending servers.
fn claims_our_domain(envelope: &crate::Envelope, org: &crate::config::OrganisationConfig, domain: &str) -> bool {
    use crate::message::urls::registrable_domain;
    let ours = |d: &str| registrable_domain(d.trim().trim_end_matches('.').to_ascii_lowercase().as_str()) == domain;
    let protected: Vec<_> = org.protected.iter().filter(|p| ours(&p.domain)).collect();
    if protected.is_empty() && !org.domains.iter().any(|d| ours(d)) {
        return false;
    }
    // From one of the domain's own sending servers, it is the domain's own mail and counts for it.
    let from_its_servers = envelope.client_ip.is_some_and(|ip| {
        protected.iter().flat_map(|p| &p.sending_servers).any(|s| {
            // The configuration was validated when the engine was built; an entry that does not read
            // authorises nothing.
            crate::cidr::IpRange::parse(s).is_ok_and(|r| r.contains(ip))
        })
    });
    !from_its_servers
}

/// The reputation keys of a message: (kind, key) for the client IP, its network, the sender domain and
/// address. The store looks these up before judging and records the verdict against them after.
///
/// This does not know our own domains: the gateway and the tools use [`reputation_keys_for`], which keeps
/// spoofs of our domains from counting against them.
pub fn reputation_keys(envelope: &crate::Envelope, msg: &crate::Message<'_>) -> Vec<(ReputationKind, String)> {
    let mut keys = Vec::new();
    if let Some(ip) = envelope.client_ip {
        keys.push((ReputationKind::Ip, ip.to_string()));
        let net = match ip {
            std::net::IpAddr::V4(v4) => {
                let o = v4.octets();
                format!("{}.{}.{}.0/24", o[0], o[1], o[2])
            }
            std::net::IpAddr::V6(v6) => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        };
        keys.push((ReputationKind::Net, net));
    }
    let address = envelope
        .mail_from
        .as_deref()
        .filter(|a| a.contains('@'))
        .map(|a| a.trim_matches(['<', '>']).to_lowercase())
        .or_else(|| msg.from.as_ref().map(|f| f.address.to_lowercase()).filter(|a| a.contains('@')));
    if let Some(a) = address {
        if let Some((_, d)) = a.rsplit_once('@') {
            keys.push((ReputationKind::Domain, crate::message::urls::registrable_domain(d)));
        }
        keys.push((ReputationKind::Address, a));
    }
    keys
}
