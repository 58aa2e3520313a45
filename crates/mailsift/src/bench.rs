//! `mailsift bench DIR`: scan throughput over a corpus. Files are read into memory first so the figure is
//! the engine's (parse, checks, verdict), not the disk's.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mailsift_engine::{Action, Engine, Envelope, Evidence};

use crate::inputs::message_files;

#[derive(Args)]
pub struct BenchArgs {
    /// Directories (or files) of messages.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Scanning threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Scan the corpus this many times (a longer run gives a steadier figure).
    #[arg(long, default_value_t = 1)]
    passes: usize,
}

pub fn run(engine: &Engine, args: &BenchArgs) -> Result<()> {
    let mut files = Vec::new();
    for p in &args.paths {
        files.extend(message_files(p)?);
    }
    let mut corpus = Vec::with_capacity(files.len());
    for f in &files {
        match std::fs::read(f) {
            Ok(b) => corpus.push(b),
            Err(e) => eprintln!("mailsift: {}: cannot read: {e}", f.display()),
        }
    }
    anyhow::ensure!(!corpus.is_empty(), "no messages to scan under the given paths");
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    let total = corpus.len() * args.passes.max(1);
    let threads = args.threads.max(1);
    let bar = ProgressBar::new(total as u64);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} messages {per_sec} eta {eta}").expect("template"));
    let next = AtomicUsize::new(0);
    let counts: [AtomicUsize; 4] = Default::default();
    let envelope = Envelope::default();
    let evidence = Evidence::default();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let v = engine.scan(&corpus[i % corpus.len()], &envelope, &evidence);
                let slot = match v.action {
                    Action::Deliver => 0,
                    Action::Tag => 1,
                    Action::Quarantine => 2,
                    Action::Reject => 3,
                };
                counts[slot].fetch_add(1, Ordering::Relaxed);
                if i.is_multiple_of(64) {
                    bar.set_position(i as u64);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let mb = (bytes * args.passes.max(1)) as f64 / 1e6;
    println!(
        "scanned {total} messages ({mb:.1} MB) in {secs:.2} s on {threads} threads: {:.0} messages/s, {:.1} MB/s",
        total as f64 / secs,
        mb / secs
    );
    println!(
        "classifiers: {}",
        if engine.model().is_some() {
            "on (trained model from the data directory)"
        } else {
            "off (no trained model in the data directory)"
        }
    );
    let c: Vec<usize> = counts.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    println!("actions: deliver {} tag {} quarantine {} reject {}", c[0], c[1], c[2], c[3]);
    Ok(())
}
