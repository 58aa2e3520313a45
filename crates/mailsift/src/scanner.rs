//! One scan as the command line does it: gather sender evidence (when DNS is enabled), then judge.
//!
//! Every command that judges a message (`scan`, `explain`, `rules test`, `diagnose`) builds its engine and
//! policy here, as the gateway builds them: the configuration's settings with the configured and stored
//! domains folded in (sending servers and trusted relays protect a domain, spamtraps join the classifier's,
//! the message's domain brings its thresholds and ASF options), and the configuration's `[policy]` followed
//! by the stored one. One builder (`mailsift_gateway::actions::Judging`, through [`judging`]), so that the
//! tools and the gateway cannot disagree about a message.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mailsift_engine::policy::Policy;
use mailsift_engine::{Direction, Engine, Envelope, Evidence, Message, Settings, Verdict};
use mailsift_evidence::SenderGatherer;
use mailsift_gateway::actions::Judging;
use mailsift_store::Database;

use crate::EnvelopeArgs;

pub struct Scanner {
    pub engine: Engine,
    gatherer: Option<SenderGatherer>,
    reputation: Option<mailsift_store::SqliteReputation>,
    /// The policy in force (configuration then store); without it, the engine's own (the configuration's).
    policy: Option<Policy>,
    /// The settings messages are judged with (a domain's thresholds and ASF options); the engine's own unless
    /// given.
    settings: Settings,
    runtime: tokio::runtime::Runtime,
}

impl Scanner {
    pub fn new(engine: Engine) -> Result<Scanner> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let gatherer = if engine.config().dns.enabled {
            // The resolver registers with the runtime it is built in.
            let _guard = runtime.enter();
            Some(SenderGatherer::from_config(engine.config())?)
        } else {
            None
        };
        let settings = engine.default_settings().clone();
        Ok(Scanner { engine, gatherer, reputation: None, policy: None, settings, runtime })
    }

    /// The scanner the gateway would judge with, for messages shaped by `args` (their recipient's domain,
    /// or with `outbound` their sender's): the gateway's engine with the trained model, local reputation
    /// and the policy in force. The classifier model comes from the data directory unless `model` is given
    /// (a learner's own, when scans learn).
    pub fn for_gateway(
        config: Option<&PathBuf>,
        data_dir: &Path,
        args: &EnvelopeArgs,
        outbound: bool,
        model: Option<mailsift_engine::SharedModel>,
    ) -> Result<Scanner> {
        let gateway = judging(config, data_dir)?;
        let engine = gateway.engine()?;
        let settings = gateway.settings_for(&engine, &domain_of_envelope(&args.envelope(), outbound))?;
        let engine = match model {
            Some(m) => engine.with_model(m),
            None => crate::with_trained_model(config, engine, data_dir)?,
        };
        let rep = crate::reputation::for_scans(config, &engine, data_dir)?;
        let policy = Policy::new(&gateway.policy_for(&engine))
            .context("the configuration's [policy] and the stored policy together")?;
        Ok(Scanner::new(engine)?.with_reputation(rep).with_policy(policy).with_settings(settings))
    }

    /// Consult local reputation before judging.
    pub fn with_reputation(mut self, reputation: Option<mailsift_store::SqliteReputation>) -> Scanner {
        self.reputation = reputation;
        self
    }

    /// Judge with this policy (the configuration's and the stored one) instead of the engine's own.
    pub fn with_policy(mut self, policy: Policy) -> Scanner {
        self.policy = Some(policy);
        self
    }

    /// Judge with these settings (checked against this scanner's engine) instead of the engine's own.
    pub fn with_settings(mut self, settings: Settings) -> Scanner {
        self.settings = settings;
        self
    }

    /// Parses once, fills the envelope (from the options, and from trace headers when asked), gathers sender
    /// evidence when DNS is on, and judges.
    pub fn scan(&self, raw: &[u8], args: &EnvelopeArgs) -> Verdict {
        self.scan_parts(raw, args).2
    }

    /// As `scan`, also returning the parsed message and the envelope (for learning from the verdict).
    pub fn scan_parts<'a>(&self, raw: &'a [u8], args: &EnvelopeArgs) -> (Message<'a>, Envelope, Verdict) {
        let msg = self.engine.parse(raw);
        let mut envelope = args.envelope();
        if args.from_trace {
            envelope.fill_from_trace(&msg);
        }
        let mut evidence = self.evidence(raw, &envelope, &msg);
        self.add_reputation(&envelope, &msg, &mut evidence);
        let policy = self.policy.as_ref().unwrap_or(self.engine.policy());
        let verdict = self.engine.judge_with_settings(&msg, &envelope, &evidence, policy, &self.settings);
        (msg, envelope, verdict)
    }

    /// Sender evidence as the gateway gathers it: for inbound mail, when DNS is on.
    pub fn evidence(&self, raw: &[u8], envelope: &Envelope, msg: &Message<'_>) -> Evidence {
        match (&self.gatherer, envelope.direction) {
            (Some(g), Direction::Inbound) => {
                let domains: Vec<&str> = msg.urls.iter().map(|u| u.domain.as_str()).collect();
                Evidence::from_sender(self.runtime.block_on(g.gather_with_urls(raw, envelope, &domains, None)))
            }
            _ => Evidence::default(),
        }
    }

    /// Local reputation of the sender, when a reputation store is consulted; a spoof of our own domains is
    /// looked up against its IP and network only.
    pub fn add_reputation(&self, envelope: &Envelope, msg: &Message<'_>, evidence: &mut Evidence) {
        if let Some(rep) = &self.reputation {
            let keys =
                mailsift_engine::evidence::reputation_keys_for(envelope, msg, &self.engine.config().organisation);
            match rep.lookup(&keys, mailsift_engine::unix_now()) {
                Ok(facts) => evidence.reputation = Some(facts),
                Err(e) => eprintln!("mailsift: reputation: {e}"),
            }
        }
    }
}

/// The domain whose settings judge a message, as the gateway picks it
/// ([`mailsift_gateway::judge::settings_domain`]); `outbound` judges it as our own mail whatever its envelope
/// says.
pub fn domain_of_envelope(envelope: &Envelope, outbound: bool) -> String {
    let direction = if outbound { Direction::Outbound } else { envelope.direction };
    mailsift_gateway::judge::settings_domain(envelope, direction)
}

/// The engine, domains and policy the gateway would judge with, read once from the configuration and the
/// data directory's gateway database, when there is one (never creating it). The fold itself is
/// `mailsift_gateway::actions::Judging`, the one every command and the gateway share.
pub fn judging(config: Option<&PathBuf>, data_dir: &Path) -> Result<Judging> {
    let db = open_existing(config, data_dir)?;
    judging_with_database(config, db.as_ref())
}

/// As [`judging`], with the database already open (or none). The configuration is read once, as every
/// command reads it (`config_cmd::load`): its engine settings and its [smtp] domains.
pub fn judging_with_database(config: Option<&PathBuf>, db: Option<&Database>) -> Result<Judging> {
    let loaded = crate::config_cmd::load(config.map(PathBuf::as_path))?;
    let base = loaded.engine()?;
    Judging::new(base, loaded.smtp.domains, db).context("the stored domains and policy")
}

/// The data directory's gateway database, when there is one; None otherwise (a scan never creates it).
pub fn open_existing(config: Option<&PathBuf>, data_dir: &Path) -> Result<Option<Database>> {
    crate::config_cmd::existing_database(config, data_dir)
}

#[cfg(test)]
mod tests {
    //! The builder `scan` and `explain` use (through `scan::run_cli` and `scan::explain`), on a real data
    //! directory and a loopback DNS server: it judges as `rules test` and `diagnose` do (see
    //! tests/one_truth.rs), with the stored domains and the stored policy.

    use super::*;
    use mailsift_gateway::config::DomainConfig;
    use mailsift_store::PolicyStore;
    use mailsift_testkit::dns::{TestDns, Zone};

    const SPOOF: &str = "From: Accounts <accounts@acme.test>\r\nTo: Dana <dana@acme.test>\r\n\
        Subject: Change of bank details\r\nDate: Mon, 6 Jan 2025 10:00:00 +0000\r\nMessage-ID: <b-1@acme.test>\r\n\
        \r\nDana, please pay the supplier to the new account from today.\r\n";

    fn envelope(ip: &str) -> EnvelopeArgs {
        EnvelopeArgs {
            ip: Some(ip.parse().unwrap()),
            helo: Some("host.example.test".into()),
            mail_from: Some("accounts@acme.test".into()),
            rcpt: vec!["dana@acme.test".into()],
            from_trace: false,
        }
    }

    fn has(v: &Verdict, name: &str) -> bool {
        v.symbols.iter().any(|s| s.name == name)
    }

    #[test]
    fn the_gateway_scanner_uses_the_stored_domains_and_the_stored_policy() {
        let mut z = Zone::new();
        z.txt("acme.test", "v=spf1 ip4:192.0.2.10 -all").txt("_dmarc.acme.test", "v=DMARC1; p=reject");
        let dns = TestDns::start(z);
        let dir = std::env::temp_dir().join(format!("mailsift-scanner-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[dns]\nenabled = true\nnameservers = [\"{}\"]\ntimeout_ms = 400\ndeadline_ms = 2000\n",
                dns.addr()
            ),
        )
        .unwrap();
        let data = dir.join("data");
        let spoofed = envelope("198.18.0.9");

        // Nothing stored: acme.test is nobody's to protect.
        let s = Scanner::for_gateway(Some(&config), &data, &spoofed, false, None).unwrap();
        let v = s.scan(SPOOF.as_bytes(), &spoofed);
        assert!(!has(&v, "SPOOF_OWN_DOMAIN") && has(&v, "DMARC_POLICY_REJECT"), "{:?}", v.symbols);
        let before = v.score;

        // Stored: the domain with its sending server, and a rule.
        let db = Database::open_in(&data).unwrap();
        let domain = DomainConfig {
            name: "acme.test".into(),
            sending_servers: vec!["192.0.2.10/32".into()],
            ..Default::default()
        };
        db.domain_put("acme.test", &serde_json::to_string(&domain).unwrap(), 0).unwrap();
        db.import_policy(
            "[[rules]]\nname = \"bank\"\nconditions = [{ field = \"subject\", op = \"contains\", value = \"bank details\" }]\n\
             actions = [{ action = \"add_score\", score = 1.5 }]\n",
            mailsift_store::ImportMode::Merge,
        )
        .unwrap();
        drop(db);

        let s = Scanner::for_gateway(Some(&config), &data, &spoofed, false, None).unwrap();
        let v = s.scan(SPOOF.as_bytes(), &spoofed);
        assert!(has(&v, "SPOOF_OWN_DOMAIN") && has(&v, "POLICY_RULE"), "{:?}", v.symbols);
        let spoof_weight = s.engine.registry().iter().find(|d| d.name == "SPOOF_OWN_DOMAIN").unwrap().weight;
        assert!((v.score - (before + spoof_weight + 1.5)).abs() < 0.01, "{} then {}", before, v.score);

        // From the stored sending server: not a spoof.
        let ours = envelope("192.0.2.10");
        let v = Scanner::for_gateway(Some(&config), &data, &ours, false, None).unwrap().scan(SPOOF.as_bytes(), &ours);
        assert!(!has(&v, "SPOOF_OWN_DOMAIN") && !has(&v, "SPF_FAIL"), "{:?}", v.symbols);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
