//! `mailsift report --false-positive FILE` / `--false-negative FILE`: a user's correction.
//!
//! The message is learned on the side the user says (unlearned from the other side first when it had
//! been trained there), both engines are updated and saved, and the submission is recorded.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use mailsift_engine::classify::{LearnOutcome, Side};
use mailsift_engine::Engine;
use mailsift_store::{Learner, SqliteStore};

use crate::scan::read_input;
use mailsift_engine::unix_now;

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct ReportArgs {
    /// A good message that was judged spam: it is learned as ham.
    #[arg(long, value_name = "FILE")]
    false_positive: Option<PathBuf>,
    /// A spam message that got through: it is learned as spam.
    #[arg(long, value_name = "FILE")]
    false_negative: Option<PathBuf>,
}

pub fn run(engine: Engine, data_dir: &Path, args: &ReportArgs) -> Result<()> {
    let (file, side) = match (&args.false_positive, &args.false_negative) {
        (Some(f), _) => (f, Side::Ham),
        (_, Some(f)) => (f, Side::Spam),
        _ => anyhow::bail!("give --false-positive FILE or --false-negative FILE"),
    };
    let raw = read_input(file)?;
    report_message(engine, data_dir, &raw, side, &file.display().to_string(), "cli", None)
}

/// The engine a report is judged with: the configuration's, with the configured and stored domains folded
/// in as the gateway has them (their sending servers make them ours for reputation).
pub fn gateway_engine(config: Option<&PathBuf>, data_dir: &Path) -> Result<Engine> {
    crate::scanner::GatewayEngine::load(config, data_dir)?.engine_for("")
}

/// Learns one message on the side a user says it is on, records the submission (under `source`, e.g. a file
/// name or "quarantine item 12"), feeds reputation, and prints what changed.
pub fn report_message(
    engine: Engine,
    data_dir: &Path,
    raw: &[u8],
    side: Side,
    source: &str,
    channel: &str,
    reporter: Option<&str>,
) -> Result<()> {
    let store = SqliteStore::open_dir(data_dir)?;
    let mut learner =
        Learner::open(store).with_context(|| format!("{}: cannot load the classifier store", data_dir.display()))?;
    let engine = engine.with_model(learner.model());
    let msg = engine.parse(raw);
    let before = engine.classify(&msg);
    let (outcome, previous) = learner
        .report_via(&msg, side, source, channel, reporter, unix_now())
        .with_context(|| format!("{source}: cannot record the report"))?;
    let after = engine.classify(&msg);
    let what = match (outcome, previous) {
        (LearnOutcome::AlreadyKnown, _) => format!("was already learned as {}", side.as_str()),
        (LearnOutcome::Relearned, Some(p)) => {
            format!("unlearned as {}, learned as {}", p.as_str(), side.as_str())
        }
        _ => format!("learned as {}", side.as_str()),
    };
    println!("{source}: {what}; submission recorded");
    if engine.config().reputation.enabled {
        // The sender's reputation learns from the report too (identities from the message's trace headers).
        // A reported spoof of one of our domains counts against the spoofing server, not our domain.
        let org = organisation_with_stored_domains(&engine, data_dir)?;
        let mut rep = mailsift_store::SqliteReputation::open_dir(data_dir, engine.config().reputation.half_life_days)?;
        let keys = rep.record_report(&msg, side, &org, unix_now())?;
        println!("reputation: recorded a {} report for {}", side.as_str(), keys.join(", "));
    }
    let fmt = |p: Option<f64>| p.map(|p| format!("{p:.4}")).unwrap_or_else(|| "-".into());
    if before.is_some() || after.is_some() {
        let (b, a) = (before.unwrap_or_default(), after.unwrap_or_default());
        println!(
            "spam probability: bayes {} -> {}, linear {} -> {}",
            fmt(b.bayes),
            fmt(a.bayes),
            fmt(b.linear),
            fmt(a.linear)
        );
    } else {
        println!("(the classifiers stay silent until they have learned enough ham and spam)");
    }
    Ok(())
}

/// The organisation as the gateway judges for it: `engine`'s (the configuration's, with its configured
/// domains when the caller folded them in) plus the domains stored in the data directory, whose sending
/// servers make them protected.
fn organisation_with_stored_domains(
    engine: &Engine,
    data_dir: &Path,
) -> Result<mailsift_engine::config::OrganisationConfig> {
    let stored = crate::scanner::GatewayEngine::load(None, data_dir)?.stored;
    let mut config = engine.config().clone();
    mailsift_smtp::config::fold_domains(&mut config, &stored);
    Ok(config.organisation)
}
