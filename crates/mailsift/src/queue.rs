//! `mailsift queue`: what the gateway owes and has not delivered yet — the outbound queue (mail of our users
//! to other domains) and the gateway's own mail (bounces, rules' copies, digests, reports), from the durable
//! spool. List, show, retry now, remove. A running gateway picks up a retry within its spool's poll interval
//! (30 s) and never starts a second delivery of an item already on its way.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use mailsift_store::{Database, SpoolItem};

#[derive(Subcommand)]
pub enum QueueCommand {
    /// List queued items, oldest first (pending by default), and the totals per kind.
    List {
        /// Only the items given up on (kept for the operator, without their message).
        #[arg(long, conflicts_with = "all")]
        failed: bool,
        /// Pending and given up.
        #[arg(long)]
        all: bool,
        /// Only this kind: outbound, bounce, copy, digest, dmarc-report...
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one item: envelope, attempts, the last error, when it is due, and the message's header.
    Show {
        id: i64,
        /// Print the queued message exactly, instead.
        #[arg(long)]
        raw: bool,
    },
    /// Make items due now (the running gateway tries them within its poll interval).
    Retry {
        #[arg(required_unless_present = "all")]
        ids: Vec<i64>,
        /// Every pending item.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete items for good: they are not delivered and nobody is told (a bounce is not sent).
    Remove {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
}

fn open(config: Option<&PathBuf>, data_dir: &Path) -> Result<Database> {
    crate::config_cmd::required_database(config, data_dir)
}

pub fn run(config: Option<&PathBuf>, data_dir: &Path, cmd: &QueueCommand) -> Result<()> {
    let db = open(config, data_dir)?;
    let now_ms = mailsift_store::gateway::now_ms();
    match cmd {
        QueueCommand::List { failed, all, kind, limit, json } => {
            let state = if *all {
                None
            } else if *failed {
                Some("failed")
            } else {
                Some("pending")
            };
            let items: Vec<SpoolItem> = db.spool_list_of(state, kind.as_deref(), *limit)?;
            if *json {
                for i in &items {
                    println!("{}", serde_json::to_string(&json_of(i, now_ms))?);
                }
                return Ok(());
            }
            println!(
                "{:>7} {:<12} {:<8} {:<20} {:>4} {:<10} {:<28} {:<28} last error",
                "id", "kind", "state", "queued (UTC)", "try", "next", "from", "to"
            );
            for i in &items {
                println!(
                    "{:>7} {:<12} {:<8} {:<20} {:>4} {:<10} {:<28} {:<28} {}",
                    i.id,
                    crate::log::clip(&i.kind, 12),
                    i.state,
                    crate::log::short_time(i.created_ms / 1000),
                    i.attempts,
                    next_attempt(i, now_ms),
                    crate::log::clip(if i.mail_from.is_empty() { "<>" } else { &i.mail_from }, 28),
                    crate::log::clip(&i.recipient, 28),
                    crate::log::clip(i.last_error.as_deref().unwrap_or(""), 80),
                );
            }
            for c in db.spool_counts()? {
                eprintln!(
                    "{}: {} {} (oldest queued {} ago)",
                    c.kind,
                    c.count,
                    c.state,
                    age((now_ms - c.oldest_ms).max(0) / 1000)
                );
            }
        }
        QueueCommand::Show { id, raw } => {
            let (item, message) = db.spool_get(*id)?.with_context(|| format!("queue item {id} does not exist"))?;
            if *raw {
                let Some(message) = message else { bail!("queue item {id} was given up: its message is gone") };
                use std::io::Write;
                std::io::stdout().write_all(&message)?;
                return Ok(());
            }
            print!("{}", render(&item, message.as_deref(), now_ms));
        }
        QueueCommand::Retry { ids, all } => {
            let mut made = 0;
            if *all {
                made = db.spool_due_now(None)?;
            } else {
                for id in ids {
                    match db.spool_get(*id)? {
                        None => bail!("queue item {id} does not exist"),
                        Some((i, _)) if i.state != "pending" => {
                            bail!("queue item {id} was given up; its message is gone and it cannot be retried")
                        }
                        Some(_) => match db.spool_due_now(Some(*id))? {
                            0 => eprintln!("{id}: being delivered now, left to that attempt"),
                            n => made += n,
                        },
                    }
                }
            }
            println!("{made} item(s) due now; the gateway tries them within 30 seconds");
        }
        QueueCommand::Remove { ids } => {
            for id in ids {
                if !db.spool_remove(*id)? {
                    bail!("queue item {id} does not exist");
                }
                println!("{id}: removed");
            }
        }
    }
    Ok(())
}

/// When a pending item is tried next, for people: `now`, `in 5m`, `sending` (an attempt is under way).
fn next_attempt(i: &SpoolItem, now_ms: i64) -> String {
    if i.state != "pending" {
        return "-".into();
    }
    if i.sending(now_ms) {
        return "sending".into();
    }
    match (i.next_attempt_ms - now_ms) / 1000 {
        s if s <= 0 => "now".into(),
        s => format!("in {}", age(s)),
    }
}

/// A duration in seconds, shortly: `42s`, `5m`, `3h`, `2d`.
fn age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn json_of(i: &SpoolItem, now_ms: i64) -> serde_json::Value {
    serde_json::json!({
        "id": i.id,
        "kind": i.kind,
        "state": i.state,
        "reference_id": i.reference_id,
        "mail_from": i.mail_from,
        "recipient": i.recipient,
        "size": i.size,
        "queued_ms": i.created_ms,
        "attempts": i.attempts,
        "next_attempt_ms": (i.state == "pending").then_some(i.next_attempt_ms),
        "sending": i.sending(now_ms),
        "last_error": i.last_error,
        "given_up_ms": if i.state == "failed" { i.finished_ms } else { None },
    })
}

fn render(i: &SpoolItem, message: Option<&[u8]>, now_ms: i64) -> String {
    let mut out = String::new();
    let from = if i.mail_from.is_empty() { "<>" } else { &i.mail_from };
    out.push_str(&format!("Queue item {} ({}, {})\n", i.id, i.kind, i.state));
    out.push_str(&format!("  reference:  {}\n", i.reference_id));
    out.push_str(&format!("  from:       {from}\n  to:         {}\n", i.recipient));
    out.push_str(&format!("  queued:     {} UTC\n", crate::log::short_time(i.created_ms / 1000)));
    out.push_str(&format!("  attempts:   {}\n", i.attempts));
    match i.state.as_str() {
        "pending" => out.push_str(&format!("  next:       {}\n", next_attempt(i, now_ms))),
        _ => {
            if let Some(t) = i.finished_ms {
                out.push_str(&format!("  given up:   {} UTC\n", crate::log::short_time(t / 1000)));
            }
        }
    }
    if let Some(e) = &i.last_error {
        out.push_str(&format!("  last error: {e}\n"));
    }
    out.push_str(&format!("  size:       {} bytes\n", i.size));
    if let Some(m) = message {
        let end = mailsift_gateway::headers::find_header_end(m).min(m.len()).min(16 * 1024);
        out.push_str("\n");
        out.push_str(&String::from_utf8_lossy(&m[..end]));
        if !out.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}
