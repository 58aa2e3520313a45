//! `mailsift eval`: score labelled ham and spam without training, and report false positives and spam
//! caught per folder and in total, at the configured thresholds; then per engine (Bayes, linear,
//! heuristics, the full verdict) the false-positive rate, spam caught, accuracy, ROC AUC and 1-ROCA%, and
//! the thresholds that would give 0.1% and 0.5% false positives. With `--symbol-stats`, how often each
//! symbol fired on ham and on spam: the figures weights are tuned from. `--plot` draws the ROC curves.
//!
//! Three protocols train a fresh temporary model and evaluate on mail it was not trained on, in one command:
//! - `--split sa` trains on the TRAIN half of the standard SpamAssassin split and evaluates on TEST;
//!   `--split sa-tune` does the same inside TRAIN only, as four-fold cross-validation (`--fold 0..3`:
//!   evaluate on three of TRAIN's twelve md5 digits, train on the other nine), for tuning weights without
//!   ever looking at TEST.
//! - `--split time` orders the messages by arrival (the date of the newest `Received:` line, else `Date:`),
//!   trains on the oldest `--train-share` and evaluates on the newer rest: how a model ages.
//! - `--train-ham` / `--train-spam` train on other folders (or mbox files) than the ones evaluated: how a
//!   model learned on one organisation's mail does on another's (cross-distribution).
//!
//! Folders, single files and mbox files are read alike; an mbox file gives each of its messages.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::Args;
use mailsift_engine::classify::Side;
use mailsift_engine::symbols::Group;
use mailsift_engine::{Engine, Envelope, Evidence};
use mailsift_store::{Learner, SqliteStore};

use crate::inputs::{in_split, message_files, split_mbox, Split};

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
    /// Train a fresh temporary model on one part of the given folders and evaluate on the other:
    /// `sa` trains on TRAIN and evaluates on TEST; `sa-tune` splits TRAIN itself (for tuning); `time`
    /// trains on the oldest messages and evaluates on the newer ones.
    #[arg(long, value_enum, conflicts_with = "subset")]
    split: Option<EvalSplit>,
    /// With `--split time`: the share of the messages, oldest first, to train on.
    #[arg(long, default_value_t = 0.5, value_parser = share)]
    train_share: f64,
    /// Train a fresh temporary model on this known-good mail (folders, files or mbox files) and evaluate
    /// `--ham` and `--spam` with it: train on one collection, test on another.
    #[arg(long, num_args = 1.., conflicts_with = "split", requires = "train_spam")]
    train_ham: Vec<PathBuf>,
    /// Known spam to train the temporary model on (with `--train-ham`).
    #[arg(long, num_args = 1.., conflicts_with = "split", requires = "train_ham")]
    train_spam: Vec<PathBuf>,
    /// With `--split sa-tune`: which quarter of TRAIN to evaluate on (md5 4-6, 7-9, a-c, d-f).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..4))]
    fold: u32,
    /// Extra passes of the linear model when `--split` trains.
    #[arg(long, default_value_t = crate::train::DEFAULT_PASSES)]
    passes: usize,
    /// Draw the ROC curves of every engine to this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Write every message's scores (label, verdict score, heuristics, Bayes, linear, the symbols that
    /// scored) to this TSV file.
    #[arg(long, value_name = "FILE")]
    scores_tsv: Option<PathBuf>,
    /// Judge as a fresh installation does: an empty local model, so the shipped day-one model stands in
    /// (with `classifier.day_one_say` of the points). The data directory is not read.
    #[arg(long, conflicts_with_all = ["split", "train_ham", "train_spam"])]
    day_one: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalSplit {
    /// Train on the standard TRAIN half (md5 4-f), evaluate on TEST (md5 0-3).
    Sa,
    /// Within TRAIN, one fold of four (see `--fold`). TEST is never read.
    SaTune,
    /// Oldest first by arrival: train on the first `--train-share`, evaluate on the newer rest.
    Time,
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("{s:?}: a share between 0 and 1 (exclusive), e.g. 0.5")),
    }
}

impl EvalSplit {
    /// For the md5 splits: whether a file is trained on. (`time` decides on the whole set, [`by_arrival`].)
    fn trains(self, f: &Path, fold: u32) -> bool {
        match self {
            EvalSplit::Sa => in_split(f, Split::Train),
            EvalSplit::SaTune => md5_digit(f).is_some_and(|d| d >= 4 && (d - 4) / 3 != fold),
            EvalSplit::Time => false,
        }
    }

    fn evaluates(self, f: &Path, fold: u32) -> bool {
        match self {
            EvalSplit::Sa => in_split(f, Split::Test),
            EvalSplit::SaTune => md5_digit(f).is_some_and(|d| d >= 4 && (d - 4) / 3 == fold),
            EvalSplit::Time => false,
        }
    }
}

fn side(is_spam: bool) -> Side {
    if is_spam {
        Side::Spam
    } else {
        Side::Ham
    }
}

/// When a message arrived: the date its newest `Received:` line gives (the collecting server's clock), else
/// its `Date:` header (the sender's). `None` when neither parses.
fn arrival(engine: &Engine, raw: &[u8]) -> Option<i64> {
    let msg = engine.parse(raw);
    msg.hops.first().and_then(|h| h.timestamp).or(msg.date)
}

/// The `--split time` halves: every message ordered by arrival (a file's first message stands for an mbox
/// file), the oldest `share` to train on and the rest to evaluate, each with its time; and how many had no
/// date. Ties keep the files' order.
#[allow(clippy::type_complexity)]
fn by_arrival(
    engine: &Engine,
    jobs: Vec<(PathBuf, String, bool)>,
    share: f64,
) -> (Vec<((PathBuf, String, bool), i64)>, Vec<((PathBuf, String, bool), i64)>, usize) {
    let mut dated = Vec::with_capacity(jobs.len());
    let mut undated = 0;
    for job in jobs {
        let first = std::fs::read(&job.0).ok().and_then(|b| split_mbox(b).into_iter().next());
        match first.and_then(|raw| arrival(engine, &raw)) {
            Some(t) => dated.push((job, t)),
            None => undated += 1,
        }
    }
    dated.sort_by_key(|(_, t)| *t);
    let cut = ((dated.len() as f64) * share).round() as usize;
    let newer = dated.split_off(cut.min(dated.len()));
    (dated, newer, undated)
}

/// A Unix time as a calendar day (UTC).
fn date(t: i64) -> String {
    let (y, m, d) = mailsift_gateway::text::civil_from_days(t.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

fn md5_digit(f: &Path) -> Option<u32> {
    if !in_split(f, Split::Train) && !in_split(f, Split::Test) {
        return None;
    }
    let name = f.file_name()?.to_string_lossy().into_owned();
    name.split('.').nth(1)?.chars().next()?.to_digit(16)
}

struct Outcome {
    folder: String,
    is_spam: bool,
    flagged: bool,
    score: f64,
    file: PathBuf,
    symbols: Vec<String>,
    /// The score of every symbol outside the classifier group: the heuristics alone.
    heuristics: f64,
    bayes: Option<f64>,
    linear: Option<f64>,
    familiarity: Option<f64>,
    /// The local head's probability, when it spoke.
    local: Option<f64>,
}

pub fn run(engine: Engine, data_dir: &Path, args: &EvalArgs) -> Result<()> {
    let mut jobs: Vec<(PathBuf, String, bool)> = Vec::new();
    let mut training: Vec<(PathBuf, Side)> = Vec::new();
    for (paths, is_spam) in [(&args.ham, false), (&args.spam, true)] {
        for root in paths {
            let folder = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            for f in message_files(root)? {
                match args.split {
                    Some(EvalSplit::Time) => jobs.push((f, folder.clone(), is_spam)),
                    Some(split) if split.trains(&f, args.fold) => training.push((f, side(is_spam))),
                    Some(split) if split.evaluates(&f, args.fold) => jobs.push((f, folder.clone(), is_spam)),
                    Some(_) => {}
                    None if in_split(&f, args.subset) => jobs.push((f, folder.clone(), is_spam)),
                    None => {}
                }
            }
        }
    }
    let protocol = match args.split {
        Some(EvalSplit::Time) => {
            let (older, newer, undated) = by_arrival(&engine, std::mem::take(&mut jobs), args.train_share);
            println!(
                "--split time: training on the oldest {} messages (to {}), evaluating the {} newer ones{}",
                older.len(),
                older.last().map(|(_, t)| date(*t)).unwrap_or_default(),
                newer.len(),
                if undated > 0 { format!(" ({undated} without a date left out)") } else { String::new() }
            );
            training = older.into_iter().map(|((f, _, is_spam), _)| (f, side(is_spam))).collect();
            jobs = newer.into_iter().map(|(job, _)| job).collect();
            Some("--split time: training on the older part".to_string())
        }
        Some(split) => {
            let name = clap::ValueEnum::to_possible_value(&split).map(|v| v.get_name().to_string()).unwrap_or_default();
            anyhow::ensure!(!training.is_empty(), "--split {name}: no corpus files named NNNNN.<md5>.txt to train on");
            Some(format!("--split {name}: training on the train half"))
        }
        None if !args.train_ham.is_empty() => {
            let evaluated: std::collections::HashSet<PathBuf> =
                jobs.iter().filter_map(|(f, _, _)| f.canonicalize().ok()).collect();
            for (paths, is_spam) in [(&args.train_ham, false), (&args.train_spam, true)] {
                for root in paths {
                    for f in message_files(root)? {
                        anyhow::ensure!(
                            !f.canonicalize().is_ok_and(|c| evaluated.contains(&c)),
                            "{}: both trained on and evaluated; give --train-ham/--train-spam other mail than --ham/--spam",
                            f.display()
                        );
                        training.push((f, side(is_spam)));
                    }
                }
            }
            Some("training on --train-ham and --train-spam".to_string())
        }
        None => None,
    };
    // The temporary model's directory lives until the evaluation is over.
    let _tmp;
    let engine = match protocol {
        None if args.day_one => {
            println!("a fresh installation: no local training, the day-one model stands in");
            engine.with_model(Default::default())
        }
        None => crate::with_trained_model(None, engine, data_dir)?,
        Some(training_on) => {
            let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
            let store = SqliteStore::open_dir(tmp.path())?;
            let mut learner = Learner::open(store)?;
            let report = crate::train::train_files(&engine, &mut learner, &training, args.threads, args.passes, true)?;
            print!("{training_on}: ");
            report.print();
            println!();
            _tmp = tmp;
            engine.with_model(learner.model())
        }
    };
    anyhow::ensure!(!jobs.is_empty(), "no messages: give --ham and --spam folders");
    let engine = judged_as_home(engine, &jobs);
    let engine = &engine;
    let results = Mutex::new(Vec::with_capacity(jobs.len()));
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..args.threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((file, folder, is_spam)) = jobs.get(i) else {
                    break;
                };
                let bytes = match std::fs::read(file) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("mailsift: {}: cannot read: {e}", file.display());
                        continue;
                    }
                };
                let messages = split_mbox(bytes);
                let several = messages.len() > 1;
                for (k, raw) in messages.iter().enumerate() {
                    let file =
                        if several { PathBuf::from(format!("{}#{}", file.display(), k + 1)) } else { file.clone() };
                    let msg = engine.parse(raw);
                    let scores = engine.classify(&msg);
                    let evidence = Evidence { classifier: scores, ..Evidence::default() };
                    // Judged as stored mail is (`scan --from-trace`): the connection the receiving server
                    // recorded stands in for the SMTP session, so the connection checks run as at the gateway.
                    let mut envelope = Envelope::default();
                    envelope.fill_from_trace(&msg);
                    let v = engine.judge(&msg, &envelope, &evidence);
                    let o = Outcome {
                        // The verdict's score (group caps applied) without the classifiers' part.
                        heuristics: v.score
                            - v.symbols.iter().filter(|s| s.group == Group::Classifier).map(|s| s.score).sum::<f64>(),
                        bayes: scores.and_then(|s| s.bayes),
                        linear: scores.and_then(|s| s.linear),
                        familiarity: scores.and_then(|s| s.familiarity),
                        local: scores.and_then(|s| s.local),
                        folder: folder.clone(),
                        is_spam: *is_spam,
                        flagged: v.action.is_spam(),
                        score: v.score,
                        file,
                        symbols: v.symbols.iter().filter(|s| s.score != 0.0).map(|s| s.name.clone()).collect(),
                    };
                    results.lock().expect("results").push(o);
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by(|a, b| a.file.cmp(&b.file));
    report(&results, args);
    let curves = engine_report(&results, engine.config().thresholds.tag);
    if let Some(path) = &args.plot {
        std::fs::write(path, crate::roc::svg(&curves))
            .with_context(|| format!("{}: cannot write the plot", path.display()))?;
        println!("\nROC curves drawn to {}", path.display());
    }
    if let Some(path) = &args.scores_tsv {
        let mut out = String::from("file\tlabel\tscore\theuristics\tbayes\tlinear\tsymbols\tfamiliarity\tlocal\n");
        let opt = |p: Option<f64>| p.map(|p| p.to_string()).unwrap_or_default();
        for r in &results {
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                r.file.display(),
                if r.is_spam { "spam" } else { "ham" },
                r.score,
                r.heuristics,
                opt(r.bayes),
                opt(r.linear),
                r.symbols.join(" "),
                opt(r.familiarity),
                opt(r.local)
            ));
        }
        std::fs::write(path, out).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    Ok(())
}

/// Per-engine figures: each engine alone (Bayes and linear decide at probability 0.5, the heuristics at
/// the tag threshold) and the full verdict. Returns the ROC curves for the plot.
fn engine_report(results: &[Outcome], tag: f64) -> Vec<crate::roc::Curve> {
    type Pick = fn(&Outcome) -> Option<f64>;
    let engines: [(&str, Pick, f64); 5] = [
        ("bayes", |r| r.bayes, 0.5),
        ("linear", |r| r.linear, 0.5),
        ("local", |r| r.local, 0.5),
        ("heuristics", |r| Some(r.heuristics), tag),
        ("combined", |r| Some(r.score), tag),
    ];
    println!(
        "\n{:<11} {:>6} {:>9} {:>11} {:>9} {:>8} {:>8}  {:<24} {:<24}",
        "engine",
        "at",
        "FP rate",
        "spam caught",
        "accuracy",
        "ROC AUC",
        "1-ROCA%",
        "for 0.1% FP: score >",
        "for 0.5% FP: score >"
    );
    let mut curves = Vec::new();
    for (name, pick, at) in engines {
        let scored: Vec<(f64, bool)> = results.iter().filter_map(|r| pick(r).map(|s| (s, r.is_spam))).collect();
        if scored.is_empty() {
            println!("{name:<11} (silent: no trained model, or too little training)");
            continue;
        }
        let m = crate::roc::Metrics::of(&scored, at);
        let op = |o: Option<(f64, f64)>| {
            o.map(|(t, caught)| format!("{t:<9.5} ({caught:>6.2}% caught)")).unwrap_or_else(|| "-".into())
        };
        println!(
            "{name:<11} {at:>6.2} {:>8.2}% {:>10.2}% {:>8.2}% {:>8.5} {:>8.3}  {:<24} {:<24}",
            m.fp_rate * 100.0,
            m.caught * 100.0,
            m.accuracy * 100.0,
            m.auc,
            (1.0 - m.auc) * 100.0,
            op(m.at_fp_rate(0.001)),
            op(m.at_fp_rate(0.005)),
        );
        curves.push(crate::roc::Curve::new(name, &scored, at));
    }
    println!(
        "(bayes, linear and the local head alone decide at probability 0.5; the local head only on mail to an \
         organisation it learned; silent engines are left out)"
    );
    curves
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
        rows.sort_by_key(|r| std::cmp::Reverse(r.1 .0 + r.1 .1));
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

/// The engine judging as the installation of the judged mail would. Without `[organisation] domains`, the
/// organisation is the registrable domain most of the judged messages (ham and spam, their labels unread) were
/// delivered to: at a gateway every message is addressed to its own organisation, which is what decides
/// whether a model learned elsewhere is a stranger there (`classifier.stranger_say`).
fn judged_as_home(engine: Engine, jobs: &[(PathBuf, String, bool)]) -> Engine {
    if !engine.config().organisation.domains.is_empty() {
        return engine;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for (file, _, _) in jobs {
        let Ok(bytes) = std::fs::read(file) else { continue };
        for raw in split_mbox(bytes) {
            // The recipients are in the header: parse that only.
            let end = raw.windows(2).position(|w| w == b"\n\n").map_or(raw.len(), |i| i + 2);
            let msg = engine.parse(&raw[..end]);
            if let Some(org) = mailsift_engine::classify::tokens::organisation(&msg) {
                *counts.entry(org).or_default() += 1;
            }
        }
    }
    let total: usize = counts.values().sum();
    match counts.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0))) {
        Some((org, n)) => {
            println!(
                "judged as the installation of {org} ({n} of the {total} messages with a recipient were delivered \
                 there; [organisation] domains says it for an installation)"
            );
            engine.with_home(&[org])
        }
        None => engine,
    }
}
