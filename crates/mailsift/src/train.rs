//! `mailsift train --spam PATH --ham PATH`: teach both statistical engines from sorted mail.
//!
//! Files, directories and mbox files are accepted. Parsing and tokenizing run on every thread; learning
//! is sequential (it is cheap next to parsing) and everything is saved in one transaction at the end, so a
//! run that is interrupted leaves the store as it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use mailsift_engine::classify::{Combination, Side};
use mailsift_engine::Engine;
use mailsift_store::learner::Example;
use mailsift_store::{Learner, TokenStore};

use crate::inputs::{in_split, message_files, split_mbox, Split};

#[derive(Args)]
pub struct TrainArgs {
    /// Files, folders or mbox files of known spam.
    #[arg(long, num_args = 1..)]
    spam: Vec<PathBuf>,
    /// Files, folders or mbox files of known-good mail.
    #[arg(long, num_args = 1..)]
    ham: Vec<PathBuf>,
    /// Only the files of one half of the standard SpamAssassin split (by the md5 in the file name).
    #[arg(long, value_enum, default_value_t = Split::All)]
    subset: Split,
    /// Threads for parsing and tokenizing.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Extra passes of the linear model over the new messages (online learners improve with a few).
    #[arg(long, default_value_t = DEFAULT_PASSES)]
    passes: usize,
    /// After training, also write the whole model (not only what this run learned) to this file in the
    /// portable form the binary ships its day-one model in (`tools/day-one-model.sh`).
    #[arg(long)]
    export: Option<PathBuf>,
    /// With --export: leave out Bayes tokens met in fewer than this many trained messages.
    #[arg(long, default_value_t = 2, requires = "export")]
    export_min_messages: u32,
    /// With --export: leave out linear weights smaller than this in magnitude.
    #[arg(long, default_value_t = 0.05, requires = "export")]
    export_min_weight: f32,
}

pub const DEFAULT_PASSES: usize = 8;

/// What a training run did.
pub struct TrainReport {
    pub ham: usize,
    pub spam: usize,
    /// Learned for the first time, relearned on the other side, already known.
    pub outcomes: [usize; 3],
    pub unreadable: usize,
    /// The engines' combination fitted on this run's mail, if it had enough of each kind.
    pub combination: Option<Combination>,
    pub tokens: u64,
    pub seconds: f64,
}

impl TrainReport {
    pub fn print(&self) {
        println!(
            "trained {} ham and {} spam in {:.2} s: {} new, {} moved to the other side, {} already known{}; \
             the store holds {} tokens",
            self.ham,
            self.spam,
            self.seconds,
            self.outcomes[0],
            self.outcomes[1],
            self.outcomes[2],
            if self.unreadable > 0 { format!(", {} unreadable", self.unreadable) } else { String::new() },
            self.tokens
        );
        if let Some(c) = &self.combination {
            println!(
                "the engines' combination, fitted on {} ham and {} spam each judged by engines trained without \
                 it: Bayes x{:.2} toward spam, x{:.2} toward ham; linear x{:.2} toward spam, x{:.2} toward ham",
                c.ham, c.spam, c.bayes_spam, c.bayes_ham, c.linear_spam, c.linear_ham
            );
        }
    }
}

/// The heuristics' points for a training message: its verdict with no classifier answer, judged as stored
/// mail is (the connection its receiving server recorded stands in for the SMTP session), as `eval` does;
/// and whether a spam program's fingerprint scored in it (`checks::classifier::FINGERPRINTS`).
fn heuristics(engine: &Engine, msg: &mailsift_engine::Message<'_>) -> (f64, bool) {
    let mut envelope = mailsift_engine::Envelope::default();
    envelope.fill_from_trace(msg);
    let v = engine.judge(msg, &envelope, &mailsift_engine::Evidence::default());
    let marks = mailsift_engine::checks::classifier::FINGERPRINTS;
    let fingerprint = v.symbols.iter().any(|s| s.score > 0.0 && marks.iter().any(|f| s.name == *f));
    (v.score, fingerprint)
}

pub fn run(config: Option<&PathBuf>, engine: &Engine, data_dir: &Path, args: &TrainArgs) -> Result<()> {
    anyhow::ensure!(!args.spam.is_empty() || !args.ham.is_empty(), "nothing to train: give --spam and/or --ham");
    let mut files = Vec::new();
    for (paths, side) in [(&args.ham, Side::Ham), (&args.spam, Side::Spam)] {
        for root in paths {
            for f in message_files(root)? {
                if in_split(&f, args.subset) {
                    files.push((f, side));
                }
            }
        }
    }
    let store = crate::config_cmd::classifier_store(config, data_dir)?;
    let at = store.describe();
    let mut learner = Learner::open(store).with_context(|| format!("{at}: cannot load the classifier store"))?;
    let report = train_files(engine, &mut learner, &files, args.threads, args.passes, true)?;
    report.print();
    if (report.ham == 0) != (report.spam == 0) {
        let (given, missing) = if report.ham == 0 { ("spam", "--ham") } else { ("ham", "--spam") };
        eprintln!(
            "mailsift: note: only {given} in this run. Bayes counts it exactly, but the linear model learns from \
             ham and spam side by side: a run of one kind would tilt it, so it was learned as mail that comes \
             one message at a time is (damped, no extra passes); to train a new collection, give {missing} in \
             the same run"
        );
    }
    println!(
        "model: {} ham and {} spam learned in total, in {}",
        learner.model().read().map(|m| m.bayes.ham).unwrap_or(0),
        learner.model().read().map(|m| m.bayes.spam).unwrap_or(0),
        learner.store().describe()
    );
    if let Some(out) = &args.export {
        let bytes = {
            let model = learner.model();
            let model = model.read().unwrap_or_else(|e| e.into_inner());
            let pruning = mailsift_engine::classify::portable::Pruning {
                min_messages: args.export_min_messages,
                min_weight: args.export_min_weight,
            };
            mailsift_engine::classify::portable::encode(&model, pruning)
        };
        std::fs::write(out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        println!("exported: {} ({} bytes)", out.display(), bytes.len());
    }
    Ok(())
}

/// Reads, parses and tokenizes `files` on `threads` threads, learns them and saves. Shared by `train` and
/// `eval --split`.
pub fn train_files<S: TokenStore>(
    engine: &Engine,
    learner: &mut Learner<S>,
    files: &[(PathBuf, Side)],
    threads: usize,
    passes: usize,
    progress: bool,
) -> Result<TrainReport> {
    let start = Instant::now();
    let bar = if progress {
        let b = ProgressBar::new(files.len() as u64);
        b.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} files {per_sec} eta {eta}").expect("template"));
        b
    } else {
        ProgressBar::hidden()
    };
    let next = AtomicUsize::new(0);
    let unreadable = AtomicUsize::new(0);
    // One slot per file keeps the learning order the file order, whatever the thread timing.
    let slots: Mutex<Vec<Vec<Example>>> = Mutex::new((0..files.len()).map(|_| Vec::new()).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((file, side)) = files.get(i) else {
                    break;
                };
                let bytes = match std::fs::read(file) {
                    Ok(b) => b,
                    Err(e) => {
                        eprintln!("mailsift: {}: cannot read: {e}", file.display());
                        unreadable.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let examples: Vec<Example> = split_mbox(bytes)
                    .iter()
                    .map(|raw| {
                        let msg = engine.parse(raw);
                        let mut ex = Example::new(&msg, *side);
                        let (points, fingerprint) = heuristics(engine, &msg);
                        (ex.heuristics, ex.fingerprint) = (Some(points), fingerprint);
                        ex
                    })
                    .collect();
                slots.lock().expect("slots")[i] = examples;
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let examples: Vec<Example> = slots.into_inner().expect("slots").into_iter().flatten().collect();
    let ham = examples.iter().filter(|e| e.side == Side::Ham).count();
    let spam = examples.len() - ham;
    let (outcomes, combination) = learner.train_and_combine(&examples, passes, engine.config().thresholds.tag)?;
    let now = mailsift_engine::unix_now();
    learner.commit(now)?;
    learner.expire(&engine.config().classifier, now)?;
    Ok(TrainReport {
        ham,
        spam,
        outcomes,
        unreadable: unreadable.into_inner(),
        combination,
        tokens: learner.store().token_count()?,
        seconds: start.elapsed().as_secs_f64(),
    })
}
