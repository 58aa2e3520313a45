//! `mailsift diagnose`: why a message was judged as it was, and the narrowest fix, printed as the command
//! that makes it; `--dry-run` tries each fix on the message and replays it over the message log, `--apply N`
//! makes fix N after confirmation.
//!
//! The message can be a file (with our `X-Mailsift-*` headers, whose verdict is diagnosed without a
//! database; or without them, scanned afresh with the envelope options), a quarantine id, or a
//! message-log reference id (the quarantined copy is used when there is one; otherwise what the log keeps).
//! The engine is built as the gateway builds it for the recipient's domain: the configuration's settings
//! with the stored domains folded in, and the configuration's policy followed by the stored one.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use mailsift_engine::diagnose::{self, Change, Diagnosis, Observed, PastMessage, Source, Subject};
use mailsift_engine::policy::Policy;
use mailsift_engine::{Engine, Envelope, Evidence, Verdict};
use mailsift_gateway::actions::{self, envelope_of_log};
use mailsift_gateway::config::DomainConfig;
use mailsift_store::{Database, QuarantineQuery};

use crate::EnvelopeArgs;

#[derive(Args)]
pub struct DiagnoseArgs {
    /// The message: a file (- for standard input), a quarantine id, or a message-log reference id.
    target: String,
    #[command(flatten)]
    envelope: EnvelopeArgs,
    /// Try each fix on this message, and replay it over the message log: how many past messages it would
    /// have let through, and which of them had been judged spam.
    #[arg(long)]
    dry_run: bool,
    /// Make fix N (as numbered in the output), after confirmation.
    #[arg(long, value_name = "N")]
    apply: Option<usize>,
    /// Do not ask for confirmation before --apply.
    #[arg(long)]
    yes: bool,
    /// How far back --dry-run replays the message log, in days.
    #[arg(long, default_value_t = 30)]
    replay_days: u64,
    /// Print the diagnosis (and the dry runs) as JSON.
    #[arg(long)]
    json: bool,
}

/// The message to diagnose and what is known about it.
struct Loaded {
    source: Source,
    /// The raw message, when there is one (a file, a quarantined copy).
    raw: Option<Vec<u8>>,
    /// The verdict as recorded (our headers, the log), when not scanned afresh.
    recorded: Option<RecordedVerdict>,
    envelope: Envelope,
    /// Where the message was read, for the output.
    label: String,
}

enum RecordedVerdict {
    Headers,
    Log(Box<mailsift_store::LogEntry>),
}

pub fn run(config: Option<&PathBuf>, data_dir: &Path, args: &DiagnoseArgs) -> Result<std::process::ExitCode> {
    let db = open_existing(config, data_dir)?;
    let loaded = load(db.as_ref(), args)?;
    // The engine and policy as the gateway has them, built as every other command builds them.
    let gateway = crate::scanner::judging_with_database(config, db.as_ref())?;
    let smtp_domains = gateway.configured.clone();
    // The diagnosis tries fixes by rebuilding the engine from its configuration: the domain's settings are
    // in that configuration here (the same verdicts as the one engine judging with them).
    let engine = gateway.diagnosis_engine(&crate::scanner::domain_of_envelope(&loaded.envelope, false))?;
    let engine = crate::with_trained_model(config, engine, data_dir)?;
    let rep = crate::reputation::for_scans(config, &engine, data_dir)?;
    let scanner = crate::scanner::Scanner::new(engine)?.with_reputation(rep);
    let engine = &scanner.engine;
    let policy = gateway.policy_for(engine);
    let compiled = Policy::new(&policy).context("the configuration's [policy] and the stored policy together")?;

    // The message as judged now (without our headers), and the verdict to diagnose.
    let clean = loaded.raw.as_deref().map(|r| mailsift_engine::verdict::strip_own_headers(r, None));
    let empty = rebuilt_from_log(&loaded);
    let msg = engine.parse(clean.as_deref().unwrap_or(&empty));
    let mut evidence = match &clean {
        Some(raw) => scanner.evidence(raw, &loaded.envelope, &msg),
        None => Evidence::default(),
    };
    if clean.is_some() {
        scanner.add_reputation(&loaded.envelope, &msg, &mut evidence);
    }
    let fresh: Option<Verdict> =
        clean.as_ref().map(|_| engine.judge_with_policy(&msg, &loaded.envelope, &evidence, &compiled));
    let mut observed = match (&loaded.recorded, &loaded.raw) {
        (Some(RecordedVerdict::Headers), Some(raw)) => {
            Observed::from_headers(&engine.parse(raw)).context("the message's X-Mailsift headers do not read")?
        }
        (Some(RecordedVerdict::Log(e)), _) => {
            Observed::from_log(&e.reference_id, e.score.unwrap_or(0.0), &e.action, &e.symbols, e.reason.as_deref())
        }
        _ => Observed::from_verdict(fresh.as_ref().expect("a scanned message")),
    };
    // Our headers and the log keep symbol names, not details: the message judged again names them.
    if let Some(v) = &fresh {
        observed.fill_details(v);
    }
    let subject = Subject {
        message: &msg,
        envelope: &loaded.envelope,
        evidence: &evidence,
        observed: &observed,
        source: loaded.source.clone(),
    };
    let diagnosis = diagnose::diagnose(engine, &policy, &subject);

    // What each fix does to this message (when we have it), and over the log (with --dry-run).
    let mut outcomes = Vec::new();
    for f in &diagnosis.fixes {
        outcomes.push(match &clean {
            Some(_) => Some(diagnose::try_fix(engine, &policy, &f.change, &msg, &loaded.envelope, &evidence)),
            None => None,
        });
    }
    let replays: Vec<Option<diagnose::Replay>> = if args.dry_run {
        let past = match &db {
            Some(db) => past_messages(db, args.replay_days)?,
            None => Vec::new(),
        };
        // The diagnosed message is in the log too: the fix is meant to let it through, so it is not counted
        // among the spam the fix would let in.
        let itself = diagnosed_reference(&loaded, &observed);
        diagnosis
            .fixes
            .iter()
            .map(|f| Some(diagnose::replay_excluding(engine, &f.change, &past, itself.as_deref())))
            .collect()
    } else {
        diagnosis.fixes.iter().map(|_| None).collect()
    };

    if args.json {
        let fixes: Vec<serde_json::Value> = diagnosis
            .fixes
            .iter()
            .zip(&outcomes)
            .zip(&replays)
            .map(|((f, o), r)| {
                serde_json::json!({
                    "fix": f,
                    "with_fix": o.as_ref().map(|o| match o {
                        Ok(v) => serde_json::json!({"action": v.action, "score": v.score, "scl": v.scl, "decided_by": v.decided_by}),
                        Err(e) => serde_json::json!({"error": e.to_string()}),
                    }),
                    "replay": r,
                })
            })
            .collect();
        let out = serde_json::json!({ "source": loaded.source, "message": loaded.label, "diagnosis": diagnosis, "fixes": fixes });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_text(&loaded, &diagnosis, &observed, &outcomes, &replays, args);
    }

    if let Some(n) = args.apply {
        let fix = n
            .checked_sub(1)
            .and_then(|i| diagnosis.fixes.get(i))
            .with_context(|| format!("--apply {n}: there are {} fixes (numbered from 1)", diagnosis.fixes.len()))?;
        if !args.yes && !confirm(&format!("Apply fix {n} ({})?", fix.title))? {
            println!("not applied");
            return Ok(std::process::ExitCode::SUCCESS);
        }
        apply(config, data_dir, engine, &smtp_domains, &fix.change, &loaded, clean.as_deref())?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// The message-log reference of the diagnosed message: the log entry it was read from, else the one our
/// headers name (X-Mailsift-Id).
fn diagnosed_reference(loaded: &Loaded, observed: &Observed) -> Option<String> {
    match &loaded.recorded {
        Some(RecordedVerdict::Log(e)) => Some(e.reference_id.clone()),
        Some(RecordedVerdict::Headers) => observed.reference.clone(),
        None => None,
    }
}

fn print_text(
    loaded: &Loaded,
    d: &Diagnosis,
    observed: &Observed,
    outcomes: &[Option<Result<Verdict, diagnose::DiagnoseError>>],
    replays: &[Option<diagnose::Replay>],
    args: &DiagnoseArgs,
) {
    let env = &loaded.envelope;
    println!("Message:  {}", loaded.label);
    println!(
        "Envelope: from {}, to {}{}{}",
        env.mail_from.as_deref().map(|m| format!("<{m}>")).unwrap_or_else(|| "(not given)".into()),
        if env.rcpt_to.is_empty() { "(not given)".to_string() } else { env.rcpt_to.join(", ") },
        env.client_ip.map(|ip| format!(", client {ip}")).unwrap_or_default(),
        env.helo.as_deref().map(|h| format!(" (HELO {h})")).unwrap_or_default(),
    );
    let from = match observed.from {
        "headers" => "the message's X-Mailsift headers",
        "log" => "the message log",
        _ => "a fresh scan",
    };
    println!("Read:     the verdict from {from}");
    let text = diagnose::render(d);
    // The cause and findings as rendered; the fixes again, each followed by what it does.
    let head = text.split("\nFixes, narrowest first:").next().unwrap_or(&text);
    print!("{head}");
    let fix_no = d.fixes.len();
    if fix_no > 0 {
        println!("\nFixes, narrowest first:");
    }
    for (i, f) in d.fixes.iter().enumerate() {
        println!("\n  {}. {}", i + 1, f.title);
        println!("     {}", f.note);
        if !f.risk.trim().is_empty() {
            // What the administrator accepts with this fix, before the command that makes it.
            println!("     still lets through: {}", f.risk.trim());
        }
        for line in f.command.lines() {
            println!("     $ {line}");
        }
        print_effect(i, outcomes, replays);
    }
    if fix_no > 0 {
        let target = diagnose::shell_quote(&args.target);
        println!();
        if !args.dry_run {
            println!("Try them first:  mailsift diagnose {target} --dry-run   (replays each fix over the message log)");
        }
        println!("Make one:        mailsift diagnose {target} --apply N   (asks for confirmation)");
    }
}

fn print_effect(
    i: usize,
    outcomes: &[Option<Result<Verdict, diagnose::DiagnoseError>>],
    replays: &[Option<diagnose::Replay>],
) {
    match outcomes.get(i) {
        Some(Some(Ok(v))) => println!(
            "     with it, this message: {} (score {:.2}, SCL {}){}",
            v.action.as_str(),
            v.score,
            v.scl,
            v.decided_by.as_deref().map(|b| format!(", decided by {b}")).unwrap_or_default()
        ),
        Some(Some(Err(e))) => println!("     cannot be tried: {e}"),
        _ => {}
    }
    if let Some(Some(r)) = replays.get(i) {
        if let Some(why) = &r.not_replayable {
            println!("     replay over the message log: not possible ({why})");
            return;
        }
        println!(
            "     replayed over the message log ({} messages): would have let through {}, of which {} had been judged spam{}",
            r.examined,
            r.let_through,
            r.were_spam.len(),
            if r.undecidable > 0 {
                format!("; {} more match on what the log keeps but need headers it does not keep", r.undecidable)
            } else {
                String::new()
            }
        );
        for m in r.were_spam.iter().take(10) {
            println!(
                "       {}  {}  {:<10} {:>6}  {}  {:?}",
                m.reference_id,
                crate::log::short_time(m.time),
                m.action,
                m.score.map(|s| format!("{s:.2}")).unwrap_or_default(),
                m.from,
                m.subject
            );
        }
        if r.were_spam.len() > 10 {
            println!("       ... and {} more", r.were_spam.len() - 10);
        }
    }
}

fn confirm(question: &str) -> Result<bool> {
    print!("{question} [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

// ---- reading the message ----

use crate::scanner::open_existing;

fn load(db: Option<&Database>, args: &DiagnoseArgs) -> Result<Loaded> {
    let t = args.target.trim();
    let path = Path::new(t);
    if t == "-" || path.exists() {
        let raw = crate::scan::read_input(path)?;
        let msg = mailsift_engine::Message::parse(&raw, usize::MAX);
        let has_headers = Observed::from_headers(&msg).is_some();
        let mut envelope = args.envelope.envelope();
        // A message with our headers is judged already: its envelope is in its trace headers.
        if args.envelope.from_trace || (has_headers && envelope.client_ip.is_none()) {
            envelope.fill_from_trace(&msg);
        }
        drop(msg);
        let label = if t == "-" { "standard input".to_string() } else { t.to_string() };
        return Ok(Loaded {
            source: Source::File(label.clone()),
            raw: Some(raw),
            recorded: has_headers.then_some(RecordedVerdict::Headers),
            envelope,
            label,
        });
    }
    let db = db.with_context(|| format!("{t}: no such file, and no gateway database to look it up in"))?;
    if let Ok(id) = t.parse::<i64>() {
        if let Some(item) = db.quarantine_get(id)? {
            let raw = db.quarantine_raw(id)?.with_context(|| format!("quarantine item {id}: the message is gone"))?;
            let log = db.log_get(&item.reference_id)?;
            let mut envelope = log.as_ref().map(envelope_of_log).unwrap_or_default();
            if envelope.rcpt_to.is_empty() {
                envelope.rcpt_to = vec![item.recipient.clone()];
            }
            envelope.mail_from = envelope.mail_from.or(item.mail_from.clone());
            return Ok(Loaded {
                source: Source::Quarantine(id),
                raw: Some(raw),
                recorded: log.map(|l| RecordedVerdict::Log(Box::new(l))),
                envelope,
                label: format!("quarantine item {id} (reference {}, to {})", item.reference_id, item.recipient),
            });
        }
    }
    let entry = db.log_get(t)?.with_context(|| format!("{t}: no such file, quarantine id or message-log reference"))?;
    let envelope = envelope_of_log(&entry);
    // A quarantined copy of the same transaction gives the whole message.
    let held = db
        .quarantine_list(&QuarantineQuery {
            since: Some(entry.time - 1),
            until: Some(entry.time + 1),
            include_released: true,
            limit: 1000,
            ..Default::default()
        })?
        .into_iter()
        .find(|q| q.reference_id == entry.reference_id);
    let (source, raw, label) = match held {
        Some(q) => (
            Source::Quarantine(q.id),
            db.quarantine_raw(q.id)?,
            format!("message-log reference {t} (quarantine item {})", q.id),
        ),
        None => (
            Source::Log(t.to_string()),
            None,
            format!("message-log reference {t} (no copy kept: what the log records)"),
        ),
    };
    Ok(Loaded { source, raw, recorded: Some(RecordedVerdict::Log(Box::new(entry))), envelope, label })
}

/// A message-log row without a copy: the headers the log keeps, as a message.
fn rebuilt_from_log(l: &Loaded) -> Vec<u8> {
    match &l.recorded {
        Some(RecordedVerdict::Log(e)) => actions::rebuilt_from_log(e),
        _ => Vec::new(),
    }
}

/// The message log of the last `days` days, with the quarantined copies (shared with the web console).
fn past_messages(db: &Database, days: u64) -> Result<Vec<PastMessage>> {
    Ok(actions::past_messages(db, mailsift_engine::unix_now() - (days as i64) * 86_400)?)
}

// ---- applying a fix ----

fn apply(
    config: Option<&PathBuf>,
    data_dir: &Path,
    engine: &Engine,
    configured: &[DomainConfig],
    change: &Change,
    loaded: &Loaded,
    raw: Option<&[u8]>,
) -> Result<()> {
    if let Change::Report { spam } = change {
        let raw = raw.context("the message log keeps no copy of this message: report the message itself")?;
        let side = if *spam { mailsift_engine::classify::Side::Spam } else { mailsift_engine::classify::Side::Ham };
        let engine = crate::report::gateway_engine(config, data_dir)?;
        let source = format!("diagnosis of {}", loaded.label);
        return crate::report::report_message(config, engine, data_dir, raw, side, &source, "cli", None);
    }
    let db = crate::config_cmd::database(config, data_dir)?;
    let ctx = actions::FixContext { configured_domains: configured, config: engine.config() };
    println!("{}", actions::apply_fix(&db, ctx, change)?);
    match change {
        Change::AddRule { rule } => crate::policy::warn_if_forgeable(rule, "added"),
        Change::ReplaceRule { rule, .. } => crate::policy::warn_if_forgeable(rule, "stored"),
        _ => {}
    }
    Ok(())
}
