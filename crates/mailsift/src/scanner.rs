//! One scan as the command line does it: gather sender evidence (when DNS is enabled), then judge.

use anyhow::{Context, Result};
use mailsift_engine::sender::SenderGatherer;
use mailsift_engine::{Engine, Envelope, Evidence, Message, Verdict};

use crate::EnvelopeArgs;

pub struct Scanner {
    pub engine: Engine,
    gatherer: Option<SenderGatherer>,
    reputation: Option<mailsift_store::SqliteReputation>,
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
        Ok(Scanner { engine, gatherer, reputation: None, runtime })
    }

    /// Consult local reputation before judging.
    pub fn with_reputation(mut self, reputation: Option<mailsift_store::SqliteReputation>) -> Scanner {
        self.reputation = reputation;
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
        if let Some(rep) = &self.reputation {
            let keys = mailsift_engine::evidence::reputation_keys(&envelope, &msg);
            match rep.lookup(&keys, mailsift_engine::unix_now()) {
                Ok(facts) => evidence.reputation = Some(facts),
                Err(e) => eprintln!("mailsift: reputation: {e}"),
            }
        }
        let verdict = self.engine.judge(&msg, &envelope, &evidence);
        (msg, envelope, verdict)
    }

    pub fn evidence(&self, raw: &[u8], envelope: &Envelope, msg: &Message<'_>) -> Evidence {
        match &self.gatherer {
            Some(g) => {
                let domains: Vec<&str> = msg.urls.iter().map(|u| u.domain.as_str()).collect();
                Evidence::from_sender(self.runtime.block_on(g.gather_with_urls(raw, envelope, &domains)))
            }
            None => Evidence::default(),
        }
    }
}
