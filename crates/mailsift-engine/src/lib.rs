//! mailsift's scanning engine: a message goes in, a verdict with its evidence comes out.
//!
//! The flow (see the README's architecture tour): `Message::parse` builds every view once; the evidence
//! stage (later: DNS, authentication, reputation, classifiers) gathers facts; the checks turn views and facts
//! into symbols; the registry weighs them; thresholds turn the score into an action. This crate does no
//! network or storage I/O of its own: the gateway and the store feed it facts.
//!
//! It is not the SMTP server, the web console or the database; those live in their own crates and call
//! [`Engine::scan`].

pub mod checks;
pub mod cidr;
pub mod classify;
pub mod config;
pub mod envelope;
pub mod evidence;
pub mod explain;
pub mod message;
pub mod policy;
pub mod sender;
pub mod spf;
pub mod symbols;
pub mod verdict;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub use config::EngineConfig;
pub use envelope::{Direction, Envelope};
pub use evidence::Evidence;
pub use message::Message;
pub use symbols::{Group, Registry};
pub use verdict::{Action, Verdict};

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
}

/// The configured engine: registry, compiled rules, thresholds. Build once, share across threads.
pub struct Engine {
    config: EngineConfig,
    registry: Registry,
    rules: RuleSet,
    spoof: checks::auth::SpoofGuard,
    /// The trained classifiers, shared with whoever keeps them learning (reports, auto-learn).
    model: Option<SharedModel>,
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
        checks::rules::builtin_symbols(&mut registry).map_err(EngineError::Registry)?;
        checks::reputation::register_lists(&config.dnsbl, &mut registry).map_err(EngineError::Registry)?;
        let rules = RuleSet::compile(&config.rules, &mut registry)?;
        for (name, w) in &config.weights {
            if !w.is_finite() {
                return Err(EngineError::Weights(format!("{name}: the weight must be a number")));
            }
            if !registry.set_weight(name, *w) {
                return Err(EngineError::Weights(format!("{name}: no such symbol (see `mailsift symbols`)")));
            }
        }
        let spoof = checks::auth::SpoofGuard::compile(&config.organisation).map_err(EngineError::Organisation)?;
        for (group, cap) in &config.group_caps {
            if !registry.iter().any(|d| d.group.as_str() == group) {
                return Err(EngineError::GroupCaps(format!("{group}: no such group (see `mailsift symbols`)")));
            }
            if !cap.is_finite() || *cap < 0.0 {
                return Err(EngineError::GroupCaps(format!("{group}: the cap must be a number of at least 0")));
            }
        }
        Ok(Engine { config, registry, rules, spoof, model: None })
    }

    /// Gives the engine a trained model to consult at scan time.
    pub fn with_model(mut self, model: SharedModel) -> Engine {
        self.model = Some(model);
        self
    }

    pub fn model(&self) -> Option<&SharedModel> {
        self.model.as_ref()
    }

    /// The classifiers' answers about a parsed message, when a model is loaded and enabled.
    pub fn classify(&self, msg: &Message<'_>) -> Option<classify::ClassifierScores> {
        let model = self.model.as_ref().filter(|_| self.config.classifier.enabled)?;
        let features = classify::features(msg);
        let model = model.read().unwrap_or_else(|e| e.into_inner());
        let scores = model.classify(&features, &self.config.classifier);
        (scores != classify::ClassifierScores::default()).then_some(scores)
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
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

    /// Judges an already parsed message.
    pub fn judge(&self, msg: &Message<'_>, envelope: &Envelope, evidence: &Evidence) -> Verdict {
        let now = unix_now();
        // Classifier probabilities are evidence; compute them here unless the caller brought them.
        let with_scores;
        let evidence = match evidence.classifier.is_none().then(|| self.classify(msg)) {
            Some(Some(scores)) => {
                with_scores = Evidence { classifier: Some(scores), ..evidence.clone() };
                &with_scores
            }
            _ => evidence,
        };
        let ctx = checks::Ctx { envelope, message: msg, evidence, config: &self.config, now, spoof: &self.spoof };
        let mut hits = Hits::new(&self.registry);
        checks::run(&ctx, &mut hits);
        self.rules.check(&ctx, &mut hits);
        let mut verdict = self.weigh(hits, evidence.classifier.is_some());
        if let Some(facts) = &evidence.sender {
            verdict.engines.insert(0, "sender");
            verdict.authentication_results = facts.authentication_results.clone();
            if self.config.auth.dmarc == config::DmarcEnforcement::Honor {
                let policy = verdict.symbols.iter().find_map(|s| match s.name.as_str() {
                    "DMARC_POLICY_REJECT" => Some((Action::Reject, "reject", s.detail.clone())),
                    "DMARC_POLICY_QUARANTINE" => Some((Action::Quarantine, "quarantine", s.detail.clone())),
                    _ => None,
                });
                if let Some((action, p, domain)) = policy {
                    if verdict.action < action {
                        verdict.action = action;
                        verdict.scl = verdict.scl.max(if action == Action::Reject { 8 } else { 7 });
                    }
                    verdict.decided_by = Some(format!("DMARC policy p={p} of {domain} (auth.dmarc = \"honor\")"));
                }
            }
            let failed = facts.temporary_failures();
            if self.config.dns.defer_on_temperror && !failed.is_empty() {
                verdict.defer = Some(format!("sender checks incomplete ({}): try again later", failed.join(", ")));
            }
        }
        verdict
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
        let verdict = self.weigh(hits, false);
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

    fn weigh(&self, hits: Hits<'_>, classifier_ran: bool) -> Verdict {
        let mut score = 0.0;
        let mut high_confidence = false;
        let mut symbols = Vec::new();
        for h in hits.into_vec() {
            let def = self.registry.get(h.id);
            let (mut weight, mut asf_mode) = (def.weight, None);
            if def.asf.is_some() {
                match checks::asf::mode_of(&def.name, &self.config.asf) {
                    AsfMode::Off => continue,
                    AsfMode::Test => {
                        weight = 0.0;
                        asf_mode = Some("test");
                    }
                    AsfMode::On => {
                        asf_mode = Some("on");
                        if def.asf == Some(AsfEffect::HighConfidenceSpam) {
                            high_confidence = true;
                        }
                    }
                }
            }
            score += weight;
            symbols.push(SymbolResult {
                name: def.name.clone(),
                group: def.group,
                score: weight,
                detail: h.detail,
                asf_mode,
                asf_effect: def.asf,
            });
        }
        symbols.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()).then_with(|| a.name.cmp(&b.name)));
        // Group caps: one family of evidence may not decide alone. The symbols keep their own scores (the
        // explanation shows them); the total counts each capped group at most at its cap.
        let mut capped = Vec::new();
        for (group, cap) in &self.config.group_caps {
            let total: f64 = symbols.iter().filter(|s| s.group.as_str() == group).map(|s| s.score).sum();
            if total > *cap {
                score -= total - cap;
                capped.push(verdict::GroupCap { group: group.clone(), total, cap: *cap });
            }
        }
        let score = (score * 100.0).round() / 100.0;
        let (action, scl) = Verdict::decide(&self.config.thresholds, score, high_confidence);
        let mut engines = vec!["heuristics"];
        if symbols.iter().any(|s| s.asf_mode.is_some()) || asf_enabled(&self.config.asf) {
            engines.push("asf");
        }
        if classifier_ran {
            engines.push("classifier");
        }
        Verdict {
            id: new_reference_id(),
            score,
            thresholds: self.config.thresholds.clone(),
            scl,
            action,
            high_confidence,
            symbols,
            engines,
            decided_by: None,
            authentication_results: None,
            defer: None,
            capped,
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
