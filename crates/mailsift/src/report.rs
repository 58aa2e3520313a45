//! `mailsift report --false-positive FILE` / `--false-negative FILE`: a user's correction.
//!
//! The message is learned on the side the user says (unlearned from the other side first when it had
//! been trained there), both engines are updated and saved, and the submission is recorded.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use mailsift_engine::classify::Side;
use mailsift_engine::Engine;
use mailsift_gateway::actions;
use mailsift_store::Learner;

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

pub fn run(config: Option<&PathBuf>, engine: Engine, data_dir: &Path, args: &ReportArgs) -> Result<()> {
    let (file, side) = match (&args.false_positive, &args.false_negative) {
        (Some(f), _) => (f, Side::Ham),
        (_, Some(f)) => (f, Side::Spam),
        _ => anyhow::bail!("give --false-positive FILE or --false-negative FILE"),
    };
    let raw = read_input(file)?;
    report_message(config, engine, data_dir, &raw, side, &file.display().to_string(), "cli", None)
}

/// The engine a report is judged with: the configuration's, with the configured and stored domains folded
/// in as the gateway has them (their sending servers make them ours for reputation).
pub fn gateway_engine(config: Option<&PathBuf>, data_dir: &Path) -> Result<Engine> {
    Ok(crate::scanner::judging(config, data_dir)?.engine()?)
}

/// Learns one message on the side a user says it is on, records the submission (under `source`, e.g. a file
/// name or "quarantine item 12"), feeds reputation, and prints what changed. The learning itself is
/// `mailsift_gateway::actions::report`, as in the running gateway; here on the data directory's store.
#[allow(clippy::too_many_arguments)]
pub fn report_message(
    config: Option<&PathBuf>,
    engine: Engine,
    data_dir: &Path,
    raw: &[u8],
    side: Side,
    source: &str,
    channel: &str,
    reporter: Option<&str>,
) -> Result<()> {
    let store = crate::config_cmd::classifier_store(config, data_dir)?;
    let at = store.describe();
    let mut learner = Learner::open(store).with_context(|| format!("{at}: cannot load the classifier store"))?;
    let engine = engine.with_model(learner.model());
    let reputation = if engine.config().reputation.enabled {
        let rep = crate::config_cmd::reputation_store(config, data_dir, engine.config().reputation.half_life_days)?;
        Some(rep)
    } else {
        None
    };
    // A reported spoof of one of our domains counts against the spoofing server, not our domain: the
    // organisation as the gateway judges for it, with the domains stored in the data directory.
    let organisation = organisation_with_stored_domains(config, &engine, data_dir)?;
    let report = actions::Report { raw, side, source, channel, reporter };
    let r = actions::report(&mut learner, &engine, reputation.as_ref(), &organisation, &report, unix_now())
        .with_context(|| format!("{source}: cannot record the report"))?;
    println!("{}; submission recorded", r.describe(&report));
    match &r.reputation {
        Some(Ok(keys)) => println!("reputation: recorded a {} report for {}", side.as_str(), keys.join(", ")),
        Some(Err(e)) => anyhow::bail!("{source}: reputation not updated: {e}"),
        None => {}
    }
    let fmt = |p: Option<f64>| p.map(|p| format!("{p:.4}")).unwrap_or_else(|| "-".into());
    if r.before.is_some() || r.after.is_some() {
        let (b, a) = (r.before.unwrap_or_default(), r.after.unwrap_or_default());
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
    config: Option<&PathBuf>,
    engine: &Engine,
    data_dir: &Path,
) -> Result<mailsift_engine::config::OrganisationConfig> {
    let stored = match crate::scanner::open_existing(config, data_dir)? {
        Some(db) => actions::stored_domains(&db)?,
        None => Vec::new(),
    };
    let mut config = engine.config().clone();
    mailsift_gateway::config::fold_domains(&mut config, &stored);
    Ok(config.organisation)
}
