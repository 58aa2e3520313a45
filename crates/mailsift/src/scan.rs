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
