//! `mailsift eval`: score labelled ham and spam without training, and report false positives and spam
//! caught per folder and in total, at the configured thresholds. With `--symbol-stats`, how often each
//! symbol fired on ham and on spam: the figures weights are tuned from.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use anyhow::Result;
use clap::Args;
use mailsift_engine::{Engine, Envelope, Evidence};

use crate::inputs::{in_split, message_files, Split};

#[derive(Args)]
pub struct EvalArgs {
    /// Folders or files of known-good mail.
    #[arg(long, num_args = 1..)]
    ham: Vec<PathBuf>,
    /// Folders or files of known spam.
    #[arg(long, num_args = 1..)]
    spam: Vec<PathBuf>,
    /// Only the files of one half of the standard SpamAssassin split (by the md5 in the file name).
    #[arg(long, value_enum, default_value_t = Split::All)]
    subset: Split,
    /// Print how often each symbol fired on ham and on spam.
    #[arg(long)]
    symbol_stats: bool,
    /// List up to N misjudged files of each kind.
    #[arg(long, default_value_t = 0)]
    show_errors: usize,
    /// Scanning threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

struct Outcome {
    folder: String,
    is_spam: bool,
    flagged: bool,
    score: f64,
    file: PathBuf,
    symbols: Vec<String>,
}

pub fn run(engine: &Engine, args: &EvalArgs) -> Result<()> {
    let mut jobs: Vec<(PathBuf, String, bool)> = Vec::new();
    for (paths, is_spam) in [(&args.ham, false), (&args.spam, true)] {
        for root in paths {
            let folder = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for f in message_files(root)? {
                if in_split(&f, args.subset) {
                    jobs.push((f, folder.clone(), is_spam));
                }
            }
        }
    }
    anyhow::ensure!(!jobs.is_empty(), "no messages: give --ham and --spam folders");
    let results = Mutex::new(Vec::with_capacity(jobs.len()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((file, folder, is_spam)) = jobs.get(i) else {
                    break;
                };
                let raw = match std::fs::read(file) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("mailsift: {}: cannot read: {e}", file.display());
                        continue;
                    }
                };
                let v = engine.scan(&raw, &Envelope::default(), &Evidence::default());
                let o = Outcome {
                    folder: folder.clone(),
                    is_spam: *is_spam,
                    flagged: v.action.is_spam(),
                    score: v.score,
                    file: file.clone(),
                    symbols: v.symbols.iter().filter(|s| s.score != 0.0).map(|s| s.name.clone()).collect(),
                };
                results.lock().expect("results").push(o);
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by(|a, b| a.file.cmp(&b.file));
    report(&results, args);
    Ok(())
}

fn report(results: &[Outcome], args: &EvalArgs) {
    let mut folders: BTreeMap<(bool, &str), (usize, usize)> = BTreeMap::new();
    for r in results {
        let e = folders.entry((r.is_spam, r.folder.as_str())).or_default();
        e.0 += 1;
        e.1 += r.flagged as usize;
    }
    println!("{:<14} {:<5} {:>8} {:>8} {:>9}", "folder", "label", "messages", "flagged", "rate");
    for ((is_spam, folder), (n, flagged)) in &folders {
        let label = if *is_spam { "spam" } else { "ham" };
        println!("{folder:<14} {label:<5} {n:>8} {flagged:>8} {:>8.2}%", pct(*flagged, *n));
    }
    let ham: Vec<_> = results.iter().filter(|r| !r.is_spam).collect();
    let spam: Vec<_> = results.iter().filter(|r| r.is_spam).collect();
    let fp = ham.iter().filter(|r| r.flagged).count();
    let caught = spam.iter().filter(|r| r.flagged).count();
    println!(
        "\nfalse positives: {fp} of {} ham ({:.2}%); spam caught: {caught} of {} ({:.2}%); accuracy {:.2}%",
        ham.len(),
        pct(fp, ham.len()),
        spam.len(),
        pct(caught, spam.len()),
        pct(results.len() - fp - (spam.len() - caught), results.len())
    );
    if args.show_errors > 0 {
        let mut fps: Vec<_> = ham.iter().filter(|r| r.flagged).collect();
        fps.sort_by(|a, b| b.score.total_cmp(&a.score));
        println!("\nfalse positives:");
        for r in fps.iter().take(args.show_errors) {
            println!("  {:.2} {} {}", r.score, r.file.display(), r.symbols.join(" "));
        }
        let mut fns: Vec<_> = spam.iter().filter(|r| !r.flagged).collect();
        fns.sort_by(|a, b| a.score.total_cmp(&b.score));
        println!("\nspam missed (lowest scores):");
        for r in fns.iter().take(args.show_errors) {
            println!("  {:.2} {} {}", r.score, r.file.display(), r.symbols.join(" "));
        }
    }
    if args.symbol_stats {
        let mut stats: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        for r in results {
            for s in &r.symbols {
                let e = stats.entry(s.as_str()).or_default();
                if r.is_spam {
                    e.1 += 1;
                } else {
                    e.0 += 1;
                }
            }
        }
        let mut rows: Vec<_> = stats.into_iter().collect();
        rows.sort_by(|a, b| (b.1 .0 + b.1 .1).cmp(&(a.1 .0 + a.1 .1)));
        println!("\n{:<30} {:>8} {:>8} {:>8} {:>8}", "symbol", "ham", "ham%", "spam", "spam%");
        for (name, (h, s)) in rows {
            println!("{name:<30} {h:>8} {:>7.2}% {s:>8} {:>7.2}%", pct(h, ham.len()), pct(s, spam.len()));
        }
    }
}

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}
