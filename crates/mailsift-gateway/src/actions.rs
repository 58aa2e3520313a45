//! The business actions every front end needs, written once: the web API, the console, the digest links and
//! the command line call these and only translate their answers.
//!
//! - quarantine: [`release`], [`approve`] (release, then allow the sender for that recipient),
//!   [`block_sender`] (block the sender for that recipient, delete the copy), [`delete`];
//! - [`report`]: a user's false positive or false negative, learned by the classifiers and fed to reputation
//!   ([`report_to_gateway`] in the running gateway's model);
//! - [`apply_fix`]: make a change a diagnosis proposed (a sending server, an ASF mode, a rule, a list entry);
//! - [`Judging`]: the engine, domains and policy a command-line tool judges with, folded as the running
//!   gateway folds them, so `scan`, `explain`, `rules test`, `diagnose` and `report` cannot disagree with it;
//! - what diagnosis reads from the store: [`envelope_of_log`], [`rebuilt_from_log`], [`past_messages`],
//!   [`policy_in_force`].
//!
//! What it is not: a place that knows HTTP, a terminal or a session. Reach checks (who may act on what) are
//! the front end's; these functions assume the caller may.

use std::collections::BTreeMap;
use std::sync::Arc;

use mailsift_engine::classify::{LearnOutcome, Side};
use mailsift_engine::config::{AsfMode, OrganisationConfig};
use mailsift_engine::diagnose::{Change, PastMessage};
use mailsift_engine::evidence::ClassifierScores;
use mailsift_engine::policy::{AllowEntry, BlockEntry, PolicyConfig};
use mailsift_engine::{Engine, EngineConfig, Envelope, Settings};
use mailsift_store::{
    Database, Learner, ListEntry, LogEntry, LogQuery, PolicyStore, PolicyStoreError, QuarantineItem, QuarantineQuery,
    SqliteReputation, StoreError, TokenStore,
};

use crate::config::DomainConfig;
pub use crate::release::{ReleaseError, Released};
use crate::state::{Gateway, GatewayState};

/// Why an action was not done.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Policy(#[from] PolicyStoreError),
    /// The request cannot be done as asked (a setting that does not validate, a name the configuration file
    /// owns): the text says which and why.
    #[error("{0}")]
    Invalid(String),
    /// A part of the gateway the action needs is switched off.
    #[error("{0}")]
    Unavailable(String),
}

// ---------------------------------------------------------------------------------------------------------
// Quarantine

impl Released {
    /// What the release did, in words.
    pub fn describe(&self) -> String {
        format!("released to {} ({})", self.recipient, self.reply)
    }
}

/// Releases one quarantined copy to its recipient through the normal delivery path, exactly once. `by` is
/// recorded in the header (an administrator's name, "digest link", the user's address).
pub async fn release(gateway: &Arc<Gateway>, id: i64, by: &str) -> Result<Released, ReleaseError> {
    crate::release::release(gateway, id, by).await
}

/// As [`release`], for an administrator: a copy in the virus quarantine is released too.
pub async fn release_as_admin(gateway: &Arc<Gateway>, id: i64, by: &str) -> Result<Released, ReleaseError> {
    crate::release::release_as_admin(gateway, id, by).await
}

/// The entry that lets `sender`'s mail reach `recipient`, keeping the safe defaults: it never lets through
/// mail that spoofs our domains or fails DMARC, and needs no authentication.
pub fn allow_entry(sender: &str, recipient: &str, comment: String) -> AllowEntry {
    AllowEntry {
        id: None,
        sender: sender.to_string(),
        recipient: Some(recipient.to_string()),
        require_auth: false,
        from_ptr_domain: None,
        from_network: None,
        allow_spoofed: false,
        expires: None,
        comment: Some(comment),
    }
}

/// The sender a person approves: the address they saw (From:), else the envelope sender.
fn approved_sender(item: &QuarantineItem) -> Option<String> {
    item.from_header.clone().or(item.mail_from.clone()).filter(|s| s.contains('@'))
}

/// The sender a person blocks: the envelope sender (what the next message will come with), else From:.
fn blocked_sender(item: &QuarantineItem) -> Option<String> {
    item.mail_from.clone().or(item.from_header.clone()).filter(|s| s.contains('@'))
}

/// A sender now allowed for a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub sender: String,
    pub recipient: String,
    /// The list entry's id.
    pub entry: i64,
}

/// Adds the quarantined message's sender to its recipient's own allowed senders. `None`: the message has no
/// sender address.
pub fn allow_sender(db: &Database, item: &QuarantineItem, by: &str) -> Result<Option<Allowed>, ActionError> {
    let Some(sender) = approved_sender(item) else {
        return Ok(None);
    };
    let comment = format!("approved from quarantine item {} by {by}", item.id);
    let entry = db.list_add(ListEntry::Allow(allow_entry(&sender, &item.recipient, comment)))?;
    Ok(Some(Allowed { sender, recipient: item.recipient.clone(), entry }))
}

/// What an approval did.
#[derive(Debug, Clone)]
pub struct Approved {
    pub released: Released,
    /// The sender allowed, or `None` when the message had no sender address.
    pub allowed: Option<Allowed>,
}

impl Approved {
    pub fn describe(&self) -> String {
        let mut s = self.released.describe();
        match &self.allowed {
            Some(a) => s.push_str(&format!("; {} is now an allowed sender for {}", a.sender, a.recipient)),
            None => s.push_str("; no sender address to approve"),
        }
        s
    }
}

/// Releases `item`, then allows its sender for its recipient, so their next message is delivered. The
/// sender is allowed only once the release went through.
pub async fn approve(gateway: &Arc<Gateway>, item: &QuarantineItem, by: &str) -> Result<Approved, ActionError> {
    let released = release(gateway, item.id, by).await?;
    let (db, item, by) = (gateway.db.clone(), item.clone(), by.to_string());
    let allowed = tokio::task::spawn_blocking(move || allow_sender(&db, &item, &by))
        .await
        .map_err(|e| ActionError::Unavailable(format!("the allow entry was not written: {e}")))??;
    Ok(Approved { released, allowed })
}

/// A sender now blocked for a recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub sender: String,
    pub recipient: String,
    pub entry: i64,
}

impl Blocked {
    pub fn describe(&self) -> String {
        format!("{} is now blocked for {}; the message was deleted", self.sender, self.recipient)
    }
}

/// Adds the quarantined message's sender to its recipient's blocked senders and deletes the copy. `None`:
/// the message has no sender address (nothing is changed).
pub fn block_sender(db: &Database, item: &QuarantineItem, by: &str) -> Result<Option<Blocked>, ActionError> {
    let Some(sender) = blocked_sender(item) else {
        return Ok(None);
    };
    let entry = BlockEntry {
        id: None,
        sender: sender.clone(),
        recipient: Some(item.recipient.clone()),
        action: Default::default(),
        expires: None,
        comment: Some(format!("blocked from quarantine item {} by {by}", item.id)),
    };
    let entry = db.list_add(ListEntry::Block(entry))?;
    db.quarantine_delete(item.id)?;
    Ok(Some(Blocked { sender, recipient: item.recipient.clone(), entry }))
}

/// Deletes a held copy for good; false when there is no such copy.
pub fn delete(db: &Database, id: i64) -> Result<bool, StoreError> {
    db.quarantine_delete(id)
}

// ---------------------------------------------------------------------------------------------------------
// Reports

/// A user's report: this message is ham (a false positive) or spam (a false negative).
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    pub raw: &'a [u8],
    pub side: Side,
    /// What was reported, for the submission record: a file name, "quarantine item 12".
    pub source: &'a str,
    /// How it came: `cli`, `web`, `quarantine`, `email`.
    pub channel: &'a str,
    /// Who reported it (an account), when known.
    pub reporter: Option<&'a str>,
}

/// What a report did.
#[derive(Debug)]
pub struct Reported {
    pub outcome: LearnOutcome,
    /// The side it had been trained on before, when it had.
    pub previous: Option<Side>,
    /// Spam probabilities before and after learning (when the classifiers are trained enough to say).
    pub before: Option<ClassifierScores>,
    pub after: Option<ClassifierScores>,
    /// The identities whose reputation was updated; `None` when reputation is off. An error here does not
    /// undo the learning: it is reported beside it.
    pub reputation: Option<Result<Vec<String>, StoreError>>,
}

impl Reported {
    /// What the classifiers did, in words: "quarantine item 3: learned as ham".
    pub fn describe(&self, report: &Report<'_>) -> String {
        let side = report.side.as_str();
        let what = match (&self.outcome, &self.previous) {
            (LearnOutcome::AlreadyKnown, _) => format!("was already learned as {side}"),
            (LearnOutcome::Relearned, Some(p)) => {
                format!("unlearned as {}, learned as {side}", p.as_str())
            }
            _ => format!("learned as {side}"),
        };
        format!("{}: {what}", report.source)
    }
}

/// Learns a reported message on the side the user says (unlearning it from the other side first), records the
/// submission, and feeds the sender's reputation (identities from the message's own trace headers; a
/// reported spoof of one of `organisation`'s domains counts against the spoofing server, not our domain).
///
/// `engine` classifies with `learner`'s model (the before and after probabilities).
pub fn report<S: TokenStore>(
    learner: &mut Learner<S>,
    engine: &Engine,
    reputation: Option<&SqliteReputation>,
    organisation: &OrganisationConfig,
    r: &Report<'_>,
    now: i64,
) -> Result<Reported, StoreError> {
    let msg = engine.parse(r.raw);
    let before = engine.classify(&msg);
    let (outcome, previous) = learner.report_via(&msg, r.side, r.source, r.channel, r.reporter, now)?;
    let after = engine.classify(&msg);
    let reputation = reputation.map(|rep| rep.record_report(&msg, r.side, organisation, now));
    Ok(Reported { outcome, previous, before, after, reputation })
}

/// [`report`] in the running gateway: its learner (so the live model is retrained), its reputation store,
/// and its organisation (configured and stored domains folded in).
pub fn report_to_gateway(state: &GatewayState, r: &Report<'_>, now: i64) -> Result<Reported, ActionError> {
    let learner = state.learner().ok_or_else(|| {
        ActionError::Unavailable("the classifiers are disabled ([classifier] enabled = false)".into())
    })?;
    let mut learner = learner.lock().unwrap_or_else(|e| e.into_inner());
    let reported =
        report(&mut learner, &state.engine, state.reputation(), &state.engine.config().organisation, r, now)?;
    if let Some(Err(e)) = &reported.reputation {
        tracing::warn!(error = %e, "reputation not updated from the report");
    }
    Ok(reported)
}

// ---------------------------------------------------------------------------------------------------------
// The engine, domains and policy a command judges with

/// The configuration's engine, the configured and stored domains, and the stored policy, read once: what a
/// command-line tool judges with, folded as the running gateway folds them (stored domains replace
/// configured ones of the same name; sending servers and trusted relays make a domain ours; spamtraps join
/// the classifier's; a domain's thresholds and ASF modes judge its mail).
pub struct Judging {
    /// The engine of the configuration file alone (or the embedded defaults).
    pub base: Engine,
    /// The domains of the configuration's [smtp] section.
    pub configured: Vec<DomainConfig>,
    /// The domains stored in the gateway database (set with `mailsift domains` or the console).
    pub stored: Vec<DomainConfig>,
    /// The stored policy (rules, allowed and blocked senders).
    pub stored_policy: PolicyConfig,
    /// The organisation's stored settings (organisation-wide ASF modes over the configuration's).
    pub organisation: crate::config::OrganisationSettings,
}

impl Judging {
    /// Reads the stored domains and policy from `db` (none: nothing stored yet).
    pub fn new(base: Engine, configured: Vec<DomainConfig>, db: Option<&Database>) -> Result<Judging, ActionError> {
        let (stored, stored_policy, organisation) = match db {
            Some(db) => (
                stored_domains(db)?,
                db.load_policy()?.config,
                crate::config::OrganisationSettings::parse(db.organisation_settings()?.as_deref())
                    .map_err(|e| ActionError::Invalid(e.to_string()))?,
            ),
            None => (Vec::new(), PolicyConfig::default(), Default::default()),
        };
        Ok(Judging { base, configured, stored, stored_policy, organisation })
    }

    /// The configured and stored domains; a stored one replaces a configured one of the same name.
    pub fn domains(&self) -> Vec<DomainConfig> {
        crate::config::merge_domains(&self.configured, &self.stored)
    }

    /// The engine that judges the gateway's mail, without a classifier model: the configuration's with the
    /// domains folded in. A domain's own thresholds and ASF modes are its settings ([`Judging::settings_for`]).
    pub fn engine(&self) -> Result<Engine, ActionError> {
        let mut config = self.base.config().clone();
        self.organisation.fold(&mut config).map_err(|e| ActionError::Invalid(e.to_string()))?;
        crate::config::fold_domains(&mut config, &self.domains());
        Engine::new(config).map_err(|e| ActionError::Invalid(format!("the engine with the stored domains: {e}")))
    }

    /// The settings `engine` (built by [`Judging::engine`]) judges mail of `domain` with (the recipient's for
    /// inbound mail, the sender's for outbound): that domain's own thresholds and ASF modes, else the
    /// engine's own.
    pub fn settings_for(&self, engine: &Engine, domain: &str) -> Result<Settings, ActionError> {
        let domains = self.domains();
        let domain = domain.trim_end_matches('.');
        match domains.iter().find(|d| !domain.is_empty() && d.name.eq_ignore_ascii_case(domain)) {
            Some(d) if d.has_engine_overrides() => engine
                .settings(&d.name.to_ascii_lowercase(), &d.settings_config())
                .map_err(|e| ActionError::Invalid(format!("domain {}: {e}", d.name))),
            _ => Ok(engine.default_settings().clone()),
        }
    }

    /// The engine the diagnosis of mail of `domain` works with: [`Judging::engine`] with the domain's settings
    /// in its own configuration (see [`configured_with`]).
    pub fn diagnosis_engine(&self, domain: &str) -> Result<Engine, ActionError> {
        let engine = self.engine()?;
        let settings = self.settings_for(&engine, domain)?;
        if settings.is_default() {
            Ok(engine)
        } else {
            configured_with(&engine, &settings)
        }
    }

    /// The organisation the gateway judges for: the configuration's with the domains folded in.
    pub fn organisation(&self) -> OrganisationConfig {
        let mut config = self.base.config().clone();
        crate::config::fold_domains(&mut config, &self.domains());
        config.organisation
    }

    /// The configuration's [policy] (as `engine` has it), then the stored one, as the gateway compiles them.
    pub fn policy_for(&self, engine: &Engine) -> PolicyConfig {
        chain_policy(&engine.config().policy, &self.stored_policy)
    }
}

/// An engine whose own configuration has `settings`' thresholds and ASF modes, sharing `engine`'s model.
/// Only for the diagnosis: it judges a message again with a fix in place by rebuilding the engine from its
/// configuration (`mailsift_engine::diagnose::try_fix`), so a domain's settings must be part of that
/// configuration. Everything else judges with the one engine and the settings.
pub fn configured_with(engine: &Engine, settings: &Settings) -> Result<Engine, ActionError> {
    let base = engine.config();
    let config = EngineConfig {
        thresholds: settings.thresholds_or(&base.thresholds).clone(),
        ..settings.config_or(base).clone()
    };
    let configured = Engine::new(config)
        .map_err(|e| ActionError::Invalid(format!("the engine with the settings of {}: {e}", settings.name())))?;
    Ok(match engine.model() {
        Some(m) => configured.with_model(m.clone()),
        None => configured,
    })
}

fn chain_policy(configured: &PolicyConfig, stored: &PolicyConfig) -> PolicyConfig {
    let mut all = configured.clone();
    all.rules.extend(stored.rules.iter().cloned());
    all.allow.extend(stored.allow.iter().cloned());
    all.block.extend(stored.block.iter().cloned());
    all
}

/// The policy in force: the configuration's, then the store's.
pub fn policy_in_force(configured: &PolicyConfig, db: &Database) -> Result<PolicyConfig, PolicyStoreError> {
    Ok(chain_policy(configured, &db.load_policy()?.config))
}

/// The domains stored in the gateway database.
pub fn stored_domains(db: &Database) -> Result<Vec<DomainConfig>, ActionError> {
    db.domains()?
        .into_iter()
        .map(|(name, json)| {
            crate::config::parse_stored_domain(&name, &json)
                .map_err(|e| ActionError::Invalid(format!("stored domain {name} does not read: {e}")))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------------
// Applying a fix

/// What the fix is applied against: the configuration's domains and its engine configuration (its
/// anti-spoofing settings and its own [policy], which the store must not shadow).
#[derive(Clone, Copy)]
pub struct FixContext<'a> {
    pub configured_domains: &'a [DomainConfig],
    pub config: &'a EngineConfig,
}

/// Makes a change a diagnosis proposed, in the store (the gateway picks it up by itself). Returns what was
/// done, in words. A report is not made here (it needs the message and a learner): see [`report`].
pub fn apply_fix(db: &Database, ctx: FixContext<'_>, change: &Change) -> Result<String, ActionError> {
    let config_has_rule =
        |name: &str| ctx.config.policy.rules.iter().any(|r| r.name.trim().eq_ignore_ascii_case(name.trim()));
    match change {
        Change::AddSendingServer { domain, server } => {
            let mut d = domain_to_store(db, ctx, domain)?;
            if !d.sending_servers.iter().any(|s| s == server) {
                d.sending_servers.push(server.clone());
            }
            put_domain(db, &d)?;
            Ok(format!("{domain}: {server} added to the sending servers ({})", d.sending_servers.join(", ")))
        }
        Change::SetAsf { domain, option, mode } => {
            let mut d = domain_to_store(db, ctx, domain)?;
            d.asf.insert(option.clone(), *mode);
            put_domain(db, &d)?;
            let mode = serde_json::to_value(mode).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            Ok(format!("{domain}: asf {option} set to {mode:?}"))
        }
        Change::AddRule { rule } => {
            if config_has_rule(&rule.name) {
                return Err(ActionError::Invalid(format!(
                    "rule {:?}: the configuration file's [policy] has a rule of this name",
                    rule.name
                )));
            }
            let position = db.rule_add(rule.clone(), Some(0))?;
            Ok(format!("added rule {:?} at position {}", rule.name, position + 1))
        }
        Change::ReplaceRule { name, rule } => {
            if config_has_rule(name) {
                return Err(ActionError::Invalid(format!(
                    "rule {name:?} is in the configuration file's [policy]: change it there"
                )));
            }
            db.rule_replace(name, rule.clone())?;
            Ok(format!("replaced rule {name:?}"))
        }
        Change::AddAllow { entry } => {
            let e = ListEntry::Allow(entry.clone());
            let what = e.describe();
            let id = db.list_add(e)?;
            Ok(format!("added {what} as entry {id}"))
        }
        Change::AddBlock { entry } => {
            let e = ListEntry::Block(entry.clone());
            let what = e.describe();
            let id = db.list_add(e)?;
            Ok(format!("added {what} as entry {id}"))
        }
        Change::RemoveEntry { id } => {
            let n: i64 = id.parse().map_err(|_| ActionError::Invalid(format!("entry {id} is not a stored entry")))?;
            db.list_remove(n)?;
            Ok(format!("removed entry {id}"))
        }
        Change::Report { .. } => Err(ActionError::Invalid(
            "a report is not a stored change: report the message itself (it needs the message)".into(),
        )),
    }
}

/// The domain's settings to store: the stored ones, else the configured ones with the configuration's own
/// anti-spoofing servers for it, so that storing it does not drop what the configuration said.
pub fn domain_to_store(db: &Database, ctx: FixContext<'_>, name: &str) -> Result<DomainConfig, ActionError> {
    if let Some(json) = db.domain_get(name)? {
        return serde_json::from_str(&json)
            .map_err(|e| ActionError::Invalid(format!("stored domain {name} does not read: {e}")));
    }
    let mut d = ctx
        .configured_domains
        .iter()
        .find(|d| d.name.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| DomainConfig { name: name.to_ascii_lowercase(), ..Default::default() });
    if let Some(p) = ctx.config.organisation.protected.iter().find(|p| p.domain.eq_ignore_ascii_case(name)) {
        for s in &p.sending_servers {
            if !d.sending_servers.contains(s) {
                d.sending_servers.push(s.clone());
            }
        }
        for r in &p.trusted_relays {
            if !d.trusted_relays.contains(r) {
                d.trusted_relays.push(r.clone());
            }
        }
    }
    Ok(d)
}

/// Stores a domain's settings after checking them as the gateway would (the error names the field).
pub fn put_domain(db: &Database, d: &DomainConfig) -> Result<(), ActionError> {
    d.validate().map_err(|e| ActionError::Invalid(e.to_string()))?;
    let json = serde_json::to_string(d).map_err(|e| ActionError::Invalid(format!("domain {}: {e}", d.name)))?;
    db.domain_put(&d.name, &json, mailsift_engine::unix_now())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// The organisation's stored settings (organisation-wide ASF modes)

/// One ASF option as the organisation has it: the configuration file's mode, the stored one over it (set
/// from the console or `mailsift asf set`), and the mode in force.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OrganisationAsf {
    pub option: &'static str,
    pub configured: AsfMode,
    pub stored: Option<AsfMode>,
    pub mode: AsfMode,
}

/// Every ASF option with its configured, stored and effective mode, in the configuration's order.
pub fn organisation_asf(configured: &EngineConfig, db: &Database) -> Result<Vec<OrganisationAsf>, ActionError> {
    let org = crate::config::OrganisationSettings::parse(db.organisation_settings()?.as_deref())
        .map_err(|e| ActionError::Invalid(e.to_string()))?;
    Ok(mailsift_engine::config::AsfConfig::OPTIONS
        .iter()
        .map(|o| {
            let configured = configured.asf.get(o).unwrap_or_default();
            let stored = org.asf.get(*o).copied();
            OrganisationAsf { option: o, configured, stored, mode: stored.unwrap_or(configured) }
        })
        .collect())
}

/// Sets organisation-wide ASF modes in the store, over the configuration file's: each change is
/// `(option, mode)` with mode `on`, `off`, `test`, or `default` (drop the stored mode: the configuration's
/// applies again). All or nothing: an unknown option or mode is refused by name and nothing is written.
/// Returns the stored settings as they now are.
pub fn set_organisation_asf(
    configured: &EngineConfig,
    db: &Database,
    changes: &[(String, String)],
) -> Result<crate::config::OrganisationSettings, ActionError> {
    let mut org = crate::config::OrganisationSettings::parse(db.organisation_settings()?.as_deref())
        .map_err(|e| ActionError::Invalid(e.to_string()))?;
    for (option, mode) in changes {
        let option = option.trim().to_ascii_lowercase();
        if !mailsift_engine::config::AsfConfig::OPTIONS.contains(&option.as_str()) {
            return Err(ActionError::Invalid(format!(
                "no ASF option {option:?} (the options: {})",
                mailsift_engine::config::AsfConfig::OPTIONS.join(", ")
            )));
        }
        match mode.trim().to_ascii_lowercase().as_str() {
            "default" => {
                org.asf.remove(&option);
            }
            "on" => _ = org.asf.insert(option, AsfMode::On),
            "off" => _ = org.asf.insert(option, AsfMode::Off),
            "test" => _ = org.asf.insert(option, AsfMode::Test),
            other => {
                return Err(ActionError::Invalid(format!(
                    "asf {option}: {other:?} is not a mode (on, off, test, or default for the configuration's)"
                )))
            }
        }
    }
    // Checked as the gateway will fold it, before anything is written.
    let mut check = configured.clone();
    org.fold(&mut check).map_err(|e| ActionError::Invalid(e.to_string()))?;
    Engine::new(check).map_err(|e| ActionError::Invalid(format!("the engine with these ASF modes: {e}")))?;
    let json = serde_json::to_string(&org).map_err(|e| ActionError::Invalid(e.to_string()))?;
    db.organisation_put(&json, mailsift_engine::unix_now())?;
    Ok(org)
}

// ---------------------------------------------------------------------------------------------------------
// What diagnosis reads from the store

/// The envelope a message-log row records.
pub fn envelope_of_log(e: &LogEntry) -> Envelope {
    Envelope {
        client_ip: e.client_ip.as_deref().and_then(|i| i.parse().ok()),
        helo: e.helo.clone(),
        mail_from: e.mail_from.clone(),
        rcpt_to: e.recipients.clone(),
        direction: if e.direction == "outbound" {
            mailsift_engine::Direction::Outbound
        } else {
            mailsift_engine::Direction::Inbound
        },
        ..Envelope::default()
    }
}

/// A message-log row without a copy: the headers the log keeps, as a message.
pub fn rebuilt_from_log(e: &LogEntry) -> Vec<u8> {
    let mut m = String::new();
    for (name, value) in [("From", &e.from_header), ("Subject", &e.subject), ("Message-ID", &e.message_id)] {
        if let Some(v) = value {
            m.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    m.push_str("\r\n");
    m.into_bytes()
}

/// The message log since `since`, with the raw message where the quarantine still holds a copy: what a fix
/// is replayed against.
pub fn past_messages(db: &Database, since: i64) -> Result<Vec<PastMessage>, StoreError> {
    let rows = db.log_search(&LogQuery { since: Some(since), limit: 100_000, ..Default::default() })?;
    let held = db.quarantine_list(&QuarantineQuery {
        since: Some(since),
        include_released: true,
        limit: 100_000,
        ..Default::default()
    })?;
    let by_reference: BTreeMap<&str, i64> = held.iter().map(|q| (q.reference_id.as_str(), q.id)).collect();
    let mut out = Vec::with_capacity(rows.len());
    for e in rows {
        let raw = match by_reference.get(e.reference_id.as_str()) {
            Some(id) => db.quarantine_raw(*id)?,
            None => None,
        };
        out.push(PastMessage {
            reference_id: e.reference_id,
            time: e.time,
            client_ip: e.client_ip.as_deref().and_then(|i| i.parse().ok()),
            helo: e.helo,
            mail_from: e.mail_from,
            recipients: e.recipients,
            from_header: e.from_header,
            subject: e.subject,
            score: e.score,
            symbols: e.symbols,
            action: e.action,
            raw,
        });
    }
    Ok(out)
}
