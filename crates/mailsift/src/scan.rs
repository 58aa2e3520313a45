//! `mailsift scan`: one verdict line per message, or the full verdict as JSON, or the message with our
//! headers added.
//!
//! Exit status: 0 when every message is ham (delivered untagged), 1 when at least one is spam (tag,
//! quarantine or reject), 2 when any input could not be read (the scan goes on past it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::scanner::Scanner;
use anyhow::{Context, Result};
use clap::Args;

use mailsift_store::{Learner, SqliteStore};

use crate::inputs::message_files;
use crate::EnvelopeArgs;

#[derive(Args)]
pub struct ScanArgs {
    /// Message files or directories; - reads one message from standard input.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Print the full verdict as JSON, one object per line.
    #[arg(long, conflicts_with = "headers")]
    json: bool,
    /// Print each message with mailsift's headers added (and any forged ones removed).
    #[arg(long)]
    headers: bool,
    #[command(flatten)]
    envelope: EnvelopeArgs,
}

pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf).context("standard input: cannot read")?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))
}

/// `mailsift scan` as dispatched from the command line: the gateway's engine and policy for the given
/// envelope (stored domains and policy included, see [`Scanner::for_gateway`]), learning from verdicts
/// when auto-learning or spamtraps are configured.
pub fn run_cli(config: Option<&PathBuf>, data_dir: &Path, args: &ScanArgs) -> Result<ExitCode> {
    let scanner = Scanner::for_gateway(config, data_dir, &args.envelope, false, None)?;
    let c = &scanner.engine.config().classifier;
    if !c.autolearn && c.spamtraps.is_empty() {
        return run(&scanner, args, None);
    }
    // Learning from verdicts: the engine scans with the learner's own model, so what is learned from one
    // message counts for the next.
    let store = mailsift_store::SqliteStore::open_dir(data_dir)?;
    let mut learner = mailsift_store::Learner::open(store)?;
    if scanner.engine.config().reputation.enabled {
        // Spamtrap hits feed the sender's reputation.
        let rep =
            crate::config_cmd::reputation_store(config, data_dir, scanner.engine.config().reputation.half_life_days)?;
        learner = learner.with_spamtrap_hook(Box::new(
            mailsift_store::ReputationHook::new(rep).with_organisation(scanner.engine.config().organisation.clone()),
        ));
    }
    drop(scanner);
    let scanner = Scanner::for_gateway(config, data_dir, &args.envelope, false, Some(learner.model()))?;
    run(&scanner, args, Some(&mut learner))
}

/// `mailsift explain`: the verdict the gateway would give, for a person (exit 1 when spam).
pub fn explain(config: Option<&PathBuf>, data_dir: &Path, file: &Path, envelope: &EnvelopeArgs) -> Result<ExitCode> {
    let scanner = Scanner::for_gateway(config, data_dir, envelope, false, None)?;
    let raw = read_input(file)?;
    let verdict = scanner.scan(&raw, envelope);
    print!("{}", mailsift_engine::explain::render(&verdict, scanner.engine.registry()));
    Ok(if verdict.action.is_spam() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Scans every message. With a learner (auto-learning or spamtraps configured), what it learns is saved
/// at the end.
pub fn run(scanner: &Scanner, args: &ScanArgs, mut learner: Option<&mut Learner<SqliteStore>>) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let (mut errors, mut spam) = (0usize, 0usize);
    for root in &args.paths {
        let files = if root.as_os_str() == "-" {
            vec![root.clone()]
        } else {
            match message_files(root) {
                Ok(f) => f,
                Err(e) => {
                    eprintln!("mailsift: {e:#}");
                    errors += 1;
                    continue;
                }
            }
        };
        for file in files {
            let raw = match read_input(&file) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("mailsift: {e:#}");
                    errors += 1;
                    continue;
                }
            };
            let (msg, envelope, verdict) = scanner.scan_parts(&raw, &args.envelope);
            if let Some(l) = learner.as_deref_mut() {
                l.after_verdict(&envelope, &msg, &verdict, &scanner.engine.config().classifier)?;
            }
            if verdict.action.is_spam() {
                spam += 1;
            }
            if args.json {
                let line = serde_json::json!({ "file": file.display().to_string(), "verdict": verdict });
                writeln!(out, "{line}")?;
            } else if args.headers {
                out.write_all(&verdict.apply_headers(&raw))?;
            } else {
                let top: Vec<String> = verdict
                    .symbols
                    .iter()
                    .filter(|s| s.score != 0.0)
                    .take(5)
                    .map(|s| format!("{}({:.1})", s.name, s.score))
                    .collect();
                writeln!(
                    out,
                    "{}\t{:.2}\t{}\t{}",
                    file.display(),
                    verdict.score,
                    verdict.action.as_str(),
                    top.join(" ")
                )?;
            }
        }
    }
    out.flush()?;
    if let Some(l) = learner {
        l.commit(mailsift_engine::unix_now())?;
    }
    Ok(if errors > 0 {
        ExitCode::from(2)
    } else if spam > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
