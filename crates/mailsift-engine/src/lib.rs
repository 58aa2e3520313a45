//! mailsift's scanning engine: a message goes in, a verdict with its evidence comes out.
//!
//! The flow (see the README's architecture tour): `Message::parse` builds every view once; the evidence
//! stage gathers facts ([`Evidence`]: DNS and authentication from the `mailsift-evidence` crate, reputation
//! from the store, the classifiers' probabilities); the checks turn views and facts into symbols; the
//! registry weighs them; thresholds turn the score into an action. This crate is synchronous and does no
//! network or storage I/O of its own: the gateway and the store feed it facts.
//!
//! It is not the SMTP server, the web console or the database; those live in their own crates and call
//! [`Engine::scan`].

pub mod address;
pub mod catalogue;
pub mod checks;
pub mod cidr;
pub mod classify;
pub mod composites;
pub mod config;
pub mod diagnose;
pub mod envelope;
pub mod evidence;
pub mod explain;
pub mod message;
pub mod policy;
pub mod settings;
pub mod symbols;
pub mod trust;
pub mod verdict;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use config::EngineConfig;
pub use envelope::{Direction, Envelope};
pub use evidence::Evidence;
pub use message::Message;
pub use settings::{Settings, SettingsConfig};
pub use symbols::{Group, Registry};
pub use verdict::{Action, Verdict, VirusNote};

use checks::rules::RuleSet;
use config::AsfMode;
use symbols::{AsfEffect, Hits};
use verdict::SymbolResult;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Rule(#[from] checks::rules::RuleError),
    #[error("[weights]: {0}")]
    Weights(String),
    #[error("[thresholds]: {0}")]
    Thresholds(String),
    #[error("symbol registry: {0}")]
    Registry(String),
    #[error("[organisation]: {0}")]
    Organisation(String),
    #[error("[group_caps]: {0}")]
    GroupCaps(String),
    #[error("[policy]: {0}")]
    Policy(#[from] policy::PolicyError),
    #[error("[[composites]]: {0}")]
    Composites(String),
    #[error("settings {0}")]
    Settings(String),
    #[error("[classifier]: {0}")]
    Classifier(String),
}

/// The configured engine: registry, compiled rules, thresholds. Build once, share across threads.
pub struct Engine {
    config: EngineConfig,
    registry: Registry,
    rules: RuleSet,
    spoof: checks::auth::SpoofGuard,
    /// Which trace lines are facts (`[organisation] trusted_relay_networks`), for rule conditions on the
    /// connecting server and trusted hops.
    trust: trust::TrustBoundary,
    /// The policy from the configuration's `[policy]` table (empty unless one is given).
    policy: policy::Policy,
    /// The trained classifiers, shared with whoever keeps them learning (reports, auto-learn).
    model: Option<SharedModel>,
    /// The organisation's own domains as the model counts them (`classify::tokens::organisation_id` of each
    /// registrable domain of `[organisation] domains`): whether the model learned their ham decides whether
    /// it is a stranger here (`classifier.stranger_say`). Empty: each message's own recipient domain.
    home: Vec<u64>,
    /// Built-in and configured composites, evaluated after the checks and before the thresholds.
    composites: composites::Composites,
    /// The registry ids of the composites' fact symbols, resolved once.
    fact_ids: Vec<(&'static str, symbols::SymbolId)>,
    /// The engine's own settings (nothing overridden), for [`Engine::judge`].
    default_settings: Settings,
}

/// A classifier model that scans read and learning updates.
pub type SharedModel = Arc<RwLock<classify::Model>>;

impl Engine {
    pub fn new(config: EngineConfig) -> Result<Engine, EngineError> {
        let t = &config.thresholds;
        if !(t.tag <= t.quarantine && t.quarantine <= t.reject) {
            return Err(EngineError::Thresholds(format!(
                "must satisfy tag <= quarantine <= reject (got {} / {} / {})",
                t.tag, t.quarantine, t.reject
            )));
        }
        let mut registry = Registry::default();
        for table in checks::all_symbols() {
            registry.add_specs(table).map_err(EngineError::Registry)?;
        }
        registry.add_specs(policy::SYMBOLS).map_err(EngineError::Registry)?;
        checks::rules::builtin_symbols(&mut registry).map_err(EngineError::Registry)?;
        checks::reputation::register_lists(&config.dnsbl, &mut registry).map_err(EngineError::Registry)?;
        let rules = RuleSet::compile(&config.rules, &mut registry)?;
        registry.add_specs(composites::FACT_SYMBOLS).map_err(EngineError::Registry)?;
        let fact_ids =
            composites::FACT_SYMBOLS.iter().filter_map(|s| registry.id(s.name).map(|id| (s.name, id))).collect();
        // After every symbol a composite may name (rules, DNS lists, facts), before the weights so that
        // `[weights]` may set a composite's score like any symbol's.
        let composites =
            composites::Composites::compile(&config.composites, &mut registry).map_err(EngineError::Composites)?;
        for (name, w) in &config.weights {
            if !w.is_finite() {
                return Err(EngineError::Weights(format!("{name}: the weight must be a number")));
            }
            if policy::SYMBOLS.iter().any(|s| s.name == name) {
                return Err(EngineError::Weights(format!(
                    "{name}: policy symbols carry no weight; a rule's add_score is its score"
                )));
            }
            if !registry.set_weight(name, *w) {
                return Err(EngineError::Weights(format!("{name}: no such symbol (see `mailsift symbols`)")));
            }
        }
        let spoof = checks::auth::SpoofGuard::compile(&config.organisation).map_err(EngineError::Organisation)?;
        let trust = trust::TrustBoundary::new(&config.organisation).map_err(EngineError::Organisation)?;
        for (group, cap) in &config.group_caps {
            if !registry.iter().any(|d| d.group.as_str() == group) {
                return Err(EngineError::GroupCaps(format!("{group}: no such group (see `mailsift symbols`)")));
            }
            if !cap.is_finite() || *cap < 0.0 {
                return Err(EngineError::GroupCaps(format!("{group}: the cap must be a number of at least 0")));
            }
        }
        for (name, say) in
            [("day_one_say", config.classifier.day_one_say), ("stranger_say", config.classifier.stranger_say)]
        {
            if !(0.0..=1.0).contains(&say) {
                return Err(EngineError::Classifier(format!("{name} must be between 0 and 1 (got {say})")));
            }
        }
        let home = home_ids(&config.organisation.domains);
        let policy = policy::Policy::new(&config.policy)?;
        Ok(Engine {
            config,
            registry,
            rules,
            spoof,
            trust,
            policy,
            model: None,
            home,
            composites,
            fact_ids,
            default_settings: Settings::default(),
        })
    }

    /// Gives the engine a trained model to consult at scan time.
    pub fn with_model(mut self, model: SharedModel) -> Engine {
        self.model = Some(model);
        self
    }

    pub fn model(&self) -> Option<&SharedModel> {
        self.model.as_ref()
    }

    /// Judges as the installation of these domains would (`classifier.stranger_say` asks whether the model
    /// learned their ham), whatever `[organisation] domains` says: for `mailsift eval`, which judges another
    /// organisation's mail than the configuration's.
    pub fn with_home(mut self, domains: &[String]) -> Engine {
        self.home = home_ids(domains);
        self
    }

    /// The classifiers' answers about a parsed message: the local model's once it has learned enough, until
    /// then the shipped day-one model's with its smaller say (`classify::day_one`); `None` when the
    /// classifiers are off, no local model is attached (an engine used without a learning store: library
    /// use, heuristics-only scans) or neither answers.
    pub fn classify(&self, msg: &Message<'_>) -> Option<evidence::ClassifierScores> {
        self.classify_for(msg, &[])
    }

    /// As [`Engine::classify`], for mail addressed to `organisations` (registrable domains: the SMTP
    /// envelope's, which the sender cannot make up) when `[organisation] domains` does not say whose the
    /// installation is; with neither, the message's own recipient domain. Whether the model learned that
    /// organisation's ham decides `classifier.stranger_say`.
    pub fn classify_for(&self, msg: &Message<'_>, organisations: &[String]) -> Option<evidence::ClassifierScores> {
        let config = &self.config.classifier;
        let model = self.model.as_ref().filter(|_| config.enabled)?;
        let mut features = classify::portable_features(msg);
        let local = model.read().unwrap_or_else(|e| e.into_inner());
        let scores = if local.is_ready(config) {
            // The local head's grams only for mail it may judge.
            if local.knows_organisation(&features) {
                features.local = classify::tokens::local_features(msg.raw_headers());
            }
            let mut scores = local.classify(&features, config);
            // A model that never learned this organisation's own ham was trained on someone else's mail.
            // Whose mail: the installation's domains, else the envelope's (a name without a dot, such as
            // `localhost`, says nothing), else the message's own recipient.
            let given = if self.home.is_empty() { home_ids(organisations) } else { Vec::new() };
            let home_known = match (self.home.is_empty(), given.is_empty()) {
                (false, _) => self.home.iter().any(|&org| local.learned_ham_of(org)),
                (true, false) => given.into_iter().any(|org| local.learned_ham_of(org)),
                (true, true) => features.org.is_some_and(|org| local.learned_ham_of(org)),
            };
            if !home_known && config.stranger_say < 1.0 {
                scores.stranger_say = Some(config.stranger_say);
            }
            scores
        } else if config.day_one_say > 0.0 {
            drop(local);
            let scores = classify::day_one::model()?.classify(&features, config);
            evidence::ClassifierScores { day_one_say: Some(config.day_one_say), ..scores }
        } else {
            return None;
        };
        // Silent (a message with no features): nothing to report.
        (scores.bayes.is_some() || scores.linear.is_some()).then_some(scores)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The composites this engine evaluates (built-in and configured, switched off ones included).
    pub fn composites(&self) -> &composites::Composites {
        &self.composites
    }

    /// The trust boundary of this configuration: give its facts to [`policy::Policy::rules_with_connection`]
    /// wherever rules are evaluated outside a scan (diagnosis, `rules test`), so they judge as the scan does.
    pub fn trust(&self) -> &trust::TrustBoundary {
        &self.trust
    }

    /// The policy compiled from the configuration's `[policy]` table, the one [`Engine::judge`] applies.
    pub fn policy(&self) -> &policy::Policy {
        &self.policy
    }

    /// Parses the raw bytes (once) with the configured limits.
    pub fn parse<'a>(&self, raw: &'a [u8]) -> Message<'a> {
        Message::parse(raw, self.config.scan.max_scan_bytes)
    }

    /// Parses and judges a message.
    pub fn scan(&self, raw: &[u8], envelope: &Envelope, evidence: &Evidence) -> Verdict {
        let msg = self.parse(raw);
        self.judge(&msg, envelope, evidence)
    }

    /// Judges an already parsed message, with the policy of the configuration's `[policy]` table.
    pub fn judge(&self, msg: &Message<'_>, envelope: &Envelope, evidence: &Evidence) -> Verdict {
        self.judge_with_policy(msg, envelope, evidence, &self.policy)
    }

    /// Judges an already parsed message with the given policy instead of the configuration's (the store's
    /// rules and lists, compiled once with [`policy::Policy::new`] and shared).
    ///
    /// The checks run and score as always; then the filter rules (once), then each envelope recipient's
    /// allowed/blocked senders, then the thresholds. `action` is for the whole envelope: when recipients'
    /// lists lead to different outcomes it is the strictest one, and `recipient_actions` gives each.
    pub fn judge_with_policy(
        &self,
        msg: &Message<'_>,
        envelope: &Envelope,
        evidence: &Evidence,
        policy: &policy::Policy,
    ) -> Verdict {
        self.judge_with_settings(msg, envelope, evidence, policy, &self.default_settings)
    }

    /// As [`Engine::judge_with_policy`], with per-message settings (a domain's thresholds, ASF options,
    /// weights, composites; see [`Engine::settings`]) instead of the engine's own. The verdict is the one an
    /// engine built from this configuration with those overrides applied would give.
    pub fn judge_with_settings(
        &self,
        msg: &Message<'_>,
        envelope: &Envelope,
        evidence: &Evidence,
        policy: &policy::Policy,
        settings: &Settings,
    ) -> Verdict {
        let config = settings.config(&self.config);
        let now = unix_now();
        // Classifier probabilities are evidence; compute them here unless the caller brought them.
        let with_scores;
        // Whose mail it is: the recipients' organisation inbound, the sender's outbound (only read when the
        // configuration does not name the installation's domains).
        let organisations: Vec<String> = if !self.home.is_empty() || evidence.classifier.is_some() {
            Vec::new()
        } else if envelope.is_outbound() {
            envelope.mail_from.iter().filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_string())).collect()
        } else {
            envelope
                .rcpt_to
                .iter()
                .filter_map(|a| a.rsplit_once('@').map(|(_, d)| d.trim_end_matches('>').to_string()))
                .collect()
        };
        let evidence = match evidence.classifier.is_none().then(|| self.classify_for(msg, &organisations)) {
            Some(Some(scores)) => {
                with_scores = Evidence { classifier: Some(scores), ..evidence.clone() };
                &with_scores
            }
            _ => evidence,
        };
        let ctx = checks::Ctx { envelope, message: msg, evidence, config, now, spoof: &self.spoof };
        let mut hits = Hits::new(&self.registry);
        checks::run(&ctx, &mut hits);
        self.rules.check(&ctx, &mut hits);
        for (name, detail) in composites::facts(msg, envelope, evidence) {
            if let Some(&(_, id)) = self.fact_ids.iter().find(|(n, _)| *n == name) {
                hits.hit_id(id, detail);
            }
        }
        let mut verdict = self.weigh(hits, evidence.classifier.is_some(), settings);
        let mut dmarc_policy = None;
        if let Some(facts) = &evidence.sender {
            verdict.engines.insert(0, "sender");
            verdict.authentication_results = facts.authentication_results.clone();
            if self.config.auth.dmarc == config::DmarcEnforcement::Honor {
                dmarc_policy = verdict.symbols.iter().find_map(|s| match s.name.as_str() {
                    "DMARC_POLICY_REJECT" => Some((Action::Reject, format!("DMARC policy p=reject of {}", s.detail))),
                    "DMARC_POLICY_QUARANTINE" => {
                        Some((Action::Quarantine, format!("DMARC policy p=quarantine of {}", s.detail)))
                    }
                    _ => None,
                });
            }
            let failed = facts.temporary_failures();
            if self.config.dns.defer_on_temperror && !failed.is_empty() {
                verdict.defer = Some(format!("sender checks incomplete ({}): try again later", failed.join(", ")));
            }
        }
        if verdict.authentication_results.is_none() {
            // Always our own results, even with nothing checked (RFC 8601 §2.2 "none"): with our forged-id
            // copies removed, a downstream filter never sees an unopposed claim in our name.
            verdict.authentication_results = Some(format!("{}; none", self.config.dns.hostname));
        }
        self.apply_policy(&mut verdict, policy, envelope, msg, evidence, now, dmarc_policy);
        verdict
    }

    /// The policy stage on a weighed verdict: the rules' scores and decisions, each recipient's lists, then
    /// the thresholds (and the From: domain's DMARC policy when honoured).
    #[allow(clippy::too_many_arguments)]
    fn apply_policy(
        &self,
        verdict: &mut Verdict,
        policy: &policy::Policy,
        envelope: &Envelope,
        msg: &Message<'_>,
        evidence: &Evidence,
        now: i64,
        dmarc_policy: Option<(Action, String)>,
    ) {
        use policy::PolicyAction;
        use verdict::PolicyMatch;
        if policy.is_empty() {
            // No rules, no lists: the score (and the DMARC policy when honoured) decides, as before policy.
            let by_score = with_dmarc_policy((verdict.action, verdict.scl, None), dmarc_policy);
            (verdict.action, verdict.scl, verdict.decided_by) = by_score;
            return;
        }
        let symbols = std::mem::take(&mut verdict.symbols);
        let input =
            policy::PolicyInput { envelope, message: msg, evidence, symbols: &symbols, score: verdict.score, now };
        let mut rules = policy.rules_with_connection(&input, &self.trust.facts(envelope, evidence, msg));
        let mut added = Vec::with_capacity(rules.matched.len());
        verdict.policy_matches.reserve(rules.matched.len());
        for m in std::mem::take(&mut rules.matched) {
            added.push(policy::symbol("POLICY_RULE", m.add_score, m.explanation));
            verdict.policy_matches.push(PolicyMatch::Rule { name: m.rule, index: m.index });
        }
        if rules.add_score != 0.0 {
            // The administrator's own scores are never capped: they said so explicitly.
            verdict.score = ((verdict.score + rules.add_score) * 100.0).round() / 100.0;
            (verdict.action, verdict.scl) =
                Verdict::decide(&verdict.thresholds, verdict.score, verdict.high_confidence);
        }
        // What the score decides for a recipient that policy leaves to it.
        let mut by_score = with_dmarc_policy((verdict.action, verdict.scl, None), dmarc_policy);
        if let Some(rule) = &rules.tag {
            if by_score.0 < Action::Tag {
                by_score = (Action::Tag, by_score.1.max(5), Some(format!("rule {rule:?}")));
            }
        }
        // Lists are per recipient; rules and the score are the same for all, so one pass stands for all when
        // no list applies.
        let mut recipients: Vec<Option<String>> = Vec::new();
        if rules.decision.is_none() && envelope.direction == Direction::Inbound && policy.entry_count() > 0 {
            for r in &envelope.rcpt_to {
                let r = r.trim().trim_matches(['<', '>']).to_lowercase();
                if !recipients.iter().any(|x| x.as_deref() == Some(r.as_str())) {
                    recipients.push(Some(r));
                }
            }
        }
        if recipients.is_empty() {
            recipients.push(None);
        }
        let mut outcomes = Vec::new();
        for r in &recipients {
            let list = if rules.decision.is_none() { policy.lists(&input, r.as_deref()) } else { Default::default() };
            for (entry, why) in &list.passed_over {
                let (name, detail) = match why {
                    policy::PassedOver::Spoof(d) => ("POLICY_ALLOW_REFUSED_SPOOF", d),
                    policy::PassedOver::Dmarc(d) => ("POLICY_ALLOW_REFUSED_DMARC", d),
                    policy::PassedOver::ConditionUnmet(d) => ("POLICY_ALLOW_CONDITION_UNMET", d),
                };
                push_entry(verdict, &mut added, name, entry, Some(detail), false);
            }
            if let (Some(d), Some(entry)) = (list.decision, &list.entry) {
                let name = match d {
                    policy::ListDecision::Allow => "POLICY_ALLOWED_SENDER",
                    policy::ListDecision::Block(_) => "POLICY_BLOCKED_SENDER",
                };
                push_entry(verdict, &mut added, name, entry, None, true);
            }
            let (action, decided_by) = policy::decision_of(&rules, &list);
            let outcome = match action {
                Some(PolicyAction::Allow) => (Action::Deliver, -1, decided_by),
                Some(PolicyAction::Quarantine) => (Action::Quarantine, verdict.scl.max(7), decided_by),
                Some(PolicyAction::Reject) => (Action::Reject, verdict.scl.max(8), decided_by),
                None => by_score.clone(),
            };
            outcomes.push(outcome);
        }
        let strictest = outcomes
            .iter()
            .enumerate()
            .max_by(|(i, a), (j, b)| a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(j.cmp(i)))
            .map(|(i, _)| i)
            .unwrap_or(0);
        if outcomes.iter().any(|o| *o != outcomes[0]) {
            verdict.recipient_actions = recipients
                .iter()
                .zip(&outcomes)
                .map(|(r, o)| verdict::RecipientAction {
                    recipient: r.clone().unwrap_or_default(),
                    action: o.0,
                    scl: o.1,
                    decided_by: o.2.clone(),
                })
                .collect();
        }
        (verdict.action, verdict.scl, verdict.decided_by) = outcomes.swap_remove(strictest);
        verdict.policy_effects = rules.effects;
        verdict.symbols = symbols;
        if !added.is_empty() {
            verdict.symbols.append(&mut added);
            verdict.symbols.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()).then_with(|| a.name.cmp(&b.name)));
        }
        if !policy.is_empty() {
            verdict.engines.push("policy");
        }
    }

    /// The verdict at connect/HELO/MAIL time, before any data: connection practices and DNS lists only.
    /// The gateway refuses at the door (550) when `reject` is set, so such mail never costs a content scan.
    pub fn judge_connection(&self, envelope: &Envelope, evidence: &Evidence) -> ConnectionVerdict {
        let empty = Message::parse(b"", 0);
        let now = 0;
        let ctx = checks::Ctx { envelope, message: &empty, evidence, config: &self.config, now, spoof: &self.spoof };
        let mut hits = Hits::new(&self.registry);
        checks::connection::check(&ctx, &mut hits);
        checks::reputation::check(&ctx, &mut hits);
        let verdict = self.weigh(hits, false, &self.default_settings);
        let c = &self.config.connection;
        let door_list = evidence.sender.as_ref().and_then(|f| {
            f.dns_lists.iter().find(|h| self.config.dnsbl.iter().any(|l| l.zone == h.zone && l.reject_at_door))
        });
        let reason = if let (true, Some(h)) = (c.reject_at_door, door_list) {
            Some(format!("{} is listed in {}", h.queried, h.zone))
        } else if c.reject_score > 0.0 && verdict.score >= c.reject_score {
            let names: Vec<&str> = verdict.symbols.iter().take(3).map(|s| s.name.as_str()).collect();
            Some(format!("sender reputation too poor ({})", names.join(", ")))
        } else {
            None
        };
        ConnectionVerdict {
            reject: reason.is_some(),
            reason,
            id: verdict.id.clone(),
            score: verdict.score,
            symbols: verdict.symbols,
        }
    }

    /// Weights the hits under `settings`, applies the composites, caps the groups and decides by the
    /// thresholds.
    fn weigh(&self, hits: Hits<'_>, classifier_ran: bool, settings: &Settings) -> Verdict {
        let config = settings.config(&self.config);
        let mut symbols = Vec::new();
        for h in hits.into_vec() {
            let def = self.registry.get(h.id);
            let (mut weight, mut asf_mode) = (settings.weight(def), None);
            if def.asf.is_some() {
                match checks::asf::mode_of(&def.name, &config.asf) {
                    AsfMode::Off => continue,
                    AsfMode::Test => {
                        weight = 0.0;
                        asf_mode = Some("test");
                    }
                    AsfMode::On => asf_mode = Some("on"),
                }
            }
            symbols.push(SymbolResult {
                name: def.name.clone(),
                group: def.group,
                // Rounded as scores are shown: a graded symbol's share of its weight.
                score: if h.factor == 1.0 { weight } else { (weight * h.factor * 100.0).round() / 100.0 + 0.0 },
                detail: h.detail,
                asf_mode,
                asf_effect: def.asf,
            });
        }
        // Composites see the symbols as weighed, before caps and thresholds. A symbol they take the weight
        // of loses what goes with its weight (an ASF option's high confidence).
        let neutralised = self.composites.apply(
            &mut symbols,
            |c| settings.composite_enabled(c),
            |name| self.registry.by_name(name).map(|d| settings.weight(d)).unwrap_or(0.0),
        );
        let high_confidence = symbols.iter().any(|s| {
            s.asf_mode == Some("on")
                && s.asf_effect == Some(AsfEffect::HighConfidenceSpam)
                && !neutralised.contains(&s.name)
        });
        let mut score: f64 = symbols.iter().map(|s| s.score).sum();
        symbols.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()).then_with(|| a.name.cmp(&b.name)));
        // Group caps: one family of evidence may not decide alone. The symbols keep their own scores (the
        // explanation shows them); the total counts each capped group at most at its cap.
        let mut capped = Vec::new();
        for (group, cap) in &config.group_caps {
            let total: f64 = symbols.iter().filter(|s| s.group.as_str() == group).map(|s| s.score).sum();
            if total > *cap {
                score -= total - cap;
                capped.push(verdict::GroupCap { group: group.clone(), total, cap: *cap });
            }
        }
        // `+ 0.0` turns a negative zero (a sum of nothing, or of neutralised negative weights) into 0: "-0.00"
        // in a verdict would read as evidence of ham.
        let score = (score * 100.0).round() / 100.0 + 0.0;
        let thresholds = settings.thresholds(&self.config);
        let (action, scl) = Verdict::decide(thresholds, score, high_confidence);
        let mut engines = vec!["heuristics"];
        if symbols.iter().any(|s| s.asf_mode.is_some()) || asf_enabled(&config.asf) {
            engines.push("asf");
        }
        if classifier_ran {
            engines.push("classifier");
        }
        Verdict {
            id: new_reference_id(),
            score,
            thresholds: thresholds.clone(),
            scl,
            action,
            high_confidence,
            symbols,
            engines,
            decided_by: None,
            authentication_results: None,
            defer: None,
            capped,
            policy_effects: Default::default(),
            recipient_actions: Vec::new(),
            policy_matches: Vec::new(),
            virus: None,
        }
    }
}

/// The connection-stage decision.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionVerdict {
    pub reject: bool,
    /// Why, in a few words for the 550 text.
    pub reason: Option<String>,
    /// Reference id for the message log and the 550 text.
    pub id: String,
    pub score: f64,
    pub symbols: Vec<verdict::SymbolResult>,
}

/// The From: domain's DMARC policy, when honoured, raises the score's outcome and says so.
fn with_dmarc_policy(
    mut outcome: (Action, i8, Option<String>),
    dmarc_policy: Option<(Action, String)>,
) -> (Action, i8, Option<String>) {
    if let Some((action, reason)) = dmarc_policy {
        if outcome.0 < action {
            outcome.0 = action;
            outcome.1 = outcome.1.max(if action == Action::Reject { 8 } else { 7 });
        }
        outcome.2 = Some(format!("{reason} (auth.dmarc = \"honor\")"));
    }
    outcome
}

/// Reports a list entry once per verdict, however many recipients it matched for.
fn push_entry(
    verdict: &mut Verdict,
    added: &mut Vec<verdict::SymbolResult>,
    name: &'static str,
    entry: &verdict::EntryRef,
    why: Option<&String>,
    honoured: bool,
) {
    let m = verdict::PolicyMatch::Entry { entry: entry.clone(), honoured };
    if verdict.policy_matches.contains(&m) {
        return;
    }
    verdict.policy_matches.push(m);
    let detail = match why {
        Some(w) => format!("{}: {w}", entry.describe()),
        None => entry.describe(),
    };
    added.push(policy::symbol(name, 0.0, detail));
}

fn asf_enabled(c: &config::AsfConfig) -> bool {
    checks::asf::SYMBOLS.iter().any(|s| checks::asf::mode_of(s.name, c) != AsfMode::Off)
}

/// The current time as Unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// A short unique reference: milliseconds since the epoch and a per-process counter, in base 36.
pub fn new_reference_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let salt = (std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 44;
    format!("{}{:0>7}", base36(ms), base36(((salt << 24) | (n & 0xFF_FFFF)) & 0x00FF_FFFF_FFFF)).to_uppercase()
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// The model's ids of the registrable domains of `domains` (see `Engine::home`).
fn home_ids(domains: &[String]) -> Vec<u64> {
    let mut ids: Vec<u64> = domains
        .iter()
        .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| d.contains('.'))
        .map(|d| classify::tokens::organisation_id(&message::urls::registrable_domain(&d)))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
