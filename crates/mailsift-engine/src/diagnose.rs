//! Diagnosis: why a message was judged as it was, in the categories administrators work with, and the
//! narrowest fix, as a change the store can apply and as the command that makes it.
//!
//! An administrator looking at a quarantined good message today reads score lines and writes a rule by
//! hand. [`diagnose`] does that reading: it takes the message, its envelope, the evidence and the verdict
//! it got ([`Observed`]: from a fresh [`Verdict`], from our own `X-Mailsift-*` headers, or from a
//! message-log row) and returns a [`Diagnosis`]:
//!
//! - a [`Category`]: the **sender**'s reputation or practices (their DNS, SPF, DKIM, DMARC: the fix
//!   belongs to their administrator, and we say exactly what is wrong), **our own policy** (a filter rule,
//!   a blocked sender, an ASF option, the anti-spoofing settings of our domains), the **content** score
//!   (the classifiers and heuristics), or **missed** spam (a message that got through: what evidence was
//!   missing);
//! - a [`Cause`] within it (a web application sending as our domain, a marketing service, our own mail
//!   back through a signature service, a sender with broken DNS or signatures...);
//! - findings in plain words with the facts (the IP, the domain, the selector, the rule's name);
//! - [`Fix`]es, narrowest first, each a [`Change`] (serde, for the store and the HTTP API), the
//!   `mailsift` command that makes it, and its `risk`: what it still lets through, in words. No fix allows
//!   a whole domain that can be spoofed, and no fix rests on what a forger writes (a Received line, a
//!   header mark): every rule that lets mail through is tied to a fact of the connection or of
//!   authentication (`client_ip`, a verified `client_ptr`, `dkim_domain`, `dkim_headers_domain`,
//!   `auth_domain`), and a rule [`FilterRule::forgery_warning`] objects to is never proposed. Our own
//!   domain: a sending server, or one exact address tied to its server or service; an outside sender only
//!   by address, for the affected recipients, with authentication (or its network) as a condition; our
//!   own outbound mail only on the outbound side.
//!
//! When the From: domain is one of ours, SPOOF_OWN_DOMAIN and our own SPF and DMARC failures are one
//! cause, our configuration: the diagnosis says so and names the DNS change (the SPF mechanism to add, or
//! the service to have sign with our domain), which a sending server added here does not make for the
//! rest of the world.
//!
//! [`try_fix`] judges the message again with a fix in place (the `--dry-run` of the command line, the
//! "what if" of the web console); [`replay`] holds a fix against past messages of the message log
//! ([`PastMessage`]: what the log keeps, plus the raw message when the quarantine still has it) and says
//! how many it would have let through and which of those had been judged spam, so nobody opens a hole
//! blind.
//!
//! The whole public API, for the CLI, the web console and the HTTP API:
//!
//! ```text
//! Observed::from_verdict(&verdict) | Observed::from_headers(&msg) | Observed::from_log(..)   the verdict to explain
//! diagnose(&engine, &policy_config, &Subject { message, envelope, evidence, observed, source }) -> Diagnosis
//! try_fix(&engine, &policy_config, &change, &msg, &envelope, &evidence) -> Result<Verdict, DiagnoseError>
//! replay(&engine, &change, &[PastMessage]) -> Replay
//! Change::apply_to(&mut EngineConfig, &mut PolicyConfig)      render(&Diagnosis) -> String
//! ```
//!
//! This module does no I/O: the caller (the CLI, the web console) reads the store, gathers evidence and
//! applies the chosen [`Change`].

use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

use crate::address::domain_of;
use crate::catalogue::sym;
use crate::cidr::IpRange;
use crate::config::{AsfMode, EngineConfig, ProtectedDomain};
use crate::message::urls::registrable_domain;
use crate::message::Message;
use crate::policy::{AllowEntry, Condition, Field, FilterRule, MatchMode, Operator, PolicyConfig, RuleAction, Value};
use crate::symbols::{About, FixKind, Group, Role, Side, Sym};
use crate::verdict::{Action, Verdict, HEADER_PREFIX};
use crate::{Engine, Envelope, Evidence};

/// A fix that cannot be tried or applied as given.
#[derive(Debug, thiserror::Error)]
pub enum DiagnoseError {
    #[error("the fix makes an invalid configuration: {0}")]
    Engine(#[from] crate::EngineError),
    #[error("the fix makes an invalid policy: {0}")]
    Policy(#[from] crate::policy::PolicyError),
    #[error("{0}")]
    Unsupported(String),
}

/// Where the message came from, so the fixes' commands name it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Source {
    /// A file given on the command line.
    File(String),
    /// A quarantined copy (its id in the quarantine).
    Quarantine(i64),
    /// A message-log row (its reference id); no raw message.
    Log(String),
}

/// The verdict a message got, however we know it.
#[derive(Debug, Clone, Serialize)]
pub struct Observed {
    pub reference: Option<String>,
    pub score: f64,
    pub action: Action,
    /// Symbols with what they added, strongest first; the detail is empty when only the headers or the
    /// log are known.
    pub symbols: Vec<ObservedSymbol>,
    /// The rule or list entry that decided (`X-Mailsift-Rule`).
    pub decided_by: Option<String>,
    /// Where the verdict was read: "scan", "headers" or "log".
    pub from: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObservedSymbol {
    pub name: String,
    pub score: f64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

impl Observed {
    pub fn from_verdict(v: &Verdict) -> Observed {
        Observed {
            reference: Some(v.id.clone()),
            score: v.score,
            action: v.action,
            symbols: v
                .symbols
                .iter()
                .map(|s| ObservedSymbol { name: s.name.clone(), score: s.score, detail: s.detail.clone() })
                .collect(),
            decided_by: v.decided_by.clone(),
            from: "scan",
        }
    }

    /// The verdict our headers carry (`X-Mailsift-Score`, `-Action`, `-Symbols`, `-Rule`, `-Id`); None when
    /// the message has none.
    pub fn from_headers(msg: &Message<'_>) -> Option<Observed> {
        let h = |n: &str| msg.header(&format!("{HEADER_PREFIX}{n}")).map(crate::message::unfold);
        let action = parse_action(h("Action")?.trim())?;
        let score = h("Score")?.split('/').next()?.trim().parse().ok()?;
        let mut symbols: Vec<ObservedSymbol> = h("Symbols")
            .unwrap_or_default()
            .split(',')
            .filter_map(|s| {
                let s = s.trim();
                let (name, rest) = s.split_once('(')?;
                Some(ObservedSymbol {
                    name: name.trim().to_string(),
                    score: rest.trim_end_matches(')').parse().ok()?,
                    detail: String::new(),
                })
            })
            .collect();
        symbols.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
        Some(Observed { reference: h("Id"), score, action, symbols, decided_by: h("Rule"), from: "headers" })
    }

    /// What the message-log keeps: symbols with scores, the action, the reason.
    pub fn from_log(
        reference: &str,
        score: f64,
        action: &str,
        symbols: &[(String, f64)],
        reason: Option<&str>,
    ) -> Observed {
        let mut symbols: Vec<ObservedSymbol> =
            symbols.iter().map(|(n, s)| ObservedSymbol { name: n.clone(), score: *s, detail: String::new() }).collect();
        symbols.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
        Observed {
            reference: Some(reference.to_string()),
            score,
            action: parse_action(action).unwrap_or(Action::Deliver),
            symbols,
            decided_by: reason.map(str::to_string).filter(|r| r.starts_with("rule ") || r.contains("sender \"")),
            from: "log",
        }
    }

    /// Gives symbols without a detail (read from our headers or the message log, which keep none) the
    /// detail of the same symbol in `fresh`, the message judged again now, so that findings name the
    /// domains, selectors and hosts instead of leaving them blank.
    pub fn fill_details(&mut self, fresh: &Verdict) {
        for s in self.symbols.iter_mut().filter(|s| s.detail.is_empty()) {
            if let Some(f) = fresh.symbols.iter().find(|f| f.name == s.name && !f.detail.is_empty()) {
                s.detail = f.detail.clone();
            }
        }
    }

    fn get(&self, name: impl AsRef<str>) -> Option<&ObservedSymbol> {
        let name = name.as_ref();
        self.symbols.iter().find(|s| s.name == name)
    }

    /// The first symbol (strongest first) the registry declares with this fix.
    fn with_fix(&self, engine: &Engine, fix: FixKind) -> Option<&ObservedSymbol> {
        self.symbols.iter().find(|s| fix_of(engine, &s.name) == Some(fix))
    }
}

fn parse_action(s: &str) -> Option<Action> {
    Some(match s.to_ascii_lowercase().as_str() {
        "deliver" => Action::Deliver,
        "tag" => Action::Tag,
        "quarantine" => Action::Quarantine,
        "reject" => Action::Reject,
        _ => return None,
    })
}

/// What is diagnosed: the message, how it arrived, what was found out, the verdict it got.
pub struct Subject<'a, 'm> {
    pub message: &'a Message<'m>,
    pub envelope: &'a Envelope,
    pub evidence: &'a Evidence,
    pub observed: &'a Observed,
    pub source: Source,
}

/// The kind of cause, as administrators sort them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// The sender's reputation or practices: the fix belongs to their administrator.
    Sender,
    /// Our own policy: a filter rule, a blocked sender, an ASF option, our domains' anti-spoofing settings.
    Policy,
    /// The content score: the classifiers and the content heuristics.
    Content,
    /// Spam that got through: evidence that was missing.
    Missed,
}

impl Category {
    pub fn title(self) -> &'static str {
        match self {
            Category::Sender => "the sender's reputation or practices",
            Category::Policy => "your own policy",
            Category::Content => "the content score",
            Category::Missed => "spam that got through",
        }
    }
}

/// The cause within its category.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A web server or application sends mail "from" our domain from a server our settings do not know.
    WebApplication,
    /// A marketing or newsletter service sends as our domain.
    SendingService,
    /// Our own mail came back in through a hosted signature or relay service.
    OwnMailThroughRelay,
    /// The sender's DNS, SPF, DKIM or DMARC are broken or missing, or its reputation is poor.
    SenderPractices,
    /// One of our filter rules decided.
    FilterRule,
    /// A blocked-senders entry decided.
    BlockedSender,
    /// An ASF option that is On decided.
    AsfOption,
    /// The classifiers and content heuristics.
    ContentScore,
    /// A spam message was delivered.
    MissedSpam,
    /// Our own outgoing mail (a trusted network, a logged-in user) was scored as spam.
    OutboundMail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    pub reference: Option<String>,
    pub action: Action,
    pub score: f64,
    pub tag_threshold: f64,
    pub category: Category,
    pub cause: Cause,
    /// One sentence: what happened.
    pub summary: String,
    /// The facts, in plain words, strongest first.
    pub findings: Vec<String>,
    /// Narrowest first.
    pub fixes: Vec<Fix>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fix {
    /// What the fix does, in a few words.
    pub title: String,
    /// Why it is safe, or what to watch.
    pub note: String,
    /// What the fix still lets through, in plain words (the residual risk an administrator accepts with it).
    pub risk: String,
    pub change: Change,
    /// The command that makes the change.
    pub command: String,
}

/// A change the store (or the configuration) can apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Add a server (IP or CIDR) to a protected domain's sending servers.
    AddSendingServer { domain: String, server: String },
    /// Add a filter rule at the top of the stored rules.
    AddRule { rule: FilterRule },
    /// Replace a rule where it stands (e.g. with an exception added).
    ReplaceRule { name: String, rule: FilterRule },
    /// Add an allowed-senders entry.
    AddAllow { entry: AllowEntry },
    /// Add a blocked-senders entry.
    AddBlock { entry: crate::policy::BlockEntry },
    /// Remove a list entry by the store's id.
    RemoveEntry { id: String },
    /// Set an ASF option for one of our domains.
    SetAsf { domain: String, option: String, mode: AsfMode },
    /// Teach the classifiers: `spam = false` for a false positive.
    Report { spam: bool },
}

/// Diagnoses one message. `policy` is the policy in force (the configuration's and the store's), used to
/// read the rule that decided.
pub fn diagnose(engine: &Engine, policy: &PolicyConfig, s: &Subject<'_, '_>) -> Diagnosis {
    let obs = s.observed;
    let tag = engine.config().thresholds.tag;
    let mut d = Diagnosis {
        reference: obs.reference.clone(),
        action: obs.action,
        score: obs.score,
        tag_threshold: tag,
        category: Category::Content,
        cause: Cause::ContentScore,
        summary: String::new(),
        findings: Vec::new(),
        fixes: Vec::new(),
    };
    if !obs.action.is_spam() {
        missed(engine, s, &mut d);
        render_commands(&mut d, &s.source);
        return d;
    }
    // Decisive: without this evidence the message would not have been judged spam.
    let decisive = |points: f64| obs.score - points < tag;
    if let Some(by) = obs.decided_by.as_deref().filter(|b| b.starts_with("rule ")) {
        filter_rule(policy, s, by, &mut d);
    } else if let Some(by) = obs
        .decided_by
        .as_deref()
        .filter(|b| b.contains("blocked sender"))
        .or(obs.with_fix(engine, FixKind::RemoveBlock).map(|s| s.detail.as_str()))
    {
        blocked(s, by, &mut d);
    } else if s.envelope.is_outbound() {
        // Our own users' mail (a trusted network, a login): never a spoof, never the sender's practices;
        // whatever caught it, the fix stays on the outbound side.
        outbound(engine, policy, s, &mut d);
    } else if let Some(own) = own_domain_points(engine, s).filter(|o| {
        let others: f64 =
            obs.symbols.iter().filter(|x| x.score > 0.0 && !o.symbols.contains(&x.name)).map(|x| x.score).sum();
        o.points > 0.0 && (decisive(o.points) || o.points >= others)
    }) {
        own_domain(engine, s, &own, &mut d);
    } else if let Some(asf) = asf_cause(engine, obs, tag) {
        asf_option(engine, s, &asf, &mut d);
    } else {
        let (sender, content) = obs.symbols.iter().fold((0.0, 0.0), |(a, b), x| match side_of(engine, &x.name) {
            Some(side) if side.is_senders() && x.score > 0.0 => (a + x.score, b),
            Some(Side::Policy | Side::AsfOption | Side::Test) | None => (a, b),
            _ if x.score > 0.0 => (a, b + x.score),
            _ => (a, b),
        });
        if sender > 0.0 && (sender >= content || decisive(sender)) {
            sender_practices(engine, s, &mut d);
        } else {
            content_score(engine, policy, s, &mut d);
        }
    }
    // A fix a forger can satisfy is worse than none: it opens the hole the diagnosis was meant to close.
    d.fixes.retain(|f| {
        let warning = forgery_warning_of(&f.change);
        debug_assert!(warning.is_none(), "diagnose proposed a forgeable fix {:?}: {warning:?}", f.title);
        warning.is_none()
    });
    render_commands(&mut d, &s.source);
    d
}

/// Every fix's command, written from its change by the one renderer ([`render_command`]).
fn render_commands(d: &mut Diagnosis, source: &Source) {
    for f in &mut d.fixes {
        f.command = render_command(&f.change, Some(source));
    }
}

/// The forgery warning of the rule a change adds or rewrites (see [`FilterRule::forgery_warning`]); list
/// entries, sending servers, ASF modes and reports have none.
pub fn forgery_warning_of(change: &Change) -> Option<String> {
    match change {
        Change::AddRule { rule } | Change::ReplaceRule { rule, .. } => rule.forgery_warning(),
        _ => None,
    }
}

fn group_of(engine: &Engine, name: &str) -> Option<Group> {
    engine.registry().by_name(name).map(|d| d.group)
}

/// Whose side a symbol is on and the fix it implies, as its spec table declares (None for a name the
/// registry does not know: a rule since deleted, a symbol since removed).
fn role_of(engine: &Engine, name: &str) -> Option<Role> {
    engine.registry().role_of(name)
}

fn side_of(engine: &Engine, name: &str) -> Option<Side> {
    role_of(engine, name).map(|r| r.side)
}

fn fix_of(engine: &Engine, name: &str) -> Option<FixKind> {
    role_of(engine, name).map(|r| r.fix)
}

fn describe(engine: &Engine, name: &str) -> String {
    engine.registry().by_name(name).map(|d| d.description.clone()).unwrap_or_else(|| name.to_string())
}

// ---- the envelope and the message, in the terms the fixes use ----

fn sender_address(s: &Subject<'_, '_>) -> Option<String> {
    s.envelope
        .mail_from
        .as_deref()
        .map(|a| a.trim().trim_matches(['<', '>']).to_lowercase())
        .filter(|a| a.contains('@'))
}

fn from_address(s: &Subject<'_, '_>) -> Option<String> {
    s.message.from.as_ref().map(|f| f.address.to_lowercase()).filter(|a| a.contains('@'))
}

fn recipients(s: &Subject<'_, '_>) -> Vec<String> {
    let mut r: Vec<String> =
        s.envelope.rcpt_to.iter().map(|r| r.trim().trim_matches(['<', '>']).to_lowercase()).collect();
    if r.is_empty() {
        r = s.message.to.iter().map(|t| t.address.to_lowercase()).collect();
    }
    r.dedup();
    r
}

/// The affected recipients in words (never blank).
fn recipients_text(s: &Subject<'_, '_>) -> String {
    let r = recipients(s);
    if r.is_empty() {
        "any recipient".into()
    } else {
        r.join(", ")
    }
}

/// Quotes for a POSIX shell when needed.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "@._-/:=,+".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The names a Received hop gives for the client: the one in parentheses (written by the receiving
/// server, usually from reverse DNS) and the one after `from` (the client's own HELO, anyone's to claim).
fn hop_names(hop: &crate::message::Hop) -> (Option<String>, Option<String>) {
    let raw = hop.raw.to_lowercase();
    let after_from =
        raw.trim_start().strip_prefix("from ").map(|r| r.split_whitespace().next().unwrap_or("").to_string());
    let rdns = raw.find('(').and_then(|i| {
        let inner = &raw[i + 1..];
        let name = inner.split(|c: char| c.is_whitespace() || c == '[' || c == ')').next()?;
        (name.contains('.') && name.parse::<IpAddr>().is_err()).then(|| name.to_string())
    });
    (rdns, after_from.filter(|h| h.contains('.') && h.parse::<IpAddr>().is_err()))
}

// ---- our own domain, sent from elsewhere ----

fn protected_servers<'e>(engine: &'e Engine, domain: &str) -> Option<&'e ProtectedDomain> {
    let reg = registrable_domain(domain);
    engine.config().organisation.protected.iter().find(|p| registrable_domain(&p.domain) == reg)
}

/// Whether a domain is one of ours: in `organisation.domains` or protected against spoofing.
fn is_ours(engine: &Engine, domain: &str) -> bool {
    let reg = registrable_domain(domain.trim().trim_end_matches('.'));
    if reg.is_empty() {
        return false;
    }
    let org = &engine.config().organisation;
    org.domains.iter().any(|d| registrable_domain(d) == reg)
        || org.protected.iter().any(|p| registrable_domain(&p.domain) == reg)
}

fn same_domain(a: &str, b: &str) -> bool {
    let (a, b) = (registrable_domain(a.trim_end_matches('.')), registrable_domain(b.trim_end_matches('.')));
    !a.is_empty() && a == b
}

/// What our own domain's configuration cost a message whose From: is ours: SPOOF_OWN_DOMAIN, and our own
/// SPF and DMARC failing for it (our DNS does not list the server). Together they are one cause, ours.
pub(crate) struct OwnPoints {
    /// The From: domain (one of ours).
    domain: String,
    points: f64,
    /// The symbols counted.
    symbols: Vec<String>,
}

fn own_domain_points(engine: &Engine, s: &Subject<'_, '_>) -> Option<OwnPoints> {
    let from = from_address(s)?;
    let domain = domain_of(&from);
    if !is_ours(engine, &domain) {
        return None;
    }
    // The symbol's detail names the domain it is about (the SPF domain, the DMARC domain, the signer);
    // without one (the message log), the envelope's or the From: domain stands for it.
    let about = |detail: &str, fallback: Option<String>| {
        let named = detail.split_whitespace().next().unwrap_or("").to_string();
        let d = if named.is_empty() { fallback.unwrap_or_default() } else { named };
        same_domain(&d, &domain)
    };
    let mail_from_domain = sender_address(s).map(|a| domain_of(&a));
    let mut out = OwnPoints { domain: domain.clone(), points: 0.0, symbols: Vec::new() };
    for sym in &s.observed.symbols {
        // Our own configuration always; a domain's SPF, DMARC or signing when that domain is ours.
        let counted = match role_of(engine, &sym.name) {
            Some(r) if r.side == Side::OwnConfiguration => true,
            Some(r) => match r.fix.about() {
                Some(About::EnvelopeDomain) => about(&sym.detail, mail_from_domain.clone()),
                Some(About::FromDomain) => about(&sym.detail, Some(domain.clone())),
                Some(About::Signer) => about(&sym.detail, None),
                None => false,
            },
            None => false,
        };
        if counted {
            out.points += sym.score.max(0.0);
            out.symbols.push(sym.name.clone());
        }
    }
    (!out.symbols.is_empty()).then_some(out)
}

/// What the evidence proves about where the message came from and who signed it: the facts a forger
/// cannot produce, and the only ones a proposed fix rests on (the rule fields `client_ip`, `client_ptr`,
/// `dkim_domain`, `dkim_headers_domain`, `arc_sealer`, `auth_domain`). Received lines and other headers
/// are the sender's claims and never appear here.
#[derive(Debug, Default)]
struct Proof {
    ip: Option<IpAddr>,
    /// The connecting server's forward-confirmed reverse-DNS name (PTR result pass), lower case.
    ptr: Option<String>,
    /// d= of the DKIM signatures that fully verified.
    dkim: Vec<String>,
    /// d= of the DKIM signatures whose signed headers verify (the body may have changed); includes `dkim`.
    dkim_headers: Vec<String>,
    /// d= of the ARC-Seals of a chain that validated.
    arc_sealers: Vec<String>,
    /// What the first ARC sealer saw, when the chain validated.
    arc_first_hop: Option<String>,
    /// Domains that authenticated (SPF pass, DKIM pass).
    auth: Vec<String>,
}

fn proof(s: &Subject<'_, '_>) -> Proof {
    use crate::evidence::{DkimVerdict, Outcome};
    let mut p = Proof { ip: s.envelope.client_ip, auth: authenticated_domains(s), ..Proof::default() };
    let norm = |d: &str| d.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Some(f) = &s.evidence.sender {
        p.ptr = f
            .ptr
            .as_ref()
            .filter(|x| x.result == Outcome::Pass)
            .and_then(|x| x.names.first())
            .map(|n| norm(n))
            .filter(|n| n.contains('.'));
        for k in &f.dkim {
            match k.verdict {
                DkimVerdict::Pass => {
                    p.dkim.push(norm(&k.domain));
                    p.dkim_headers.push(norm(&k.domain));
                }
                DkimVerdict::BodyModified => p.dkim_headers.push(norm(&k.domain)),
                _ => {}
            }
        }
        if let Some(arc) = f.arc.as_ref().filter(|a| a.result == Outcome::Pass) {
            p.arc_sealers = s
                .message
                .headers_named("ARC-Seal")
                .filter_map(|v| v.split(';').find_map(|t| t.trim().strip_prefix("d=").map(norm)))
                .filter(|d| !d.is_empty())
                .collect();
            p.arc_first_hop = arc.first_hop_results.clone();
        }
    } else {
        // Only the verdict is known (our headers, the message log): the verified signers its symbols name.
        // The log keeps no details: a signature the engine verified is then taken as the From: domain's
        // when the verdict says so (DMARC passed for a full signature; for a changed body, the only
        // signature the symbol can be about in a message in that domain's name). A wrong guess makes a rule
        // that does not match, never one a forger can satisfy: the condition is still a verified signature.
        let from_domain = from_address(s).map(|a| domain_of(&a)).unwrap_or_default();
        let dmarc_pass = s.observed.get(sym::DMARC_PASS).is_some();
        for x in &s.observed.symbols {
            let (valid, body_modified) = (x.name == sym::DKIM_VALID, x.name == sym::DKIM_BODY_MODIFIED);
            let mut d = norm(x.detail.split_whitespace().next().unwrap_or(""));
            if d.is_empty() && (body_modified || (valid && dmarc_pass)) {
                d = from_domain.clone();
            }
            if d.is_empty() {
                continue;
            }
            if valid {
                p.dkim.push(d.clone());
                p.dkim_headers.push(d);
            } else if body_modified {
                p.dkim_headers.push(d);
            }
        }
    }
    for v in [&mut p.dkim, &mut p.dkim_headers, &mut p.arc_sealers, &mut p.auth] {
        v.sort();
        v.dedup();
    }
    p
}

/// The client's network as a CIDR range: the /24 of an IPv4 address, the /64 of an IPv6 one.
fn network_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The SPF mechanism that authorises one address.
fn spf_mechanism(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("ip4:{ip}"),
        IpAddr::V6(_) => format!("ip6:{ip}"),
    }
}

/// An allow rule for mail in our name, with the diagnosis's reference in its comment.
fn allow_rule(d: &Diagnosis, name: String, conditions: Vec<Condition>, why: &str) -> FilterRule {
    FilterRule {
        name,
        enabled: true,
        direction: crate::policy::RuleDirection::Inbound,
        match_mode: MatchMode::All,
        conditions,
        actions: vec![RuleAction::Allow {}],
        comment: Some(format!("diagnosis {}: {why}", d.reference.clone().unwrap_or_default())),
    }
}

fn rule_fix(d: &mut Diagnosis, title: String, note: String, risk: String, rule: FilterRule) {
    d.fixes.push(Fix { title, note, risk, command: String::new(), change: Change::AddRule { rule } });
}

fn own_domain(engine: &Engine, s: &Subject<'_, '_>, own: &OwnPoints, d: &mut Diagnosis) {
    d.category = Category::Policy;
    let from = from_address(s).unwrap_or_default();
    let ours = own.domain.clone();
    let protected = protected_servers(engine, &ours);
    let pdomain = protected.map(|p| p.domain.clone()).unwrap_or_else(|| ours.clone());
    let pf = proof(s);
    let ip = pf.ip;
    let ip_text = ip.map(|i| i.to_string()).unwrap_or_else(|| "an unknown IP".into());
    let servers = protected.map(|p| p.sending_servers.join(", ")).unwrap_or_default();
    let host_text = pf.ptr.as_deref().map(|h| format!(" ({h})")).unwrap_or_default();
    if let Some(spoof) = s.observed.get(sym::SPOOF_OWN_DOMAIN) {
        d.findings.push(format!(
            "The From: address {from} is in {pdomain}, your own domain, which you protect against spoofing, but the message came from {ip_text}{host_text}, which is not one of its sending servers ({}), and carries no SPF or DKIM aligned with {pdomain} (SPOOF_OWN_DOMAIN, {:+.2}).",
            if servers.is_empty() { "none listed".to_string() } else { servers.clone() },
            spoof.score
        ));
    }
    // Our own SPF and DMARC: the same cause seen from the DNS, and the change every other receiver needs.
    let about = |what: About| {
        own.symbols
            .iter()
            .find(|n| fix_of(engine, n).and_then(FixKind::about) == Some(what))
            .and_then(|n| s.observed.get(n))
    };
    let (spf, dmarc) = (about(About::EnvelopeDomain), about(About::FromDomain));
    let mut parts = Vec::new();
    if let Some(x) = spf {
        parts.push(format!("your SPF record for {ours} does not list {ip_text} ({}, {:+.2})", x.name, x.score));
    }
    if let Some(x) = dmarc {
        let p = dmarc_policy_of(&x.name).to_string();
        parts.push(format!(
            "your DMARC policy (p={p}) then asks every receiver, this one included, to {} it ({}, {:+.2})",
            if p == "none" { "only report" } else { p.as_str() },
            x.name,
            x.score
        ));
    }
    if !parts.is_empty() {
        d.findings.push(format!(
            "{ours} is your own domain, so this is your configuration, not the sender's: {}. Together with the anti-spoofing check they add {:+.2}: without them the score would be {:.2}, against a tag threshold of {}.",
            parts.join(", and "),
            own.points,
            d.score - own.points,
            d.tag_threshold
        ));
    }
    let dns_change = ip.map(|ip| format!("add {} to the SPF record of {ours}", spf_mechanism(ip)));
    if let Some(x) = s.observed.get(sym::OWN_SERVER_NOT_IN_DNS) {
        d.findings.push(format!(
            "The server is listed here as a sending server of {ours}, but not in its DNS{}: it passes here, other receivers still refuse it.",
            if x.detail.is_empty() { String::new() } else { format!(" ({})", x.detail) }
        ));
    }
    let mail_from = sender_address(s);
    let foreign_bounce =
        mail_from.as_deref().map(domain_of).filter(|m| !is_ours(engine, m)).map(|m| registrable_domain(&m));
    let foreign_signer = pf.dkim.iter().find(|x| !is_ours(engine, x)).cloned();
    let our_headers_signature = pf.dkim_headers.iter().any(|x| same_domain(x, &ours));
    let arc_saw_ours =
        !pf.arc_sealers.is_empty() && pf.arc_first_hop.as_deref().is_some_and(|r| saw_pass_for(r, &ours));
    let service_domain = pf
        .ptr
        .as_deref()
        .map(registrable_domain)
        .filter(|h| !is_ours(engine, h))
        .or(foreign_signer.as_deref().map(registrable_domain))
        .or(pf.arc_sealers.iter().find(|x| !is_ours(engine, x)).map(|x| registrable_domain(x)))
        .or(foreign_bounce.clone());
    let bulk = s.message.has_header("List-Unsubscribe")
        || s.message.header("Precedence").is_some_and(|p| p.to_lowercase().contains("bulk"));
    // The Received chain can say our mail left our own server first; a forger writes such lines as
    // easily, so they name the cause at most and never make a fix.
    let claims_our_hop = s.message.hops.iter().skip(1).any(|h| {
        let from_our_server = h.from_ip.is_some_and(|ip| {
            protected.is_some_and(|p| p.sending_servers.iter().any(|r| IpRange::parse(r).is_ok_and(|r| r.contains(ip))))
        });
        let (r, hl) = hop_names(h);
        from_our_server || [r, hl].into_iter().flatten().any(|n| same_domain(&n, &ours))
    });

    if our_headers_signature || arc_saw_ours {
        d.cause = Cause::OwnMailThroughRelay;
        own_mail_back(d, &pf, &from, &ours, service_domain.as_deref(), our_headers_signature, arc_saw_ours);
        if service_domain.is_none() {
            if let Some(h) = s.envelope.helo.as_deref().map(str::trim).filter(|h| h.contains('.')) {
                d.findings.push(format!(
                    "The connecting server {ip_text} greets as {h} (its own claim, not verified: no fix rests on it); its reverse DNS did not confirm a name."
                ));
            }
        }
        // An ARC chain that did not validate here (or was not checked): the advice, for when it does.
        let arc_seen = s.message.has_header("ARC-Seal") || s.observed.symbols.iter().any(|x| is_arc(engine, &x.name));
        if pf.arc_sealers.is_empty() && arc_seen {
            let trusted = &engine.config().organisation.trusted_arc_sealers;
            let trusted_text = if trusted.is_empty() {
                "none is trusted yet".to_string()
            } else {
                format!("you trust {}", trusted.join(", "))
            };
            let validated = s.observed.get(sym::ARC_VALID).is_some();
            let seen = if validated {
                // Only the verdict is known (the log keeps no headers and no details): the chain validated
                // at the gateway, but its sealers' names are not here.
                "an ARC chain that validated at the gateway (ARC_VALID); the message log does not keep its sealers' names (the d= of each ARC-Seal of a copy)".to_string()
            } else {
                format!(
                    "an ARC chain{}, which did not validate here",
                    s.observed
                        .symbols
                        .iter()
                        .find(|x| is_arc(engine, &x.name))
                        .map(|x| format!(" ({})", x.name))
                        .unwrap_or_default()
                )
            };
            d.findings.push(format!(
                "The message carries {seen}. [organisation] trusted_arc_sealers: {trusted_text}. List every sealer of the chain there (your platform's and the service's: the first hop's results are only worth what every later sealer vouches for); a chain that validates, from trusted sealers, whose first hop saw {ours} pass, then counts as your own mail with no rule."
            ));
        }
    } else if claims_our_hop && service_domain.is_some() && foreign_bounce.is_none() && foreign_signer.is_none() {
        d.cause = Cause::OwnMailThroughRelay;
        let service = service_domain.clone().unwrap_or_default();
        d.summary = format!(
            "Mail from {from} came in from {ip_text}{host_text}, a server of {service}, and its Received lines say it left your own server first: your own mail coming back through a hosted service, which {pdomain}'s anti-spoofing check does not know."
        );
        d.findings.push(format!(
            "Only the Received lines say the message left your server, and anyone can write those: no fix relies on them. Sign your outgoing mail with DKIM (d={ours}): the signature's headers survive a footer the service adds, and make this case recognisable for certain."
        ));
        network_fixes(d, &pf, &from, &service, &ours, "our mail back through", None);
    } else if foreign_signer.is_some() || foreign_bounce.is_some() || bulk {
        d.cause = Cause::SendingService;
        sending_service(
            s,
            d,
            &pf,
            &from,
            &ours,
            service_domain.as_deref(),
            foreign_signer.as_deref(),
            mail_from.as_deref(),
        );
    } else {
        d.cause = Cause::WebApplication;
        d.summary = format!(
            "Mail from {from} was sent by a server or application at {ip_text}{host_text} that {pdomain}'s sending servers and its SPF record do not list. {pdomain} is your own domain: the fix is yours, in your settings and your DNS."
        );
        if let Some(change) = &dns_change {
            d.findings.push(format!(
                "The DNS change to make: {change} (before its -all), so that other receivers accept this mail too and {ours}'s DMARC passes for it."
            ));
        }
        let Some(ip) = ip else { return };
        let server = ip.to_string();
        let sending_server_fix = Fix {
            title: format!("Add {server} to {pdomain}'s sending servers"),
            note: format!(
                "Listed here, the server may send as {pdomain}: neither the anti-spoofing check nor {pdomain}'s own SPF and DMARC failures count against it here (OWN_SERVER_NOT_IN_DNS says so). Its content is still filtered. In your DNS too: {}, or every other receiver still refuses it.",
                dns_change.clone().unwrap_or_default()
            ),
            risk: format!("any mail from {server} may send as {pdomain}, with any address of it"),
            command: String::new(),
            change: Change::AddSendingServer { domain: pdomain.clone(), server: server.clone() },
        };
        // Narrowest first: the one address from this server, then the whole server (below).
        if from.is_empty() {
            d.fixes.push(sending_server_fix);
            return;
        }
        let rule = allow_rule(
            d,
            format!("{from} from {server}"),
            vec![cond(Field::From, None, Operator::Is, &from), cond(Field::ClientIp, None, Operator::Is, &server)],
            &format!("the application at {server} sends as {from}"),
        );
        rule_fix(
            d,
            format!("Allow {from} only from {server}"),
            format!("This one address, only when the connecting server is {server} (a fact of the connection, not a header); other addresses of {pdomain}, and this one from anywhere else, are still checked."),
            format!("other users of that host ({server}) can still send as {from}"),
            rule,
        );
        if let Some(ptr) = &pf.ptr {
            let rule = allow_rule(
                d,
                format!("{from} from {ptr}"),
                vec![cond(Field::From, None, Operator::Is, &from), cond(Field::ClientPtr, None, Operator::Is, ptr)],
                &format!("the application on {ptr} sends as {from}"),
            );
            rule_fix(
                d,
                format!("When its IP address changes: allow {from} from the server whose verified name is {ptr}"),
                format!("The name is the server's reverse DNS, confirmed forward ({ptr} resolves back to {server}); the sender cannot claim it in a header or HELO."),
                format!("other users of that host, and any server its provider names {ptr}, can still send as {from}"),
                rule,
            );
        }
        d.fixes.push(sending_server_fix);
    }
}

/// Whether authentication results (what the first ARC sealer saw) record our domain passing: a DKIM pass
/// whose `header.d` is ours, or a DMARC pass whose `header.from` is ours, in the same result.
/// The `p=` of a DMARC policy symbol, for the words.
fn dmarc_policy_of(name: &str) -> &'static str {
    if name == sym::DMARC_POLICY_REJECT {
        "reject"
    } else if name == sym::DMARC_POLICY_QUARANTINE {
        "quarantine"
    } else {
        "none"
    }
}

/// Whether a symbol is about an ARC chain (its fix is trusting the chain's sealers).
fn is_arc(engine: &Engine, name: &str) -> bool {
    fix_of(engine, name) == Some(FixKind::TrustArcSealers)
}

fn saw_pass_for(results: &str, ours: &str) -> bool {
    let value = |clause: &str, key: &str| {
        clause.split_whitespace().find_map(|w| w.strip_prefix(key)).map(|v| v.trim_matches(['"', ')', '(']).to_string())
    };
    results.to_ascii_lowercase().split(';').map(str::trim).any(|clause| {
        let ok = |method: &str, key: &str| {
            clause.starts_with(&format!("{method}=pass")) && value(clause, key).is_some_and(|d| same_domain(&d, ours))
        };
        ok("dkim", "header.d=") || ok("dmarc", "header.from=")
    })
}

/// Our own mail back through a hosted service, recognised from what a forger cannot produce: our DKIM
/// signature whose signed headers still verify (the service's footer broke the body hash), or a valid ARC
/// chain whose first hop saw our domain pass; the fix adds the platform's connecting network.
#[allow(clippy::too_many_arguments)]
fn own_mail_back(
    d: &mut Diagnosis,
    pf: &Proof,
    from: &str,
    ours: &str,
    service: Option<&str>,
    our_signature: bool,
    arc: bool,
) {
    let ip_text = pf.ip.map(|i| i.to_string()).unwrap_or_else(|| "an unknown IP".into());
    let service = service.map(str::to_string).unwrap_or_else(|| ip_text.clone());
    let via = if service == ip_text { format!("from {ip_text}") } else { format!("{service}, from {ip_text}") };
    d.summary = format!(
        "Your own mail from {from} came back in through a hosted service ({via}): it carries proof that it is yours, but the anti-spoofing check of {ours} does not know the service."
    );
    if our_signature {
        let signed = if pf.dkim.iter().any(|x| same_domain(x, ours)) {
            "verifies".to_string()
        } else {
            "still verifies for its signed headers (From, To, Subject, ...), but the body changed after signing: the service added a footer or signature".to_string()
        };
        d.findings.push(format!("Your own DKIM signature (d={ours}) {signed}."));
    }
    let sealer = pf.arc_sealers.first().cloned();
    if let Some(sealer) = &sealer {
        d.findings.push(format!(
            "The message carries a valid ARC chain sealed by {sealer}{}. Trust it: add it to [organisation] trusted_arc_sealers (trusted_arc_sealers = [\"{sealer}\"]), and a chain from it whose first hop saw {ours} pass counts as your own mail.",
            pf.arc_first_hop.as_deref().map(|r| format!("; its first hop saw: {r}")).unwrap_or_default()
        ));
    }
    d.findings.push(format!(
        "The lasting fix: have {service} sign with d={ours} after it adds its footer (most signature services can), or add the footer before your own server signs."
    ));
    if our_signature {
        network_fixes(
            d,
            pf,
            from,
            &service,
            ours,
            "our mail back through",
            Some((
                cond(Field::DkimHeadersDomain, None, Operator::Is, &registrable_domain(ours)),
                format!("a copy of a message signed by {ours} (its signed headers, with any body) resent through {service}'s network by another of its customers"),
            )),
        );
    } else if arc {
        // A rule can say which service sealed the chain, not what its first hop saw: another customer of
        // the same service, in our name, is sealed by it too. Trusting the sealer (advice above) is the fix:
        // the anti-spoofing check then reads what the first hop saw, and it saw our domain pass.
        d.findings.push(format!(
            "No rule is proposed: a rule can name the sealer ({}) but not what its first hop saw, so another customer of the service sending in your name would pass it too.",
            sealer.unwrap_or_default()
        ));
    }
}

/// A sending service (a newsletter platform) sends as our domain.
#[allow(clippy::too_many_arguments)]
fn sending_service(
    s: &Subject<'_, '_>,
    d: &mut Diagnosis,
    pf: &Proof,
    from: &str,
    ours: &str,
    service: Option<&str>,
    signer: Option<&str>,
    mail_from: Option<&str>,
) {
    let ip_text = pf.ip.map(|i| i.to_string()).unwrap_or_else(|| "an unknown IP".into());
    let host_text = pf.ptr.as_deref().map(|h| format!(" ({h})")).unwrap_or_default();
    let service = service.map(str::to_string).unwrap_or_else(|| ip_text.clone());
    d.summary = format!(
        "A sending service ({service}) sends mail as {ours} (From {from}) from {ip_text}{host_text}: {ours} is your own domain, and neither its SPF record nor a DKIM signature of {ours} covers the service."
    );
    if let Some(m) = mail_from.filter(|m| !same_domain(&domain_of(m), ours)) {
        d.findings.push(format!("The envelope sender {m} is the service's own bounce address, not yours."));
    }
    let spf_auth =
        pf.auth.iter().find(|a| same_domain(a, &service) || signer.is_some_and(|x| same_domain(a, x))).cloned();
    match (signer, &spf_auth) {
        (Some(x), _) => {
            d.findings.push(format!("The service signs with its own domain (DKIM d={x}, verified), not with {ours}."))
        }
        (None, Some(a)) => d.findings.push(format!("The service authenticated as {a} (SPF passed for it).")),
        (None, None) => d
            .findings
            .push(format!("Nothing authenticated the service as {service} (no SPF pass or DKIM signature of it).")),
    }
    d.findings.push(format!(
        "The real fix: have {} sign with d={ours} (a custom DKIM domain: the service gives you a key to publish under {ours}), or use the service's tenant identity where its signature covers it; then {ours}'s DMARC passes everywhere.",
        signer.unwrap_or(&service)
    ));
    let marks = service_marks(s, &service);
    if !marks.is_empty() {
        d.findings.push(format!(
            "The service marks its mail with {}: a header anyone can copy, so it is at most an extra condition.",
            marks.join(", ")
        ));
    }
    let proof = match (signer, spf_auth) {
        (Some(x), _) => Some((
            cond(Field::DkimDomain, None, Operator::Is, &x.to_lowercase()),
            format!("another customer of {x} could still send as {from}"),
        )),
        (None, Some(a)) => Some((
            cond(Field::AuthDomain, None, Operator::Is, &a.to_lowercase()),
            format!("another customer of {} could still send as {from}", registrable_domain(&a)),
        )),
        (None, None) => None,
    };
    let first = d.fixes.len();
    network_fixes(d, pf, from, &service, ours, "newsletter via", proof);
    // The service's own mark narrows the rule further (never the only proof: the conditions above are).
    if let Some(m) = marks.first() {
        for f in d.fixes.iter_mut().skip(first) {
            if let Change::AddRule { rule } = &mut f.change {
                rule.conditions.push(cond(Field::Header, Some(m), Operator::Exists, ""));
            }
        }
    }
}

/// Rules for one exact From: address of ours sent by a platform: the proof it gives (its signing domain,
/// our own signature, its ARC seal) and its connecting network, then the same with its verified host name
/// for when its addresses change. Without a proof, the network alone, with the risk said.
fn network_fixes(
    d: &mut Diagnosis,
    pf: &Proof,
    from: &str,
    service: &str,
    ours: &str,
    label: &str,
    proof: Option<(Condition, String)>,
) {
    let Some(ip) = pf.ip else { return };
    if from.is_empty() {
        return;
    }
    // Our own signature covers every address of ours; anything else is allowed by the exact address seen.
    let own_signature = proof.as_ref().is_some_and(|(c, _)| c.field == Field::DkimHeadersDomain);
    let who = if own_signature {
        cond(Field::FromDomain, None, Operator::Is, &registrable_domain(ours))
    } else {
        cond(Field::From, None, Operator::Is, from)
    };
    let who_text = if own_signature { format!("mail from {ours}") } else { from.to_string() };
    let (net, net_words) = match &proof {
        Some(_) => (network_of_ip(ip), format!("its network {}", network_of_ip(ip))),
        None => (ip.to_string(), format!("its server {ip}")),
    };
    let (mut conditions, risk) = match &proof {
        Some((c, risk)) => (vec![who.clone(), c.clone()], risk.clone()),
        None => {
            (vec![who.clone()], format!("anyone else who can send through {ip} ({service}) could still send as {from}"))
        }
    };
    let proof_words = match &proof {
        Some((c, _)) => format!(
            "{} {} {}, ",
            c.field.as_str(),
            c.op.as_str(),
            c.value.as_ref().map(|v| v.texts().join(",")).unwrap_or_default()
        ),
        None => String::new(),
    };
    let mut first = conditions.clone();
    first.push(cond(Field::ClientIp, None, if net.contains('/') { Operator::InCidr } else { Operator::Is }, &net));
    let why = if own_signature {
        format!("{service} sends our own mail from {ours}")
    } else {
        format!("{service} sends as {from}")
    };
    let rule = allow_rule(d, format!("{label} {service}: {who_text}"), first, &why);
    rule_fix(
        d,
        format!("Allow {who_text} when {service} sends it ({proof_words}from {net_words})"),
        format!("Only with {proof_words}the connection from {net}: facts a forger cannot produce (a header mark alone can be copied). {ours} from anywhere else is still checked."),
        risk.clone(),
        rule,
    );
    if let Some(ptr) = pf.ptr.as_deref().filter(|p| same_domain(p, service)) {
        let suffix = format!(".{}", registrable_domain(ptr));
        conditions.push(cond(Field::ClientPtr, None, Operator::EndsWith, &suffix));
        let rule = allow_rule(d, format!("{label} {service} (by name): {who_text}"), conditions, &why);
        rule_fix(
            d,
            format!(
                "When {service}'s addresses change: the same, from any server whose verified name ends in {suffix}"
            ),
            format!(
                "The name is the connecting server's reverse DNS, confirmed forward ({ptr}); a forger cannot claim it."
            ),
            format!("{risk}, from any of {service}'s servers"),
            rule,
        );
    }
}

/// Domains that authenticated: the SPF domain when SPF passed, each DKIM d= that verified.
fn authenticated_domains(s: &Subject<'_, '_>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(f) = &s.evidence.sender {
        if s.evidence.spf.or(f.spf) == Some(crate::evidence::SpfResult::Pass) {
            out.extend(f.spf_domain.clone().or(sender_address(s).map(|a| domain_of(&a))));
        }
        out.extend(
            f.dkim.iter().filter(|k| k.verdict == crate::evidence::DkimVerdict::Pass).map(|k| k.domain.to_lowercase()),
        );
    } else {
        for sym in &s.observed.symbols {
            if (sym.name == sym::SPF_PASS || sym.name == sym::DKIM_VALID) && !sym.detail.is_empty() {
                out.push(sym.detail.to_lowercase());
            }
        }
    }
    out
}

/// Header fields a service adds to mark the mail it handled: X- headers that name it.
fn service_marks(s: &Subject<'_, '_>, service: &str) -> Vec<String> {
    let label = service.split('.').next().unwrap_or(service).to_lowercase().replace('-', "");
    let mut out: Vec<String> = Vec::new();
    for h in &s.message.headers {
        let n = h.name.to_lowercase();
        if n.starts_with("x-")
            && !n.starts_with(&HEADER_PREFIX.to_lowercase())
            && n.replace('-', "").contains(&label)
            && !out.iter().any(|o| o.eq_ignore_ascii_case(&h.name))
        {
            out.push(h.name.clone());
        }
    }
    out
}

fn cond(field: Field, header: Option<&str>, op: Operator, value: &str) -> Condition {
    Condition {
        field,
        header: header.map(str::to_string),
        op,
        value: (op != Operator::Exists).then(|| Value::Text(value.to_string())),
        not: false,
    }
}

/// The `mailsift` command that makes a change: the one place a fix's command is written, from the
/// structured [`Change`], so the CLI and the console can render their own from the same value. A report
/// names the message by where it came from (`FILE` without a source).
pub fn render_command(change: &Change, source: Option<&Source>) -> String {
    match change {
        Change::AddSendingServer { domain, server } => {
            format!("mailsift domains set {} --sending-server {}", shell_quote(domain), shell_quote(server))
        }
        Change::AddRule { rule } => rule_command(rule),
        Change::ReplaceRule { name, rule } => format!(
            "mailsift rules replace {} - <<'EOF'\n{}EOF",
            shell_quote(name),
            toml::to_string(rule).unwrap_or_default()
        ),
        Change::AddAllow { entry } => {
            let mut c = format!("mailsift lists add allow {}", shell_quote(&entry.sender));
            if let Some(r) = &entry.recipient {
                let _ = write!(c, " --recipient {}", shell_quote(r));
            }
            if entry.require_auth {
                c.push_str(" --require-auth");
            }
            if let Some(n) = &entry.from_network {
                let _ = write!(c, " --from-network {}", shell_quote(n));
            }
            if let Some(p) = &entry.from_ptr_domain {
                let _ = write!(c, " --from-ptr-domain {}", shell_quote(p));
            }
            c
        }
        Change::AddBlock { entry } => {
            let mut c = format!("mailsift lists add block {}", shell_quote(&entry.sender));
            if let Some(r) = &entry.recipient {
                let _ = write!(c, " --recipient {}", shell_quote(r));
            }
            if entry.action == crate::policy::BlockAction::Reject {
                c.push_str(" --action reject");
            }
            c
        }
        Change::RemoveEntry { id } => format!("mailsift lists rm {}", shell_quote(id)),
        Change::SetAsf { domain, option, mode } => {
            let mode = match mode {
                AsfMode::Off => "off",
                AsfMode::On => "on",
                AsfMode::Test => "test",
            };
            format!("mailsift domains set {} --asf {option}={mode}", shell_quote(domain))
        }
        Change::Report { spam: false } => match source {
            Some(Source::File(f)) => format!("mailsift report --false-positive {}", shell_quote(f)),
            Some(Source::Quarantine(id)) => format!("mailsift quarantine release {id} --not-spam"),
            Some(Source::Log(r)) => format!("mailsift report --false-positive <the message of {r}>"),
            None => "mailsift report --false-positive FILE".into(),
        },
        Change::Report { spam: true } => match source {
            Some(Source::File(f)) => format!("mailsift report --false-negative {}", shell_quote(f)),
            Some(Source::Quarantine(id)) => format!("mailsift report --false-negative <quarantine item {id}>"),
            Some(Source::Log(r)) => format!("mailsift report --false-negative <the message of {r}>"),
            None => "mailsift report --false-negative FILE".into(),
        },
    }
}

/// `mailsift rules add --name ... --if... --then allow --at 1`.
fn rule_command(rule: &FilterRule) -> String {
    let mut c = format!("mailsift rules add --at 1 --name {}", shell_quote(&rule.name));
    for k in &rule.conditions {
        let v = k.value.as_ref().map(|v| v.texts().join(",")).unwrap_or_default();
        let not = if k.not { "!" } else { "" };
        match (k.field, k.op) {
            (Field::EnvelopeFrom | Field::EnvelopeFromDomain, Operator::Is) if !k.not => {
                let _ = write!(c, " --if-sender {}", shell_quote(&v));
            }
            (Field::From | Field::FromDomain, Operator::Is) if !k.not => {
                let _ = write!(c, " --if-from {}", shell_quote(&v));
            }
            (Field::Header, op) => {
                let h = k.header.clone().unwrap_or_default();
                let arg = if op == Operator::Exists {
                    format!("{not}{h}:exists")
                } else {
                    format!("{not}{h}:{}:{v}", op.as_str())
                };
                let _ = write!(c, " --if-header {}", shell_quote(&arg));
            }
            (f, op) => {
                let _ = write!(c, " --if {}", shell_quote(&format!("{not}{}:{}:{v}", f.as_str(), op.as_str())));
            }
        }
    }
    for a in &rule.actions {
        let _ = write!(c, " --then {}", a.as_str());
    }
    if let Some(comment) = &rule.comment {
        let _ = write!(c, " --comment {}", shell_quote(comment));
    }
    c
}

// ---- an outside sender, allowed exactly ----

/// A rule that lets one outside sender's mail through to the affected recipients, exact on what the
/// message claims (the From: address, the envelope sender) and tied to what it cannot forge: its domain's
/// DKIM signature (or its signed headers, when a footer broke the body), SPF, and the connecting network or
/// server. An allowed-senders entry is not used: it matches the envelope sender or the From: address, so
/// the same server could send the message again with another From: and pass. None when nothing proves
/// the mail is theirs (no client IP): such an allow would be a forger's too.
struct SenderRule {
    rule: FilterRule,
    /// The unforgeable conditions, in words, for the note.
    proof: String,
    /// What still passes, in words.
    risk: String,
}

fn outside_sender_rule(s: &Subject<'_, '_>, d: &Diagnosis, why: &str, actions: Vec<RuleAction>) -> Option<SenderRule> {
    let from = from_address(s)?;
    let ip = s.envelope.client_ip?;
    let pf = proof(s);
    let from_domain = domain_of(&from);
    let mut conditions = vec![cond(Field::From, None, Operator::Is, &from)];
    if let Some(m) = sender_address(s) {
        let local = m.rsplit_once('@').map(|(l, _)| l).unwrap_or("");
        // A bounce address that changes with each message (VERP: bounce+rcpt=domain@, SRS, a counter) is
        // tied by its domain; a fixed one by its address.
        let varies = local.contains(['+', '=']) || local.chars().filter(|c| c.is_ascii_digit()).count() >= 4;
        if varies {
            conditions.push(cond(Field::EnvelopeFromDomain, None, Operator::Is, &domain_of(&m)));
        } else {
            conditions.push(cond(Field::EnvelopeFrom, None, Operator::Is, &m));
        }
    }
    let rcpts = recipients(s);
    let rcpt_text = if rcpts.is_empty() { "any of your recipients".to_string() } else { rcpts.join(", ") };
    match rcpts.len() {
        0 => {}
        1 => conditions.push(cond(Field::Recipient, None, Operator::Is, &rcpts[0])),
        _ => conditions.push(Condition {
            field: Field::Recipient,
            header: None,
            op: Operator::Is,
            value: Some(Value::List(rcpts.clone())),
            not: false,
        }),
    }
    let net = network_of_ip(ip);
    let signed = pf.dkim.iter().find(|x| same_domain(x, &from_domain)).cloned();
    let headers_signed = pf.dkim_headers.iter().find(|x| same_domain(x, &from_domain)).cloned();
    let spf = pf.auth.iter().find(|a| sender_address(s).is_some_and(|m| same_domain(a, &domain_of(&m)))).cloned();
    let (proof_words, risk) = if let Some(x) = signed {
        conditions.push(cond(Field::DkimDomain, None, Operator::Is, &x));
        conditions.push(cond(Field::ClientIp, None, Operator::InCidr, &net));
        (
            format!("its DKIM signature of {x} verifies and it comes from {net}"),
            format!("a message {x} signed (a copy of one of theirs too) sent again to {rcpt_text} from {net}, with the same From:, passes with any content"),
        )
    } else if let Some(x) = headers_signed {
        conditions.push(cond(Field::DkimHeadersDomain, None, Operator::Is, &x));
        conditions.push(cond(Field::ClientIp, None, Operator::InCidr, &net));
        (
            format!("the signed headers of {x}'s DKIM signature verify (the body changed after signing) and it comes from {net}"),
            format!("a message whose headers {x} signed, resent from {net} with another body (by anyone who can send through that server, a list's other members too), passes to {rcpt_text}"),
        )
    } else if let Some(a) = spf {
        conditions.push(cond(Field::AuthDomain, None, Operator::Is, &a));
        conditions.push(cond(Field::ClientIp, None, Operator::InCidr, &net));
        (
            format!("SPF passes for {a} and it comes from {net}"),
            format!("anyone who can send through {a}'s servers in {net} can still send as {from} to {rcpt_text}, with any content"),
        )
    } else {
        conditions.push(cond(Field::ClientIp, None, Operator::Is, &ip.to_string()));
        (
            format!("it comes from {ip}, the server it came from (nothing authenticates it)"),
            format!("anyone else who can send from {ip} can still send as {from} to {rcpt_text}, with any content"),
        )
    };
    let rule = FilterRule {
        name: format!("{from} to {}", if rcpts.len() == 1 { rcpts[0].clone() } else { "its recipients".into() }),
        enabled: true,
        direction: crate::policy::RuleDirection::Inbound,
        match_mode: MatchMode::All,
        conditions,
        actions,
        comment: Some(format!("diagnosis {}: {why}", d.reference.clone().unwrap_or_default())),
    };
    Some(SenderRule { rule, proof: proof_words, risk })
}

// ---- our own policy: rules, blocked senders, ASF ----

fn filter_rule(policy: &PolicyConfig, s: &Subject<'_, '_>, by: &str, d: &mut Diagnosis) {
    d.category = Category::Policy;
    d.cause = Cause::FilterRule;
    let name = by.trim_start_matches("rule ").trim().trim_matches('"').to_string();
    let rule = policy.rules.iter().find(|r| r.name.trim().eq_ignore_ascii_case(&name));
    d.summary = format!("Your filter rule {name:?} decided: {}.", d.action.as_str());
    if let Some(m) = s.observed.symbols.iter().find(|x| x.name == sym::POLICY_RULE && x.detail.contains(&name)) {
        d.findings.push(format!("It matched: {}.", m.detail));
    }
    d.findings.push(format!(
        "Without the rule the score ({:.2} against a tag threshold of {}) would have decided.",
        d.score, d.tag_threshold
    ));
    let sender = sender_address(s).or(from_address(s));
    let outbound = s.envelope.is_outbound();
    if outbound {
        d.findings.push(format!(
            "The message is your own outbound mail ({}): the fix stays on the outbound side, so mail arriving from outside is judged as before.",
            outbound_origin(s)
        ));
    }
    let (Some(rule), Some(sender)) = (rule, sender) else { return };
    let field = if sender_address(s).is_some() { Field::EnvelopeFrom } else { Field::From };
    if outbound && rule.direction != crate::policy::RuleDirection::Outbound {
        // The rule judges inbound mail too: an exception inside it would let a forger using this address
        // from outside escape it. A rule of its own, outbound only, that ends the rule stage for this
        // sender's outgoing mail leaves the inbound side untouched.
        let stop = FilterRule {
            name: format!("outbound from {sender} skips {name}"),
            enabled: true,
            direction: crate::policy::RuleDirection::Outbound,
            match_mode: MatchMode::All,
            conditions: vec![cond(field, None, Operator::Is, &sender)],
            actions: vec![RuleAction::Stop {}],
            comment: Some(format!(
                "diagnosis {}: {sender}'s outgoing mail was caught by {name:?}",
                d.reference.clone().unwrap_or_default()
            )),
        };
        d.fixes.push(Fix {
            title: format!("Skip the rules for {sender}'s outgoing mail (outbound only)"),
            note: format!("A rule at the top, for outbound mail only (your trusted networks and logged-in users): the rules after it, {name:?} among them, are not applied to {sender}'s outgoing mail; the score still judges it, and inbound mail is untouched."),
            risk: format!("any of your own users or hosts of your trusted networks sending out with {sender} as sender skips every rule below it (the score still counts)"),
            command: String::new(),
            change: Change::AddRule { rule: stop },
        });
        return;
    }
    let mut narrowed = rule.clone();
    let mut exception = cond(field, None, Operator::Is, &sender);
    exception.not = true;
    if narrowed.match_mode == MatchMode::Any {
        d.findings
            .push("The rule matches on any one condition, so an exception cannot be added as a condition.".into());
        return;
    }
    narrowed.conditions.push(exception);
    let risk = if outbound {
        format!("any of your own users or hosts of your trusted networks sending out with {sender} as sender escapes this rule (the score still counts)")
    } else {
        format!("anyone who uses {sender} as sender escapes this rule (a forger too); the rest of the policy and the score still judge the message")
    };
    d.fixes.push(Fix {
        title: format!("Except {sender} from rule {name:?}"),
        note: "The rule keeps working for everyone else; this sender's mail is then judged by the rest of the policy and the score.".into(),
        risk,
        command: String::new(),
        change: Change::ReplaceRule { name: name.clone(), rule: narrowed },
    });
}

/// Why the gateway judged the message outbound, in words.
fn outbound_origin(s: &Subject<'_, '_>) -> String {
    match s.envelope.authenticated_user.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        Some(u) => format!("sent by the logged-in user {u}"),
        None => format!(
            "sent from {}, one of your trusted networks",
            s.envelope.client_ip.map(|i| i.to_string()).unwrap_or_else(|| "a trusted network".into())
        ),
    }
}

fn blocked(s: &Subject<'_, '_>, by: &str, d: &mut Diagnosis) {
    d.category = Category::Policy;
    d.cause = Cause::BlockedSender;
    d.summary = format!("The sender is on a blocked-senders list: {by}.");
    d.findings.push(format!("The entry decided ({}) whatever the score ({:.2}).", d.action.as_str(), d.score));
    let id = by.split("entry ").nth(1).map(|r| r.chars().take_while(|c| c.is_ascii_alphanumeric()).collect::<String>());
    if let Some(id) = id.filter(|i| !i.is_empty()) {
        d.fixes.push(Fix {
            title: format!("Remove blocked-senders entry {id}"),
            note: "The sender's mail is then judged by the rest of the policy and the score.".into(),
            risk: "nothing is allowed outright: the sender's mail, and a forger's in its name, is judged like anyone's"
                .into(),
            command: String::new(),
            change: Change::RemoveEntry { id },
        });
    } else {
        let _ = s;
        d.findings.push("The entry is in the configuration file's [policy]: remove it there.".into());
    }
}

struct AsfHit {
    symbol: String,
    option: &'static str,
    score: f64,
}

fn asf_cause(engine: &Engine, obs: &Observed, tag: f64) -> Option<AsfHit> {
    let hits: Vec<&ObservedSymbol> =
        obs.symbols.iter().filter(|s| side_of(engine, &s.name) == Some(Side::AsfOption) && s.score > 0.0).collect();
    let total: f64 = hits.iter().map(|s| s.score).sum();
    let first = hits.first()?;
    let high_confidence = hits.iter().any(|h| {
        engine.registry().by_name(&h.name).and_then(|d| d.asf) == Some(crate::symbols::AsfEffect::HighConfidenceSpam)
    });
    if obs.score - total >= tag && !high_confidence {
        return None;
    }
    Some(AsfHit {
        symbol: first.name.clone(),
        option: crate::checks::asf::option_key(&first.name)?,
        score: first.score,
    })
}

fn asf_option(engine: &Engine, s: &Subject<'_, '_>, asf: &AsfHit, d: &mut Diagnosis) {
    d.category = Category::Policy;
    d.cause = Cause::AsfOption;
    d.summary = format!(
        "The Additional Spam Filtering option {} is On and fired ({}, {:+.2}): {}",
        asf.option,
        asf.symbol,
        asf.score,
        describe(engine, &asf.symbol)
    );
    if engine.registry().by_name(&asf.symbol).and_then(|x| x.asf) == Some(crate::symbols::AsfEffect::HighConfidenceSpam)
    {
        d.findings
            .push("This option marks a message high-confidence spam (SCL 9, at least quarantined) by itself.".into());
    }
    if let Some(sym) = s.observed.get(&asf.symbol).filter(|x| !x.detail.is_empty()) {
        d.findings.push(format!("Seen: {}.", sym.detail));
    }
    // Narrowest first: this sender's mail to these recipients, exact and tied to what it cannot forge;
    // then the option itself, for the whole domain.
    if !s.envelope.is_outbound() {
        if let Some(r) = outside_sender_rule(
            s,
            d,
            &format!("{} caught a good message of this sender", asf.option),
            vec![RuleAction::Allow {}],
        ) {
            let from = from_address(s).unwrap_or_default();
            d.fixes.push(Fix {
                title: format!("Let {from}'s mail through {} (this sender only)", asf.option),
                note: format!(
                    "A rule for this sender only, for these recipients, and only when {}: the option stays On for everyone else. The rule lets the message through whatever its score.",
                    r.proof
                ),
                risk: r.risk,
                command: String::new(),
                change: Change::AddRule { rule: r.rule },
            });
        }
    }
    // The option in test mode for the whole domain lets this sender's forgeries through with everyone
    // else's, so it is a fix only when nothing narrower holds; otherwise it is advice, with its command,
    // for an option that misfires on many senders.
    let rcpt_domain = recipients(s).first().map(|r| domain_of(r)).filter(|d| !d.is_empty());
    if let Some(domain) = rcpt_domain {
        let change = Change::SetAsf { domain: domain.clone(), option: asf.option.to_string(), mode: AsfMode::Test };
        let command = render_command(&change, Some(&s.source));
        let risk = format!(
            "domain-wide: every message to {domain} that the option catches ({}), from anyone, forgeries of this sender too, is judged by the rest of the score only, spam too",
            describe(engine, &asf.symbol).trim_end_matches('.')
        );
        if d.fixes.is_empty() {
            d.fixes.push(Fix {
                title: format!("Set {} to test mode for {domain}", asf.option),
                note: "Test mode keeps reporting the option in X-Mailsift-ASF without scoring it, so you can watch what it would catch.".into(),
                risk,
                command: String::new(),
                change,
            });
        } else {
            d.findings.push(format!(
                "If {} misfires on many senders, put it in test mode for {domain} (`{command}`): it is then still reported in X-Mailsift-ASF but scores nothing. That is not proposed as a fix because it is {risk}.",
                asf.option
            ));
        }
    }
}

// ---- the sender ----

fn sender_practices(engine: &Engine, s: &Subject<'_, '_>, d: &mut Diagnosis) {
    d.category = Category::Sender;
    d.cause = Cause::SenderPractices;
    let who = from_address(s).or(sender_address(s)).unwrap_or_else(|| "the sender".into());
    let ip = s.envelope.client_ip.map(|i| i.to_string()).unwrap_or_else(|| "the sending server".into());
    let mut points = 0.0;
    for sym in s.observed.symbols.iter().filter(|x| x.score > 0.0) {
        let Some(side) = side_of(engine, &sym.name) else { continue };
        if !side.is_senders() {
            continue;
        }
        points += sym.score;
        d.findings.push(format!("{} ({}, {:+.2})", sender_fact(engine, s, sym, &ip), sym.name, sym.score));
    }
    d.summary = format!(
        "Mail from {who} was judged {} mostly because of how the sender's mail system is set up ({points:+.2} of {:.2}): the fix belongs to their administrator; meanwhile you can allow this sender for the affected recipients.",
        d.action.as_str(),
        d.score
    );
    // Exact on the sender (From: and envelope), for the affected recipients, tied to what it cannot forge.
    let Some(r) = outside_sender_rule(s, d, "the sender's DNS or signatures are broken", vec![RuleAction::Allow {}])
    else {
        d.findings.push(
            "No allow is proposed: nothing about this message is a fact a forger could not produce (no From: address or no connecting server known)."
                .into(),
        );
        return;
    };
    let from = from_address(s).unwrap_or_default();
    d.fixes.push(Fix {
        title: format!("Allow {from} for {}", recipients_text(s)),
        note: format!(
            "A rule for this From: address and envelope sender only, for these recipients only, and only when {}. Remove it once the sender has fixed their side.",
            r.proof
        ),
        risk: r.risk,
        command: String::new(),
        change: Change::AddRule { rule: r.rule },
    });
}

/// What is wrong on the sender's side, in the words their administrator needs.
fn sender_fact(engine: &Engine, s: &Subject<'_, '_>, sym: &ObservedSymbol, ip: &str) -> String {
    // What the message log keeps has no details (names, selectors): a name is then taken from the
    // evidence or the message when they have it, and otherwise left out rather than printed blank.
    let detail = sym.detail.as_str();
    let seen = |d: &str| if d.is_empty() { String::new() } else { format!(" ({d})") };
    let helo = s.envelope.helo.clone().filter(|h| !h.trim().is_empty());
    // "Their server greets as ...": the HELO name, or words that do not pretend to know it.
    let greets = match &helo {
        Some(h) => format!("greets as {h:?}"),
        None => "greets with a name".to_string(),
    };
    let sender_domain = sender_address(s).map(|a| domain_of(&a)).filter(|d| !d.is_empty());
    let spf_domain = Some(detail.to_string())
        .filter(|d| !d.is_empty())
        .or(sender_domain)
        .unwrap_or_else(|| "the sender's domain".into());
    let dkim = seen(&if detail.is_empty() { dkim_signers(s) } else { detail.to_string() });
    let from_domain = Some(detail.to_string())
        .filter(|d| !d.is_empty())
        .or(from_address(s).map(|a| domain_of(&a)).filter(|d| !d.is_empty()))
        .unwrap_or_else(|| "of the message".into());
    match fix_of(engine, &sym.name).unwrap_or(FixKind::Describe) {
        FixKind::PublishPtr => format!("Their PTR record is missing for {ip}: their administrator (or provider) must publish one"),
        FixKind::ConfirmPtr => format!("The PTR name of {ip} does not resolve back to it{}: the name's A record must point at {ip}", seen(detail)),
        FixKind::StaticServer => format!("{ip} has a dynamic-looking name{}: their mail should leave through a server with a static address and its own name", seen(detail)),
        FixKind::HeloFullName => format!("Their server {greets}, not a full host name: it must greet with its own name (RFC 5321)"),
        FixKind::HeloNotBareIp => format!("Their server greets with a bare IP address{} instead of its host name", seen(helo.as_deref().unwrap_or(""))),
        FixKind::HeloInPtrDomain => format!("Their server {greets}, which is not in the domain of its PTR name"),
        FixKind::HeloLiteralMatch => format!("Their server greets with an address literal{} that is not the address it connects from ({ip})", seen(helo.as_deref().unwrap_or(""))),
        FixKind::SpfListServer => format!("Their SPF record for {spf_domain} does not list {ip} (hard fail): they must add it"),
        FixKind::SpfListServerSoft => format!("Their SPF record for {spf_domain} does not list {ip} (~all): they should add it"),
        FixKind::SpfRepair => format!("Their SPF record for {spf_domain} is broken (a syntax error or too many lookups): they must fix it"),
        FixKind::SpfPublish => format!("{spf_domain} publishes no SPF record"),
        FixKind::DkimSignAfterChanges => format!("Their DKIM signature{dkim} covered the body before it was changed, typically a footer or disclaimer added after signing: they should sign after the footer"),
        FixKind::DkimCheckKey => format!("Their DKIM signature does not verify{dkim}: they must check their signing key and selector"),
        FixKind::DkimPublishKey => format!("Their DKIM signature names a key that is not published{dkim}: they must publish it or stop signing with that selector"),
        FixKind::DkimRenew => format!("Their DKIM signature has expired{dkim}"),
        FixKind::DmarcAlign => format!(
            "The From: domain {from_domain} fails its own DMARC check (neither SPF nor DKIM aligned with it): its owner must authorise this server or sign with the domain"
        ),
        _ => {
            let d = describe(engine, &sym.name);
            if detail.is_empty() {
                d.trim_end_matches('.').to_string()
            } else {
                format!("{} (seen: {detail})", d.trim_end_matches('.'))
            }
        }
    }
}

/// The signers of the message's DKIM signatures (d= and s=), from the evidence, else from the
/// DKIM-Signature headers; empty when neither is known (a message-log entry without a copy).
fn dkim_signers(s: &Subject<'_, '_>) -> String {
    let mut out: Vec<String> = s
        .evidence
        .sender
        .as_ref()
        .map(|f| f.dkim.iter().map(|d| format!("{} (s={})", d.domain, d.selector)).collect())
        .unwrap_or_default();
    if out.is_empty() {
        for v in s.message.headers_named("DKIM-Signature") {
            let tag = |name: &str| {
                v.split(';').find_map(|t| {
                    let (k, val) = t.split_once('=')?;
                    (k.trim() == name).then(|| val.split_whitespace().collect::<String>())
                })
            };
            if let Some(d) = tag("d").filter(|d| !d.is_empty()) {
                out.push(match tag("s").filter(|s| !s.is_empty()) {
                    Some(sel) => format!("{d} (s={sel})"),
                    None => d,
                });
            }
        }
    }
    out.join(", ")
}

// ---- the content ----

fn content_score(engine: &Engine, policy: &PolicyConfig, s: &Subject<'_, '_>, d: &mut Diagnosis) {
    d.category = Category::Content;
    d.cause = Cause::ContentScore;
    let mut by_engine: Vec<(&'static str, f64, Vec<String>)> = Vec::new();
    for sym in s.observed.symbols.iter().filter(|x| x.score > 0.0) {
        let (Some(g), Some(side)) = (group_of(engine, &sym.name), side_of(engine, &sym.name)) else { continue };
        if side.is_senders() || side == Side::AsfOption {
            continue;
        }
        // A scoring rule of the configuration's [[rules]] weighs the content too: named as ours, so the
        // summary does not credit the classifiers with points our own rule added.
        let name = match (g, side) {
            (_, Side::Policy) => "your own configured rules",
            (Group::Classifier, _) => "the statistical classifiers",
            _ => "the content heuristics",
        };
        match by_engine.iter_mut().find(|e| e.0 == name) {
            Some(e) => {
                e.1 += sym.score;
                e.2.push(sym.name.clone());
            }
            None => by_engine.push((name, sym.score, vec![sym.name.clone()])),
        }
    }
    by_engine.sort_by(|a, b| b.1.total_cmp(&a.1));
    let main = by_engine.first().map(|e| e.0).unwrap_or("the content heuristics");
    d.summary =
        format!("The content was scored as spam ({:.2}, tag at {}), mostly by {main}.", d.score, d.tag_threshold);
    for (name, points, syms) in &by_engine {
        let detailed: Vec<String> =
            syms.iter().take(3).map(|n| format!("{n}: {}", describe(engine, n).trim_end_matches('.'))).collect();
        let more = if syms.len() > 3 { format!("; and {}", syms[3..].join(", ")) } else { String::new() };
        let mut name = name.to_string();
        name[..1].make_ascii_uppercase();
        d.findings.push(format!("{name} added {points:+.2} ({}{more})", detailed.join("; ")));
    }
    if !by_engine.iter().any(|e| e.0 == "the statistical classifiers") {
        d.findings.push(
            "The classifiers took no part (not trained, or not enough yet): a report teaches them, but the heuristics' \
             score stays; `mailsift explain` gives each symbol's remedy."
                .into(),
        );
    }
    // A report is a fix only when it makes this message pass (a copy of the model retrained, then the
    // message judged again); otherwise it is advice, and the allow below is the fix.
    let report = Change::Report { spam: false };
    let reported = render_command(&report, Some(&s.source));
    let report_passes = !matches!(s.source, Source::Log(_))
        && engine.model().is_some()
        && try_fix(engine, policy, &report, s.message, s.envelope, s.evidence).is_ok_and(|v| !v.action.is_spam());
    if report_passes {
        d.fixes.push(Fix {
            title: "Report it as a false positive, so the classifiers learn it".into(),
            note: "Both classifiers learn the message as ham; similar good mail scores lower from then on, and this one passes (tried on a copy of the model). Nothing is allowed outright.".into(),
            risk: "nothing is let through outright; similar messages, from anyone, score a little lower".into(),
            command: String::new(),
            change: report,
        });
    } else {
        d.findings.push(format!(
            "Report it too, so the classifiers learn ({reported}): alone it would not make this message pass, so it is advice, not a fix."
        ));
    }
    if s.envelope.is_outbound() {
        return;
    }
    // Then, if the report is not enough: this exact sender, for the affected recipients, and only with
    // what proves it is theirs (their signature, SPF and network, else their server).
    let Some(r) = outside_sender_rule(s, d, "a good message the content score caught", vec![RuleAction::Allow {}])
    else {
        d.findings.push(
            "No allow is proposed: nothing about this message is a fact a forger could not produce (no From: address or no connecting server known).".into(),
        );
        return;
    };
    let from = from_address(s).unwrap_or_default();
    d.fixes.push(Fix {
        title: format!(
            "{} {from} for {}",
            if report_passes { "If reporting is not enough: allow" } else { "Allow" },
            recipients_text(s)
        ),
        note: format!(
            "A rule for this From: address and envelope sender only, for these recipients only, and only when {}. The classifiers and heuristics no longer judge its mail to them.",
            r.proof
        ),
        risk: r.risk,
        command: String::new(),
        change: Change::AddRule { rule: r.rule },
    });
}

// ---- our own outbound mail ----

/// Our own user's outgoing mail was caught by the score (rules are read by [`filter_rule`]): teach the
/// classifiers, or let this sender's outgoing mail skip filtering, on the outbound side only.
fn outbound(engine: &Engine, policy: &PolicyConfig, s: &Subject<'_, '_>, d: &mut Diagnosis) {
    content_score(engine, policy, s, d);
    d.cause = Cause::OutboundMail;
    let who = sender_address(s).or(from_address(s)).unwrap_or_else(|| "your user".into());
    d.summary = format!(
        "Outgoing mail from {who} ({}) was scored as spam ({:.2}, tag at {}): it is your own mail, judged by the content score.",
        outbound_origin(s),
        d.score,
        d.tag_threshold
    );
    d.findings.insert(
        0,
        "Outbound mail is never a spoof of your domains and never the sender's practices: only its content scored."
            .into(),
    );
    let Some(sender) = sender_address(s).or(from_address(s)) else { return };
    let field = if sender_address(s).is_some() { Field::EnvelopeFrom } else { Field::From };
    let rule = FilterRule {
        name: format!("outbound from {sender}"),
        enabled: true,
        direction: crate::policy::RuleDirection::Outbound,
        match_mode: MatchMode::All,
        conditions: vec![cond(field, None, Operator::Is, &sender)],
        actions: vec![RuleAction::Allow {}],
        comment: Some(format!(
            "diagnosis {}: {sender}'s outgoing mail was scored as spam",
            d.reference.clone().unwrap_or_default()
        )),
    };
    d.fixes.push(Fix {
        title: format!("If reporting is not enough: let {sender}'s outgoing mail through (outbound only)"),
        note: "The rule applies only to mail the gateway judges outbound (your trusted networks and logged-in users), which a sender outside cannot make its mail be; inbound mail in this name is filtered as before.".into(),
        risk: format!("anything sent out as {sender} by your own users or trusted-network hosts skips filtering, mail from a compromised account or machine too"),
        command: String::new(),
        change: Change::AddRule { rule },
    });
}

// ---- spam that got through ----

fn missed(engine: &Engine, s: &Subject<'_, '_>, d: &mut Diagnosis) {
    d.category = Category::Missed;
    d.cause = Cause::MissedSpam;
    let who = from_address(s).or(sender_address(s)).unwrap_or_else(|| "an unknown sender".into());
    if s.observed.with_fix(engine, FixKind::AllowEntry).is_some() || s.observed.decided_by.is_some() {
        d.summary = format!(
            "The message from {who} was delivered because your policy allowed it ({}); the score did not count.",
            s.observed.decided_by.clone().unwrap_or_default()
        );
    } else {
        d.summary = format!(
            "The message from {who} was delivered: its score {:.2} stayed under the tag threshold {} ({:.2} short).",
            d.score,
            d.tag_threshold,
            d.tag_threshold - d.score
        );
    }
    if let Some(x) = s.observed.get(sym::OWN_SERVER_NOT_IN_DNS) {
        // Passed here because the server is listed locally; every other receiver reads our DNS.
        let dns = match (s.envelope.client_ip, from_address(s)) {
            (Some(ip), Some(f)) => format!(": {} to the SPF record of {}", spf_mechanism(ip), domain_of(&f)),
            _ => String::new(),
        };
        d.findings.push(format!(
            "It passed our own domain's checks because its server is listed here as a sending server, but not in the DNS ({}). Other receivers still refuse it: add{dns}.",
            if x.detail.is_empty() { sym::OWN_SERVER_NOT_IN_DNS.name() } else { x.detail.as_str() }
        ));
    }
    let has_group = |g: Group| s.observed.symbols.iter().any(|x| group_of(engine, &x.name) == Some(g));
    let sender_checked = s.evidence.sender.is_some() || has_group(Group::Auth) || has_group(Group::Connection);
    if !sender_checked {
        d.findings.push("The sender was not checked: no reverse DNS, SPF, DKIM or DMARC evidence (DNS checks are off, [dns] enabled = false).".into());
    }
    if !has_group(Group::Classifier) {
        d.findings.push(
            "The statistical classifiers said nothing: they are not trained, or have not yet learned enough ham and spam (classifier.min_ham / min_spam).".into(),
        );
    }
    if engine.config().dnsbl.is_empty() {
        d.findings.push("No DNS blocklists are configured ([[dnsbl]]), so a listed sender is not recognised.".into());
    }
    if !has_group(Group::Reputation) {
        d.findings.push("Local reputation knew nothing bad about this sender yet.".into());
    }
    let strongest: Vec<String> = s
        .observed
        .symbols
        .iter()
        .filter(|x| x.score > 0.0)
        .take(3)
        .map(|x| format!("{} ({:+.2})", x.name, x.score))
        .collect();
    if !strongest.is_empty() {
        d.findings.push(format!("What did fire: {}.", strongest.join(", ")));
    }
    d.fixes.push(Fix {
        title: "Report it as spam, so the classifiers and the sender's reputation learn it".into(),
        note: "Similar messages score higher from then on; the sender's IP, domain and address get a bad mark.".into(),
        risk: "nothing is let through; good mail resembling this one may score a little higher".into(),
        command: String::new(),
        change: Change::Report { spam: true },
    });
    if let Some(sender) = sender_address(s).or(from_address(s)) {
        for r in recipients(s) {
            let entry = crate::policy::BlockEntry {
                id: None,
                sender: sender.clone(),
                recipient: Some(r.clone()),
                action: crate::policy::BlockAction::Quarantine,
                expires: None,
                comment: Some(format!("diagnosis {}: spam that got through", d.reference.clone().unwrap_or_default())),
            };
            d.fixes.push(Fix {
                title: format!("Block {sender} for {r}"),
                note: "Their next messages to this recipient are quarantined whatever the score (recoverable from the quarantine).".into(),
                risk: "nothing more is let through; the same spam from another address still arrives".into(),
                command: String::new(),
                change: Change::AddBlock { entry },
            });
        }
    }
}

// ---- trying a fix ----

impl Change {
    /// Applies the change to an engine configuration and a policy, as the store would (for trying it).
    /// A report changes neither: [`try_fix`] retrains a copy of the model instead.
    pub fn apply_to(&self, config: &mut EngineConfig, policy: &mut PolicyConfig) -> Result<(), DiagnoseError> {
        match self {
            Change::AddSendingServer { domain, server } => {
                IpRange::parse(server).map_err(DiagnoseError::Unsupported)?;
                let org = &mut config.organisation;
                match org.protected.iter_mut().find(|p| p.domain.eq_ignore_ascii_case(domain)) {
                    Some(p) => p.sending_servers.push(server.clone()),
                    None => org.protected.push(ProtectedDomain {
                        domain: domain.clone(),
                        sending_servers: vec![server.clone()],
                        trusted_relays: vec![],
                    }),
                }
            }
            Change::AddRule { rule } => policy.rules.insert(0, rule.clone()),
            Change::ReplaceRule { name, rule } => {
                let r = policy
                    .rules
                    .iter_mut()
                    .find(|r| r.name.trim().eq_ignore_ascii_case(name.trim()))
                    .ok_or_else(|| DiagnoseError::Unsupported(format!("no rule named {name:?}")))?;
                *r = rule.clone();
            }
            Change::AddAllow { entry } => policy.allow.push(entry.clone()),
            Change::AddBlock { entry } => policy.block.push(entry.clone()),
            Change::RemoveEntry { id } => {
                policy.allow.retain(|e| e.id.as_deref() != Some(id.as_str()));
                policy.block.retain(|e| e.id.as_deref() != Some(id.as_str()));
            }
            Change::SetAsf { option, mode, .. } => {
                let mut asf =
                    toml::Value::try_from(&config.asf).map_err(|e| DiagnoseError::Unsupported(e.to_string()))?;
                let mode = toml::Value::try_from(mode).map_err(|e| DiagnoseError::Unsupported(e.to_string()))?;
                if let Some(t) = asf.as_table_mut() {
                    t.insert(option.clone(), mode);
                }
                config.asf = asf.try_into().map_err(|e: toml::de::Error| DiagnoseError::Unsupported(e.to_string()))?;
            }
            Change::Report { .. } => {}
        }
        Ok(())
    }
}

/// Judges the message again as if the change had been made: with the changed configuration and policy,
/// or, for a report, with a copy of the model that learned the message (the store's model is untouched).
pub fn try_fix(
    engine: &Engine,
    policy: &PolicyConfig,
    change: &Change,
    msg: &Message<'_>,
    envelope: &Envelope,
    evidence: &Evidence,
) -> Result<Verdict, DiagnoseError> {
    let (engine, policy) = fixed(engine, policy, change)?;
    let mut evidence = evidence.clone();
    // The classifiers' answer must be asked again of the (possibly retrained) model.
    evidence.classifier = None;
    if let (Change::Report { spam }, Some(model)) = (change, engine.model()) {
        let features = crate::classify::features(msg);
        let side = if *spam { crate::classify::Side::Spam } else { crate::classify::Side::Ham };
        model.write().unwrap_or_else(|e| e.into_inner()).learn(&features, side, None);
    }
    Ok(engine.judge_with_policy(msg, envelope, &evidence, &policy))
}

/// An engine and a compiled policy with the change made; the model is copied, never shared.
fn fixed(
    engine: &Engine,
    policy: &PolicyConfig,
    change: &Change,
) -> Result<(Engine, crate::policy::Policy), DiagnoseError> {
    let mut config = engine.config().clone();
    let mut policy = policy.clone();
    change.apply_to(&mut config, &mut policy)?;
    // The engine's own [policy] is passed in `policy` with the store's: compile it once, there.
    config.policy = PolicyConfig::default();
    let mut e = Engine::new(config)?;
    if let Some(m) = engine.model() {
        let copy = m.read().unwrap_or_else(|e| e.into_inner()).clone();
        e = e.with_model(Arc::new(RwLock::new(copy)));
    }
    Ok((e, crate::policy::Policy::new(&policy)?))
}

// ---- replaying a fix over the message log ----

/// A past transaction as the message log keeps it, with the raw message when the quarantine still has it.
#[derive(Debug, Clone, Default)]
pub struct PastMessage {
    pub reference_id: String,
    pub time: i64,
    pub client_ip: Option<IpAddr>,
    pub helo: Option<String>,
    pub mail_from: Option<String>,
    pub recipients: Vec<String>,
    pub from_header: Option<String>,
    pub subject: Option<String>,
    pub score: Option<f64>,
    pub symbols: Vec<(String, f64)>,
    pub action: String,
    pub raw: Option<Vec<u8>>,
}

/// What a fix would have done to past messages.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Replay {
    /// Past messages looked at.
    pub examined: usize,
    /// Messages the fix would have delivered.
    pub let_through: usize,
    /// Of those, the ones that had been judged spam (tag, quarantine or reject): the ones to look at.
    pub were_spam: Vec<ReplayedMessage>,
    /// Messages the fix might have let through, but whose headers or body (which the log does not keep)
    /// a condition needs: counted on everything else the log records.
    pub undecidable: usize,
    /// Why a fix could not be replayed, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_replayable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayedMessage {
    pub reference_id: String,
    pub time: i64,
    pub from: String,
    pub subject: String,
    pub action: String,
    pub score: Option<f64>,
}

/// Holds a change against past messages: how many it would have let through, and which of them had been
/// judged spam. Rules and list entries are evaluated by the engine's own policy code on each message
/// (the raw message when there is one, else one rebuilt from what the log keeps).
pub fn replay(engine: &Engine, change: &Change, past: &[PastMessage]) -> Replay {
    replay_excluding(engine, change, past, None)
}

/// As [`replay`], leaving out the diagnosed message itself (its reference id, when it has one): the fix
/// is meant to let that one through, so it is neither examined nor counted as spam the fix would let in.
pub fn replay_excluding(engine: &Engine, change: &Change, past: &[PastMessage], diagnosed: Option<&str>) -> Replay {
    let diagnosed = diagnosed.map(str::trim).filter(|r| !r.is_empty());
    let others: Vec<&PastMessage> = past.iter().filter(|p| Some(p.reference_id.trim()) != diagnosed).collect();
    replay_over(engine, change, &others)
}

fn replay_over(engine: &Engine, change: &Change, past: &[&PastMessage]) -> Replay {
    let mut out = Replay { examined: past.len(), ..Replay::default() };
    let tag = engine.config().thresholds.tag;
    let spam = |p: &PastMessage| parse_action(&p.action).is_some_and(|a| a.is_spam());
    let note = |out: &mut Replay, p: &PastMessage| {
        out.let_through += 1;
        if spam(p) {
            out.were_spam.push(ReplayedMessage {
                reference_id: p.reference_id.clone(),
                time: p.time,
                from: p.from_header.clone().unwrap_or_default(),
                subject: p.subject.clone().unwrap_or_default(),
                action: p.action.clone(),
                score: p.score,
            });
        }
    };
    match change {
        Change::AddSendingServer { domain, server } => {
            let Ok(range) = IpRange::parse(server) else { return out };
            for p in past {
                let from_ours = p
                    .from_header
                    .as_deref()
                    .and_then(crate::message::Mailbox::parse_address)
                    .is_some_and(|m| registrable_domain(&m.domain) == registrable_domain(domain));
                if from_ours && p.client_ip.is_some_and(|ip| range.contains(ip)) {
                    let spoof = p.symbols.iter().find(|s| s.0 == sym::SPOOF_OWN_DOMAIN).map(|s| s.1).unwrap_or(0.0);
                    if p.score.unwrap_or(0.0) - spoof < tag {
                        note(&mut out, p);
                    }
                }
            }
        }
        Change::SetAsf { option, .. } => {
            for p in past {
                let hit: f64 = p
                    .symbols
                    .iter()
                    .filter(|s| crate::checks::asf::option_key(&s.0) == Some(option.as_str()))
                    .map(|s| s.1)
                    .sum();
                if hit > 0.0 && p.score.unwrap_or(0.0) - hit < tag {
                    note(&mut out, p);
                }
            }
        }
        Change::AddRule { rule } => {
            if !rule.actions.iter().any(|a| matches!(a, RuleAction::Allow {})) {
                out.not_replayable = Some("only rules that allow are replayed".into());
                return out;
            }
            let policy = PolicyConfig { rules: vec![rule.clone()], ..PolicyConfig::default() };
            let logged = PolicyConfig {
                rules: vec![FilterRule {
                    conditions: rule.conditions.iter().filter(|c| loggable(c.field)).cloned().collect(),
                    ..rule.clone()
                }],
                ..PolicyConfig::default()
            };
            let (Ok(full), Ok(partial)) = (crate::policy::Policy::new(&policy), crate::policy::Policy::new(&logged))
            else {
                return out;
            };
            for p in past {
                let (raw, has_raw) = past_raw(p);
                let msg = engine.parse(&raw);
                let env = past_envelope(p);
                let ev = past_evidence(p);
                let syms = past_symbols(engine, p);
                let input = crate::policy::PolicyInput {
                    envelope: &env,
                    message: &msg,
                    evidence: &ev,
                    symbols: &syms,
                    score: p.score.unwrap_or(0.0),
                    now: crate::unix_now(),
                };
                let policy = if has_raw { &full } else { &partial };
                if policy.rules(&input).decision.is_some() {
                    if has_raw || logged.rules[0].conditions.len() == rule.conditions.len() {
                        note(&mut out, p);
                    } else {
                        out.undecidable += 1;
                    }
                }
            }
        }
        Change::AddAllow { entry } => {
            let policy = PolicyConfig { allow: vec![entry.clone()], ..PolicyConfig::default() };
            let Ok(compiled) = crate::policy::Policy::new(&policy) else { return out };
            for p in past {
                let (raw, _) = past_raw(p);
                let msg = engine.parse(&raw);
                let env = past_envelope(p);
                let ev = past_evidence(p);
                let syms = past_symbols(engine, p);
                let input = crate::policy::PolicyInput {
                    envelope: &env,
                    message: &msg,
                    evidence: &ev,
                    symbols: &syms,
                    score: p.score.unwrap_or(0.0),
                    now: crate::unix_now(),
                };
                let hit = p
                    .recipients
                    .iter()
                    .any(|r| compiled.lists(&input, Some(r)).decision == Some(crate::policy::ListDecision::Allow));
                if hit {
                    note(&mut out, p);
                }
            }
        }
        Change::ReplaceRule { .. } | Change::RemoveEntry { .. } => {
            out.not_replayable = Some(
                "the log records which rule or entry decided, not what the rest of the policy would have said".into(),
            );
        }
        Change::AddBlock { .. } => out.not_replayable = Some("a block lets nothing through".into()),
        Change::Report { .. } => {
            out.not_replayable = Some("retraining shifts the classifiers' scores of similar messages only".into())
        }
    }
    out
}

/// Fields the message log records (or a message rebuilt from it carries).
fn loggable(f: Field) -> bool {
    matches!(
        f,
        Field::EnvelopeFrom
            | Field::EnvelopeFromDomain
            | Field::From
            | Field::FromDomain
            | Field::Recipient
            | Field::RecipientDomain
            | Field::Subject
            | Field::ClientIp
            | Field::Helo
            | Field::Score
            | Field::Spf
            | Field::Dkim
            | Field::AuthDomain
    )
}

fn past_raw(p: &PastMessage) -> (Vec<u8>, bool) {
    if let Some(raw) = &p.raw {
        return (raw.clone(), true);
    }
    let mut m = String::new();
    if let Some(f) = &p.from_header {
        let _ = write!(m, "From: {f}\r\n");
    }
    if let Some(s) = &p.subject {
        let _ = write!(m, "Subject: {s}\r\n");
    }
    m.push_str("\r\n");
    (m.into_bytes(), false)
}

fn past_envelope(p: &PastMessage) -> Envelope {
    Envelope {
        client_ip: p.client_ip,
        helo: p.helo.clone(),
        mail_from: p.mail_from.clone(),
        rcpt_to: p.recipients.clone(),
        ..Envelope::default()
    }
}

/// Authentication as the logged symbols tell it (SPF_PASS and DKIM_VALID carry no domain in the log: the
/// envelope sender's domain stands for SPF's).
fn past_evidence(p: &PastMessage) -> Evidence {
    use crate::evidence::SpfResult;
    const SPF: [(Sym, SpfResult); 4] = [
        (sym::SPF_PASS, SpfResult::Pass),
        (sym::SPF_FAIL, SpfResult::Fail),
        (sym::SPF_SOFTFAIL, SpfResult::SoftFail),
        (sym::SPF_NONE, SpfResult::None),
    ];
    let spf = p.symbols.iter().find_map(|(n, _)| SPF.iter().find(|(s, _)| n == s).map(|(_, r)| *r));
    let Some(spf) = spf else { return Evidence::default() };
    Evidence::from_sender(crate::evidence::SenderFacts {
        spf: Some(spf),
        spf_domain: p.mail_from.as_deref().map(domain_of),
        ..Default::default()
    })
}

fn past_symbols(engine: &Engine, p: &PastMessage) -> Vec<crate::verdict::SymbolResult> {
    p.symbols
        .iter()
        .map(|(n, s)| crate::verdict::SymbolResult {
            name: n.clone(),
            group: group_of(engine, n).unwrap_or(Group::Content),
            score: *s,
            detail: if *n == sym::SPOOF_OWN_DOMAIN { "from the message log".into() } else { String::new() },
            asf_mode: None,
            asf_effect: None,
        })
        .collect()
}

// ---- text ----

/// The diagnosis as text for a person (the CLI's output without the dry runs).
pub fn render(d: &Diagnosis) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Verdict:  {} (score {:.2}, tag at {}){}",
        d.action.as_str().to_uppercase(),
        d.score,
        d.tag_threshold,
        d.reference.as_deref().map(|r| format!(", reference {r}")).unwrap_or_default()
    );
    let _ = writeln!(out, "Cause:    {} ({})", d.category.title(), cause_title(d.cause));
    let _ = writeln!(out, "\n{}\n", d.summary);
    for f in &d.findings {
        let _ = writeln!(out, "  - {f}");
    }
    if d.fixes.is_empty() {
        let _ = writeln!(out, "\nNo fix to propose.");
    } else {
        let _ = writeln!(out, "\nFixes, narrowest first:");
        for (i, f) in d.fixes.iter().enumerate() {
            let _ = writeln!(out, "\n  {}. {}", i + 1, f.title);
            let _ = writeln!(out, "     {}", f.note);
            if !f.risk.is_empty() {
                let _ = writeln!(out, "     Still lets through: {}.", f.risk.trim_end_matches('.'));
            }
            for line in f.command.lines() {
                let _ = writeln!(out, "     $ {line}");
            }
        }
    }
    out
}

pub fn cause_title(c: Cause) -> &'static str {
    match c {
        Cause::WebApplication => "a web server or application sending as your domain",
        Cause::SendingService => "a marketing or newsletter service sending as your domain",
        Cause::OwnMailThroughRelay => "your own mail coming back through a hosted service",
        Cause::SenderPractices => "the sender's DNS, authentication or reputation",
        Cause::FilterRule => "a filter rule",
        Cause::BlockedSender => "a blocked-senders entry",
        Cause::AsfOption => "an Additional Spam Filtering option",
        Cause::ContentScore => "the classifiers and content heuristics",
        Cause::MissedSpam => "evidence that was missing",
        Cause::OutboundMail => "your own outgoing mail, scored by its content",
    }
}
