//! `mailsift reports`: the submission report — how many false-positive and false-negative reports came in over
//! a period, by channel (command line, quarantine release, email), by what they did to the classifiers, by
//! sender domain and by reporting user.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use mailsift_engine::classify::Side;
use mailsift_store::{Submission, TokenStore};

#[derive(Args)]
pub struct ReportsArgs {
    /// The period: `30d`, `12h`, or Unix seconds (default: 30 days).
    #[arg(long, default_value = "30d")]
    since: String,
    /// How many sender domains and users to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[arg(long)]
    json: bool,
}

fn outcome(s: &Submission) -> &'static str {
    match s.previous_side {
        None => "learned",
        Some(p) if p == s.correct_side => "already known",
        Some(_) => "corrected (unlearned and relearned)",
    }
}

fn kind(s: &Submission) -> &'static str {
    match s.correct_side {
        Side::Ham => "false positive (good mail flagged)",
        Side::Spam => "false negative (spam let through)",
    }
}

fn count<'a>(items: impl Iterator<Item = &'a str>) -> Vec<(String, usize)> {
    let mut m: BTreeMap<&str, usize> = BTreeMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = m.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

pub fn run(config: Option<&PathBuf>, data_dir: &Path, args: &ReportsArgs) -> Result<()> {
    let shared = crate::config_cmd::load(config.map(PathBuf::as_path))?.store.postgres()?.is_some();
    let file = data_dir.join(mailsift_store::sqlite::FILE_NAME);
    if !shared && !file.exists() {
        bail!("{}: no classifier store, so no reports yet", file.display());
    }
    let store = crate::config_cmd::classifier_store(config, data_dir)?;
    let now = mailsift_engine::unix_now();
    let since = crate::log::parse_when(&args.since, now)?;
    let subs: Vec<Submission> = store.submissions()?.into_iter().filter(|s| s.at >= since).collect();
    let sections = [
        ("by type", count(subs.iter().map(kind))),
        ("by channel", count(subs.iter().map(|s| s.channel.as_str()))),
        ("by outcome", count(subs.iter().map(outcome))),
        ("by sender domain", count(subs.iter().map(|s| s.sender_domain.as_deref().unwrap_or("(unknown)")))),
        ("by user", count(subs.iter().map(|s| s.reporter.as_deref().unwrap_or("(administrator)")))),
    ];
    if args.json {
        let mut obj = serde_json::Map::new();
        obj.insert("since".into(), since.into());
        obj.insert("total".into(), subs.len().into());
        for (name, rows) in &sections {
            let m: serde_json::Map<String, serde_json::Value> =
                rows.iter().map(|(k, n)| (k.clone(), (*n).into())).collect();
            obj.insert(name.trim_start_matches("by ").replace(' ', "_"), m.into());
        }
        println!("{}", serde_json::Value::Object(obj));
        return Ok(());
    }
    println!("{} report(s) since {}", subs.len(), mailsift_gateway::text::rfc5322_date(since));
    for (name, rows) in &sections {
        println!("\n{name}:");
        for (k, n) in rows.iter().take(if name.starts_with("by sender") || name.starts_with("by user") {
            args.top
        } else {
            usize::MAX
        }) {
            println!("  {n:>6}  {k}");
        }
    }
    Ok(())
}
