//! The engine's configuration: thresholds, symbol weights, ASF options, the administrator's own rules.
//!
//! Every field has a default, so an empty file is a working configuration; unknown keys are refused so a
//! typo does not silently leave a setting at its default. The reference documentation is these comments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod policy;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// The data directory (databases, keys, Maildir): every command reads it from here unless `--data-dir` or
    /// `MAILSIFT_DATA_DIR` says otherwise. A relative path is relative to this file's directory, never to
    /// where a command runs. Unset: `/var/lib/mailsift` with the system configuration
    /// (/etc/mailsift/mailsift.toml), else `./mailsift-data`. Read by the `mailsift` command, not the engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<std::path::PathBuf>,
    /// Score thresholds that turn a score into an action.
    pub thresholds: Thresholds,
    /// Weight overrides: `SYMBOL_NAME = weight`. A weight of 0 switches a symbol off.
    pub weights: BTreeMap<String, f64>,
    /// Most a group of symbols may add to the score, so one family of evidence cannot decide alone:
    /// `group = cap`. By default the content wording (phrase rules) counts at most 4, under the tag
    /// threshold: spam wording alone never tags a message; it needs a second kind of evidence.
    pub group_caps: BTreeMap<String, f64>,
    /// Additional Spam Filtering options: each `off`, `on` or `test`.
    pub asf: AsfConfig,
    /// The administrator's phrase and pattern rules, added to the built-in set.
    pub rules: Vec<RuleConfig>,
    /// Limits on how much of a message is examined.
    pub scan: ScanConfig,
    /// The organisation this gateway protects.
    pub organisation: OrganisationConfig,
    /// DNS for sender evidence (reverse DNS, SPF, DKIM, DMARC, ARC).
    pub dns: DnsConfig,
    /// DNS blocklists and allowlists. None by default: they need the Internet, and each list's terms of use.
    pub dnsbl: Vec<DnsListConfig>,
    /// The verdict at connect and HELO time, before any data is read.
    pub connection: ConnectionConfig,
    /// The statistical engines (Bayes and the linear model): experience gate, auto-learning, spamtraps.
    pub classifier: ClassifierConfig,
    /// Local reputation of senders, kept in the data directory.
    pub reputation: ReputationConfig,
    /// How authentication results act beyond their symbols.
    pub auth: AuthConfig,
    /// Filter rules and allowed/blocked senders (`[[policy.rules]]`, `[[policy.allow]]`, `[[policy.block]]`),
    /// for a gateway without a database; see [`policy`] for every key. None by default.
    #[serde(skip_serializing_if = "policy::PolicyConfig::is_empty")]
    pub policy: policy::PolicyConfig,
    /// Composites (`[[composites]]`): an expression over symbols and groups that, when it holds, adds a
    /// symbol of its own and changes the weights of the symbols it matched (see `crate::composites`). The
    /// built-in ones (forwarded mail, mailing lists) are on unless an entry of the same name switches one
    /// off (`enabled = false`) or replaces it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub composites: Vec<CompositeConfig>,
    /// The SMTP gateway's table, read and checked by `mailsift-smtp` (the engine only lets it through).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp: Option<toml::Value>,
    /// The HTTP API, console and digest's table, read and checked by `mailsift-web`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web: Option<toml::Value>,
    /// Where the gateway's state is stored (`[store]`), read and checked by `mailsift-store`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<toml::Value>,
    /// The Redis that several nodes share reputation through (`[redis]`), read and checked by
    /// `mailsift-store`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<toml::Value>,
}

/// DNS settings (`[dns]` in the configuration).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// Gather sender evidence from DNS. Off in the embedded defaults, which must work offline and never
    /// send traffic anywhere by surprise; a production gateway turns it on.
    pub enabled: bool,
    /// Name servers as "IP" or "IP:port"; empty uses the system's resolver configuration.
    pub nameservers: Vec<String>,
    /// Time allowed for one DNS query, in milliseconds.
    pub timeout_ms: u64,
    /// Time allowed for all of one message's lookups together, in milliseconds; what is not answered by then
    /// is reported as a temporary error.
    pub deadline_ms: u64,
    /// Entries kept in each in-memory DNS cache.
    pub cache_entries: usize,
    /// The name this gateway writes in Authentication-Results (its authserv-id).
    pub hostname: String,
    /// When a sender check fails temporarily (timeout, SERVFAIL), ask the sending server to retry later (4xx)
    /// instead of judging the message half-checked. Off: the message is judged on what is known.
    pub defer_on_temperror: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: false,
            nameservers: Vec::new(),
            timeout_ms: 2000,
            deadline_ms: 5000,
            cache_entries: 50_000,
            hostname: "mailsift.local".to_string(),
            defer_on_temperror: false,
        }
    }
}

/// What a failed DMARC check with a quarantine or reject policy does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcEnforcement {
    /// Evidence only: the DMARC_POLICY_* symbols add their weight (the default; forwarded mail breaks DMARC).
    #[default]
    Score,
    /// Do what the domain asks: p=quarantine quarantines, p=reject rejects, whatever the score.
    Honor,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `score` (default) or `honor` the From: domain's DMARC policy as an action.
    pub dmarc: DmarcEnforcement,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReputationConfig {
    /// Consult (and, in the gateway, update) local reputation.
    pub enabled: bool,
    /// Evidence about a sender halves every this many days, so a quiet sender drifts back to neutral.
    pub half_life_days: f64,
}

impl Default for ReputationConfig {
    fn default() -> Self {
        ReputationConfig { enabled: true, half_life_days: 14.0 }
    }
}

/// What a DNS list is queried with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsListKind {
    /// The connecting IP (reversed octets or nibbles under the zone).
    Ip,
    /// The envelope sender's domain.
    Sender,
    /// The HELO name.
    Helo,
    /// The registrable domains of URLs in the message.
    Url,
}

/// One DNS blocklist or allowlist.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsListConfig {
    /// Symbol reported for a listing (UPPER_SNAKE); returns below may name their own.
    pub symbol: String,
    /// The list's DNS zone, e.g. "zen.spamhaus.org".
    pub zone: String,
    #[serde(default = "default_kind")]
    pub kind: DnsListKind,
    /// Weight of a listing with no specific return below; negative for allowlists.
    pub weight: f64,
    /// Return codes with their own symbol and weight (e.g. a combined list's sub-lists).
    #[serde(default)]
    pub returns: Vec<DnsListReturn>,
    /// A listing here is reason enough to refuse the connection at the door (with `connection.reject_at_door`).
    #[serde(default)]
    pub reject_at_door: bool,
    #[serde(default)]
    pub description: Option<String>,
}

fn default_kind() -> DnsListKind {
    DnsListKind::Ip
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsListReturn {
    /// The A record the list answers, e.g. "127.0.0.2".
    pub code: String,
    pub symbol: String,
    pub weight: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    /// Refuse at the door (550 at connect/HELO) when the connection-stage score reaches this. 0 disables.
    pub reject_score: f64,
    /// Refuse at the door on any listing from a list marked `reject_at_door`.
    pub reject_at_door: bool,
    /// Probe the client's common proxy ports (off by default, as it connects back to the sender).
    pub open_proxy_probe: bool,
    /// Ports the probe tries.
    pub open_proxy_ports: Vec<u16>,
    /// Time allowed for the whole probe, in milliseconds.
    pub open_proxy_timeout_ms: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            reject_score: 15.0,
            reject_at_door: true,
            open_proxy_probe: false,
            open_proxy_ports: vec![1080, 3128, 8080, 8000, 8888],
            open_proxy_timeout_ms: 1500,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierConfig {
    /// Consult the classifiers when a trained model is loaded.
    pub enabled: bool,
    /// The classifiers stay silent until at least this many ham messages were learned.
    pub min_ham: u64,
    /// The classifiers stay silent until at least this many spam messages were learned.
    pub min_spam: u64,
    /// Until the local model has learned `min_ham` and `min_spam` messages, the classifiers answer from the
    /// day-one model shipped in the binary, with this share of the points (0 turns it off, 1 gives it the
    /// local model's full say). See `classify::day_one`.
    pub day_one_say: f64,
    /// A local model that has not learned this organisation's own ham (fewer than 50 ham addressed to one of
    /// `[organisation] domains`, or to the message's own recipient domain when none are configured) was
    /// trained on someone else's mail: a public corpus, another installation's. Its engines' spam side then
    /// scores this share of its points, unless the rest of the evidence agrees (2 points or more of it, or a
    /// sign that the message hides where it sends the reader); the ham side is untouched. 1 turns this off.
    /// See `checks::classifier`.
    pub stranger_say: f64,
    /// Learn from the gateway's own verdicts, far from the thresholds only. Off by default: a model that
    /// learns from itself can drift; user reports and spamtraps are the safer teachers.
    pub autolearn: bool,
    /// Auto-learn as spam at or above this score (the heuristics alone must also reach the tag threshold).
    pub autolearn_spam_score: f64,
    /// Auto-learn as ham at or below this score (the heuristics alone must stay below half the tag
    /// threshold).
    pub autolearn_ham_score: f64,
    /// Spamtrap addresses: mail to them is learned as spam, and the sender is reported to reputation.
    pub spamtraps: Vec<String>,
    /// The token store keeps at most this many tokens; rare stale ones are expired first.
    pub max_tokens: u64,
    /// Tokens seen in a single message and not seen again for this many days are expired.
    pub expire_after_days: u64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            enabled: true,
            min_ham: 200,
            min_spam: 200,
            day_one_say: 0.25,
            stranger_say: 0.5,
            autolearn: false,
            autolearn_spam_score: 15.0,
            autolearn_ham_score: -2.0,
            spamtraps: Vec::new(),
            max_tokens: 3_000_000,
            expire_after_days: 60,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            data_dir: None,
            thresholds: Thresholds::default(),
            weights: BTreeMap::new(),
            group_caps: BTreeMap::from([("content".to_string(), 4.0)]),
            asf: AsfConfig::default(),
            rules: Vec::new(),
            scan: ScanConfig::default(),
            organisation: OrganisationConfig::default(),
            dns: DnsConfig::default(),
            dnsbl: Vec::new(),
            connection: ConnectionConfig::default(),
            classifier: ClassifierConfig::default(),
            reputation: ReputationConfig::default(),
            auth: AuthConfig::default(),
            policy: policy::PolicyConfig::default(),
            composites: Vec::new(),
            smtp: None,
            web: None,
            store: None,
            redis: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// At or above this score the message is delivered tagged (headers, optional subject prefix).
    pub tag: f64,
    /// At or above this score the message is quarantined.
    pub quarantine: f64,
    /// At or above this score the message is rejected with a 550.
    pub reject: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { tag: 5.0, quarantine: 10.0, reject: 15.0 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// Messages larger than this are scanned on their first `max_scan_bytes` only (and say so).
    pub max_scan_bytes: usize,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig { max_scan_bytes: 10 * 1024 * 1024 }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrganisationConfig {
    /// The organisation's own domains (backscatter detection; HELO names that claim to be us).
    pub domains: Vec<String>,
    /// Domains protected against spoofing, each with the servers allowed to send as it.
    pub protected: Vec<ProtectedDomain>,
    /// ARC sealers we trust. A valid chain whose newest seal is from one of these may excuse forwarded mail's
    /// SPF and DMARC failures. When every seal of the chain is from one of these and the first one saw our
    /// protected domain's DKIM or DMARC pass, the mail is our own coming back (no SPOOF_OWN_DOMAIN). Empty:
    /// no chain is trusted (anyone can seal a forgery of his own that claims a pass).
    pub trusted_arc_sealers: Vec<String>,
    /// MTAs in front of the gateway (IP addresses or CIDR ranges, e.g. "10.1.0.0/16"), whose Received lines
    /// are facts: when one of them connects, the line it wrote says who connected to it, and so on down
    /// while those clients are trusted relays too. Below that boundary, Received lines are the sender's
    /// claims. Rule conditions on the connecting server (`client_ip`, `client_ptr`) then look at the first
    /// server outside these networks; `trusted_hop` sees the lines they wrote. Empty: only the connection
    /// the gateway (or, as a milter, its MTA) saw itself is a fact.
    #[serde(deserialize_with = "cidr_list")]
    pub trusted_relay_networks: Vec<String>,
}

impl OrganisationConfig {
    /// `trusted_relay_networks`, parsed; the error names the entry and the reason. The configuration file
    /// is checked as it is read; this is for a configuration built in code.
    pub fn trusted_relays(&self) -> Result<Vec<crate::cidr::IpRange>, String> {
        parse_cidrs("trusted_relay_networks", &self.trusted_relay_networks)
    }
}

fn parse_cidrs(key: &str, list: &[String]) -> Result<Vec<crate::cidr::IpRange>, String> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let r = crate::cidr::IpRange::parse(s.trim())
                .map_err(|e| format!("{key}[{i}]: {e} (give an IP address or a CIDR range such as \"10.1.0.0/16\")"))?;
            if r.prefix() == 0 {
                // Every address: every Received line any sender writes would be taken as a fact.
                return Err(format!("{key}[{i}]: {s:?} covers every address; list only your own relays' networks"));
            }
            Ok(r)
        })
        .collect()
}

/// A list of IP addresses and CIDR ranges, refused as it is read when one does not parse, so the error
/// carries the file's line.
fn cidr_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let list = Vec::<String>::deserialize(d)?;
    parse_cidrs("trusted_relay_networks", &list).map_err(serde::de::Error::custom)?;
    Ok(list)
}

/// A domain of ours that outsiders must not send as.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProtectedDomain {
    pub domain: String,
    /// IP addresses and CIDR ranges allowed to send mail whose From: is this domain.
    pub sending_servers: Vec<String>,
    /// Relays recognised by a pattern (regular expression), e.g. a hosted mail service's host names: mail
    /// that passed through one is treated as sent by us. Matched only against facts a forger cannot write
    /// (the connecting server's verified reverse DNS name, and the trusted hops of `crate::trust`), never
    /// against Received lines the sender could have written.
    pub trusted_relays: Vec<String>,
}

/// The mode of one ASF option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AsfMode {
    /// Not evaluated.
    #[default]
    Off,
    /// Evaluated and applied.
    On,
    /// Evaluated and reported in `X-Mailsift-ASF`, but adds nothing to the score.
    Test,
}

/// The ASF options, named as in Microsoft's filtering service. All are off by default, as there.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AsfConfig {
    /// Images whose source is a remote web site (increases the score).
    pub image_links_to_remote_sites: AsfMode,
    /// URLs whose host is a numeric IP address (increases the score).
    pub numeric_ip_in_url: AsfMode,
    /// URLs that point to a port other than 80 or 443 (increases the score).
    pub url_redirect_to_other_port: AsfMode,
    /// URLs to .biz or .info web sites (increases the score).
    pub url_to_biz_or_info: AsfMode,
    /// Messages with no subject, no body and no attachment (high-confidence spam).
    pub empty_messages: AsfMode,
    /// JavaScript or VBScript in HTML (high-confidence spam).
    pub javascript_or_vbscript_in_html: AsfMode,
    /// Frame or iframe tags in HTML (high-confidence spam).
    pub frame_or_iframe_tags: AsfMode,
    /// Object tags in HTML (high-confidence spam).
    pub object_tags: AsfMode,
    /// Embed tags in HTML (high-confidence spam).
    pub embed_tags: AsfMode,
    /// Form tags in HTML (high-confidence spam).
    pub form_tags: AsfMode,
    /// Web bugs: tiny remote images that report the message was read (high-confidence spam).
    pub web_bugs: AsfMode,
    /// Words from `sensitive_words` in the subject or body (high-confidence spam).
    pub sensitive_word_list: AsfMode,
    /// The list used by `sensitive_word_list`; a built-in list of sexually explicit terms when empty.
    pub sensitive_words: Vec<String>,
    /// SPF hard fail of the envelope sender (high-confidence spam).
    pub spf_hard_fail: AsfMode,
    /// Bounces for messages the organisation never sent (high-confidence spam).
    pub ndr_backscatter: AsfMode,
    /// Bulk mail (newsletters, marketing) recognised by its headers (increases the score).
    pub bulk_mail: AsfMode,
}

impl AsfConfig {
    /// The configuration keys of the options, in the order of the table (for errors and listings).
    pub const OPTIONS: &'static [&'static str] = &[
        "image_links_to_remote_sites",
        "numeric_ip_in_url",
        "url_redirect_to_other_port",
        "url_to_biz_or_info",
        "empty_messages",
        "javascript_or_vbscript_in_html",
        "frame_or_iframe_tags",
        "object_tags",
        "embed_tags",
        "form_tags",
        "web_bugs",
        "sensitive_word_list",
        "spf_hard_fail",
        "ndr_backscatter",
        "bulk_mail",
    ];

    fn mode_mut(&mut self, option: &str) -> Option<&mut AsfMode> {
        Some(match option {
            "image_links_to_remote_sites" => &mut self.image_links_to_remote_sites,
            "numeric_ip_in_url" => &mut self.numeric_ip_in_url,
            "url_redirect_to_other_port" => &mut self.url_redirect_to_other_port,
            "url_to_biz_or_info" => &mut self.url_to_biz_or_info,
            "empty_messages" => &mut self.empty_messages,
            "javascript_or_vbscript_in_html" => &mut self.javascript_or_vbscript_in_html,
            "frame_or_iframe_tags" => &mut self.frame_or_iframe_tags,
            "object_tags" => &mut self.object_tags,
            "embed_tags" => &mut self.embed_tags,
            "form_tags" => &mut self.form_tags,
            "web_bugs" => &mut self.web_bugs,
            "sensitive_word_list" => &mut self.sensitive_word_list,
            "spf_hard_fail" => &mut self.spf_hard_fail,
            "ndr_backscatter" => &mut self.ndr_backscatter,
            "bulk_mail" => &mut self.bulk_mail,
            _ => return None,
        })
    }

    /// Sets one option by its configuration key (per-domain settings), without a round trip through TOML.
    /// The error names the key and the keys there are.
    pub fn set(&mut self, option: &str, mode: AsfMode) -> Result<(), String> {
        match self.mode_mut(option) {
            Some(m) => {
                *m = mode;
                Ok(())
            }
            None => Err(format!("asf.{option}: no such option (one of {})", AsfConfig::OPTIONS.join(", "))),
        }
    }

    /// The mode of one option by its configuration key; None for a key that is not an option.
    pub fn get(&self, option: &str) -> Option<AsfMode> {
        self.clone().mode_mut(option).map(|m| *m)
    }
}

/// What a composite does to the weights of the symbols it matched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CompositePolicy {
    /// The matched symbols stay in the verdict, with 0 points (the default: the verdict still shows what
    /// was found, and the composite's detail says why it no longer counts).
    #[default]
    RemoveWeight,
    /// The matched symbols leave the verdict; the composite's detail names them with their points.
    RemoveSymbol,
    /// The matched symbols keep their weight; only the composite's own score is added.
    Leave,
    /// The matched symbols keep `factor` of their weight (0 to 1), e.g. 0.5 halves them.
    ScaleWeight,
}

impl CompositePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            CompositePolicy::RemoveWeight => "remove_weight",
            CompositePolicy::RemoveSymbol => "remove_symbol",
            CompositePolicy::Leave => "leave",
            CompositePolicy::ScaleWeight => "scale_weight",
        }
    }
}

/// One `[[composites]]` entry. An entry named like a built-in composite replaces it (or, with only
/// `enabled = false`, switches it off).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CompositeConfig {
    /// The composite's symbol, UPPER_SNAKE; it appears in the verdict like any other symbol.
    pub name: String,
    /// Over symbol names and `group:<name>`: `&` (and), `|` (or), `!` (not), parentheses. An atom may
    /// carry its own policy as a prefix: `~` remove its weight, `^` remove the symbol, `-` leave it alone
    /// (e.g. `(SPF_FAIL | SPF_SOFTFAIL) & -DMARC_PASS`). Required unless the entry only switches a built-in
    /// composite off or on.
    #[serde(default)]
    pub expression: Option<String>,
    /// The composite's own weight (its points when it holds). Overridable in `[weights]` like any symbol.
    #[serde(default)]
    pub score: f64,
    /// What happens to the matched symbols' weights: "remove_weight" (default), "remove_symbol", "leave",
    /// or "scale_weight" (with `factor`).
    #[serde(default)]
    pub policy: CompositePolicy,
    /// For "scale_weight" (and `*` atoms): the share of their weight the matched symbols keep, 0 to 1.
    #[serde(default)]
    pub factor: Option<f64>,
    /// Whether the composite is evaluated (per-domain settings may switch it either way).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The symbol group the composite's own score counts in; by default its first symbol's group.
    #[serde(default)]
    pub group: Option<String>,
    /// One line for users (the explanation); a generic text naming the expression when absent.
    #[serde(default)]
    pub description: Option<String>,
}

fn yes() -> bool {
    true
}

/// Where a rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleTarget {
    Subject,
    /// The text a reader sees (plain parts, rendered HTML).
    Body,
    /// Every header, as "Name: value" lines.
    Headers,
    /// The URLs' full text.
    Url,
    /// Subject and body.
    Text,
    /// The From: header (display name and address).
    From,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Symbol name, UPPER_SNAKE.
    pub name: String,
    pub target: RuleTarget,
    /// A literal phrase, matched case-insensitively on word boundaries.
    #[serde(default)]
    pub phrase: Option<String>,
    /// Several phrases for the same symbol.
    #[serde(default)]
    pub phrases: Vec<String>,
    /// A regular expression (Rust `regex` syntax).
    #[serde(default)]
    pub regex: Option<String>,
    /// Several regular expressions for the same symbol.
    #[serde(default)]
    pub regexes: Vec<String>,
    pub score: f64,
    #[serde(default)]
    pub description: Option<String>,
    /// How many different phrases or patterns of the rule must appear for it to fire (1 when unset): for
    /// wording that is ordinary alone and telling only in company ("compensation", "beneficiary" in a
    /// job offer or a will; several of them together in an advance-fee letter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_matches: Option<u32>,
    /// Stay silent when one of the message's links (not an image) goes into the From: domain's registrable
    /// domain: for wording that is a sign of spam when it sends the reader to someone else's site and the
    /// ordinary call of a newsletter that sends the reader to its own ("click here" to read the article on
    /// the sender's site). A spammer who links into his own From: domain escapes the rule, which only takes
    /// a sign away; it never adds credit.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unless_links_to_sender: bool,
}

impl RuleConfig {
    pub fn all_phrases(&self) -> impl Iterator<Item = &str> {
        self.phrase.iter().chain(&self.phrases).map(String::as_str)
    }

    pub fn all_regexes(&self) -> impl Iterator<Item = &str> {
        self.regex.iter().chain(&self.regexes).map(String::as_str)
    }
}

impl EngineConfig {
    /// Parses TOML; the error names the line and the reason.
    pub fn from_toml(text: &str) -> Result<EngineConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}
